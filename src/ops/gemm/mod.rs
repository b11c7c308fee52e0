//! General matrix multiply, row-major, optionally transposed and batched, with beta-accumulate;
//! on the GPU, split-K for products whose grid of tiles is too small to fill the device.

pub mod cases;
mod cpu;

use crate::device::Device;
use crate::element::Element;
use crate::error::Result;
use crate::sim::roofline::sm_fill;

pub(crate) mod cuda;
pub mod tc;
pub(crate) mod tc_train;

/// C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b] for b in 0..batch, all row-major and packed.
/// op(A) is m x k: A is stored m x k, or k x m when `trans_a`. op(B) is k x n: B is stored k x n,
/// or n x k when `trans_b`. C is m x n. Matrix b of A starts at `offset_a + b * stride_a`
/// (elements), likewise for B and C. With beta == 0, C is overwritten (never read).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GemmSpec<E> {
    pub trans_a: bool,
    pub trans_b: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub alpha: E,
    pub beta: E,
    pub batch: usize,
    pub stride_a: usize,
    pub stride_b: usize,
    pub stride_c: usize,
    pub offset_a: usize,
    pub offset_b: usize,
    pub offset_c: usize,
}

impl<E: Element> GemmSpec<E> {
    /// A single (batch 1) product C = op(A) * op(B), overwriting C.
    pub fn new(trans_a: bool, trans_b: bool, m: usize, n: usize, k: usize) -> Self {
        GemmSpec {
            trans_a,
            trans_b,
            m,
            n,
            k,
            alpha: E::one(),
            beta: E::zero(),
            batch: 1,
            stride_a: m * k,
            stride_b: k * n,
            stride_c: m * n,
            offset_a: 0,
            offset_b: 0,
            offset_c: 0,
        }
    }
    /// Elements each operand must hold for this spec to stay in bounds: (a, b, c).
    pub fn required_lens(&self) -> (usize, usize, usize) {
        let last = |off: usize, stride: usize, size: usize| {
            if self.batch == 0 || size == 0 {
                0
            } else {
                off + (self.batch - 1) * stride + size
            }
        };
        (
            last(self.offset_a, self.stride_a, self.m * self.k),
            last(self.offset_b, self.stride_b, self.k * self.n),
            last(self.offset_c, self.stride_c, self.m * self.n),
        )
    }
    pub fn flops(&self) -> f64 {
        2.0 * self.batch as f64 * self.m as f64 * self.n as f64 * self.k as f64
    }
    /// Blocks of the unsplit GPU kernel on `tile`: one per tile of C per batch matrix.
    pub fn tiles(&self, tile: GemmTile) -> usize {
        self.m.div_ceil(tile.rows()) * self.n.div_ceil(tile.cols()) * self.batch
    }

    /// The tile and K partition the GPU uses for `split` on a device with `multiprocessors` SMs:
    /// of the tiles, with each one's [`GemmSpec::k_split_on`], the one [`GemmSpec::cost`] finds
    /// fastest (the first, smaller tile on a tie).
    pub fn plan(&self, split: SplitK, multiprocessors: usize) -> GemmPlan {
        self.plan_among(&[GemmTile::Small, GemmTile::Wide, GemmTile::Large], split, multiprocessors)
    }

    /// [`GemmSpec::plan`] among `tiles` (smallest first, at least one): for a GEMM whose kernel
    /// some module lacks on a tile.
    pub fn plan_among(&self, tiles: &[GemmTile], split: SplitK, multiprocessors: usize) -> GemmPlan {
        tiles
            .iter()
            .map(|&tile| GemmPlan { tile, k_split: self.k_split_on(tile, split, multiprocessors) })
            .min_by(|a, b| self.cost(a, multiprocessors).total_cmp(&self.cost(b, multiprocessors)))
            .expect("a tile to choose from")
    }

    /// The K partition of the tile [`GemmSpec::plan`] picks.
    pub fn k_split(&self, split: SplitK, multiprocessors: usize) -> KSplit {
        self.plan(split, multiprocessors).k_split
    }

