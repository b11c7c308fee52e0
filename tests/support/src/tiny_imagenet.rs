//! A small directory in Tiny-ImageNet's official layout: three classes of 8x8 JPEG images
//! (upper-case `.JPEG`, in `train/<wnid>/images/`), `wnids.txt`, a `words.txt` naming two of the
//! three, and labelled validation images listed in `val/val_annotations.txt`.

use std::path::{Path, PathBuf};

pub const WNIDS: [&str; 3] = ["n01443537", "n01629819", "n02124075"];
/// Training images per class.
pub const PER_CLASS: usize = 4;
/// The validation images' classes, in the order `val_annotations.txt` lists them.
pub const VAL_CLASSES: [usize; 5] = [2, 0, 1, 1, 0];

/// A class-dependent 8x8 image: class `class` is brightest in channel `class`, with a pattern
/// varied by `seed`.
fn image(class: usize, seed: usize) -> image::RgbImage {
    image::RgbImage::from_fn(8, 8, |x, y| {
        let mut px = [40u8, 40, 40];
        px[class] = 200 + ((x as usize + y as usize + seed) % 5) as u8 * 10;
        image::Rgb(px)
    })
}

fn save(path: &Path, img: &image::RgbImage) {
    std::fs::create_dir_all(path.parent().expect("a file in a folder")).unwrap();
    img.save_with_format(path, image::ImageFormat::Jpeg).unwrap();
}

/// Writes the layout into `dir` (the `tiny-imagenet-200` folder) and returns it.
pub fn write(dir: &Path) -> PathBuf {
    for (class, wnid) in WNIDS.iter().enumerate() {
        for i in 0..PER_CLASS {
            save(&dir.join("train").join(wnid).join("images").join(format!("{wnid}_{i}.JPEG")), &image(class, i));
        }
        // The real dataset keeps the training images' boxes beside them; not an image.
        std::fs::write(dir.join("train").join(wnid).join(format!("{wnid}_boxes.txt")), "").unwrap();
    }
    let mut annotations = String::new();
    for (i, &class) in VAL_CLASSES.iter().enumerate() {
        save(&dir.join("val").join("images").join(format!("val_{i}.JPEG")), &image(class, 10 + i));
        annotations.push_str(&format!("val_{i}.JPEG\t{}\t0\t0\t7\t7\n", WNIDS[class]));
    }
    std::fs::write(dir.join("val").join("val_annotations.txt"), annotations).unwrap();
    std::fs::write(dir.join("wnids.txt"), WNIDS.join("\n") + "\n").unwrap();
    std::fs::write(dir.join("words.txt"), "n01443537\tgoldfish, Carassius auratus\nn02124075\tEgyptian cat\nn99999999\tunused\n").unwrap();
    dir.to_path_buf()
}
