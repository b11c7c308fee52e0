//! Dataset readers: round trips on small files written here, and one clear error per corruption.

use ferronet::data::{load, load_image_file, DatasetKind, DatasetOptions, ImageSet};
use ferronet_test_support::mnist_files::{gzip, idx_bytes, write_mnist};
use ferronet_test_support::scratch_dir;
use std::path::Path;

/// n images of h x w with pixel (i, p) = (i * 31 + p) mod 256 and label i mod 10.
fn sample_set(n: usize, h: usize, w: usize) -> ImageSet {
    let pixels = (0..n).flat_map(|i| (0..h * w).map(move |p| ((i * 31 + p) % 256) as u8)).collect();
    ImageSet { channels: 1, height: h, width: w, pixels, labels: (0..n as u32).map(|i| i % 10).collect() }
}

fn mnist_opts(dir: &Path) -> DatasetOptions {
    DatasetOptions { data_dir: Some(dir.to_path_buf()), val_fraction: 0.0, ..DatasetOptions::new(DatasetKind::Mnist) }
}

fn load_err(opts: &DatasetOptions) -> String {
    let err = load(opts).map(|_| ()).unwrap_err().to_string();
    assert!(!err.contains('\n'), "multi-line error: {err}");
    err
}

#[test]
fn idx_round_trip_plain_and_gzipped() {
    for gz in [false, true] {
        let dir = scratch_dir(if gz { "readers-idx-gz" } else { "readers-idx-plain" });
        let (train, test) = (sample_set(12, 4, 5), sample_set(3, 4, 5));
        write_mnist(&dir, &train, &test, gz);
        let data = load(&mnist_opts(&dir)).unwrap();
        assert_eq!(data.train, train);
        assert_eq!(data.test.as_ref(), Some(&test));
        assert_eq!(data.val, test, "val_fraction 0 validates on the test set");
        assert_eq!(data.classes.len(), 10);
        let mean = train.pixels.iter().map(|&p| p as f64).sum::<f64>() / train.pixels.len() as f64 / 255.0;
        assert!((data.mean[0] as f64 - mean).abs() < 1e-5);
        // With a validation fraction the split comes from the training images.
        let data = load(&DatasetOptions { val_fraction: 0.25, ..mnist_opts(&dir) }).unwrap();
        assert_eq!((data.train.len(), data.val.len()), (9, 3));
        let data = load(&DatasetOptions { limit: Some(5), ..mnist_opts(&dir) }).unwrap();
        assert_eq!(data.train.len(), 5);
    }
}

#[test]
fn idx_corruptions_are_one_line_errors_naming_the_file() {
    let dir = scratch_dir("readers-idx-bad");
    let (train, test) = (sample_set(6, 3, 3), sample_set(2, 3, 3));
    let images = dir.join("train-images-idx3-ubyte");
    let labels = dir.join("train-labels-idx1-ubyte");
    let opts = mnist_opts(&dir);

    let err = load_err(&opts);
    assert!(err.contains("train-images-idx3-ubyte") && err.contains("missing"), "{err}");

    write_mnist(&dir, &train, &test, false);
    let good = std::fs::read(&images).unwrap();
    std::fs::write(&images, &good[..good.len() - 4]).unwrap();
    let err = load_err(&opts);
    assert!(err.contains("train-images-idx3-ubyte") && err.contains("truncated"), "{err}");

    // A header declaring a billion images in a tiny file fails without allocating for them.
    std::fs::write(&images, idx_bytes(0x803, &[1_000_000_000, 28, 28], &[0; 10])).unwrap();
    let err = load_err(&opts);
    assert!(err.contains("truncated") && err.contains("784000000000"), "{err}");

    std::fs::write(&images, idx_bytes(0x801, &[6], &[0; 6])).unwrap();
    let err = load_err(&opts);
    assert!(err.contains("wrong magic 0x00000801") && err.contains("expected 0x00000803"), "{err}");

    std::fs::write(&images, &good[..7]).unwrap();
    let err = load_err(&opts);
    assert!(err.contains("truncated") && err.contains("header"), "{err}");

    std::fs::write(&images, &good).unwrap();
    std::fs::write(&labels, idx_bytes(0x801, &[5], &[0; 5])).unwrap();
    let err = load_err(&opts);
    assert!(err.contains("train-labels-idx1-ubyte") && err.contains("5 labels") && err.contains("6 images"), "{err}");

    std::fs::write(&labels, idx_bytes(0x801, &[6], &[0, 1, 2, 11, 4, 5])).unwrap();
    let err = load_err(&opts);
    assert!(err.contains("label 11 of image 3 is outside 0..10"), "{err}");

    std::fs::write(&labels, idx_bytes(0x801, &[6], &[0; 6])).unwrap();
    let mut corrupt_gz = gzip(&good);
    let middle = corrupt_gz.len() / 2;
    corrupt_gz.truncate(middle);
    std::fs::remove_file(&images).unwrap();
    std::fs::write(dir.join("train-images-idx3-ubyte.gz"), corrupt_gz).unwrap();
    let err = load_err(&opts);
    assert!(err.contains("train-images-idx3-ubyte.gz"), "{err}");
}

