//! Whole-set transforms: bilinear resize, grey to RGB, the seeded train/validation split,
//! per-channel statistics and normalisation.

use super::ImageSet;
use crate::rng::Rng;

/// Bilinear resize of a CHW u8 image with half-pixel centres (PyTorch's `align_corners=False`,
/// without antialiasing).
pub fn resize_bilinear(src: &[u8], channels: usize, (h, w): (usize, usize), (oh, ow): (usize, usize)) -> Vec<u8> {
    // Source coordinate and weight of the upper neighbour for each output row or column.
    fn taps(out: usize, len: usize) -> Vec<(usize, usize, f32)> {
        let scale = len as f32 / out as f32;
        (0..out)
            .map(|o| {
                let pos = ((o as f32 + 0.5) * scale - 0.5).clamp(0.0, (len - 1) as f32);
                let lo = pos.floor() as usize;
                (lo, (lo + 1).min(len - 1), pos - lo as f32)
            })
            .collect()
    }
    let (rows, cols) = (taps(oh, h), taps(ow, w));
    let mut out = Vec::with_capacity(channels * oh * ow);
    for c in 0..channels {
        let plane = &src[c * h * w..(c + 1) * h * w];
        for &(y0, y1, fy) in &rows {
            for &(x0, x1, fx) in &cols {
                let at = |y: usize, x: usize| plane[y * w + x] as f32;
                let top = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
                let bottom = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
                out.push((top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8);
            }
        }
    }
    out
}

pub fn resize_set(set: &ImageSet, oh: usize, ow: usize) -> ImageSet {
    let mut pixels = Vec::with_capacity(set.len() * set.channels * oh * ow);
    for i in 0..set.len() {
        pixels.extend(resize_bilinear(set.image(i), set.channels, (set.height, set.width), (oh, ow)));
    }
    ImageSet { channels: set.channels, height: oh, width: ow, pixels, labels: set.labels.clone() }
}

/// One grey channel repeated as R, G and B.
pub fn grey_to_rgb(set: &ImageSet) -> ImageSet {
    let mut pixels = Vec::with_capacity(set.pixels.len() * 3);
    for i in 0..set.len() {
        let image = set.image(i);
        for _ in 0..3 {
            pixels.extend_from_slice(image);
        }
    }
    ImageSet { channels: 3, height: set.height, width: set.width, pixels, labels: set.labels.clone() }
}

/// Indices 0..n split at random (fixed by `seed`) into (train, validation), each in increasing
/// order; the validation side has round(n * fraction) images.
pub fn seeded_split(n: usize, fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(seed).shuffle(&mut order);
    let n_val = ((n as f64 * fraction).round() as usize).min(n);
    let (val, train) = order.split_at(n_val);
    let (mut train, mut val) = (train.to_vec(), val.to_vec());
    train.sort_unstable();
    val.sort_unstable();
    (train, val)
}

/// Per-channel mean and (population) standard deviation in [0, 1] units; a constant channel gets
/// std 1 so that normalising it stays finite.
pub fn channel_stats(set: &ImageSet) -> (Vec<f32>, Vec<f32>) {
    let plane = set.height * set.width;
    let mut sums = vec![(0u64, 0u64); set.channels];
    for i in 0..set.len() {
        for (c, values) in set.image(i).chunks_exact(plane).enumerate() {
            for &v in values {
                sums[c].0 += v as u64;
                sums[c].1 += (v as u64) * (v as u64);
            }
        }
    }
    let count = (set.len() * plane).max(1) as f64;
    sums.iter()
        .map(|&(s, sq)| {
            let mean = s as f64 / count / 255.0;
            let var = (sq as f64 / count / (255.0 * 255.0) - mean * mean).max(0.0);
            let std = if var.sqrt() < 1e-6 { 1.0 } else { var.sqrt() };
            (mean as f32, std as f32)
        })
        .unzip()
}

/// (pixel / 255 - mean[c]) / std[c] for a CHW u8 image.
pub fn normalise_image(pixels: &[u8], channels: usize, mean: &[f32], std: &[f32]) -> Vec<f32> {
    let plane = pixels.len() / channels;
    pixels
        .chunks_exact(plane)
        .enumerate()
        .flat_map(|(c, values)| {
            let (m, s) = (mean[c], std[c]);
            values.iter().map(move |&v| (v as f32 / 255.0 - m) / s)
        })
        .collect()
}
