//! Damaged or random files named .png/.jpg in an image folder never panic the reader: it returns
//! the dataset or one line naming the file, and a header declaring a huge image fails fast.

use ferronet_test_support::scratch_dir;
use ferronet_test_support::fuzz::{apply, config, corpus, mutation};

use ferronet::data::{load, load_image_file, DatasetKind, DatasetOptions};
use proptest::prelude::*;
use std::path::Path;
use std::time::{Duration, Instant};

fn options(dir: &Path) -> DatasetOptions {
    DatasetOptions { data_dir: Some(dir.to_path_buf()), val_fraction: 0.3, ..DatasetOptions::new(DatasetKind::ImageFolder) }
}

/// Two good PNGs in class `a`, and `bytes` as `b/image.<ext>`.
fn write_folder(dir: &Path, bytes: &[u8], ext: &str) -> std::path::PathBuf {
    let good = corpus("image/tiny.png");
    for (class, file) in [("a", "1.png"), ("a", "2.png")] {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        std::fs::write(dir.join(class).join(file), &good).unwrap();
    }
    std::fs::create_dir_all(dir.join("b")).unwrap();
    let damaged = dir.join("b").join(format!("image.{ext}"));
    std::fs::write(&damaged, bytes).unwrap();
    damaged
}

#[test]
fn the_seed_corpus_loads() {
    let dir = scratch_dir("folder-seed");
    write_folder(&dir, &corpus("image/tiny.png"), "png");
    let data = load(&options(&dir)).unwrap();
    assert_eq!(data.classes, ["a", "b"]);
    assert_eq!((data.train.height, data.train.width, data.train.len() + data.val.len()), (3, 5, 3));
    std::fs::remove_dir_all(&dir).unwrap();
}

proptest! {
    #![proptest_config(config())]
    #[test]
    fn damaged_images_are_errors_not_panics(
        m in mutation(),
        ext in prop_oneof![Just("png"), Just("jpg"), Just("jpeg")],
    ) {
        let dir = scratch_dir("folder");
        let damaged = write_folder(&dir, &apply(&corpus("image/tiny.png"), &m), ext);
        let loaded = load(&options(&dir));
        let single = load_image_file(&damaged, 3, 4, 4);
        std::fs::remove_dir_all(&dir).unwrap();
        match loaded {
            Ok(data) => prop_assert_eq!(data.train.pixels.len(), data.train.len() * data.train.image_len()),
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(!msg.contains('\n') && msg.contains("image."), "one line naming the file: {}", msg);
            }
        }
        match single {
            Ok(pixels) => prop_assert_eq!(pixels.len(), 3 * 4 * 4),
            Err(e) => prop_assert!(!e.to_string().contains('\n')),
        }
    }
}

/// A PNG whose header declares 60000x60000 pixels (10 GB of RGB) and holds a few bytes fails
/// without allocating for the declared size; so do a truncated one and an empty one, each with
/// one line.
#[test]
fn a_png_declaring_a_huge_image_fails_fast() {
    let dir = scratch_dir("folder-huge");
    // An empty .jpg: the JPEG decoder's message for it spans two lines.
    for (file, ext) in [("bad-huge.png", "png"), ("bad-truncated.png", "png"), ("bad-empty.jpg", "jpg")] {
        let path = write_folder(&dir, &corpus(&format!("image/{file}")), ext);
        let start = Instant::now();
        let msg = load(&options(&dir)).expect_err("not a usable image").to_string();
        assert!(start.elapsed() < Duration::from_secs(1), "{file} took {:?}", start.elapsed());
        std::fs::remove_file(&path).unwrap();
        assert!(msg.starts_with(&format!("{}: cannot decode the image (", path.display())), "{msg}");
        assert!(msg.ends_with("): expected a PNG or JPEG file") && !msg.contains('\n'), "{msg}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
