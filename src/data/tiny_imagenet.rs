//! Tiny-ImageNet in its official layout (`tiny-imagenet-200/`): `wnids.txt` lists the classes'
//! WordNet ids, `words.txt` names them, the training images sit in `train/<wnid>/images/*.JPEG`
//! and the labelled validation images in `val/images/`, their classes in
//! `val/val_annotations.txt` (file, wnid, bounding box, tab-separated). The validation images serve
//! as the test set; the unlabelled `test/` split is not read.

use super::folder::{push_image, read_split};
use super::transform::Fit;
use super::{read_text, ImageSet, RawDataset};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::path::Path;

/// The dataset under `dir` (the `tiny-imagenet-200` folder), decoded to `channels` and fitted as
/// `fit` says when given (else kept at the first image's size, 64x64 in the real dataset).
pub fn load_tiny_imagenet(dir: &Path, fit: Option<Fit>, channels: usize) -> Result<RawDataset> {
    let mut size = fit;
    let (wnids, train) = read_split(&dir.join("train"), None, &mut size, channels)?;
    check_wnids(dir, &wnids)?;
    let test = read_val(dir, &wnids, &mut size, channels)?;
    Ok(RawDataset { classes: class_names(dir, &wnids)?, train, test: Some(test) })
}

/// `wnids.txt`, when present, lists exactly the training folders.
fn check_wnids(dir: &Path, folders: &[String]) -> Result<()> {
    let path = dir.join("wnids.txt");
    if !path.is_file() {
        return Ok(());
    }
    let text = read_text(&path, "the list of WordNet ids")?;
    let mut listed: Vec<&str> = text.split_whitespace().collect();
    listed.sort_unstable();
    if listed != folders {
        return Err(Error::data(
            &path,
            format!("lists {} classes but train/ holds {} class folders; the two must name the same WordNet ids", listed.len(), folders.len()),
        ));
    }
    Ok(())
}

/// Each class's first name in `words.txt` (`n01443537<TAB>goldfish, Carassius auratus` names it
/// `goldfish`); its WordNet id where the file is absent or does not list it.
fn class_names(dir: &Path, wnids: &[String]) -> Result<Vec<String>> {
    let path = dir.join("words.txt");
    if !path.is_file() {
        return Ok(wnids.to_vec());
    }
    let text = read_text(&path, "the WordNet id names")?;
    let names: HashMap<&str, &str> = text
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .map(|(id, words)| (id.trim(), words.split(',').next().unwrap_or(words).trim()))
        .collect();
    Ok(wnids.iter().map(|id| names.get(id.as_str()).filter(|n| !n.is_empty()).map_or_else(|| id.clone(), |n| n.to_string())).collect())
}

/// The validation images, labelled by `val/val_annotations.txt`.
fn read_val(dir: &Path, wnids: &[String], size: &mut Option<Fit>, channels: usize) -> Result<ImageSet> {
    let path = dir.join("val").join("val_annotations.txt");
    let text = read_text(&path, "the validation labels (file, WordNet id, box per line)")?;
    let mut set = ImageSet::empty(channels, 0, 0);
    for (number, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let mut fields = line.split_whitespace();
        let (Some(file), Some(wnid)) = (fields.next(), fields.next()) else {
            return Err(Error::data(&path, format!("line {}: expected a file name and a WordNet id", number + 1)));
        };
        let label = wnids.iter().position(|w| w == wnid).ok_or_else(|| {
            Error::data(&path, format!("line {}: class {wnid} has no folder in train/", number + 1))
        })?;
        push_image(&mut set, &dir.join("val").join("images").join(file), label as u32, size)?;
    }
    if set.is_empty() {
        return Err(Error::data(&path, "no validation image is listed"));
    }
    Ok(set)
}
