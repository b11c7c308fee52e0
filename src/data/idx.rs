//! IDX files (MNIST, Fashion-MNIST), plain or gzipped: a 4-byte magic (0, 0, type 0x08 = u8,
//! rank), the big-endian u32 dimensions, then the data.

use super::{missing, ImageSet, RawDataset};
use crate::error::{Error, Result};
use flate2::read::GzDecoder;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

const IMAGE_MAGIC: u32 = 0x0000_0803;
const LABEL_MAGIC: u32 = 0x0000_0801;

const FASHION_CLASSES: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

/// Opens `path`, transparently decompressing gzip (recognised by its magic bytes).
fn open(path: &Path) -> Result<Box<dyn Read>> {
    let file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => missing(path, "an IDX file"),
        _ => Error::io(path, e),
    })?;
    let mut reader = BufReader::new(file);
    let gzipped = reader.fill_buf().map_err(|e| Error::io(path, e))?.starts_with(&[0x1f, 0x8b]);
    Ok(if gzipped { Box::new(GzDecoder::new(reader)) } else { Box::new(reader) })
}

/// Reads exactly `buf.len()` bytes or explains what was missing.
fn read_exact(reader: &mut dyn Read, buf: &mut [u8], path: &Path, what: &str) -> Result<()> {
    reader.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => Error::data(path, format!("truncated: the file ends inside its {what}")),
        _ => Error::data(path, format!("unreadable ({e}); expected an IDX file, plain or gzipped")),
    })
}

/// Reads an IDX file of u8 with the expected magic; returns its dimensions and data. The data is
/// read with a bound of what the header declares, growing only as real bytes arrive, so a lying
/// header cannot make it allocate more than the file holds.
fn read_idx(path: &Path, magic: u32, kind: &str) -> Result<(Vec<usize>, Vec<u8>)> {
    let mut reader = open(path)?;
    let mut head = [0u8; 4];
    read_exact(&mut reader, &mut head, path, "header")?;
    let found = u32::from_be_bytes(head);
    if found != magic {
        return Err(Error::data(path, format!("wrong magic 0x{found:08x}: expected 0x{magic:08x} (an IDX {kind} file)")));
    }
    let rank = (magic & 0xff) as usize;
    let mut dims = Vec::with_capacity(rank);
    for _ in 0..rank {
        let mut d = [0u8; 4];
        read_exact(&mut reader, &mut d, path, "header")?;
        dims.push(u32::from_be_bytes(d) as usize);
    }
    let declared = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::data(path, format!("impossible dimensions {dims:?} in the header")))?;
    let mut data = Vec::new();
    reader
        .take(declared as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| Error::data(path, format!("unreadable ({e}); expected an IDX file, plain or gzipped")))?;
    if data.len() != declared {
        let relation = if data.len() < declared { "only" } else { "more than" };
        return Err(Error::data(
            path,
            format!("truncated or corrupt: the header declares {dims:?} = {declared} bytes of {kind} data but the file holds {relation} {}", data.len().min(declared)),
        ));
    }
    Ok((dims, data))
}

/// Reads a pair of IDX image and label files into an image set, checking their agreement and
/// that every label is below `classes`.
pub fn read_pair(images: &Path, labels: &Path, classes: usize) -> Result<ImageSet> {
    let (dims, pixels) = read_idx(images, IMAGE_MAGIC, "image")?;
    let (label_dims, label_bytes) = read_idx(labels, LABEL_MAGIC, "label")?;
    let (n, h, w) = (dims[0], dims[1], dims[2]);
    if label_dims[0] != n {
        return Err(Error::data(labels, format!("{} labels but {} holds {n} images: expected one label per image", label_dims[0], images.display())));
    }
    if n > 0 && (h == 0 || w == 0) {
        return Err(Error::data(images, format!("images of {h}x{w} pixels: expected non-empty images")));
    }
    if let Some(i) = label_bytes.iter().position(|&l| l as usize >= classes) {
        return Err(Error::data(labels, format!("label {} of image {i} is outside 0..{classes}", label_bytes[i])));
    }
    let labels = label_bytes.into_iter().map(u32::from).collect();
    Ok(ImageSet { channels: 1, height: h, width: w, pixels, labels })
}

/// `name` in `dir`, or `name.gz` when only that exists.
fn find(dir: &Path, name: &str) -> PathBuf {
    let plain = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    if !plain.exists() && gz.exists() {
        gz
    } else {
        plain
    }
}

/// The four standard files of MNIST or Fashion-MNIST in `dir`.
pub fn load_mnist_dir(dir: &Path, fashion: bool) -> Result<RawDataset> {
    let train = read_pair(&find(dir, "train-images-idx3-ubyte"), &find(dir, "train-labels-idx1-ubyte"), 10)?;
    let test = read_pair(&find(dir, "t10k-images-idx3-ubyte"), &find(dir, "t10k-labels-idx1-ubyte"), 10)?;
    if (test.height, test.width) != (train.height, train.width) {
        return Err(Error::data(
            dir,
            format!("test images are {}x{} but training images {}x{}: expected one size", test.height, test.width, train.height, train.width),
        ));
    }
    let classes = if fashion {
        FASHION_CLASSES.iter().map(|s| s.to_string()).collect()
    } else {
        (0..10).map(|d| d.to_string()).collect()
    };
    Ok(RawDataset { classes, train, test: Some(test) })
}
