//! The built-in synthetic dataset: 10 classes of procedurally drawn 1x28x28 patterns (stripes in
//! four orientations, checkerboard, ring, disc, plus, cross, square) at random scale, position,
//! phase and contrast, with Gaussian noise. It needs no files and small_cnn learns it quickly.

use super::{ImageSet, RawDataset};
use crate::rng::Rng;

const SIDE: usize = 28;
pub const TRAIN_IMAGES: usize = 5000;
pub const TEST_IMAGES: usize = 1000;
const NOISE_STD: f64 = 0.15;

const CLASSES: [&str; 10] = [
    "horizontal stripes",
    "vertical stripes",
    "diagonal stripes",
    "anti-diagonal stripes",
    "checkerboard",
    "ring",
    "disc",
    "plus",
    "cross",
    "square",
];

/// Whether pixel (y, x) is "on" in one drawing of class `class`.
fn pattern(class: usize, rng: &mut Rng) -> impl Fn(f64, f64) -> bool {
    let period = rng.uniform_range(4.0, 8.0);
    let phase = rng.uniform_range(0.0, period);
    let (cy, cx) = (rng.uniform_range(10.0, 18.0), rng.uniform_range(10.0, 18.0));
    let size = rng.uniform_range(5.0, 9.0);
    let thickness = rng.uniform_range(1.5, 3.0);
    let stripe = move |t: f64| (t + phase).rem_euclid(period) < period / 2.0;
    move |y: f64, x: f64| {
        let (dy, dx) = (y - cy, x - cx);
        let r = (dy * dy + dx * dx).sqrt();
        match class {
            0 => stripe(y),
            1 => stripe(x),
            2 => stripe((x + y) / std::f64::consts::SQRT_2),
            3 => stripe((x - y) / std::f64::consts::SQRT_2),
            4 => stripe(x) ^ stripe(y),
            5 => (r - size).abs() < thickness / 2.0 + 0.5,
            6 => r < size,
            7 => (dy.abs() < thickness / 2.0 + 0.5 || dx.abs() < thickness / 2.0 + 0.5) && dy.abs().max(dx.abs()) < size + 2.0,
            8 => ((dy - dx).abs() < thickness || (dy + dx).abs() < thickness) && dy.abs().max(dx.abs()) < size + 1.0,
            _ => dy.abs().max(dx.abs()) < size && dy.abs().max(dx.abs()) > size - thickness - 0.5,
        }
    }
}

fn draw(class: usize, rng: &mut Rng, out: &mut Vec<u8>) {
    let on = pattern(class, rng);
    let background = rng.uniform_range(0.0, 0.3);
    let foreground = rng.uniform_range(0.7, 1.0);
    for y in 0..SIDE {
        for x in 0..SIDE {
            let level = if on(y as f64, x as f64) { foreground } else { background };
            let noisy = level + NOISE_STD * rng.normal();
            out.push((noisy.clamp(0.0, 1.0) * 255.0).round() as u8);
        }
    }
}

/// `n` images with classes in turn (balanced), drawn from `rng`.
fn images(n: usize, rng: &mut Rng) -> ImageSet {
    let mut set = ImageSet::empty(1, SIDE, SIDE);
    set.pixels.reserve(n * SIDE * SIDE);
    for i in 0..n {
        let class = i % CLASSES.len();
        draw(class, rng, &mut set.pixels);
        set.labels.push(class as u32);
    }
    set
}

/// Training and test sets, fixed by `seed`.
pub fn generate(seed: u64) -> RawDataset {
    let mut rng = Rng::new(seed);
    let mut train_rng = rng.fork();
    let mut test_rng = rng.fork();
    RawDataset {
        classes: CLASSES.iter().map(|s| s.to_string()).collect(),
        train: images(TRAIN_IMAGES, &mut train_rng),
        test: Some(images(TEST_IMAGES, &mut test_rng)),
    }
}
