//! Channel concatenation, split and shuffle on the CPU: pure data movement, parallel over samples
//! or channel rows.

use super::{channel_offsets, check_concat_inputs, check_shuffle, ChannelOps};
use crate::cpu::par::CHUNK;
use crate::cpu::{CpuBackend, CpuBuf};
use crate::element::Element;
use crate::error::Result;
use crate::ops::check::expect_len;
use rayon::prelude::*;

/// y channel j = x channel source(j), for every sample.
fn permute_channels<E: Element>(
    x: &[E],
    c: usize,
    hw: usize,
    source: impl Fn(usize) -> usize + Sync,
) -> Vec<E> {
    let hw_chunk = hw.max(1);
    let mut y = vec![E::zero(); x.len()];
    y.par_chunks_mut(hw_chunk)
        .with_min_len((CHUNK / hw_chunk).max(1))
        .enumerate()
        .for_each(|(row, yr)| {
            let (sample, j) = (row / c, row % c);
            let from = (sample * c + source(j)) * hw;
            yr.copy_from_slice(&x[from..from + hw]);
        });
    y
}

impl<E: Element> ChannelOps<E> for CpuBackend {
    fn concat_channels(
        &self,
        xs: &[&CpuBuf<E>],
        channels: &[usize],
        n: usize,
        hw: usize,
    ) -> Result<CpuBuf<E>> {
        check_concat_inputs(
            &xs.iter().map(|x| x.len()).collect::<Vec<_>>(),
            channels,
            n,
            hw,
        )?;
        let (offsets, total) = channel_offsets(channels);
        let mut y = vec![E::zero(); n * total * hw];
        y.par_chunks_mut((total * hw).max(1))
            .enumerate()
            .for_each(|(sample, ys)| {
                for ((x, &c), &offset) in xs.iter().zip(channels).zip(&offsets) {
                    let part = c * hw;
                    ys[offset * hw..offset * hw + part]
                        .copy_from_slice(&x[sample * part..(sample + 1) * part]);
                }
            });
        Ok(self.wrap(y))
    }

    fn split_channels(
        &self,
        x: &CpuBuf<E>,
        channels: &[usize],
        n: usize,
        hw: usize,
    ) -> Result<Vec<CpuBuf<E>>> {
        let (offsets, total) = channel_offsets(channels);
        expect_len("split_channels", "x", x.len(), n * total * hw)?;
        let parts: Vec<Vec<E>> = channels
            .par_iter()
            .zip(&offsets)
            .map(|(&c, &offset)| {
                let mut part = Vec::with_capacity(n * c * hw);
                for sample in 0..n {
                    let from = (sample * total + offset) * hw;
                    part.extend_from_slice(&x[from..from + c * hw]);
                }
                part
            })
            .collect();
        Ok(parts.into_iter().map(|p| self.wrap(p)).collect())
    }

    fn channel_shuffle(
        &self,
        x: &CpuBuf<E>,
        n: usize,
        c: usize,
        hw: usize,
        groups: usize,
    ) -> Result<CpuBuf<E>> {
        let per_group = check_shuffle("channel_shuffle", "x", x.len(), (n, c, hw), groups)?;
        Ok(self.wrap(permute_channels(x, c, hw, |j| {
            (j % groups) * per_group + j / groups
        })))
    }

    fn channel_shuffle_backward(
        &self,
        dy: &CpuBuf<E>,
        n: usize,
        c: usize,
        hw: usize,
        groups: usize,
    ) -> Result<CpuBuf<E>> {
        let per_group = check_shuffle("channel_shuffle backward", "dy", dy.len(), (n, c, hw), groups)?;
        // Input channel g * per_group + i went to output channel i * groups + g.
        Ok(self.wrap(permute_channels(dy, c, hw, |k| {
            (k % per_group) * groups + k / per_group
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::testutil::{buf, error_text, random, widen};

    #[test]
    fn shuffle_matches_pytorch_order_by_hand() {
        let cpu = CpuBackend::new();
        // One sample, 6 channels of one value each, 2 groups: [0 1 2 | 3 4 5] -> [0 3 1 4 2 5].
        let x = buf(&cpu, &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let y = cpu.channel_shuffle(&x, 1, 6, 1, 2).unwrap();
        assert_eq!(y.to_vec(), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        let y = cpu.channel_shuffle(&x, 1, 6, 1, 3).unwrap();
        assert_eq!(y.to_vec(), vec![0.0, 2.0, 4.0, 1.0, 3.0, 5.0]);
    }

    #[test]
    fn shuffle_then_inverse_is_identity() {
        let cpu = CpuBackend::new();
        let (n, c, hw) = (2, 12, 3);
        let x = random(n * c * hw, 7);
        for groups in [1, 2, 3, 4, 6, 12] {
            let y = cpu
                .channel_shuffle(&buf(&cpu, &x), n, c, hw, groups)
                .unwrap();
            let permutes = groups > 1 && groups < c;
            assert_eq!(
                y.to_vec() != x,
                permutes,
                "groups {groups}: permutes only for 1 < groups < C"
            );
            let back = cpu.channel_shuffle_backward(&y, n, c, hw, groups).unwrap();
            assert_eq!(back.to_vec(), x, "groups {groups}");
        }
    }

    #[test]
    fn concat_then_split_is_identity() {
        let cpu = CpuBackend::new();
        let (n, hw, channels) = (3, 2, [2, 1, 3]);
        let parts: Vec<Vec<f64>> = channels
            .iter()
            .enumerate()
            .map(|(i, &c)| random(n * c * hw, i as u64))
            .collect();
        let bufs: Vec<CpuBuf<f64>> = parts.iter().map(|p| buf(&cpu, p)).collect();
        let joined = cpu
            .concat_channels(&bufs.iter().collect::<Vec<_>>(), &channels, n, hw)
            .unwrap();
        // Sample 1, channel 3 of the join is channel 0 of part 2.
        assert_eq!(joined[(6 + 3) * hw..(6 + 4) * hw], parts[2][3 * hw..4 * hw]);
        let split = cpu.split_channels(&joined, &channels, n, hw).unwrap();
        assert_eq!(split.iter().map(|b| b.to_vec()).collect::<Vec<_>>(), parts);
    }

    #[test]
    fn f32_moves_the_same_values() {
        let cpu = CpuBackend::new();
        let x: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let y32 = cpu
            .channel_shuffle(&cpu.wrap(x.clone()), 2, 4, 3, 2)
            .unwrap();
        let x64 = widen(&x);
        let y64 = cpu.channel_shuffle(&buf(&cpu, &x64), 2, 4, 3, 2).unwrap();
        assert_eq!(widen(&y32), y64.to_vec());
    }

    #[test]
    fn bad_geometry_is_an_error() {
        let cpu = CpuBackend::new();
        let x = buf(&cpu, &[0.0; 10]);
        assert_eq!(
            error_text(cpu.channel_shuffle(&x, 1, 5, 2, 2)),
            "shape error: channel_shuffle: 5 channels cannot be split into 2 equal groups"
        );
        assert_eq!(
            error_text(cpu.split_channels(&x, &[2, 2], 1, 2)),
            "shape error: split_channels: x has 10 elements but 8 are needed"
        );
        assert_eq!(
            error_text(cpu.concat_channels(&[&x], &[2, 3], 1, 2)),
            "shape error: concat_channels: 1 inputs but 2 channel counts"
        );
    }
}
