//! Max, average and adaptive-average pooling, forward and backward, for any kernel, stride and
//! padding, overlapping windows and ceil mode included. x [N, C, H, W] -> y [N, C, OH, OW] in the
//! geometry's layout: channels first, or channels last ([N, H, W, C] -> [N, OH, OW, C]).

pub mod cases;
mod cpu;
mod node;

pub use node::{AdaptiveAvgPool2d, AvgPool2d, MaxPool2d, PoolWindow};

use crate::device::Device;
use crate::element::Element;
use crate::error::{Error, Result};
use crate::shape::{window_output_len, Layout};

mod cuda;

/// The sizes of a [`PoolGeom`], read through it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolDims {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub ceil_mode: bool,
    /// Average pooling only: whether padded positions count in the divisor (PyTorch's default).
    pub count_include_pad: bool,
    pub oh: usize,
    pub ow: usize,
    /// How x, y and their gradients lie in memory.
    pub layout: Layout,
}

checked_geometry!(
    /// A max or average pooling checked by `PoolGeom::new`; no other way makes or changes one:
    /// ```compile_fail
    /// let g = ferronet::ops::PoolGeom::new(1, 1, (4, 4), (2, 2), (2, 2), (0, 0), false, true).unwrap();
    /// let mut copy = g;
    /// copy.oh += 1;
    /// ```
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    PoolGeom => PoolDims
);

impl PoolGeom {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        n: usize,
        c: usize,
        (h, w): (usize, usize),
        (kh, kw): (usize, usize),
        (sh, sw): (usize, usize),
        (ph, pw): (usize, usize),
        ceil_mode: bool,
        count_include_pad: bool,
    ) -> Result<Self> {
        if n == 0 || c == 0 || h == 0 || w == 0 {
            return Err(Error::shape(format!("pooling needs a non-empty input, got N={n} C={c} H={h} W={w}")));
        }
        if 2 * ph > kh || 2 * pw > kw {
            return Err(Error::shape(format!(
                "pooling padding ({ph}, {pw}) must be at most half the kernel ({kh}, {kw})"
            )));
        }
        let oh = window_output_len(h, kh, sh, ph, 1, ceil_mode)
            .map_err(|e| Error::shape(format!("pooling height: {e}")))?;
        let ow = window_output_len(w, kw, sw, pw, 1, ceil_mode)
            .map_err(|e| Error::shape(format!("pooling width: {e}")))?;
        let layout = Layout::Nchw;
        Ok(PoolGeom { dims: PoolDims { n, c, h, w, kh, kw, sh, sw, ph, pw, ceil_mode, count_include_pad, oh, ow, layout } })
    }
    /// The same pooling on tensors in `layout` (NCHW unless set).
    pub fn with_layout(self, layout: Layout) -> Self {
        PoolGeom { dims: PoolDims { layout, ..self.dims } }
    }
    pub fn x_len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }
    pub fn y_len(&self) -> usize {
        self.n * self.c * self.oh * self.ow
    }
    /// The divisor of average pooling for output (oh, ow), as PyTorch computes it: the window is
    /// clipped to the padded input, and further to the real input unless count_include_pad.
    pub fn avg_divisor(&self, oh: usize, ow: usize) -> usize {
        let span = |o: usize, s: usize, p: usize, k: usize, len: usize| {
            let start = (o * s) as isize - p as isize;
            let end = (start + k as isize).min((len + p) as isize);
            let padded = (end - start) as usize;
            let (cs, ce) = (start.max(0), end.min(len as isize));
            (padded, (ce - cs).max(0) as usize)
        };
        let (ph_len, h_len) = span(oh, self.sh, self.ph, self.kh, self.h);
        let (pw_len, w_len) = span(ow, self.sw, self.pw, self.kw, self.w);
        if self.count_include_pad {
            ph_len * pw_len
        } else {
            h_len * w_len
        }
    }
}

/// Adaptive average pooling to (oh, ow): output i covers input rows
/// floor(i*H/OH) .. ceil((i+1)*H/OH), likewise for columns.
/// The sizes of a [`AdaptivePoolGeom`], read through it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AdaptivePoolDims {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub oh: usize,
    pub ow: usize,
    /// How x, y and their gradients lie in memory.
    pub layout: Layout,
}

checked_geometry!(
    /// An adaptive average pooling checked by `AdaptivePoolGeom::new`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    AdaptivePoolGeom => AdaptivePoolDims
);

impl AdaptivePoolGeom {
    pub fn new(n: usize, c: usize, (h, w): (usize, usize), (oh, ow): (usize, usize)) -> Result<Self> {
        if n == 0 || c == 0 || h == 0 || w == 0 || oh == 0 || ow == 0 {
            return Err(Error::shape(format!(
                "adaptive pooling needs non-empty input and output, got N={n} C={c} H={h} W={w} -> {oh}x{ow}"
            )));
        }
        let layout = Layout::Nchw;
        Ok(AdaptivePoolGeom { dims: AdaptivePoolDims { n, c, h, w, oh, ow, layout } })
    }
    /// The same pooling on tensors in `layout` (NCHW unless set).
    pub fn with_layout(self, layout: Layout) -> Self {
        AdaptivePoolGeom { dims: AdaptivePoolDims { layout, ..self.dims } }
    }
    /// Input range [start, end) of output index `i` along an axis of `len` pooled to `out`.
    pub fn range(i: usize, len: usize, out: usize) -> (usize, usize) {
        (i * len / out, ((i + 1) * len).div_ceil(out))
    }
    pub fn x_len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }
    pub fn y_len(&self) -> usize {
        self.n * self.c * self.oh * self.ow
    }
}

pub trait PoolOps<E: Element>: Device<E> {
    /// y and, per output, the argmax as a flat index ih*W + iw within its (n, c) plane. Padding
    /// never wins (it is -inf); among equal values the first in row-major window order wins.
    /// The indices lie in y's layout (one per output, in the same order).
    fn max_pool2d_forward(&self, x: &Self::Buf, g: &PoolGeom) -> Result<(Self::Buf, Self::IdxBuf)>;
    /// dx: each dy routed to its argmax; overlapping windows accumulate.
    fn max_pool2d_backward(&self, dy: &Self::Buf, indices: &Self::IdxBuf, g: &PoolGeom) -> Result<Self::Buf>;
    fn avg_pool2d_forward(&self, x: &Self::Buf, g: &PoolGeom) -> Result<Self::Buf>;
    fn avg_pool2d_backward(&self, dy: &Self::Buf, g: &PoolGeom) -> Result<Self::Buf>;
    fn adaptive_avg_pool2d_forward(&self, x: &Self::Buf, g: &AdaptivePoolGeom) -> Result<Self::Buf>;
    fn adaptive_avg_pool2d_backward(&self, dy: &Self::Buf, g: &AdaptivePoolGeom) -> Result<Self::Buf>;
}
