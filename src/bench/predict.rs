//! Predicted GPU times from the simulator's launch counters: the roofline of `crate::sim`
//! (fp32 FLOPs against peak, DRAM sectors against bandwidth) extended with two more roofs the
//! counters support, instruction issue (warp instructions against four schedulers per SM, which
//! charges idle lanes and non-FMA work) and shared-memory wavefronts (bank conflicts included),
//! plus the occupancy ptxas's register and shared-memory counts allow.
//!
//! The simulator has no cache model, so a prediction is a range: with no cache, every sector a
//! launch touches comes from DRAM (pessimistic for re-read data such as GEMM tiles); with an ideal
//! cache, only the case's compulsory bytes do (optimistic where an intermediate, an im2col
//! buffer, exceeds L2). Both assume every SM is busy and leave latency out, so low occupancy is
//! reported beside the prediction rather than folded into it.

use crate::sim::{GpuSpec, LaunchStats, H100_SXM, RTX_3090, RTX_4090};
use serde::Serialize;

/// A GPU for the prediction: the roofline spec and the SM resources behind it.
#[derive(Clone, Copy, Debug)]
pub struct GpuModel {
    pub spec: GpuSpec,
    pub sms: u32,
    /// Boost clock in Hz (the one the spec's peak FLOP/s assumes).
    pub clock_hz: f64,
    pub max_warps_per_sm: u32,
    pub max_blocks_per_sm: u32,
    pub registers_per_sm: u32,
    /// Shared memory a block may use per SM (bytes), and what the runtime reserves per block.
    pub shared_per_sm: u32,
    pub shared_reserved_per_block: u32,
}

/// Boost clocks and SM resources from NVIDIA's Ampere, Ada and Hopper tuning guides; 128 fp32
/// lanes per SM times two (FMA) times these reproduce the peaks in `crate::sim::roofline`.
pub const GPU_MODELS: [GpuModel; 3] = [
    GpuModel {
        spec: RTX_3090,
        sms: 82,
        clock_hz: 1.695e9,
        max_warps_per_sm: 48,
        max_blocks_per_sm: 16,
        registers_per_sm: 65536,
        shared_per_sm: 100 * 1024,
        shared_reserved_per_block: 1024,
    },
    GpuModel {
        spec: RTX_4090,
        sms: 128,
        clock_hz: 2.52e9,
        max_warps_per_sm: 48,
        max_blocks_per_sm: 24,
        registers_per_sm: 65536,
        shared_per_sm: 100 * 1024,
        shared_reserved_per_block: 1024,
    },
    GpuModel {
        spec: H100_SXM,
        sms: 132,
        clock_hz: 1.98e9,
        max_warps_per_sm: 64,
        max_blocks_per_sm: 32,
        registers_per_sm: 65536,
        shared_per_sm: 228 * 1024,
        shared_reserved_per_block: 1024,
    },
];

/// What limits a launch's predicted time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// fp32 FLOPs at the peak rate.
    Fp32,
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
            Limit::Issue => "issue",
            Limit::Shared => "shared",
            Limit::Dram => "dram",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LaunchPrediction {
    pub seconds: f64,
    pub limit: Limit,
}

impl GpuModel {
    /// The predicted time of one launch with these counters and no cache: the largest roof.
    pub fn predict(&self, stats: &LaunchStats) -> LaunchPrediction {
        let dram = LaunchPrediction { seconds: self.spec.predict(stats).memory_s, limit: Limit::Dram };
        slower(self.predict_on_chip(stats), dram)
    }

    /// The time of a launch's on-chip work alone (fp32, issue and shared-memory roofs).
    pub fn predict_on_chip(&self, stats: &LaunchStats) -> LaunchPrediction {
        let per_clock = self.sms as f64 * self.clock_hz;
        [
            LaunchPrediction { seconds: self.spec.predict(stats).compute_s, limit: Limit::Fp32 },
            LaunchPrediction { seconds: stats.warp_insts as f64 / (4.0 * per_clock), limit: Limit::Issue },
            LaunchPrediction { seconds: stats.shared_wavefronts as f64 / per_clock, limit: Limit::Shared },
        ]
        .into_iter()
        .fold(LaunchPrediction { seconds: 0.0, limit: Limit::Fp32 }, slower)
    }

    /// Moving `bytes` between DRAM and the SMs at full bandwidth.
    pub fn dram_time(&self, bytes: f64) -> LaunchPrediction {
        LaunchPrediction { seconds: bytes / self.spec.dram_bytes_per_s, limit: Limit::Dram }
    }

    /// Fraction of the SM's warp slots a launch can fill, given its block size and ptxas's
    /// registers per thread and static shared memory per block (plus the launch's dynamic).
    pub fn occupancy(&self, threads_per_block: u32, registers: u32, shared_bytes: u32) -> f64 {
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
        let blocks = by_regs.min(by_warps).min(by_shared).min(self.max_blocks_per_sm);
        (blocks * warps_per_block) as f64 / self.max_warps_per_sm as f64
    }
}

/// The longer of two predictions (the first on a tie).
pub fn slower(a: LaunchPrediction, b: LaunchPrediction) -> LaunchPrediction {
    if b.seconds > a.seconds {
        b
    } else {
        a
    }
}

/// The counters of a launch at `factor` times its size (see `super::cases` for why linear).
pub fn scale_stats(stats: &LaunchStats, factor: f64) -> LaunchStats {
    let s = |v: u64| (v as f64 * factor).round() as u64;
    LaunchStats {
        kernel: stats.kernel.clone(),
        grid: stats.grid,
        block: stats.block,
        warp_insts: s(stats.warp_insts),
        lane_insts: s(stats.lane_insts),
        flops: s(stats.flops),
        global_load_bytes: s(stats.global_load_bytes),
        global_store_bytes: s(stats.global_store_bytes),
        global_atomic_bytes: s(stats.global_atomic_bytes),
        global_accesses: s(stats.global_accesses),
        global_sectors: s(stats.global_sectors),
        shared_accesses: s(stats.shared_accesses),
        shared_wavefronts: s(stats.shared_wavefronts),
        bank_conflicts: s(stats.bank_conflicts),
        barriers: s(stats.barriers),
        sim_seconds: stats.sim_seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn the_modelled_clocks_reproduce_the_roofline_peaks() {
        for m in GPU_MODELS {
            let peak = m.sms as f64 * 128.0 * 2.0 * m.clock_hz;
            assert!((peak / m.spec.peak_fp32_flops - 1.0).abs() < 0.01, "{}: {peak:e}", m.spec.name);
        }
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

    #[test]
    fn scaling_multiplies_every_counter() {
        let s = LaunchStats { flops: 10, global_sectors: 3, warp_insts: 7, ..Default::default() };
        let t = scale_stats(&s, 4.0);
        assert_eq!((t.flops, t.global_sectors, t.warp_insts), (40, 12, 28));
    }
}
