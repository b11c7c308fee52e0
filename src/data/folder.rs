//! Image folders: one sub-folder per class holding PNG or JPEG files (directly, or one folder
//! further down, as torchvision's ImageFolder finds them), either directly in the data directory
//! or in its `train/` (and optional `test/`) sub-folders. Images are read as RGB or grey.

use super::transform::Fit;
use super::{ImageSet, RawDataset};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

pub(super) fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => super::missing(dir, "an image folder with one sub-folder per class"),
        _ => Error::io(dir, e),
    })?;
    let mut paths = entries.map(|e| e.map(|e| e.path()).map_err(|err| Error::io(dir, err))).collect::<Result<Vec<_>>>()?;
    paths.sort();
    Ok(paths)
}

fn is_image(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn decode(path: &Path) -> Result<image::DynamicImage> {
    let reader = image::ImageReader::open(path).map_err(|e| Error::io(path, e))?;
    let reader = reader.with_guessed_format().map_err(|e| Error::io(path, e))?;
    reader.decode().map_err(|e| {
        // The decoders' messages can span lines (the JPEG one for a truncated file does); an
        // error is one line.
        let reason = e.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
        Error::data(path, format!("cannot decode the image ({reason}): expected a PNG or JPEG file"))
    })
}

/// Decodes `path` into `channels` (1 = grey, 3 = RGB) planes resized bilinearly to
/// `height` x `width`, CHW, as u8.
pub fn load_image_file(path: &Path, channels: usize, height: usize, width: usize) -> Result<Vec<u8>> {
    load_image(path, channels, &Fit::Stretch(height, width))
}

/// Decodes `path` into `channels` (1 = grey, 3 = RGB) planes fitted to one size as `fit` says,
/// CHW, as u8.
pub fn load_image(path: &Path, channels: usize, fit: &Fit) -> Result<Vec<u8>> {
    let (height, width) = fit.size();
    if height == 0 || width == 0 {
        return Err(Error::config(format!("image size {height}x{width} must be non-empty")));
    }
    let image = decode(path)?;
    let (w, h) = (image.width() as usize, image.height() as usize);
    let interleaved = match channels {
        1 => image.into_rgb8().pixels().map(|p| pil_luma(p.0)).collect(),
        3 => image.into_rgb8().into_raw(),
        _ => return Err(Error::config(format!("images can be read with 1 or 3 channels, not {channels}"))),
    };
    let mut planar = vec![0u8; interleaved.len()];
    for (i, px) in interleaved.chunks_exact(channels).enumerate() {
        for (c, &v) in px.iter().enumerate() {
            planar[c * h * w + i] = v;
        }
    }
    fit.apply(&planar, channels, (h, w)).map_err(|e| Error::data(path, e.to_string()))
}

/// Grey as PIL's `convert("L")` (ITU-R 601 weights in 16-bit fixed point), which torchvision's
/// `Grayscale` uses; the image crate's own conversion weighs by Rec. 709 instead.
fn pil_luma([r, g, b]: [u8; 3]) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

/// The images of a class folder: its own and those of its sub-folders (Tiny-ImageNet keeps them
/// in `<class>/images/`), each group in sorted order.
fn class_images(folder: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in list_dir(folder)? {
        if path.is_dir() {
            files.extend(list_dir(&path)?.into_iter().filter(|p| p.is_file() && is_image(p)));
        } else if is_image(&path) {
            files.push(path);
        }
    }
    Ok(files)
}

/// Appends the image at `file` with `label` to `set`, fitted as `fit` says or, when that is not
/// fixed yet, at this first image's own size, which then fixes it.
pub(super) fn push_image(set: &mut ImageSet, file: &Path, label: u32, fit: &mut Option<Fit>) -> Result<()> {
    let fit = match *fit {
        Some(fit) => fit,
        None => {
            let image = decode(file)?;
            *fit.insert(Fit::Stretch(image.height() as usize, image.width() as usize))
        }
    };
    set.pixels.extend(load_image(file, set.channels, &fit)?);
    set.labels.push(label);
    (set.height, set.width) = fit.size();
    Ok(())
}

/// Reads the class folders under `dir`. With `classes` given (the test split), folder names must
/// be among them; otherwise they define the classes, in sorted order.
pub(super) fn read_split(dir: &Path, classes: Option<&[String]>, fit: &mut Option<Fit>, channels: usize) -> Result<(Vec<String>, ImageSet)> {
    let folders: Vec<PathBuf> = list_dir(dir)?.into_iter().filter(|p| p.is_dir()).collect();
    if folders.is_empty() {
        return Err(Error::data(dir, "no class sub-folders: expected one folder of PNG/JPEG images per class"));
    }
    let names: Vec<String> = folders.iter().map(|p| p.file_name().unwrap_or_default().to_string_lossy().into_owned()).collect();
    let mut set = ImageSet::empty(channels, 0, 0);
    for (index, (folder, name)) in folders.iter().zip(&names).enumerate() {
        let label = match classes {
            Some(known) => known.iter().position(|c| c == name).ok_or_else(|| {
                Error::data(folder, format!("class `{name}` is not among the training classes ({})", known.join(", ")))
            })?,
            None => index,
        };
        let files = class_images(folder)?;
        if files.is_empty() {
            return Err(Error::data(folder, "empty class folder: expected at least one .png, .jpg or .jpeg image"));
        }
        for file in files {
            push_image(&mut set, &file, label as u32, fit)?;
        }
    }
    Ok((names, set))
}

/// Images are decoded to `channels` (1 or 3) and fitted as `fit` says when given, else resized to
/// the size of the first image read.
pub fn load_folder(dir: &Path, fit: Option<Fit>, channels: usize) -> Result<RawDataset> {
    let mut size = fit;
    let train_dir = dir.join("train");
    if !train_dir.is_dir() {
        let (classes, train) = read_split(dir, None, &mut size, channels)?;
        return Ok(RawDataset { classes, train, test: None });
    }
    let (classes, train) = read_split(&train_dir, None, &mut size, channels)?;
    let test_dir = ["test", "val"].iter().map(|s| dir.join(s)).find(|p| p.is_dir());
    let test = match test_dir {
        Some(test_dir) => Some(read_split(&test_dir, Some(&classes), &mut size, channels)?.1),
        None => None,
    };
    Ok(RawDataset { classes, train, test })
}
