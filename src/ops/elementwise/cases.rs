//! Elementwise cases: gradient checks of same-shape and per-channel broadcast add and mul.

use super::ChannelBroadcast;
use crate::element::Element;
use crate::error::Result;
use crate::ops::cases::{FamilyCases, GradCases, GradOp};
use crate::ops::Backend;
use crate::shape::Layout;

pub struct Cases;

impl FamilyCases for Cases {
    fn grad_cases(&self, cases: &mut GradCases) {
        for len in [1, 60] {
            let inputs = vec![cases.symmetric(len), cases.symmetric(len)];
            cases.push("add", format!("same shape len={len}"), ElementwiseGrad::Add, inputs.clone(), len);
            cases.push("mul", format!("same shape len={len}"), ElementwiseGrad::Mul, inputs, len);
        }
        // (3, 2, 20, false): 60 values per channel, so the channel reductions run two warps per
        // block and their block reduction's barriers matter (tests/sim/barrier_sweep.rs).
        // Channels last, the last two have 130 and 140 rows of pixels to sum per operand entry:
        // two row ranges each, whose partial sums a second pass adds.
        let nchw = [(2, 3, 5, true), (2, 3, 5, false), (1, 4, 9, true), (3, 2, 20, false)].map(|s| (s, Layout::Nchw));
        let nhwc = [(2, 3, 5, true), (2, 3, 5, false), (3, 2, 20, false), (1, 2, 130, true), (2, 3, 70, false)].map(|s| (s, Layout::Nhwc));
        for &((n, c, hw, per_sample), layout) in nchw.iter().chain(&nhwc) {
            let g = ChannelBroadcast { n, c, hw, per_sample, layout };
            let inputs = vec![cases.symmetric(g.x_len()), cases.symmetric(g.operand_len())];
            let layout = if layout == Layout::Nhwc { " nhwc" } else { "" };
            let config = format!("channel broadcast{layout} n={n} c={c} hw={hw} per_sample={per_sample}");
            cases.push("add", config.clone(), ElementwiseGrad::AddChannel(g), inputs.clone(), g.x_len());
            cases.push("mul", config, ElementwiseGrad::MulChannel(g), inputs, g.x_len());
        }
    }
}

enum ElementwiseGrad {
    Add,
    AddChannel(ChannelBroadcast),
    Mul,
    MulChannel(ChannelBroadcast),
}

impl GradOp for ElementwiseGrad {
    fn run<E: Element, B: Backend<E>>(&self, b: &B, inputs: &[B::Buf], dy: &B::Buf, _dy_host: &[E]) -> Result<(B::Buf, Vec<B::Buf>)> {
        let (x, other) = (&inputs[0], &inputs[1]);
        Ok(match self {
            ElementwiseGrad::Add => (b.add(x, other)?, vec![b.copy_buf(dy)?, b.copy_buf(dy)?]),
            ElementwiseGrad::AddChannel(g) => (b.add_channel(x, other, g)?, vec![b.copy_buf(dy)?, b.add_channel_backward(dy, g)?]),
            ElementwiseGrad::Mul => {
                let (dx, dother) = b.mul_backward(x, other, dy)?;
                (b.mul(x, other)?, vec![dx, dother])
            }
            ElementwiseGrad::MulChannel(g) => {
                let (dx, ds) = b.mul_channel_backward(x, other, dy, g)?;
                (b.mul_channel(x, other, g)?, vec![dx, ds])
            }
        })
    }
    /// Both operands of the same-shape ops and of the per-sample channel gate (squeeze-excitation's,
    /// an activation); x only beside a per-channel operand, which is a layer's parameter.
    fn stored_inputs(&self) -> usize {
        match self {
            ElementwiseGrad::Add | ElementwiseGrad::Mul => 2,
            ElementwiseGrad::MulChannel(g) if g.per_sample => 2,
            ElementwiseGrad::AddChannel(_) | ElementwiseGrad::MulChannel(_) => 1,
        }
    }
}
