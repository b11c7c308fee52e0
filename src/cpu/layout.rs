//! Moving [N, C, HW] batches between channels-first and channels-last order on the host: the CPU
//! computes channels-last ops by reordering around its channels-first reference, and tests lay
//! their fixtures out with these.

use rayon::prelude::*;

/// Per image, the [rows, cols] matrix `x` holds, transposed to [cols, rows].
fn transpose_images<T: Copy + Send + Sync>(x: &[T], rows: usize, cols: usize) -> Vec<T> {
    let plane = rows * cols;
    assert!(plane == 0 || x.len() % plane == 0, "{} values are not whole {rows}x{cols} images", x.len());
    let mut y = x.to_vec();
    if plane > 0 {
        y.par_chunks_mut(plane).zip(x.par_chunks(plane)).for_each(|(out, image)| {
            for r in 0..rows {
                for c in 0..cols {
                    out[c * rows + r] = image[r * cols + c];
                }
            }
        });
    }
    y
}

/// [N, C, HW] -> [N, HW, C].
pub fn nchw_to_nhwc<T: Copy + Send + Sync>(x: &[T], c: usize, hw: usize) -> Vec<T> {
    transpose_images(x, c, hw)
}

/// [N, HW, C] -> [N, C, HW].
pub fn nhwc_to_nchw<T: Copy + Send + Sync>(x: &[T], c: usize, hw: usize) -> Vec<T> {
    transpose_images(x, hw, c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_last_order_and_back() {
        // 2 images, 2 channels, 3 pixels: value = 100 n + 10 c + p
        let x: Vec<i32> = (0..2).flat_map(|n| (0..2).flat_map(move |c| (0..3).map(move |p| 100 * n + 10 * c + p))).collect();
        let y = nchw_to_nhwc(&x, 2, 3);
        assert_eq!(y, vec![0, 10, 1, 11, 2, 12, 100, 110, 101, 111, 102, 112]);
        assert_eq!(nhwc_to_nchw(&y, 2, 3), x);
    }
}
