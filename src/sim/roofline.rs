//! The GPU performance model: predicted times of a launch from the simulator's counters. Five
//! roofs: fp32 FLOPs against the peak rate, tensor-core FLOPs against the dense tensor-core
//! peak with fp32 accumulation (f16/bf16 and tf32 inputs each at their own rate), DRAM sectors against the memory bandwidth,
//! instruction issue (warp instructions against four schedulers per SM, which charges idle lanes
//! and non-FMA work) and shared-memory wavefronts (bank conflicts included); plus the occupancy
//! ptxas's register and shared-memory counts allow. Every time it gives is a prediction.
//!
//! The simulator has no cache model: memory traffic is every 32-byte sector a launch touched, so
//! re-read data (tiles in SGEMM) makes the DRAM roof pessimistic. The roofs are the whole
//! device's rates, scaled by the SM fill of the launch's grid ([`GpuModel::sm_fill`]: a grid of
//! fewer blocks than SMs, or a last partial round of blocks, leaves SMs idle). Latency is left
//! out, so low occupancy is reported beside a prediction rather than folded into it.

use super::counters::LaunchStats;
use serde::Serialize;

/// A GPU for the prediction: its peak rates and the SM resources behind them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GpuModel {
    pub name: &'static str,
    /// Peak fp32 FLOP/s as published (FMA counted as 2, boost clock, no tensor cores).
    pub peak_fp32_flops: f64,
    /// Dense (no sparsity) tensor-core FLOP/s with fp32 accumulation, for f16/bf16 inputs and
    /// for tf32 inputs.
    pub peak_tensor_16bit_flops: f64,
    pub peak_tensor_tf32_flops: f64,
    /// DRAM bandwidth in bytes/s.
    pub dram_bytes_per_s: f64,
    pub sms: u32,
    /// Boost clock in Hz (the one the peak FLOP/s assumes).
    pub clock_hz: f64,
    pub max_warps_per_sm: u32,
    pub max_blocks_per_sm: u32,
    pub registers_per_sm: u32,
    /// Shared memory a block may use per SM (bytes), and what the runtime reserves per block.
    pub shared_per_sm: u32,
    pub shared_reserved_per_block: u32,
}

/// Peaks, boost clocks and SM resources from NVIDIA's Ampere, Ada and Hopper data sheets and
/// tuning guides; 128 fp32 lanes per SM times two (FMA) times the clock reproduce the peaks.
/// Tensor-core peaks (dense, fp32 accumulate) from the vendor whitepapers: "NVIDIA Ampere GA102
/// GPU Architecture" (RTX 3090: 71 TFLOP/s FP16/BF16 with FP32 accumulate, 35.6 TF32; we use
/// 35.5), "NVIDIA Ada GPU Architecture" (RTX 4090: 165.2 FP16/BF16 with FP32 accumulate, 82.6
/// TF32) and "NVIDIA H100 Tensor Core GPU Architecture" (H100 SXM5: 989.4 BF16/FP16, 494.7
/// TF32).
pub const RTX_3090: GpuModel = GpuModel {
    name: "RTX 3090",
    peak_fp32_flops: 35.6e12,
    peak_tensor_16bit_flops: 71e12,
    peak_tensor_tf32_flops: 35.5e12,
    dram_bytes_per_s: 936e9,
    sms: 82,
    clock_hz: 1.695e9,
    max_warps_per_sm: 48,
    max_blocks_per_sm: 16,
    registers_per_sm: 65536,
    shared_per_sm: 100 * 1024,
    shared_reserved_per_block: 1024,
};
pub const RTX_4090: GpuModel = GpuModel {
    name: "RTX 4090",
    peak_fp32_flops: 82.6e12,
    peak_tensor_16bit_flops: 165.2e12,
    peak_tensor_tf32_flops: 82.6e12,
    dram_bytes_per_s: 1008e9,
    sms: 128,
    clock_hz: 2.52e9,
    max_warps_per_sm: 48,
    max_blocks_per_sm: 24,
    registers_per_sm: 65536,
    shared_per_sm: 100 * 1024,
    shared_reserved_per_block: 1024,
};
pub const H100_SXM: GpuModel = GpuModel {
    name: "H100 SXM",
    peak_fp32_flops: 66.9e12,
    peak_tensor_16bit_flops: 989.4e12,
    peak_tensor_tf32_flops: 494.7e12,
    dram_bytes_per_s: 3.35e12,
    sms: 132,
    clock_hz: 1.98e9,
    max_warps_per_sm: 64,
    max_blocks_per_sm: 32,
    registers_per_sm: 65536,
    shared_per_sm: 228 * 1024,
    shared_reserved_per_block: 1024,
};

