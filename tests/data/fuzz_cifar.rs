//! Damaged CIFAR-10 binary batches never panic the reader: it returns the dataset or one line
//! naming the file.

use ferronet_test_support::scratch_dir;
use ferronet_test_support::fuzz::{apply, config, corpus, mutation};

use ferronet::data::{load, DatasetKind, DatasetOptions};
use proptest::prelude::*;
use std::path::Path;

const FILES: [&str; 6] =
    ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"];

fn options(dir: &Path) -> DatasetOptions {
    DatasetOptions { data_dir: Some(dir.to_path_buf()), val_fraction: 0.0, ..DatasetOptions::new(DatasetKind::Cifar10) }
}

/// Writes the six batch files (two records each), file `damaged` replaced by `bytes`, and loads them.
fn load_with(dir: &Path, damaged: usize, bytes: &[u8]) -> ferronet::Result<ferronet::data::Dataset> {
    let seed = corpus("cifar/batch.bin");
    for (i, name) in FILES.iter().enumerate() {
        std::fs::write(dir.join(name), if i == damaged { bytes } else { &seed[..] }).unwrap();
    }
    load(&options(dir))
}

#[test]
fn the_seed_corpus_loads() {
    let dir = scratch_dir("cifar-seed");
    let data = load_with(&dir, 0, &corpus("cifar/batch.bin")).unwrap();
    assert_eq!((data.train.len(), data.val.len()), (10, 2));
    assert_eq!(data.train.labels[..2], [3, 9]);
    std::fs::remove_dir_all(&dir).unwrap();
}

proptest! {
    #![proptest_config(config())]
    #[test]
    fn damaged_cifar_batches_are_errors_not_panics(damaged in 0usize..6, m in mutation()) {
        let dir = scratch_dir("cifar");
        let bytes = apply(&corpus("cifar/batch.bin"), &m);
        let loaded = load_with(&dir, damaged, &bytes);
        std::fs::remove_dir_all(&dir).unwrap();
        match loaded {
            Ok(data) => {
                prop_assert_eq!(data.train.pixels.len(), data.train.len() * 3 * 32 * 32);
                prop_assert!(data.train.labels.iter().all(|&l| l < 10));
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(!msg.contains('\n') && msg.contains(FILES[damaged]), "one line naming the file: {}", msg);
            }
        }
    }
}

#[test]
fn known_bad_batches_name_the_problem() {
    let dir = scratch_dir("cifar-bad");
    let msg = load_with(&dir, 2, &corpus("cifar/bad-truncated.bin")).unwrap_err().to_string();
    assert_eq!(
        msg,
        format!(
            "{}: 5000 bytes is not a whole number of 3073-byte CIFAR records: truncated or not a CIFAR binary file",
            dir.join("data_batch_3.bin").display()
        )
    );
    let msg = load_with(&dir, 5, &corpus("cifar/bad-label.bin")).unwrap_err().to_string();
    assert_eq!(msg, format!("{}: record 0 has label 10, outside 0..10", dir.join("test_batch.bin").display()));
    std::fs::remove_dir_all(&dir).unwrap();
}
