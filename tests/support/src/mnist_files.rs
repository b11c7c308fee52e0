//! MNIST's IDX files written from image sets, plain or gzipped: the readers' round trips and
//! damaged-file tests, and training runs that need a dataset of a few images with its own
//! (small) test split.

use ferronet::data::ImageSet;
use std::io::Write;
use std::path::Path;

/// An IDX file: its magic number, big-endian dimensions, then `data`.
pub fn idx_bytes(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut bytes = magic.to_be_bytes().to_vec();
    for d in dims {
        bytes.extend(d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    bytes
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}

/// `train` and `test` as the four MNIST files in `dir` (`.gz` ones when `gz`).
pub fn write_mnist(dir: &Path, train: &ImageSet, test: &ImageSet, gz: bool) {
    for (prefix, set) in [("train", train), ("t10k", test)] {
        let dims = [set.len() as u32, set.height as u32, set.width as u32];
        let images = idx_bytes(0x803, &dims, &set.pixels);
        let labels: Vec<u8> = set.labels.iter().map(|&l| l as u8).collect();
        let labels = idx_bytes(0x801, &[set.len() as u32], &labels);
        let (images, labels, ext) = if gz { (gzip(&images), gzip(&labels), ".gz") } else { (images, labels, "") };
        for (kind, bytes) in [("images-idx3", images), ("labels-idx1", labels)] {
            let path = dir.join(format!("{prefix}-{kind}-ubyte{ext}"));
            std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
}