fn cifar_record(label_bytes: &[u8], seed: u8) -> Vec<u8> {
    let mut record = label_bytes.to_vec();
    record.extend((0..3072).map(|p| (p as u8).wrapping_mul(seed)));
    record
}

#[test]
fn cifar_round_trips_and_corruptions() {
    let dir = scratch_dir("readers-cifar10").join("cifar-10-batches-bin");
    std::fs::create_dir_all(&dir).unwrap();
    for b in 1..=5u8 {
        let bytes: Vec<u8> = [cifar_record(&[b], b), cifar_record(&[9], b + 10)].concat();
        std::fs::write(dir.join(format!("data_batch_{b}.bin")), bytes).unwrap();
    }
    std::fs::write(dir.join("test_batch.bin"), cifar_record(&[3], 7)).unwrap();
    // The parent directory is accepted too (the archive unpacks into cifar-10-batches-bin/).
    let opts = DatasetOptions { data_dir: dir.parent().map(Path::to_path_buf), val_fraction: 0.0, ..DatasetOptions::new(DatasetKind::Cifar10) };
    let data = load(&opts).unwrap();
    assert_eq!(data.train.len(), 10);
    assert_eq!(data.train.labels, vec![1, 9, 2, 9, 3, 9, 4, 9, 5, 9]);
    assert_eq!((data.train.channels, data.train.height, data.train.width), (3, 32, 32));
    assert_eq!(data.train.image(2), &cifar_record(&[2], 2)[1..]);
    assert_eq!(data.test.as_ref().unwrap().labels, vec![3]);
    assert_eq!(data.classes[0], "airplane");
    assert_eq!(data.mean.len(), 3);

    std::fs::write(dir.join("data_batch_3.bin"), &cifar_record(&[1], 1)[..3000]).unwrap();
    let err = load_err(&opts);
    assert!(err.contains("data_batch_3.bin") && err.contains("3073-byte CIFAR records"), "{err}");
    std::fs::write(dir.join("data_batch_3.bin"), cifar_record(&[10], 1)).unwrap();
    let err = load_err(&opts);
    assert!(err.contains("data_batch_3.bin") && err.contains("label 10, outside 0..10"), "{err}");
    std::fs::remove_file(dir.join("data_batch_3.bin")).unwrap();
    let err = load_err(&opts);
    assert!(err.contains("data_batch_3.bin") && err.contains("missing"), "{err}");

    let dir = scratch_dir("readers-cifar100");
    std::fs::write(dir.join("train.bin"), [cifar_record(&[1, 42], 3), cifar_record(&[2, 99], 4)].concat()).unwrap();
    std::fs::write(dir.join("test.bin"), cifar_record(&[0, 7], 5)).unwrap();
    let opts = DatasetOptions { data_dir: Some(dir.clone()), val_fraction: 0.0, ..DatasetOptions::new(DatasetKind::Cifar100) };
    let data = load(&opts).unwrap();
    assert_eq!(data.train.labels, vec![42, 99], "fine labels");
    assert_eq!(data.classes.len(), 100);
    std::fs::write(dir.join("fine_label_names.txt"), "apple\npear\n").unwrap();
    let err = load_err(&opts);
    assert!(err.contains("fine_label_names.txt") && err.contains("expected 100"), "{err}");
}

