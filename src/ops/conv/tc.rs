//! The tensor-core implicit-GEMM convolution forward (`kernels/conv_tc.cu`, compute capability 8.0
//! and newer; fp16 from 7.5), channels-last: y = conv(x, w) with bf16 or f16 operands (their 16-bit patterns,
//! [`to_bits`](crate::ops::gemm::tc::to_bits)) accumulated in f32, any geometry [`ConvGeom`]
//! describes (kernel, stride, padding, dilation, groups) whose input channels per group are a
//! multiple of 8. No im2col matrix exists: the kernel gathers each tile of it from x.
//!
//! Layouts, unlike the NCHW convolution of this module's parent: x [N, H, W, C_in];
//! w [C_out, KH, KW, C_in/groups]; y [N, OH, OW, C_out] in f32. [`reference`] takes the same
//! layouts. Per group it is the GEMM Y[M, N] = X[M, K] W[N, K]^T with M = N*OH*OW pixels,
//! N = C_out/groups and K = KH*KW*C_in/groups.

use super::ConvGeom;
use crate::device::driver::{KernelArg, LaunchConfig};
use crate::device::Buffer;
use crate::error::{Error, Result};
use crate::gpu::{GpuBackend, GpuBuf};
use crate::ops::gemm::tc::{check_operands, f32_accumulation_gamma, TcInput};

const MODULE: &str = "conv_tc";
const THREADS: u32 = 256;
/// Channels of one 16-byte copy: C_in/groups must be a multiple of it.
const CHUNK_CHANNELS: usize = 8;

/// The kernel's block tiles: output pixels x output channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvTcTile {
    Pixels128Channels128,
    Pixels128Channels64,
}

impl ConvTcTile {
    pub fn pixels(self) -> usize {
        128
    }
    pub fn channels(self) -> usize {
        match self {
            ConvTcTile::Pixels128Channels128 => 128,
            ConvTcTile::Pixels128Channels64 => 64,
        }
    }
    fn kernel(self, input: TcInput) -> Result<&'static str> {
        Ok(match (input, self) {
            (TcInput::Bf16, ConvTcTile::Pixels128Channels128) => "conv_tc_bf16_128x128",
            (TcInput::F16, ConvTcTile::Pixels128Channels128) => "conv_tc_f16_128x128",
            (TcInput::Bf16, ConvTcTile::Pixels128Channels64) => "conv_tc_bf16_128x64",
            (TcInput::F16, ConvTcTile::Pixels128Channels64) => "conv_tc_f16_128x64",
            (TcInput::Tf32, _) => return Err(Error::config("the tensor-core convolution takes bf16 or f16 operands, not tf32")),
        })
    }
}

/// One tensor-core convolution: its geometry and operand format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcConv {
    pub input: TcInput,
    pub geom: ConvGeom,
}

impl TcConv {
    /// The GEMM of one group: (M pixels, N output channels, K = KH*KW*C_in/groups).
    pub fn gemm_dims(&self) -> (usize, usize, usize) {
        let g = &self.geom;
        (g.n * g.oh * g.ow, g.c_out_per_group(), g.kh * g.kw * g.c_in_per_group())
    }

    pub fn flops(&self) -> f64 {
        2.0 * self.geom.macs() as f64
    }

    /// The block tile for a device of `multiprocessors` SMs: 64 channels when a group has at most
    /// 64 (a 128-channel tile would multiply zeros) or when 128-channel tiles would leave SMs
    /// without a block; else 128, which gathers each pixel's receptive field half as often.
    pub fn plan_tile(&self, multiprocessors: usize) -> ConvTcTile {
        let (m, n, _) = self.gemm_dims();
        let tiles_128 = m.div_ceil(128) * n.div_ceil(128) * self.geom.groups;
        if n <= 64 || tiles_128 < multiprocessors {
            ConvTcTile::Pixels128Channels64
        } else {
            ConvTcTile::Pixels128Channels128
        }
    }

