//! `--resize N --center-crop S` against torchvision (tests/fixtures/resize, written by
//! make_resize_fixtures.py): the decoded PNG resized and cropped equals torchvision's transforms on
//! the PIL image exactly, and its uint8-tensor antialias=True path within 1 grey level.

use ferronet::data::{load_image, resize_antialiased, Fit, ResizeCrop};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resize").join(name)
}

/// The largest |a - b| over two images of 0..255 values.
fn max_diff(got: &[u8], want: &[u8]) -> u8 {
    assert_eq!(got.len(), want.len());
    got.iter().zip(want).map(|(a, b)| a.abs_diff(*b)).max().unwrap()
}

fn pixels(value: &serde_json::Value) -> Vec<u8> {
    value.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u8).collect()
}

#[test]
fn resize_and_center_crop_equal_torchvisions() {
    let expected: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap();
    let input = fixture("input.png");
    let original = load_image(&input, 3, &Fit::Stretch(29, 37)).unwrap();
    let cases = [
        ("resize_12", Some(12), (12, 15)),
        ("resize_12_crop_10", Some(12), (10, 10)),
        ("resize_40_crop_36", Some(40), (36, 36)),
        ("crop_21", None, (21, 21)),
    ];
    let mut outputs: Vec<(&str, Vec<u8>)> = cases
        .iter()
        .map(|&(name, shorter_side, crop)| (name, load_image(&input, 3, &Fit::ResizeCrop(ResizeCrop { shorter_side, crop })).unwrap()))
        .collect();
    outputs.push(("exact_12x16", resize_antialiased(&original, 3, (29, 37), (12, 16))));
    for (name, got) in outputs {
        let case = &expected[name];
        let (pil, tensor) = (pixels(&case["pil"]), pixels(&case["tensor_antialias"]));
        let (to_pil, to_tensor) = (max_diff(&got, &pil), max_diff(&got, &tensor));
        eprintln!("{name}: max |ferronet - PIL| = {to_pil}, max |ferronet - tensor antialias| = {to_tensor}");
        assert_eq!(to_pil, 0, "{name}: differs from torchvision on the PIL image");
        assert!(to_tensor <= 1, "{name}: differs from torchvision's antialiased tensor resize by {to_tensor}");
    }
    // A crop larger than the image is a one-line error naming both sizes.
    let err = load_image(&input, 3, &Fit::ResizeCrop(ResizeCrop { shorter_side: None, crop: (30, 30) })).unwrap_err().to_string();
    assert!(err.contains("input.png") && err.contains("a 30x30 center crop does not fit in a 29x37 image"), "{err}");
}