/// Turing (a T4) for predicted timings of sm_75 devices, not in `GPU_MODELS`: Turing runs other
/// kernels (its modules' compute_75 builds). 64 fp32 lanes per SM times two (FMA) times the
/// boost clock give the peak; the tensor-core peak is the T4 data sheet's 65 TFLOP/s of mixed
/// FP16/FP32. Turing has no tf32 (its devices never load compute_80 modules), so that roof never
/// limits.
pub const T4: GpuModel = GpuModel {
    name: "T4",
    peak_fp32_flops: 8.1e12,
    peak_tensor_16bit_flops: 65e12,
    peak_tensor_tf32_flops: f64::INFINITY,
    dram_bytes_per_s: 320e9,
    sms: 40,
    clock_hz: 1.59e9,
    max_warps_per_sm: 32,
    max_blocks_per_sm: 16,
    registers_per_sm: 65536,
    shared_per_sm: 64 << 10,
    shared_reserved_per_block: 0,
};

/// Every modelled GPU, in the order reports list them.
pub const GPU_MODELS: [GpuModel; 3] = [RTX_3090, RTX_4090, H100_SXM];

/// What limits a launch's predicted time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// fp32 FLOPs at the peak rate.
    Fp32,
    /// Tensor-core FLOPs at the dense tensor-core peak.
    Tensor,
    /// Warp instructions at four issued per SM per clock.
    Issue,
    /// Shared-memory wavefronts at one per SM per clock.
    Shared,
    /// DRAM sectors at the memory bandwidth.
    Dram,
}

impl Limit {
    pub fn label(self) -> &'static str {
        match self {
            Limit::Fp32 => "fp32",
            Limit::Tensor => "tensor",
            Limit::Issue => "issue",
            Limit::Shared => "shared",
            Limit::Dram => "dram",
        }
    }
}

/// A predicted time (not a measurement) and the roof that sets it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LaunchPrediction {
    pub seconds: f64,
    pub limit: Limit,
}

impl GpuModel {
    /// The predicted time of one launch with these counters and no cache: the largest roof, at
    /// the SM fill of its grid.
    pub fn predict(&self, stats: &LaunchStats) -> LaunchPrediction {
        let dram = self.dram_time(stats.dram_bytes() as f64);
        let dram = LaunchPrediction { seconds: dram.seconds / self.sm_fill(stats.grid), ..dram };
        slower(self.predict_on_chip(stats), dram)
    }

    /// The time of a launch's on-chip work alone (fp32, tensor-core, issue and shared-memory
    /// roofs), at the SM fill of its grid.
    pub fn predict_on_chip(&self, stats: &LaunchStats) -> LaunchPrediction {
        let per_clock = self.sms as f64 * self.clock_hz;
        let fill = self.sm_fill(stats.grid);
        [
            LaunchPrediction { seconds: stats.flops as f64 / self.peak_fp32_flops, limit: Limit::Fp32 },
            LaunchPrediction { seconds: self.tensor_seconds(stats), limit: Limit::Tensor },
            LaunchPrediction { seconds: stats.warp_insts as f64 / (4.0 * per_clock), limit: Limit::Issue },
            LaunchPrediction { seconds: stats.shared_wavefronts as f64 / per_clock, limit: Limit::Shared },
        ]
        .into_iter()
        .map(|p| LaunchPrediction { seconds: p.seconds / fill, ..p })
        .fold(LaunchPrediction { seconds: 0.0, limit: Limit::Fp32 }, slower)
    }