    /// The kernel's requirements on the geometry and on the operands' lengths and addresses (x and
    /// w 16-byte aligned, y 8-byte aligned).
    fn check(&self, lens: [usize; 3], ptrs: [u64; 3]) -> Result<()> {
        let g = &self.geom;
        let cg = g.c_in_per_group();
        if !cg.is_multiple_of(CHUNK_CHANNELS) {
            return Err(Error::shape(format!(
                "tensor-core convolution: input channels per group ({cg}) must be a multiple of {CHUNK_CHANNELS}; pad the input and weight channels with zeros"
            )));
        }
        let (m, n, k) = self.gemm_dims();
        let fits = |d: usize| d <= i32::MAX as usize;
        if ![g.n * g.h * g.w, m, k, g.c_in, g.c_out].into_iter().all(fits) || n.div_ceil(64) > 65535 || g.groups > 65535 {
            return Err(Error::shape(format!("tensor-core convolution of {g:?} is too large for one launch")));
        }
        check_operands("tensor-core convolution", [("x", g.x_len(), 16), ("w", g.weight_len(), 16), ("y", g.y_len(), 8)], lens, ptrs)
    }

    pub fn grid(&self, tile: ConvTcTile) -> LaunchConfig {
        let (m, n, _) = self.gemm_dims();
        LaunchConfig {
            grid: (m.div_ceil(tile.pixels()) as u32, n.div_ceil(tile.channels()) as u32, self.geom.groups as u32),
            block: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        }
    }
}

/// y = conv(x, w) on the tensor cores, channels-last (see the module), on `tile` or the one
/// [`TcConv::plan_tile`] picks for the device.
pub fn conv_tc_forward(gpu: &GpuBackend, conv: TcConv, tile: Option<ConvTcTile>, x: &GpuBuf<u16>, w: &GpuBuf<u16>, y: &mut GpuBuf<f32>) -> Result<()> {
    conv.input.check_device("tensor-core convolution", gpu.driver().compute_capability())?;
    let ptrs = [x.ptr(), w.ptr(), y.ptr()];
    conv.check([x.len(), w.len(), y.len()], ptrs)?;
    let tile = tile.unwrap_or_else(|| conv.plan_tile(gpu.driver().multiprocessor_count()));
    let kernel = tile.kernel(conv.input)?;
    let g = &conv.geom;
    let mut args = vec![KernelArg::Ptr(ptrs[0]), KernelArg::Ptr(ptrs[1]), KernelArg::Ptr(ptrs[2])];
    args.extend(
        [g.n, g.h, g.w, g.c_in, g.oh, g.ow, g.c_out, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, g.groups].map(|d| KernelArg::I32(d as i32)),
    );
    gpu.launch(MODULE, kernel, conv.grid(tile), &args)
}