    /// A plan's time in FLOP-times, as the roofline sees it (`sim/roofline.rs`): the larger of its
    /// multiply-adds (those of the zero padding of partial tiles included) and its memory traffic
    /// priced at [`SPLIT_K_FLOPS_PER_BYTE`] (each operand read once per tile of the other's
    /// axis, C written once, split partial products written and read once more), over the SM
    /// fill of its grid.
    pub fn cost(&self, plan: &GemmPlan, multiprocessors: usize) -> f64 {
        let (rows, cols) = (plan.tile.rows(), plan.tile.cols());
        let (row_tiles, col_tiles) = (self.m.div_ceil(rows), self.n.div_ceil(cols));
        let (m, n, k, batch) = (self.m as f64, self.n as f64, self.k as f64, self.batch as f64);
        let padded_flops = 2.0 * batch * (row_tiles * rows) as f64 * (col_tiles * cols) as f64 * k;
        let splits = plan.k_split.splits;
        let output_passes = if splits == 1 { 1 } else { 2 * splits + 1 };
        let floats = batch * (m * k * col_tiles as f64 + k * n * row_tiles as f64 + m * n * output_passes as f64);
        let traffic = SPLIT_K_FLOPS_PER_BYTE * floats * std::mem::size_of::<f32>() as f64;
        padded_flops.max(traffic) / sm_fill(self.tiles(plan.tile) * splits, multiprocessors)
    }

    /// How the GPU partitions K for `split` on `tile` on a device with `multiprocessors` SMs.
    ///
    /// `Auto` splits when the tiles fill fewer than [`SPLIT_TARGET_WAVES`] waves of the device
    /// (SMs times the tile's resident blocks, [`GemmTile::blocks_per_sm`]): into as many slices as
    /// reach that many blocks, each at least [`MIN_K_PER_SPLIT`] deep, and only when that pays:
    /// when the time the idle SMs it puts to work save (the roofline's SM fill,
    /// `sim::roofline::sm_fill`) exceeds the time of writing and reading the partial products,
    /// priced at [`SPLIT_K_FLOPS_PER_BYTE`]. Both `Auto` and `Splits(n)` are capped so the partial
    /// products fit in [`SPLIT_K_SCRATCH_BYTES`] and the grid's z axis (batch x splits) in
    /// [`MAX_GRID_YZ`]; slices are multiples of 16 deep (the kernel's k-step), the last possibly
    /// shorter.
    pub fn k_split_on(&self, tile: GemmTile, split: SplitK, multiprocessors: usize) -> KSplit {
        let unsplit = KSplit { splits: 1, k_per_split: self.k };
        let tiles = self.tiles(tile);
        let wanted = match split {
            SplitK::Splits(n) => n,
            SplitK::Auto => {
                let target = SPLIT_TARGET_WAVES * tile.blocks_per_sm() * multiprocessors;
                if tiles == 0 || tiles >= target {
                    return unsplit;
                }
                target.div_ceil(tiles).min(self.k / MIN_K_PER_SPLIT)
            }
        };
        let partial_floats = self.batch * self.m * self.n;
        let splits = wanted
            .min(SPLIT_K_SCRATCH_BYTES / (partial_floats * std::mem::size_of::<f32>()).max(1))
            .min(MAX_GRID_YZ / self.batch.max(1))
            .min(self.k.div_ceil(SPLIT_K_STEP));
        if splits < 2 {
            return unsplit;
        }
        // Rounding the slices up to the k-step can only merge the last ones: with at most
        // ceil(k / 16) slices of at least 2, at least two remain.
        let k_per_split = self.k.div_ceil(splits).next_multiple_of(SPLIT_K_STEP);
        let splits = self.k.div_ceil(k_per_split);
        // In FLOP-times: the work at the unsplit and the split grid's SM fill, and the partial
        // products' bytes (each written once and read once).
        let at_fill = |blocks| self.flops() / sm_fill(blocks, multiprocessors);
        let saved = at_fill(tiles) - at_fill(tiles * splits);
        let partial_traffic = SPLIT_K_FLOPS_PER_BYTE * (2 * splits * partial_floats * std::mem::size_of::<f32>()) as f64;
        if split == SplitK::Auto && saved <= partial_traffic {
            return unsplit;
        }
        KSplit { splits, k_per_split }
    }
}

/// FLOPs a GPU does in the time its DRAM moves one byte (about 38 on an RTX 3090, 82 on an
/// RTX 4090, 20 on an H100): what `SplitK::Auto` charges per byte of partial products.
pub const SPLIT_K_FLOPS_PER_BYTE: f64 = 40.0;

/// The tile of C one block of the GPU kernels computes (kernels/gemm_tile.cuh).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmTile {
    /// 64x64, 4x4 per thread: fills small grids.
    Small,
    /// 64 rows x 128 columns, 4x8 per thread: reads A half as often without padding a 64-row C.
    Wide,
    /// 128x128, 8x8 per thread: reads each operand half as often.
    Large,
}

