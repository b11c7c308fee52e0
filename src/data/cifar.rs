//! CIFAR-10 and CIFAR-100 in their binary form: records of label byte(s) then 3x32x32 pixels, CHW.

use super::{read_file, read_text, ImageSet, RawDataset};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

const PIXELS: usize = 3 * 32 * 32;

const CIFAR10_CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// Reads one binary batch file whose records carry `label_bytes` leading bytes; the label used
/// is the last of them (CIFAR-100's fine label).
pub fn read_batch(path: &Path, label_bytes: usize, classes: usize, into: &mut ImageSet) -> Result<()> {
    let record = label_bytes + PIXELS;
    let len = std::fs::metadata(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => super::missing(path, "a CIFAR binary batch file"),
            _ => Error::io(path, e),
        })?
        .len();
    if len == 0 || len % record as u64 != 0 {
        return Err(Error::data(path, format!("{len} bytes is not a whole number of {record}-byte CIFAR records: truncated or not a CIFAR binary file")));
    }
    let bytes = read_file(path, "a CIFAR binary batch file")?;
    if bytes.len() as u64 != len {
        return Err(Error::data(path, "the file changed size while being read"));
    }
    into.pixels.reserve(bytes.len() / record * PIXELS);
    for (i, chunk) in bytes.chunks_exact(record).enumerate() {
        let label = chunk[label_bytes - 1];
        if label as usize >= classes {
            return Err(Error::data(path, format!("record {i} has label {label}, outside 0..{classes}")));
        }
        into.labels.push(label as u32);
        into.pixels.extend_from_slice(&chunk[label_bytes..]);
    }
    Ok(())
}

/// `dir` itself, or its sub-folder `sub` when the archive was unpacked there.
fn data_dir(dir: &Path, sub: &str, probe: &str) -> PathBuf {
    let nested = dir.join(sub);
    if !dir.join(probe).exists() && nested.join(probe).exists() {
        nested
    } else {
        dir.to_path_buf()
    }
}

fn read_set(dir: &Path, files: &[&str], label_bytes: usize, classes: usize) -> Result<ImageSet> {
    let mut set = ImageSet::empty(3, 32, 32);
    for name in files {
        read_batch(&dir.join(name), label_bytes, classes, &mut set)?;
    }
    Ok(set)
}

/// data_batch_1..5.bin and test_batch.bin.
pub fn load_cifar10(dir: &Path) -> Result<RawDataset> {
    let dir = data_dir(dir, "cifar-10-batches-bin", "test_batch.bin");
    let train_files = ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"];
    let train = read_set(&dir, &train_files, 1, 10)?;
    let test = read_set(&dir, &["test_batch.bin"], 1, 10)?;
    let classes = CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect();
    Ok(RawDataset { classes, train, test: Some(test) })
}

/// train.bin and test.bin (coarse label, fine label, pixels); fine labels, named from
/// fine_label_names.txt when present.
pub fn load_cifar100(dir: &Path) -> Result<RawDataset> {
    let dir = data_dir(dir, "cifar-100-binary", "test.bin");
    let train = read_set(&dir, &["train.bin"], 2, 100)?;
    let test = read_set(&dir, &["test.bin"], 2, 100)?;
    let names_path = dir.join("fine_label_names.txt");
    let classes = if names_path.exists() {
        let text = read_text(&names_path, "the CIFAR-100 class names")?;
        let names: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
        if names.len() != 100 {
            return Err(Error::data(&names_path, format!("{} class names: expected 100, one per line", names.len())));
        }
        names
    } else {
        (0..100).map(|i| format!("class {i}")).collect()
    };
    Ok(RawDataset { classes, train, test: Some(test) })
}