    /// The tensor-core work of a launch at the dense peaks, on a full device.
    pub fn tensor_seconds(&self, stats: &LaunchStats) -> f64 {
        stats.tensor_flops_16bit as f64 / self.peak_tensor_16bit_flops + stats.tensor_flops_tf32 as f64 / self.peak_tensor_tf32_flops
    }

    /// The share of the device's SM-time a grid of equal blocks can use. Blocks are dealt to SMs
    /// one by one and an SM's resident blocks share its rates, so the launch lasts as long as
    /// the busiest SM's ceil(blocks / SMs) blocks take, while a full device would take
    /// blocks / SMs: 9 blocks on 82 SMs use 11% of the device, 576 use 88%. Both the on-chip
    /// roofs and DRAM (whose requests come from the SMs) are scaled by it. An empty grid (counters
    /// built without a launch) counts as filling the device.
    pub fn sm_fill(&self, grid: (u32, u32, u32)) -> f64 {
        sm_fill(grid.0 as usize * grid.1 as usize * grid.2 as usize, self.sms as usize)
    }

    /// Moving `bytes` between DRAM and the SMs at full bandwidth.
    pub fn dram_time(&self, bytes: f64) -> LaunchPrediction {
        LaunchPrediction { seconds: bytes / self.dram_bytes_per_s, limit: Limit::Dram }
    }

    /// Fraction of the SM's warp slots a launch can fill, given its block size and ptxas's
    /// registers per thread and static shared memory per block (plus the launch's dynamic).
    pub fn occupancy(&self, threads_per_block: u32, registers: u32, shared_bytes: u32) -> f64 {
        let warps_per_block = threads_per_block.div_ceil(32).max(1);
        (self.resident_blocks_per_sm(threads_per_block, registers, shared_bytes) * warps_per_block) as f64 / self.max_warps_per_sm as f64
    }

    /// Blocks one SM holds at once, given the block size, registers per thread (0: not
    /// limiting) and shared memory per block.
    pub fn resident_blocks_per_sm(&self, threads_per_block: u32, registers: u32, shared_bytes: u32) -> u32 {
        let warps_per_block = threads_per_block.div_ceil(32).max(1);
        // Registers are allocated per warp in units of 256.
        let regs_per_warp = (registers * 32).div_ceil(256) * 256;
        let by_regs = self.registers_per_sm.checked_div(regs_per_warp).map_or(u32::MAX, |warps| warps / warps_per_block);
        let by_warps = self.max_warps_per_sm / warps_per_block;
        let by_shared = if shared_bytes == 0 {
            u32::MAX
        } else {
            self.shared_per_sm / (shared_bytes + self.shared_reserved_per_block)
        };
        by_regs.min(by_warps).min(by_shared).min(self.max_blocks_per_sm)
    }
}

/// [`GpuModel::sm_fill`] of `blocks` equal blocks on `sms` SMs (1 for no blocks or no SMs).
pub fn sm_fill(blocks: usize, sms: usize) -> f64 {
    if blocks == 0 || sms == 0 {
        return 1.0;
    }
    let per_sm = blocks as f64 / sms as f64;
    per_sm / per_sm.ceil()
}