impl GemmTile {
    /// Rows of C per block.
    pub fn rows(self) -> usize {
        match self {
            GemmTile::Small | GemmTile::Wide => 64,
            GemmTile::Large => 128,
        }
    }
    /// Columns of C per block.
    pub fn cols(self) -> usize {
        match self {
            GemmTile::Small => 64,
            GemmTile::Wide | GemmTile::Large => 128,
        }
    }
    /// The kernel name's suffix for the tile ("", "_64x128" or "_128").
    pub fn suffix(self) -> &'static str {
        match self {
            GemmTile::Small => "",
            GemmTile::Wide => "_64x128",
            GemmTile::Large => "_128",
        }
    }
    /// Blocks of the unsplit GPU kernel resident per SM: the minimum its `__launch_bounds__`
    /// promises. (The 64x64 split kernels promise 3, so a split grid of two such waves is 2.7 of
    /// theirs.)
    pub fn blocks_per_sm(self) -> usize {
        match self {
            GemmTile::Small => 4,
            GemmTile::Wide => 2,
            GemmTile::Large => 1,
        }
    }
}

/// The tile and the K partition of one GEMM on the GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmPlan {
    pub tile: GemmTile,
    pub k_split: KSplit,
}
/// Waves of resident blocks below which `SplitK::Auto` splits K: with fewer, SMs idle or finish
/// unevenly (the last, partial wave).
pub const SPLIT_TARGET_WAVES: usize = 2;
/// The shallowest K-slice `SplitK::Auto` gives a block.
pub const MIN_K_PER_SPLIT: usize = 256;
/// The kernel's k-step: K-slices are multiples of it, so every slice starts 16-byte aligned.
const SPLIT_K_STEP: usize = 16;
/// Bound on the split-K partial products of one GEMM call (splits x batch x m x n floats).
pub const SPLIT_K_SCRATCH_BYTES: usize = 32 << 20;
/// The most blocks a launch may have along grid y and z.
pub const MAX_GRID_YZ: usize = 65535;

/// How the GPU partitions a GEMM's K (the CPU computes every product in one pass whatever it says).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitK {
    /// Split when the grid is small for the device ([`GemmSpec::k_split`]).
    Auto,
    /// At most this many K-slices (1: unsplit), within the same caps as `Auto`.
    Splits(usize),
}

/// A K partition: `splits` slices of `k_per_split`, the last possibly shorter; one slice is the
/// unsplit kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KSplit {
    pub splits: usize,
    pub k_per_split: usize,
}