fn rgb_image(w: u32, h: u32, seed: u8) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 40) as u8 ^ seed, (y * 50) as u8, seed]))
}

#[test]
fn image_folder_round_trip_and_corruptions() {
    let dir = scratch_dir("readers-folder");
    for (class, seeds) in [("cat", [1u8, 2]), ("dog", [3, 4])] {
        let folder = dir.join("train").join(class);
        std::fs::create_dir_all(&folder).unwrap();
        for seed in seeds {
            rgb_image(6, 4, seed).save(folder.join(format!("{seed}.png"))).unwrap();
        }
        std::fs::write(folder.join("notes.txt"), "not an image, ignored").unwrap();
    }
    let test_folder = dir.join("test").join("dog");
    std::fs::create_dir_all(&test_folder).unwrap();
    rgb_image(6, 4, 9).save(test_folder.join("a.jpg")).unwrap();
    let opts = DatasetOptions { data_dir: Some(dir.clone()), val_fraction: 0.0, ..DatasetOptions::new(DatasetKind::ImageFolder) };
    let data = load(&opts).unwrap();
    assert_eq!(data.classes, vec!["cat", "dog"]);
    assert_eq!(data.train.labels, vec![0, 0, 1, 1]);
    assert_eq!((data.train.channels, data.train.height, data.train.width), (3, 4, 6));
    // PNG is lossless: CHW planes of the RGB image written.
    let written = rgb_image(6, 4, 3);
    let image = data.train.image(2);
    for (i, px) in written.pixels().enumerate() {
        assert_eq!([image[i], image[24 + i], image[48 + i]], px.0);
    }
    // JPEG is lossy: close to what was written.
    let test = data.test.as_ref().unwrap();
    assert_eq!(test.labels, vec![1]);
    let original = rgb_image(6, 4, 9);
    let err: f64 = original.pixels().enumerate().map(|(i, px)| (test.image(0)[i] as f64 - px.0[0] as f64).abs()).sum::<f64>() / 24.0;
    assert!(err < 40.0, "mean JPEG error {err}");
    let resized = load(&DatasetOptions { resize: Some((8, 8)), ..opts.clone() }).unwrap();
    assert_eq!((resized.train.height, resized.train.width, resized.train.pixels.len()), (8, 8, 4 * 3 * 64));
    // For a one-channel model the folder decodes to grey (ITU-R 601 luma, as PIL's convert("L")).
    let grey = load(&DatasetOptions { folder_channels: 1, ..opts.clone() }).unwrap();
    assert_eq!((grey.train.channels, grey.train.pixels.len()), (1, 4 * 24));
    let luma = |p: &image::Rgb<u8>| (299 * p.0[0] as u32 + 587 * p.0[1] as u32 + 114 * p.0[2] as u32) as f64 / 1000.0;
    for (i, px) in written.pixels().enumerate() {
        assert!((grey.train.image(2)[i] as f64 - luma(px)).abs() <= 1.0, "pixel {i}");
    }

    std::fs::write(dir.join("train").join("cat").join("broken.png"), b"\x89PNG\r\n\x1a\n garbage").unwrap();
    let err = load_err(&opts);
    assert!(err.contains("broken.png") && err.contains("cannot decode"), "{err}");
    std::fs::remove_file(dir.join("train").join("cat").join("broken.png")).unwrap();

    std::fs::create_dir_all(dir.join("train").join("empty")).unwrap();
    let err = load_err(&opts);
    assert!(err.contains("empty") && err.contains("empty class folder"), "{err}");
    std::fs::remove_dir(dir.join("train").join("empty")).unwrap();

    std::fs::create_dir_all(dir.join("test").join("horse")).unwrap();
    let err = load_err(&opts);
    assert!(err.contains("class `horse` is not among the training classes"), "{err}");

    let err = load_err(&DatasetOptions { data_dir: Some(scratch_dir("readers-folder-none")), ..opts.clone() });
    assert!(err.contains("no class sub-folders"), "{err}");
    // Without a test split there is nothing to validate on unless a fraction is carved out.
    let flat = dir.join("train");
    let err = load_err(&DatasetOptions { data_dir: Some(flat.clone()), ..opts.clone() });
    assert!(err.contains("no test set"), "{err}");
    let data = load(&DatasetOptions { data_dir: Some(flat), val_fraction: 0.5, ..opts }).unwrap();
    assert_eq!((data.train.len(), data.val.len(), data.test.is_none()), (2, 2, true));
}