/// The CPU reference of the tensor-core convolution, in its layouts (x NHWC, w [C_out, KH, KW,
/// C_in/groups], y NHWC): each output with x and w rounded as the GPU sees them
/// ([`TcInput::round`]) and the products summed in f64, and the largest error the GPU's f32
/// accumulation may add to it: gamma_K times the sum of the products' magnitudes, K =
/// KH*KW*C_in/groups (the bound of [`crate::ops::gemm::tc::reference`]; the padding's zero
/// products add nothing).
pub fn reference(conv: TcConv, x: &[f32], w: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let g = &conv.geom;
    let (cg, cog) = (g.c_in_per_group(), g.c_out_per_group());
    let rx: Vec<f64> = x[..g.x_len()].iter().map(|&v| conv.input.round(v) as f64).collect();
    let rw: Vec<f64> = w[..g.weight_len()].iter().map(|&v| conv.input.round(v) as f64).collect();
    let gamma = f32_accumulation_gamma(conv.gemm_dims().2);
    let mut values = vec![0.0; g.y_len()];
    let mut bounds = vec![0.0; g.y_len()];
    for pixel in 0..g.n * g.oh * g.ow {
        let (n, oh, ow) = (pixel / (g.oh * g.ow), pixel / g.ow % g.oh, pixel % g.ow);
        for co in 0..g.c_out {
            let group = co / cog;
            let (mut sum, mut magnitude) = (0.0, 0.0);
            for ki in 0..g.kh {
                let Some(ih) = (oh * g.sh + ki * g.dh).checked_sub(g.ph).filter(|&ih| ih < g.h) else { continue };
                for kj in 0..g.kw {
                    let Some(iw) = (ow * g.sw + kj * g.dw).checked_sub(g.pw).filter(|&iw| iw < g.w) else { continue };
                    let xs = &rx[((n * g.h + ih) * g.w + iw) * g.c_in + group * cg..][..cg];
                    let ws = &rw[((co * g.kh + ki) * g.kw + kj) * cg..][..cg];
                    for (a, b) in xs.iter().zip(ws) {
                        sum += a * b;
                        magnitude += (a * b).abs();
                    }
                }
            }
            values[pixel * g.c_out + co] = sum;
            bounds[pixel * g.c_out + co] = gamma * magnitude;
        }
    }
    (values, bounds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(c_in: usize, c_out: usize, groups: usize) -> TcConv {
        TcConv { input: TcInput::Bf16, geom: ConvGeom::new(2, c_in, (5, 5), c_out, (3, 3), (1, 1), (1, 1), (1, 1), groups).unwrap() }
    }

    #[test]
    fn shapes_the_kernel_cannot_take_are_refused_in_one_line() {
        let lens = |c: &TcConv| [c.geom.x_len(), c.geom.weight_len(), c.geom.y_len()];
        let ok = conv(16, 8, 2);
        assert!(ok.check(lens(&ok), [0, 0, 0]).is_ok());
        let err = conv(12, 8, 1).check(lens(&conv(12, 8, 1)), [0, 0, 0]).unwrap_err().to_string();
        assert!(err.contains("input channels per group (12) must be a multiple of 8; pad"), "{err}");
        let err = ok.check([ok.geom.x_len() - 1, 0, 0], [0, 0, 0]).unwrap_err().to_string();
        assert!(err.contains("x holds 799 elements, it needs 800"), "{err}");
        let err = ok.check(lens(&ok), [0, 8, 0]).unwrap_err().to_string();
        assert!(err.contains("w at 0x8 is not 16-byte aligned"), "{err}");
        let tf32 = TcConv { input: TcInput::Tf32, ..ok };
        assert!(ConvTcTile::Pixels128Channels64.kernel(tf32.input).unwrap_err().to_string().contains("bf16 or f16"));
    }

    #[test]
    fn few_channels_or_few_tiles_take_64_channel_tiles() {
        let resnet = |channels, side| TcConv {
            input: TcInput::Bf16,
            geom: ConvGeom::new(128, channels, (side, side), channels, (3, 3), (1, 1), (1, 1), (1, 1), 1).unwrap(),
        };
        assert_eq!(resnet(64, 32).plan_tile(128), ConvTcTile::Pixels128Channels64, "64 channels");
        assert_eq!(resnet(128, 16).plan_tile(128), ConvTcTile::Pixels128Channels128);
        assert_eq!(resnet(512, 4).plan_tile(128), ConvTcTile::Pixels128Channels64, "64 tiles of 128 channels for 128 SMs");
    }

    #[test]
    fn the_reference_skips_the_padding_and_separates_groups() {
        // One image of 1x2 pixels with 2 groups of 8 channels, only the first of each nonzero;
        // a 1x3 kernel with padding 1 whose first-channel weights are 1 (group 0) and 2 (group 1):
        // each output sums both pixels of its group's first channel.
        let geom = ConvGeom::new(1, 16, (1, 2), 2, (1, 3), (1, 1), (0, 1), (1, 1), 2).unwrap();
        let mut x = vec![0.0; 2 * 16];
        x[0] = 1.0; // pixel 0, group 0
        x[16] = 10.0; // pixel 1, group 0
        x[16 + 8] = 100.0; // pixel 1, group 1
        let mut w = vec![0.0; 2 * 3 * 8];
        (0..3).for_each(|kj| {
            w[kj * 8] = 1.0;
            w[(3 + kj) * 8] = 2.0;
        });
        let (y, _) = reference(TcConv { input: TcInput::Bf16, geom }, &x, &w);
        assert_eq!(y, vec![11.0, 200.0, 11.0, 200.0]);
    }
}