pub trait GemmOps<E: Element>: Device<E> {
    /// The product, with K split as the device sees fit (`SplitK::Auto`).
    fn gemm(&self, spec: &GemmSpec<E>, a: &Self::Buf, b: &Self::Buf, c: &mut Self::Buf) -> Result<()>;
    /// The product with K partitioned as `split` says, on the tile the device picks; a device
    /// that never splits K (the CPU) computes the same product as `gemm`.
    fn gemm_split(&self, spec: &GemmSpec<E>, _split: SplitK, a: &Self::Buf, b: &Self::Buf, c: &mut Self::Buf) -> Result<()> {
        self.gemm(spec, a, b, c)
    }
    /// The product on `tile` with K partitioned as `split` says; a device without tiles (the
    /// CPU) computes the same product as `gemm`.
    fn gemm_on_tile(&self, spec: &GemmSpec<E>, _tile: GemmTile, _split: SplitK, a: &Self::Buf, b: &Self::Buf, c: &mut Self::Buf) -> Result<()> {
        self.gemm(spec, a, b, c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(m: usize, n: usize, k: usize, batch: usize) -> GemmSpec<f32> {
        GemmSpec { batch, ..GemmSpec::new(false, true, m, n, k) }
    }

    #[test]
    fn auto_splits_small_grids_up_to_two_waves() {
        // ResNet-18/CIFAR layer 1 weight gradient at batch 128 on 82 SMs: 9 tiles, K = 131072.
        // Two waves are 656 blocks: 73 slices of 1808 (a multiple of 16).
        let dw = spec(64, 576, 128 * 32 * 32, 1);
        assert_eq!(dw.tiles(GemmTile::Small), 9);
        assert_eq!(dw.k_split_on(GemmTile::Small, SplitK::Auto, 82), KSplit { splits: 73, k_per_split: 1808 });
        // K limits the split: 256 deep at least.
        assert_eq!(spec(64, 576, 1000, 1).k_split_on(GemmTile::Small, SplitK::Auto, 82).splits, 3);
        assert_eq!(spec(64, 576, 511, 1).k_split_on(GemmTile::Small, SplitK::Auto, 82).splits, 1);
        // Layer 2 (128 x 1152, K = 32768) and layer 3 (256 x 2304, K = 8192) split too; layer 4
        // (512 x 4608, K = 2048: 576 tiles, 88% of the SMs' time) would gain 6% of its SMs'
        // time for twice its output in partial traffic: not split.
        assert_eq!(spec(128, 1152, 128 * 16 * 16, 1).k_split_on(GemmTile::Small, SplitK::Auto, 82).splits, 19);
        assert_eq!(spec(256, 2304, 128 * 8 * 8, 1).k_split_on(GemmTile::Small, SplitK::Auto, 82).splits, 5);
        assert_eq!(spec(512, 4608, 128 * 4 * 4, 1).k_split_on(GemmTile::Small, SplitK::Auto, 82).splits, 1);
        // A one-tile grid on 4 SMs gains 4x: split, 256 deep at least.
        assert_eq!(spec(64, 64, 1024, 1).k_split_on(GemmTile::Small, SplitK::Auto, 4).splits, 4);
        // A grid of two waves or more is never split.
        assert_eq!(spec(64 * 8, 64 * 82, 1 << 20, 1).k_split_on(GemmTile::Small, SplitK::Auto, 82).splits, 1);
        assert_eq!(spec(64, 64, 1 << 20, 656).k_split_on(GemmTile::Small, SplitK::Auto, 82).splits, 1);
    }

    #[test]
    fn every_split_respects_the_scratch_grid_and_depth_caps() {
        // 2048 x 2048 floats are 16 MiB a slice: two fit the 32 MiB scratch.
        assert_eq!(spec(2048, 2048, 1 << 16, 1).k_split_on(GemmTile::Small, SplitK::Splits(8), 82).splits, 2);
        assert_eq!(spec(2048, 2049, 1 << 16, 1).k_split_on(GemmTile::Small, SplitK::Splits(8), 82).splits, 1);
        // batch x splits stays within the grid's z limit.
        assert_eq!(spec(1, 1, 1 << 16, 30000).k_split_on(GemmTile::Small, SplitK::Splits(8), 82).splits, 2);
        // Slices are multiples of 16 deep and none is empty: 37 = 16 + 16 + 5.
        assert_eq!(spec(8, 8, 37, 1).k_split_on(GemmTile::Small, SplitK::Splits(9), 82), KSplit { splits: 3, k_per_split: 16 });
        assert_eq!(spec(8, 8, 100, 1).k_split_on(GemmTile::Small, SplitK::Splits(3), 82), KSplit { splits: 3, k_per_split: 48 });
        assert_eq!(spec(8, 8, 16, 1).k_split_on(GemmTile::Small, SplitK::Splits(4), 82).splits, 1);
        assert_eq!(spec(8, 8, 0, 1).k_split_on(GemmTile::Small, SplitK::Auto, 82).splits, 1);
    }

    #[test]
    fn the_large_tile_serves_big_products_and_the_small_one_small_or_thin_ones() {
        // ResNet-18/CIFAR batch 128, 82 SMs. Layer 3's forward GEMM (256 x 8192, K = 2304): 64x64
        // tiles read 600 MB, 128x128 ones half; 128 tiles of 128 fill 78% of the SMs.
        let fwd = GemmSpec::<f32>::new(false, false, 256, 128 * 64, 2304);
        assert_eq!(fwd.plan(SplitK::Auto, 82).tile, GemmTile::Large);
        // Layer 1's data gradient columns (576 x 131072, K = 64): large.
        assert_eq!(GemmSpec::<f32>::new(true, false, 576, 128 * 1024, 64).plan(SplitK::Auto, 82).tile, GemmTile::Large);
        // Layer 1's forward (64 x 131072, K = 576): 64 rows, so the 64x128 tile, which reads the
        // weights half as often as 64x64 without padding C to 128 rows.
        assert_eq!(GemmSpec::<f32>::new(false, false, 64, 128 * 1024, 576).plan(SplitK::Auto, 82).tile, GemmTile::Wide);
        // The classifier (128 x 10, K = 512) and a product too thin for anything but 64x64.
        assert_eq!(GemmSpec::<f32>::new(false, true, 128, 10, 512).plan(SplitK::Auto, 82).tile, GemmTile::Small);
        assert_eq!(GemmSpec::<f32>::new(false, false, 32, 64, 64).plan(SplitK::Auto, 82).tile, GemmTile::Small);
        // The plan's split is the one planned for its tile.
        let plan = fwd.plan(SplitK::Auto, 82);
        assert_eq!(plan.k_split, fwd.k_split_on(plan.tile, SplitK::Auto, 82));
        assert_eq!(fwd.k_split(SplitK::Auto, 82), plan.k_split);
    }
}