/// The longer of two predictions (the first on a tie).
pub fn slower(a: LaunchPrediction, b: LaunchPrediction) -> LaunchPrediction {
    if b.seconds > a.seconds {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_larger_time_sets_the_bound() {
        let stats = LaunchStats { flops: 2_000_000_000, global_sectors: 1000, ..Default::default() };
        let p = RTX_3090.predict(&stats);
        assert_eq!(p.limit, Limit::Fp32);
        assert!((p.seconds - 2e9 / 35.6e12).abs() < 1e-12);
        let stats = LaunchStats { flops: 10, global_sectors: 1 << 20, ..Default::default() };
        assert_eq!(H100_SXM.predict(&stats).limit, Limit::Dram);
    }

    #[test]
    fn the_largest_roof_limits_the_launch() {
        let model = GPU_MODELS[0];
        let compute = LaunchStats { flops: 1 << 34, warp_insts: 1 << 20, global_sectors: 1 << 10, ..Default::default() };
        assert_eq!(model.predict(&compute).limit, Limit::Fp32);
        let memory = LaunchStats { flops: 1 << 10, warp_insts: 1 << 10, global_sectors: 1 << 26, ..Default::default() };
        let p = model.predict(&memory);
        assert_eq!(p.limit, Limit::Dram);
        assert!((p.seconds - 32.0 * (1u64 << 26) as f64 / 936e9).abs() < 1e-12);
        let conflicted = LaunchStats { shared_wavefronts: 1 << 30, ..Default::default() };
        assert_eq!(model.predict(&conflicted).limit, Limit::Shared);
        let idle_lanes = LaunchStats { warp_insts: 1 << 30, flops: 1 << 30, ..Default::default() };
        assert_eq!(model.predict(&idle_lanes).limit, Limit::Issue);
    }

    #[test]
    fn tensor_core_work_has_its_own_roof() {
        // 2^40 bf16 tensor FLOPs on an RTX 4090: 6.66 ms at 165.2 TFLOP/s, far above the few
        // fp32 FLOPs and instructions beside them.
        let bf16 = LaunchStats { tensor_flops_16bit: 1 << 40, flops: 1 << 20, warp_insts: 1 << 20, ..Default::default() };
        let p = RTX_4090.predict(&bf16);
        assert_eq!(p.limit, Limit::Tensor);
        assert!((p.seconds - (1u64 << 40) as f64 / 165.2e12).abs() < 1e-12);
        // tf32 runs at half the rate on every modelled GPU.
        let tf32 = LaunchStats { tensor_flops_tf32: 1 << 40, ..Default::default() };
        for m in GPU_MODELS {
            assert!((m.predict(&tf32).seconds / m.predict(&bf16).seconds - 2.0).abs() < 0.01, "{}", m.name);
        }
    }

    #[test]
    fn the_modelled_clocks_reproduce_the_published_peaks() {
        for m in GPU_MODELS {
            let peak = m.sms as f64 * 128.0 * 2.0 * m.clock_hz;
            assert!((peak / m.peak_fp32_flops - 1.0).abs() < 0.01, "{}: {peak:e}", m.name);
        }
    }

    #[test]
    fn small_grids_leave_sms_idle() {
        let model = RTX_3090;
        assert_eq!(model.sm_fill((0, 0, 0)), 1.0);
        assert_eq!(model.sm_fill((82, 2, 1)), 1.0);
        assert!((model.sm_fill((9, 1, 1)) - 9.0 / 82.0).abs() < 1e-12);
        // 576 blocks: 7.02 per SM on average, 8 on the busiest.
        assert!((model.sm_fill((72, 8, 1)) - 576.0 / 82.0 / 8.0).abs() < 1e-12);
        // One block's work on one SM: the device's rate divided by the SM count.
        let work = LaunchStats { flops: 1 << 30, ..Default::default() };
        let full = model.predict(&LaunchStats { grid: (82, 1, 1), ..work.clone() }).seconds;
        let single = model.predict(&LaunchStats { grid: (1, 1, 1), ..work }).seconds;
        assert!((single / full - 82.0).abs() < 1e-9, "{single} vs {full}");
    }

    #[test]
    fn occupancy_follows_registers_block_size_and_shared_memory() {
        let ampere = GPU_MODELS[0];
        // 256 threads at 64 registers: 65536 / (64 * 256) = 4 blocks = 32 of 48 warps.
        assert!((ampere.occupancy(256, 64, 8704) - 32.0 / 48.0).abs() < 1e-12);
        assert!((ampere.occupancy(256, 16, 0) - 1.0).abs() < 1e-12);
        // 48 KiB of shared memory per block: two blocks of 4 warps.
        assert!((ampere.occupancy(128, 16, 48 * 1024) - 8.0 / 48.0).abs() < 1e-12);
    }
}
