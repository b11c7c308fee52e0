//! A small roofline model: a launch's FLOPs and DRAM traffic against a GPU's peak fp32 rate and
//! memory bandwidth give a predicted time and the bound that limits it.

use super::counters::LaunchStats;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GpuSpec {
    pub name: &'static str,
    /// Peak fp32 FLOP/s (FMA counted as 2, boost clock, no tensor cores).
    pub peak_fp32_flops: f64,
    /// DRAM bandwidth in bytes/s.
    pub dram_bytes_per_s: f64,
}

pub const RTX_3090: GpuSpec = GpuSpec { name: "RTX 3090", peak_fp32_flops: 35.6e12, dram_bytes_per_s: 936e9 };
pub const RTX_4090: GpuSpec = GpuSpec { name: "RTX 4090", peak_fp32_flops: 82.6e12, dram_bytes_per_s: 1008e9 };
pub const H100_SXM: GpuSpec = GpuSpec { name: "H100 SXM", peak_fp32_flops: 66.9e12, dram_bytes_per_s: 3.35e12 };

pub const GPU_SPECS: [GpuSpec; 3] = [RTX_3090, RTX_4090, H100_SXM];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    Compute,
    Memory,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prediction {
    pub compute_s: f64,
    pub memory_s: f64,
    /// max(compute_s, memory_s).
    pub seconds: f64,
    pub bound: Bound,
}

impl GpuSpec {
    /// Predicted time of a launch. Memory traffic is every 32-byte sector the launch touched, with
    /// no cache model, so re-read data (tiles in SGEMM) makes this pessimistic for memory.
    pub fn predict(&self, stats: &LaunchStats) -> Prediction {
        let compute_s = stats.flops as f64 / self.peak_fp32_flops;
        let memory_s = stats.dram_bytes() as f64 / self.dram_bytes_per_s;
        let bound = if compute_s >= memory_s { Bound::Compute } else { Bound::Memory };
        Prediction { compute_s, memory_s, seconds: compute_s.max(memory_s), bound }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_larger_time_sets_the_bound() {
        let stats = LaunchStats { flops: 2_000_000_000, global_sectors: 1000, ..Default::default() };
        let p = RTX_3090.predict(&stats);
        assert_eq!(p.bound, Bound::Compute);
        assert!((p.seconds - 2e9 / 35.6e12).abs() < 1e-12);
        let stats = LaunchStats { flops: 10, global_sectors: 1 << 20, ..Default::default() };
        assert_eq!(H100_SXM.predict(&stats).bound, Bound::Memory);
    }
}
