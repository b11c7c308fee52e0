//! Splits, the synthetic dataset, statistics, augmentation and the prefetching loader: all fixed
//! by their seed, whatever the number of workers.

use ferronet::data::{load, normalise_image, seeded_split, Augment, Batch, DatasetKind, DatasetOptions, ImageSet, Loader};
use std::sync::Arc;

fn synthetic(seed: u64) -> ferronet::data::Dataset {
    load(&DatasetOptions { seed, ..DatasetOptions::new(DatasetKind::Synthetic) }).unwrap()
}

#[test]
fn split_is_seeded_disjoint_and_complete() {
    let (train, val) = seeded_split(100, 0.2, 7);
    assert_eq!((train.len(), val.len()), (80, 20));
    let mut all: Vec<usize> = train.iter().chain(&val).copied().collect();
    all.sort();
    assert_eq!(all, (0..100).collect::<Vec<_>>());
    assert_eq!(seeded_split(100, 0.2, 7), (train.clone(), val.clone()));
    assert_ne!(seeded_split(100, 0.2, 8).1, val);
}

#[test]
fn synthetic_dataset_is_balanced_seeded_and_split() {
    let data = synthetic(1);
    assert_eq!(data.classes.len(), 10);
    assert_eq!((data.train.channels, data.train.height, data.train.width), (1, 28, 28));
    assert_eq!(data.train.len() + data.val.len(), 5000);
    assert_eq!(data.val.len(), 1000, "default validation fraction 0.2");
    let test = data.test.as_ref().unwrap();
    assert_eq!(test.len(), 1000);
    for class in 0..10 {
        assert_eq!(test.labels.iter().filter(|&&l| l == class).count(), 100);
    }
    assert_eq!(synthetic(1), data);
    assert_ne!(synthetic(2).train.pixels, data.train.pixels);
    assert!(data.mean[0] > 0.1 && data.mean[0] < 0.9 && data.std[0] > 0.1);
}

#[test]
fn resize_and_grey_to_rgb_apply_to_every_split() {
    let opts = DatasetOptions { resize: Some((32, 32)), grayscale_to_rgb: true, limit: Some(50), ..DatasetOptions::new(DatasetKind::Synthetic) };
    let data = load(&opts).unwrap();
    for set in [&data.train, &data.val, data.test.as_ref().unwrap()] {
        assert_eq!((set.channels, set.height, set.width), (3, 32, 32));
        assert_eq!(set.pixels.len(), set.len() * 3 * 32 * 32);
        let image = set.image(0);
        assert_eq!(&image[..1024], &image[1024..2048]);
    }
    assert_eq!(data.train.len() + data.val.len(), 50);
    assert_eq!(data.mean.len(), 3);
    assert!(load(&DatasetOptions { val_fraction: 1.5, ..opts.clone() }).is_err());
    assert!(load(&DatasetOptions { limit: Some(1), ..opts }).unwrap_err().to_string().contains("empty"));
}

fn tiny_set(n: usize) -> Arc<ImageSet> {
    let (c, h, w) = (3, 6, 5);
    let pixels = (0..n * c * h * w).map(|i| (i * 7 % 256) as u8).collect();
    Arc::new(ImageSet { channels: c, height: h, width: w, pixels, labels: (0..n as u32).collect() })
}

fn epoch(set: &Arc<ImageSet>, shuffle: bool, augment: Option<Augment>, seed: u64, workers: usize) -> Vec<Batch> {
    let loader = Loader::new(Arc::clone(set), &[0.5, 0.4, 0.3], &[0.2, 0.25, 0.3], 4, shuffle, augment, seed, workers).unwrap();
    assert_eq!(loader.len(), set.len().div_ceil(4));
    loader.collect()
}

#[test]
fn loader_batches_in_order_keep_the_last_partial_batch_and_normalise() {
    let set = tiny_set(10);
    let batches = epoch(&set, false, None, 0, 2);
    assert_eq!(batches.iter().map(|b| b.n).collect::<Vec<_>>(), vec![4, 4, 2]);
    let labels: Vec<u32> = batches.iter().flat_map(|b| b.labels.clone()).collect();
    assert_eq!(labels, (0..10).collect::<Vec<_>>());
    let want = normalise_image(set.image(5), 3, &[0.5, 0.4, 0.3], &[0.2, 0.25, 0.3]);
    assert_eq!(&batches[1].x[90..180], &want[..]);
    assert!((want[0] - (set.image(5)[0] as f32 / 255.0 - 0.5) / 0.2).abs() < 1e-6);
    assert_eq!(batches[2].x.len(), 2 * 90);
}

#[test]
fn loader_order_and_augmentation_are_fixed_by_the_seed_not_the_workers() {
    let set = tiny_set(23);
    let augment = Augment { crop_padding: 2, hflip: true, brightness: 0.3, contrast: 0.3, saturation: 0.3, hue: 0.05 };
    let reference = epoch(&set, true, Some(augment), 11, 0);
    for workers in [1, 2, 3, 8] {
        assert_eq!(epoch(&set, true, Some(augment), 11, workers), reference, "{workers} workers");
    }
    let mut labels: Vec<u32> = reference.iter().flat_map(|b| b.labels.clone()).collect();
    assert_ne!(labels, (0..23).collect::<Vec<_>>(), "shuffled");
    labels.sort();
    assert_eq!(labels, (0..23).collect::<Vec<_>>(), "every image once");
    let other_seed = epoch(&set, true, Some(augment), 12, 2);
    assert_ne!(other_seed, reference);
    // The same order without augmentation gives different pixels: augmentation did something.
    let plain = epoch(&set, true, None, 11, 2);
    assert_eq!(plain.iter().map(|b| &b.labels).collect::<Vec<_>>(), reference.iter().map(|b| &b.labels).collect::<Vec<_>>());
    assert_ne!(plain, reference);
}

#[test]
fn loader_rejects_bad_settings_and_stops_cleanly_when_dropped() {
    let set = tiny_set(40);
    assert!(Loader::new(Arc::clone(&set), &[0.5; 3], &[0.2; 3], 0, false, None, 0, 1).is_err());
    assert!(Loader::new(Arc::clone(&set), &[0.5], &[0.2], 4, false, None, 0, 1).is_err());
    assert!(Loader::new(Arc::clone(&set), &[0.5; 3], &[0.0; 3], 4, false, None, 0, 1).is_err());
    let bad = Augment { hue: 0.9, ..Augment::default() };
    let err = Loader::new(Arc::clone(&set), &[0.5; 3], &[0.2; 3], 4, false, Some(bad), 0, 1).err().unwrap().to_string();
    assert!(err.contains("hue"), "{err}");
    let mut loader = Loader::new(set, &[0.5; 3], &[0.2; 3], 2, true, None, 0, 4).unwrap();
    assert_eq!(loader.next().unwrap().n, 2);
    drop(loader); // workers blocked on full channels must exit, not hang
}
