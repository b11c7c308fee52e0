//! Damaged MNIST IDX files, plain and gzipped, never panic the reader and never make it allocate
//! for data the file does not hold: it returns the dataset or one line naming the file.

use ferronet_test_support::scratch_dir;
use ferronet_test_support::fuzz::{Mutation, apply, config, corpus, mutation};
use ferronet_test_support::mnist_files::gzip;

use ferronet::data::{load, DatasetKind, DatasetOptions};
use proptest::prelude::*;
use std::path::Path;
use std::time::{Duration, Instant};

const FILES: [&str; 4] = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"];

#[derive(Clone, Copy, Debug)]
enum Encoding {
    Plain,
    /// The damaged IDX bytes, then compressed: the header lies inside a valid gzip stream.
    GzipDamagedIdx,
    /// The compressed file itself damaged.
    DamagedGzip,
}

fn options(dir: &Path) -> DatasetOptions {
    DatasetOptions { data_dir: Some(dir.to_path_buf()), val_fraction: 0.0, ..DatasetOptions::new(DatasetKind::Mnist) }
}

/// Writes the four files into `dir`, file `damaged` after `m`, and loads them.
fn load_damaged(dir: &Path, encoding: Encoding, damaged: usize, m: &Mutation) -> Result<(), String> {
    for (i, name) in FILES.iter().enumerate() {
        let (path, bytes) = match encoding {
            Encoding::Plain => {
                let seed = corpus(&format!("idx/{name}"));
                (dir.join(name), if i == damaged { apply(&seed, m) } else { seed })
            }
            Encoding::GzipDamagedIdx => {
                let seed = corpus(&format!("idx/{name}"));
                (dir.join(format!("{name}.gz")), gzip(&if i == damaged { apply(&seed, m) } else { seed }))
            }
            Encoding::DamagedGzip => {
                let seed = corpus(&format!("idx/{name}.gz"));
                (dir.join(format!("{name}.gz")), if i == damaged { apply(&seed, m) } else { seed })
            }
        };
        std::fs::write(path, bytes).unwrap();
    }
    match load(&options(dir)) {
        Ok(data) => {
            let set = &data.train;
            assert_eq!(set.pixels.len(), set.len() * set.image_len(), "a loaded set holds whole images");
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn the_seed_corpus_loads() {
    for (encoding, name) in [(Encoding::Plain, "plain"), (Encoding::DamagedGzip, "gz")] {
        let dir = scratch_dir(&format!("idx-seed-{name}"));
        load_damaged(&dir, encoding, 0, &Mutation::Append(vec![])).expect("the seed files are valid");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

proptest! {
    #![proptest_config(config())]
    #[test]
    fn damaged_idx_files_are_errors_not_panics(
        encoding in prop_oneof![Just(Encoding::Plain), Just(Encoding::GzipDamagedIdx), Just(Encoding::DamagedGzip)],
        damaged in 0usize..4,
        m in mutation(),
    ) {
        let dir = scratch_dir(&format!("idx-{encoding:?}"));
        let loaded = load_damaged(&dir, encoding, damaged, &m);
        std::fs::remove_dir_all(&dir).unwrap();
        if let Err(msg) = loaded {
            prop_assert!(!msg.contains('\n'), "one line: {}", msg);
            prop_assert!(msg.contains("ubyte"), "the error names the file: {}", msg);
        }
    }
}

/// A header declaring 2^31 images of 28x28 in a 100-byte file fails at once with the declared
/// and real sizes, plain and gzipped, instead of trying to allocate 1.6 TB.
#[test]
fn a_header_declaring_huge_dimensions_fails_fast() {
    let bad = corpus("idx/bad-huge-count-idx3-ubyte");
    assert_eq!(bad.len(), 100);
    for gz in [false, true] {
        let dir = scratch_dir(&format!("idx-huge-{gz}"));
        for name in FILES {
            let bytes = if name == FILES[0] { bad.clone() } else { corpus(&format!("idx/{name}")) };
            let (path, bytes) = if gz { (dir.join(format!("{name}.gz")), gzip(&bytes)) } else { (dir.join(name), bytes) };
            std::fs::write(path, bytes).unwrap();
        }
        let start = Instant::now();
        let msg = load(&options(&dir)).expect_err("the file holds 84 bytes of data").to_string();
        assert!(start.elapsed() < Duration::from_secs(1), "took {:?}", start.elapsed());
        let file = dir.join(if gz { format!("{}.gz", FILES[0]) } else { FILES[0].to_string() });
        assert_eq!(
            msg,
            format!(
                "{}: truncated or corrupt: the header declares [2147483648, 28, 28] = 1683627180032 bytes of image data but the file holds only 84",
                file.display()
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
    let dir = scratch_dir("idx-magic");
    for name in FILES {
        let bytes = if name == FILES[0] { corpus("idx/bad-wrong-magic-idx3-ubyte") } else { corpus(&format!("idx/{name}")) };
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let msg = load(&options(&dir)).expect_err("a label file's magic on an image file").to_string();
    assert_eq!(msg, format!("{}: wrong magic 0x00000801: expected 0x00000803 (an IDX image file)", dir.join(FILES[0]).display()));
    std::fs::remove_dir_all(&dir).unwrap();
}
