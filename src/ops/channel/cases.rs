//! Channel-layout cases: gradient checks of concatenation along channels (its backward is the
//! split) and of channel shuffle.

use crate::element::Element;
use crate::error::Result;
use crate::ops::cases::{FamilyCases, GradCases, GradOp};
use crate::ops::Backend;

pub struct Cases;

impl FamilyCases for Cases {
    fn grad_cases(&self, cases: &mut GradCases) {
        for (channels, n, hw) in [(vec![2, 3, 1], 2, 6), (vec![4, 4], 1, 1), (vec![1], 3, 5)] {
            let inputs: Vec<Vec<f64>> = channels.iter().map(|c| cases.symmetric(n * c * hw)).collect();
            let total: usize = channels.iter().sum();
            let config = format!("channels={channels:?} n={n} hw={hw}");
            cases.push("concat", config, ChannelGrad::Concat { channels, n, hw }, inputs, n * total * hw);
        }
        for &(n, c, hw, groups) in &[(2, 6, 4, 2), (1, 12, 3, 3), (1, 8, 1, 4)] {
            let x = cases.symmetric(n * c * hw);
            let config = format!("n={n} c={c} hw={hw} groups={groups}");
            cases.push("channel_shuffle", config, ChannelGrad::Shuffle { n, c, hw, groups }, vec![x], n * c * hw);
        }
    }
}

enum ChannelGrad {
    Concat { channels: Vec<usize>, n: usize, hw: usize },
    Shuffle { n: usize, c: usize, hw: usize, groups: usize },
}

impl GradOp for ChannelGrad {
    fn run<E: Element, B: Backend<E>>(&self, b: &B, inputs: &[B::Buf], dy: &B::Buf, _dy_host: &[E]) -> Result<(B::Buf, Vec<B::Buf>)> {
        Ok(match self {
            ChannelGrad::Concat { channels, n, hw } => {
                let refs: Vec<&B::Buf> = inputs.iter().collect();
                (b.concat_channels(&refs, channels, *n, *hw)?, b.split_channels(dy, channels, *n, *hw)?)
            }
            ChannelGrad::Shuffle { n, c, hw, groups } => (
                b.channel_shuffle(&inputs[0], *n, *c, *hw, *groups)?,
                vec![b.channel_shuffle_backward(dy, *n, *c, *hw, *groups)?],
            ),
        })
    }
    fn stored_inputs(&self) -> usize {
        match self {
            ChannelGrad::Concat { channels, .. } => channels.len(),
            ChannelGrad::Shuffle { .. } => 1,
        }
    }
}
