//! Training-time augmentation of one image (CHW, values in [0, 1]): random crop of the
//! zero-padded image, horizontal flip, and colour jitter as torchvision's ColorJitter (brightness,
//! contrast, saturation, hue), applied in that fixed order rather than torchvision's random one.

use crate::error::{Error, Result};
use crate::rng::Rng;

/// Zeros switch each part off.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Augment {
    /// Pad by this many zero pixels on every side, then crop back to the original size at random.
    pub crop_padding: usize,
    /// Mirror left-right with probability 1/2.
    pub hflip: bool,
    /// Brightness factor drawn from [max(0, 1 - b), 1 + b].
    pub brightness: f32,
    /// Contrast factor drawn from [max(0, 1 - c), 1 + c] (blend with the mean grey level).
    pub contrast: f32,
    /// Saturation factor drawn from [max(0, 1 - s), 1 + s] (blend with the pixel's grey); RGB only.
    pub saturation: f32,
    /// Hue shift drawn from [-h, h] turns of the colour wheel, h <= 0.5; RGB only.
    pub hue: f32,
}

impl Augment {
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [("brightness", self.brightness), ("contrast", self.contrast), ("saturation", self.saturation)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::config(format!("{name} jitter {v} must be a non-negative number")));
            }
        }
        if !(0.0..=0.5).contains(&self.hue) {
            return Err(Error::config(format!("hue jitter {} must be in [0, 0.5]", self.hue)));
        }
        Ok(())
    }

    /// Augments `image` (CHW in [0, 1]) in place with draws from `rng`.
    pub fn apply(&self, image: &mut Vec<f32>, channels: usize, height: usize, width: usize, rng: &mut Rng) {
        if self.crop_padding > 0 {
            let p = self.crop_padding;
            let dy = rng.below(2 * p as u64 + 1) as isize - p as isize;
            let dx = rng.below(2 * p as u64 + 1) as isize - p as isize;
            *image = shifted(image, channels, height, width, dy, dx);
        }
        if self.hflip && rng.uniform() < 0.5 {
            for row in image.chunks_exact_mut(width) {
                row.reverse();
            }
        }
        let plane = height * width;
        if self.brightness > 0.0 {
            let f = factor(rng, self.brightness);
            image.iter_mut().for_each(|v| *v = (*v * f).clamp(0.0, 1.0));
        }
        if self.contrast > 0.0 {
            let f = factor(rng, self.contrast);
            let mean = grey(image, channels, plane).iter().sum::<f32>() / plane as f32;
            image.iter_mut().for_each(|v| *v = (f * *v + (1.0 - f) * mean).clamp(0.0, 1.0));
        }
        if channels == 3 && self.saturation > 0.0 {
            let f = factor(rng, self.saturation);
            let g = grey(image, channels, plane);
            for c in 0..3 {
                for (v, &gv) in image[c * plane..(c + 1) * plane].iter_mut().zip(&g) {
                    *v = (f * *v + (1.0 - f) * gv).clamp(0.0, 1.0);
                }
            }
        }
        if channels == 3 && self.hue > 0.0 {
            let shift = rng.uniform_range(-self.hue as f64, self.hue as f64) as f32;
            for i in 0..plane {
                let (h, s, v) = rgb_to_hsv(image[i], image[plane + i], image[2 * plane + i]);
                let (r, g, b) = hsv_to_rgb((h + shift).rem_euclid(1.0), s, v);
                (image[i], image[plane + i], image[2 * plane + i]) = (r, g, b);
            }
        }
    }
}

fn factor(rng: &mut Rng, amount: f32) -> f32 {
    rng.uniform_range((1.0 - amount as f64).max(0.0), 1.0 + amount as f64) as f32
}

/// The image moved by (dy, dx) with zeros shifted in: the crop at offset (p + dy, p + dx) of the
/// image padded by p.
fn shifted(image: &[f32], channels: usize, height: usize, width: usize, dy: isize, dx: isize) -> Vec<f32> {
    let mut out = vec![0.0; image.len()];
    for c in 0..channels {
        for y in 0..height {
            let sy = y as isize + dy;
            if sy < 0 || sy >= height as isize {
                continue;
            }
            for x in 0..width {
                let sx = x as isize + dx;
                if sx >= 0 && sx < width as isize {
                    out[(c * height + y) * width + x] = image[(c * height + sy as usize) * width + sx as usize];
                }
            }
        }
    }
    out
}

/// Luma (ITU-R 601) of each pixel; the channel itself for grey images.
fn grey(image: &[f32], channels: usize, plane: usize) -> Vec<f32> {
    if channels != 3 {
        return image[..plane].to_vec();
    }
    (0..plane).map(|i| 0.299 * image[i] + 0.587 * image[plane + i] + 0.114 * image[2 * plane + i]).collect()
}

/// Hue in [0, 1) turns, saturation and value in [0, 1].
fn rgb_to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let delta = max - min;
    let s = if max > 0.0 { delta / max } else { 0.0 };
    let h = if delta <= 0.0 {
        0.0
    } else if max == r {
        ((g - b) / delta).rem_euclid(6.0) / 6.0
    } else if max == g {
        ((b - r) / delta + 2.0) / 6.0
    } else {
        ((r - g) / delta + 4.0) / 6.0
    };
    (h, s, max)
}

fn hsv_to_rgb(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    let sector = h * 6.0;
    let i = sector.floor();
    let f = sector - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match i as i32 % 6 {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hsv_round_trip() {
        for &(r, g, b) in &[(0.2, 0.5, 0.9), (1.0, 0.0, 0.0), (0.3, 0.3, 0.3), (0.9, 0.8, 0.1), (0.5, 0.1, 0.4)] {
            let (h, s, v) = rgb_to_hsv(r, g, b);
            let (r2, g2, b2) = hsv_to_rgb(h, s, v);
            assert!((r - r2).abs() < 1e-5 && (g - g2).abs() < 1e-5 && (b - b2).abs() < 1e-5, "{r} {g} {b}");
        }
    }

    #[test]
    fn crop_shift_moves_pixels_and_pads_with_zeros() {
        let image: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        assert_eq!(shifted(&image, 1, 3, 3, 1, 0), vec![4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 0.0, 0.0, 0.0]);
        assert_eq!(shifted(&image, 1, 3, 3, 0, -1), vec![0.0, 1.0, 2.0, 0.0, 4.0, 5.0, 0.0, 7.0, 8.0]);
    }

    #[test]
    fn identity_when_off_and_range_kept() {
        let mut rng = Rng::new(3);
        let original: Vec<f32> = (0..48).map(|v| v as f32 / 48.0).collect();
        let mut image = original.clone();
        Augment::default().apply(&mut image, 3, 4, 4, &mut rng);
        assert_eq!(image, original);
        let jitter = Augment { brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.1, ..Augment::default() };
        jitter.apply(&mut image, 3, 4, 4, &mut rng);
        assert_ne!(image, original);
        assert!(image.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(Augment { hue: 0.6, ..Augment::default() }.validate().is_err());
        assert!(Augment { contrast: -1.0, ..Augment::default() }.validate().is_err());
    }
}
