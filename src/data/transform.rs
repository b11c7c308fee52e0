//! Whole-set transforms: bilinear resize, torchvision's antialiased Resize and CenterCrop, grey
//! to RGB, the seeded train/validation split, per-channel statistics and normalisation.

use super::ImageSet;
use crate::error::{Error, Result};
use crate::rng::Rng;
use serde::{Deserialize, Serialize};

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

/// How images of any size are brought to the model's input size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// [`resize_bilinear`] to exactly (height, width).
    Stretch(usize, usize),
    /// torchvision's `Resize` then `CenterCrop` ([`ResizeCrop`]).
    ResizeCrop(ResizeCrop),
}

impl Fit {
    /// The (height, width) of every fitted image.
    pub fn size(&self) -> (usize, usize) {
        match self {
            Fit::Stretch(h, w) => (*h, *w),
            Fit::ResizeCrop(rc) => rc.crop,
        }
    }

    /// A CHW image of `size` fitted.
    pub fn apply(&self, pixels: &[u8], channels: usize, size: (usize, usize)) -> Result<Vec<u8>> {
        match self {
            Fit::Stretch(h, w) if size == (*h, *w) => Ok(pixels.to_vec()),
            Fit::Stretch(h, w) => Ok(resize_bilinear(pixels, channels, size, (*h, *w))),
            Fit::ResizeCrop(rc) => rc.apply(pixels, channels, size),
        }
    }
}

/// torchvision's evaluation preprocessing, `Resize(shorter_side)` (the shorter edge scaled to it,
/// the longer to `int(shorter_side * long / short)`, antialiased bilinear as PIL's) then
/// `CenterCrop(crop)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResizeCrop {
    pub shorter_side: Option<usize>,
    /// (height, width)
    pub crop: (usize, usize),
}

impl ResizeCrop {
    pub fn apply(&self, pixels: &[u8], channels: usize, (h, w): (usize, usize)) -> Result<Vec<u8>> {
        let (resized, size) = match self.shorter_side {
            Some(side) => {
                let size = shorter_side_size((h, w), side);
                (resize_antialiased(pixels, channels, (h, w), size), size)
            }
            None => (pixels.to_vec(), (h, w)),
        };
        center_crop(&resized, channels, size, self.crop)
    }
}

/// torchvision's `Resize(side)` output size for an h x w image: the shorter edge becomes `side`,
/// the longer `int(side * long / short)` (truncated, as Python's int()).
pub fn shorter_side_size((h, w): (usize, usize), side: usize) -> (usize, usize) {
    let long = |long: usize, short: usize| (side as f64 * long as f64 / short as f64) as usize;
    if w <= h {
        (long(h, w), side)
    } else {
        (side, long(w, h))
    }
}

/// torchvision's `CenterCrop`: the crop's top-left corner at round((size - crop) / 2) with Python's
/// round-half-to-even.
pub fn center_crop(src: &[u8], channels: usize, (h, w): (usize, usize), (ch, cw): (usize, usize)) -> Result<Vec<u8>> {
    if ch > h || cw > w {
        return Err(Error::config(format!("a {ch}x{cw} center crop does not fit in a {h}x{w} image; resize it to at least that size (--resize)")));
    }
    let offset = |excess: usize| {
        let half = excess / 2;
        half + (excess % 2 == 1 && half % 2 == 1) as usize
    };
    let (top, left) = (offset(h - ch), offset(w - cw));
    let mut out = Vec::with_capacity(channels * ch * cw);
    for plane in src.chunks_exact(h * w).take(channels) {
        for row in plane.chunks_exact(w).skip(top).take(ch) {
            out.extend_from_slice(&row[left..left + cw]);
        }
    }
    Ok(out)
}

/// Fraction bits of PIL's fixed-point resampling coefficients (`PRECISION_BITS` in Pillow's
/// Resample.c: 32 bits less 8 for the pixel and 2 for headroom).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// PIL's bilinear resampling taps from `len` to `out` samples: per output, the first input index
/// and the fixed-point weights of the inputs from there. Shrinking widens the triangle filter by
/// the scale (antialiasing); weights are normalised, then rounded to PRECISION_BITS.
fn pil_taps(len: usize, out: usize) -> Vec<(usize, Vec<i64>)> {
    let scale = len as f64 / out as f64;
    let filter_scale = scale.max(1.0);
    // The bilinear filter's support is 1.
    let support = filter_scale;
    (0..out)
        .map(|o| {
            let center = (o as f64 + 0.5) * scale;
            // C's (int) truncation, then clamping, as Pillow does.
            let first = ((center - support + 0.5) as i64).max(0) as usize;
            let end = ((center + support + 0.5) as i64).min(len as i64) as usize;
            let weights: Vec<f64> =
                (first..end).map(|x| (1.0 - ((x as f64 - center + 0.5) / filter_scale).abs()).max(0.0)).collect();
            let total: f64 = weights.iter().sum();
            let fixed = weights
                .iter()
                .map(|&wt| {
                    let v = if total != 0.0 { wt / total } else { wt } * (1u64 << PRECISION_BITS) as f64;
                    (if v < 0.0 { v - 0.5 } else { v + 0.5 }) as i64
                })
                .collect();
            (first, fixed)
        })
        .collect()
}

/// A fixed-point sum rounded and clamped to a pixel, as Pillow's clip8.
fn pil_clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Antialiased bilinear resize of a CHW u8 image exactly as PIL's `Image.resize(..., BILINEAR)`
/// (what torchvision's `Resize` does to PIL images; its tensor `antialias=True` on uint8 matches
/// it): a horizontal pass, rounded to u8, then a vertical one, each skipped when that edge keeps
/// its length.
pub fn resize_antialiased(src: &[u8], channels: usize, (h, w): (usize, usize), (oh, ow): (usize, usize)) -> Vec<u8> {
    let half = 1i64 << (PRECISION_BITS - 1);
    let mut out = Vec::with_capacity(channels * oh * ow);
    for plane in src.chunks_exact(h * w).take(channels) {
        let rows: Vec<u8> = if ow == w {
            plane.to_vec()
        } else {
            let taps = pil_taps(w, ow);
            plane
                .chunks_exact(w)
                .flat_map(|row| {
                    taps.iter().map(move |(first, weights)| {
                        pil_clip8(half + weights.iter().enumerate().map(|(k, c)| row[first + k] as i64 * c).sum::<i64>())
                    })
                })
                .collect()
        };
        if oh == h {
            out.extend(rows);
            continue;
        }
        for (first, weights) in pil_taps(h, oh) {
            for x in 0..ow {
                out.push(pil_clip8(half + weights.iter().enumerate().map(|(k, c)| rows[(first + k) * ow + x] as i64 * c).sum::<i64>()));
            }
        }
    }
    out
}

/// Every image of `set` fitted as `fit` says.
pub fn fit_set(set: &ImageSet, fit: &Fit) -> Result<ImageSet> {
    let (oh, ow) = fit.size();
    let mut pixels = Vec::with_capacity(set.len() * set.channels * oh * ow);
    for i in 0..set.len() {
        pixels.extend(fit.apply(set.image(i), set.channels, (set.height, set.width))?);
    }
    Ok(ImageSet { channels: set.channels, height: oh, width: ow, pixels, labels: set.labels.clone() })
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
