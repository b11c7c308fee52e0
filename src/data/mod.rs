//! Datasets: readers for MNIST/Fashion-MNIST (IDX), CIFAR-10/100 (binary), Tiny-ImageNet and
//! image folders, a
//! built-in synthetic dataset, seeded splits, resizing, per-channel statistics, augmentation and
//! the prefetching multi-threaded [`Loader`].
//!
//! Every reader checks what a file declares against what it really holds before allocating for
//! it, and reports a corrupt or missing file as one line naming the file and what was expected.

mod augment;
mod cifar;
mod folder;
mod idx;
mod loader;
mod synthetic;
mod tiny_imagenet;
mod transform;

pub use augment::Augment;
pub use folder::{load_image, load_image_file};
pub use loader::{Batch, Loader, Shard};
pub use transform::{channel_stats, normalise_image, resize_antialiased, resize_bilinear, seeded_split, Fit, ResizeCrop};

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Images as u8 0..=255, CHW per image, all of one size, with labels.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSet {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// `len() * channels * height * width` bytes.
    pub pixels: Vec<u8>,
    pub labels: Vec<u32>,
}

impl ImageSet {
    pub fn empty(channels: usize, height: usize, width: usize) -> Self {
        ImageSet { channels, height, width, pixels: vec![], labels: vec![] }
    }
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// Bytes per image.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.pixels[i * n..(i + 1) * n]
    }
    /// The images at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> ImageSet {
        let mut pixels = Vec::with_capacity(indices.len() * self.image_len());
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
        }
        let labels = indices.iter().map(|&i| self.labels[i]).collect();
        ImageSet { pixels, labels, ..ImageSet::empty(self.channels, self.height, self.width) }
    }
    /// The first `n` images (all of them when there are fewer).
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.len());
        self.labels.truncate(n);
        self.pixels.truncate(n * self.image_len());
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatasetKind {
    Synthetic,
    Mnist,
    FashionMnist,
    Cifar10,
    Cifar100,
    TinyImagenet,
    ImageFolder,
}