#[test]
fn single_image_files_for_predict() {
    let dir = scratch_dir("readers-predict");
    let path = dir.join("x.png");
    image::GrayImage::from_fn(4, 4, |x, _| image::Luma([(x * 80) as u8])).save(&path).unwrap();
    let grey = load_image_file(&path, 1, 4, 4).unwrap();
    assert_eq!(&grey[..4], &[0, 80, 160, 240]);
    let rgb = load_image_file(&path, 3, 2, 2).unwrap();
    assert_eq!(rgb.len(), 12);
    assert_eq!(&rgb[..2], &rgb[4..6], "grey replicated into R, G and B");
    let err = load_image_file(&dir.join("nope.png"), 3, 2, 2).unwrap_err().to_string();
    assert!(err.contains("nope.png"), "{err}");
    assert!(load_image_file(&path, 2, 2, 2).is_err());
}

#[test]
fn tiny_imagenet_layout_reads_with_names_and_validation_labels() {
    use ferronet_test_support::tiny_imagenet::{write, PER_CLASS, VAL_CLASSES, WNIDS};
    let dir = write(&scratch_dir("readers-tiny-imagenet"));
    let opts = DatasetOptions { data_dir: Some(dir.clone()), val_fraction: 0.0, ..DatasetOptions::new(DatasetKind::TinyImagenet) };
    let data = load(&opts).unwrap();
    // Named by words.txt's first name; a WordNet id it does not list keeps its id.
    assert_eq!(data.classes, vec!["goldfish", WNIDS[1], "Egyptian cat"]);
    assert_eq!(data.train.labels, (0..3u32).flat_map(|c| [c; PER_CLASS]).collect::<Vec<_>>());
    assert_eq!((data.train.channels, data.train.height, data.train.width), (3, 8, 8));
    // The validation images, labelled by val_annotations.txt, are the test set.
    let expected: Vec<u32> = VAL_CLASSES.iter().map(|&c| c as u32).collect();
    assert_eq!(data.val.labels, expected);
    // Limited, images grouped by class are picked evenly spaced: every class keeps its share.
    let limited = load(&DatasetOptions { limit: Some(6), ..opts.clone() }).unwrap();
    assert_eq!(limited.train.labels, [0, 0, 1, 1, 2, 2]);
    // Each class's image is brightest in its own channel (JPEG is lossy, so by a margin).
    for (i, &class) in VAL_CLASSES.iter().enumerate() {
        let img = data.val.image(i);
        let mean = |c: usize| img[c * 64..(c + 1) * 64].iter().map(|&v| v as f64).sum::<f64>() / 64.0;
        assert!((0..3).filter(|&c| c != class).all(|c| mean(class) > mean(c) + 100.0), "val image {i}");
    }

    std::fs::write(dir.join("val/val_annotations.txt"), "val_0.JPEG\tn00000001\t0\t0\t7\t7\n").unwrap();
    let err = load_err(&opts);
    assert!(err.contains("val_annotations.txt") && err.contains("line 1: class n00000001 has no folder in train/"), "{err}");
    std::fs::write(dir.join("wnids.txt"), "n01443537\n").unwrap();
    let err = load_err(&opts);
    assert!(err.contains("wnids.txt") && err.contains("lists 1 classes but train/ holds 3"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