impl DatasetKind {
    pub const ALL: [DatasetKind; 7] = [
        DatasetKind::Synthetic,
        DatasetKind::Mnist,
        DatasetKind::FashionMnist,
        DatasetKind::Cifar10,
        DatasetKind::Cifar100,
        DatasetKind::TinyImagenet,
        DatasetKind::ImageFolder,
    ];
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Synthetic => "synthetic",
            DatasetKind::Mnist => "mnist",
            DatasetKind::FashionMnist => "fashion-mnist",
            DatasetKind::Cifar10 => "cifar10",
            DatasetKind::Cifar100 => "cifar100",
            DatasetKind::TinyImagenet => "tiny-imagenet",
            DatasetKind::ImageFolder => "folder",
        }
    }
    pub fn parse(text: &str) -> Result<Self> {
        DatasetKind::ALL.into_iter().find(|k| k.name() == text).ok_or_else(|| {
            let known: Vec<&str> = DatasetKind::ALL.iter().map(|k| k.name()).collect();
            Error::config(format!("unknown dataset `{text}`; known datasets: {}", known.join(", ")))
        })
    }
    /// Whether the reader returns the training images class by class (image folders), so that
    /// the first N images would hold the first classes only.
    fn grouped_by_class(self) -> bool {
        matches!(self, DatasetKind::TinyImagenet | DatasetKind::ImageFolder)
    }
    /// Where the files are looked for when no data directory is given.
    pub fn default_dir(self) -> Option<PathBuf> {
        match self {
            DatasetKind::Mnist => Some("/usr/share/datasets/mnist".into()),
            DatasetKind::FashionMnist => Some("/usr/share/datasets/fashion-mnist".into()),
            DatasetKind::Cifar10 => Some("data/cifar-10-batches-bin".into()),
            DatasetKind::Cifar100 => Some("data/cifar-100-binary".into()),
            DatasetKind::TinyImagenet => Some("data/tiny-imagenet-200".into()),
            DatasetKind::Synthetic | DatasetKind::ImageFolder => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct DatasetOptions {
    pub kind: DatasetKind,
    pub data_dir: Option<PathBuf>,
    /// Fraction of the training images held out for validation with a seeded split. With 0, a
    /// dataset that has a test set validates on it; one without is an error.
    pub val_fraction: f64,
    pub seed: u64,
    /// Bilinear resize of every image to (height, width), e.g. to the model's input.
    pub resize: Option<(usize, usize)>,
    /// torchvision's Resize and CenterCrop instead of `resize` (what pretrained weights expect).
    pub resize_crop: Option<ResizeCrop>,
    /// Repeat a single grey channel three times (grey images into RGB models).
    pub grayscale_to_rgb: bool,
    /// The channels an image folder's images are decoded to: 1 (grey, as PIL's `convert("L")`)
    /// or 3 (RGB). The other readers keep their files' channels.
    pub folder_channels: usize,
    /// Only the first N training images, for quick runs.
    pub limit: Option<usize>,
}

impl DatasetOptions {
    pub fn new(kind: DatasetKind) -> Self {
        DatasetOptions {
            kind,
            data_dir: None,
            val_fraction: 0.2,
            seed: 0,
            resize: None,
            resize_crop: None,
            grayscale_to_rgb: false,
            folder_channels: 3,
            limit: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub name: String,
    pub classes: Vec<String>,
    pub train: ImageSet,
    pub val: ImageSet,
    pub test: Option<ImageSet>,
    /// Per channel, of the training images, in [0, 1] units.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

/// What a reader returns before splitting and transforming.
pub(crate) struct RawDataset {
    pub classes: Vec<String>,
    pub train: ImageSet,
    pub test: Option<ImageSet>,
}

pub fn load(opts: &DatasetOptions) -> Result<Dataset> {
    if !(0.0..1.0).contains(&opts.val_fraction) {
        return Err(Error::config(format!("validation fraction {} must be in [0, 1)", opts.val_fraction)));
    }
    if opts.limit == Some(0) {
        return Err(Error::config("the image limit must be at least 1"));
    }
    let fit = opts.resize_crop.map(Fit::ResizeCrop).or(opts.resize.map(|(h, w)| Fit::Stretch(h, w)));
    if let Some((h, w)) = fit.map(|fit| fit.size()) {
        if h == 0 || w == 0 {
            return Err(Error::config(format!("resize target {h}x{w} must be non-empty")));
        }
    }
    let dir = || -> Result<PathBuf> {
        opts.data_dir.clone().or_else(|| opts.kind.default_dir()).ok_or_else(|| {
            Error::config(format!("the {} dataset needs a data directory (--data-dir)", opts.kind.name()))
        })
    };
    let raw = match opts.kind {
        DatasetKind::Synthetic => synthetic::generate(opts.seed),
        DatasetKind::Mnist | DatasetKind::FashionMnist => idx::load_mnist_dir(&dir()?, opts.kind == DatasetKind::FashionMnist)?,
        DatasetKind::Cifar10 => cifar::load_cifar10(&dir()?)?,
        DatasetKind::Cifar100 => cifar::load_cifar100(&dir()?)?,
        DatasetKind::TinyImagenet => tiny_imagenet::load_tiny_imagenet(&dir()?, fit, opts.folder_channels)?,
        DatasetKind::ImageFolder => folder::load_folder(&dir()?, fit, opts.folder_channels)?,
    };
    // Image files are fitted as they are decoded; the arrays of the other readers here.
    let fit_arrays = fit.filter(|_| !matches!(opts.kind, DatasetKind::TinyImagenet | DatasetKind::ImageFolder));
    finish(opts, raw, fit_arrays)
}

/// Limit, split, fit to size, convert channels and compute the statistics.
fn finish(opts: &DatasetOptions, raw: RawDataset, fit: Option<Fit>) -> Result<Dataset> {
    let RawDataset { classes, mut train, test } = raw;
    match opts.limit {
        // Evenly spaced images, so every class keeps its share of a limited run.
        Some(limit) if opts.kind.grouped_by_class() && limit < train.len() => {
            let picked: Vec<usize> = (0..limit).map(|i| i * train.len() / limit).collect();
            train = train.select(&picked);
        }
        Some(limit) => train.truncate(limit),
        None => {}
    }
    let (train, val) = if opts.val_fraction > 0.0 {
        let (train_idx, val_idx) = seeded_split(train.len(), opts.val_fraction, opts.seed);
        if train_idx.is_empty() || val_idx.is_empty() {
            return Err(Error::config(format!(
                "cannot split {} training images with validation fraction {}: one side would be empty",
                train.len(),
                opts.val_fraction
            )));
        }
        (train.select(&train_idx), train.select(&val_idx))
    } else {
        let val = test.clone().ok_or_else(|| {
            Error::config(format!("the {} dataset has no test set: give a validation fraction above 0", opts.kind.name()))
        })?;
        (train, val)
    };
    let prepare = |set: ImageSet| -> Result<ImageSet> {
        let set = match &fit {
            Some(fit) => transform::fit_set(&set, fit)?,
            None => set,
        };
        Ok(if opts.grayscale_to_rgb && set.channels == 1 { transform::grey_to_rgb(&set) } else { set })
    };
    let (train, val, test) = (prepare(train)?, prepare(val)?, test.map(prepare).transpose()?);
    if train.is_empty() {
        return Err(Error::config(format!("the {} dataset has no training images", opts.kind.name())));
    }
    let (mean, std) = channel_stats(&train);
    Ok(Dataset { name: opts.kind.name().into(), classes, train, val, test, mean, std })
}

/// The one-line error for a file that is not there.
pub(crate) fn missing(path: &Path, what: &str) -> Error {
    Error::data(path, format!("missing: expected {what} here (see datasets/README.md for where to get it)"))
}

/// Reads a whole text file (invalid UTF-8 replaced), with its path in any error.
pub(crate) fn read_text(path: &Path, what: &str) -> Result<String> {
    Ok(String::from_utf8_lossy(&read_file(path, what)?).into_owned())
}

/// Reads a whole file, with its path in any error.
pub(crate) fn read_file(path: &Path, what: &str) -> Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(missing(path, what)),
        Err(e) => Err(Error::io(path, e)),
    }
}
