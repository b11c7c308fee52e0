//! Per-launch performance counters: instruction mix, lane utilisation, FLOPs, global-memory
//! coalescing (32-byte sectors per warp access) and shared-memory bank conflicts.

/// Counters of one kernel launch, summed over all blocks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LaunchStats {
    /// "module::kernel".
    pub kernel: String,
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    /// Warp-level instructions issued (one per warp per executed instruction).
    pub warp_insts: u64,
    /// Lane-level instructions: warp instructions times their active lanes (lanes on the
    /// warp's current path, whether or not a guard predicate disables them).
    pub lane_insts: u64,
    /// f32 floating-point operations on the CUDA cores (add/sub/mul 1, fma 2 per active lane).
    pub flops: u64,
    /// Tensor-core operations (2*m*n*k per warp `mma`) with f16 or bf16 inputs, and with tf32
    /// inputs; all accumulate in f32. Not part of `flops`.
    pub tensor_flops_16bit: u64,
    pub tensor_flops_tf32: u64,
    /// Global bytes requested by loads, stores and atomics (active lanes times access size).
    pub global_load_bytes: u64,
    pub global_store_bytes: u64,
    pub global_atomic_bytes: u64,
    /// Warp-level global accesses and the distinct 32-byte sectors each touched, summed.
    pub global_accesses: u64,
    pub global_sectors: u64,
    /// Warp-level shared-memory accesses, the wavefronts they needed and the extra wavefronts
    /// caused by bank conflicts (32 banks of 4 bytes).
    pub shared_accesses: u64,
    pub shared_wavefronts: u64,
    pub bank_conflicts: u64,
    /// Block-wide barriers completed.
    pub barriers: u64,
    /// Wall time of the simulation of this launch (host seconds).
    pub sim_seconds: f64,
}

impl LaunchStats {
    /// Mean fraction of the 32 lanes doing work per warp instruction.
    pub fn lane_utilisation(&self) -> f64 {
        if self.warp_insts == 0 {
            return 0.0;
        }
        self.lane_insts as f64 / (32.0 * self.warp_insts as f64)
    }
    /// Bytes requested over bytes moved in 32-byte sectors: 1.0 is perfectly coalesced.
    pub fn coalescing_efficiency(&self) -> f64 {
        if self.global_sectors == 0 {
            return 1.0;
        }
        let requested = self.global_load_bytes + self.global_store_bytes + self.global_atomic_bytes;
        requested as f64 / (32.0 * self.global_sectors as f64)
    }
    /// Bytes moved between DRAM and the SMs if no sector were served by a cache.
    pub fn dram_bytes(&self) -> u64 {
        32 * self.global_sectors
    }
    /// Simulated lane-instructions per host second.
    pub fn lane_insts_per_second(&self) -> f64 {
        if self.sim_seconds <= 0.0 {
            return 0.0;
        }
        self.lane_insts as f64 / self.sim_seconds
    }

    /// Every counter times `factor`, rounded (kernel, grid, block and the simulation time kept).
    pub fn scaled(&self, factor: f64) -> LaunchStats {
        self.combine(self, |v, _| (v as f64 * factor).round() as u64)
    }

    /// Counters `f(self's, o's)`, each pair of counters combined alone (kernel, grid, block and
    /// the simulation time are self's).
    pub fn combine(&self, o: &LaunchStats, f: impl Fn(u64, u64) -> u64) -> LaunchStats {
        LaunchStats {
            kernel: self.kernel.clone(),
            grid: self.grid,
            block: self.block,
            warp_insts: f(self.warp_insts, o.warp_insts),
            lane_insts: f(self.lane_insts, o.lane_insts),
            flops: f(self.flops, o.flops),
            tensor_flops_16bit: f(self.tensor_flops_16bit, o.tensor_flops_16bit),
            tensor_flops_tf32: f(self.tensor_flops_tf32, o.tensor_flops_tf32),
            global_load_bytes: f(self.global_load_bytes, o.global_load_bytes),
            global_store_bytes: f(self.global_store_bytes, o.global_store_bytes),
            global_atomic_bytes: f(self.global_atomic_bytes, o.global_atomic_bytes),
            global_accesses: f(self.global_accesses, o.global_accesses),
            global_sectors: f(self.global_sectors, o.global_sectors),
            shared_accesses: f(self.shared_accesses, o.shared_accesses),
            shared_wavefronts: f(self.shared_wavefronts, o.shared_wavefronts),
            bank_conflicts: f(self.bank_conflicts, o.bank_conflicts),
            barriers: f(self.barriers, o.barriers),
            sim_seconds: self.sim_seconds,
        }
    }

    /// Adds the counters of `o` (the same launch, another worker).
    pub fn merge(&mut self, o: &LaunchStats) {
        self.warp_insts += o.warp_insts;
        self.lane_insts += o.lane_insts;
        self.flops += o.flops;
        self.tensor_flops_16bit += o.tensor_flops_16bit;
        self.tensor_flops_tf32 += o.tensor_flops_tf32;
        self.global_load_bytes += o.global_load_bytes;
        self.global_store_bytes += o.global_store_bytes;
        self.global_atomic_bytes += o.global_atomic_bytes;
        self.global_accesses += o.global_accesses;
        self.global_sectors += o.global_sectors;
        self.shared_accesses += o.shared_accesses;
        self.shared_wavefronts += o.shared_wavefronts;
        self.bank_conflicts += o.bank_conflicts;
        self.barriers += o.barriers;
    }
}

/// Distinct 32-byte sectors among the lane addresses of one warp access (each lane's access is
/// size-aligned and at most 16 bytes, so it lies in one sector).
pub fn distinct_sectors(addrs: &mut [u64]) -> u64 {
    for a in addrs.iter_mut() {
        *a >>= 5;
    }
    // Coalesced accesses arrive in lane order already; sort only when they do not.
    if !addrs.is_sorted() {
        addrs.sort_unstable();
    }
    let mut n = 0;
    let mut last = u64::MAX;
    for &s in addrs.iter() {
        if s != last {
            n += 1;
            last = s;
        }
    }
    n
}

/// Wavefronts one phase of a shared access needs: the most distinct 4-byte words any bank serves.
fn phase_wavefronts(words: &mut [u64]) -> u64 {
    // Fast path: no bank serves two different words (conflict-free or broadcast).
    let mut bank_word = [u64::MAX; 32];
    let mut conflict = false;
    for &w in words.iter() {
        let b = (w & 31) as usize;
        if bank_word[b] == u64::MAX {
            bank_word[b] = w;
        } else if bank_word[b] != w {
            conflict = true;
            break;
        }
    }
    if !conflict {
        return 1;
    }
    words.sort_unstable();
    let mut per_bank = [0u8; 32];
    let mut last = u64::MAX;
    for &w in words.iter() {
        if w != last {
            per_bank[(w & 31) as usize] += 1;
            last = w;
        }
    }
    per_bank.iter().copied().max().unwrap_or(1).max(1) as u64
}

/// Wavefronts for one warp's shared access: accesses wider than 4 bytes per lane are split into
/// phases of 128 bytes (half-warps for 8 bytes, quarter-warps for 16); within a phase, a bank
/// serving k distinct 4-byte words needs k wavefronts (same word = broadcast).
/// `lane_addrs` holds (lane, byte offset) for active lanes in lane order; returns
/// (wavefronts, ideal wavefronts).
pub fn shared_wavefronts(lane_addrs: &[(u32, u64)], bytes_per_lane: u32) -> (u64, u64) {
    let words_per_lane = (bytes_per_lane / 4).max(1) as usize;
    let lanes_per_phase = (32 / words_per_lane as u32).max(1);
    let mut total = 0u64;
    let mut ideal = 0u64;
    let mut start = 0;
    while start < lane_addrs.len() {
        let phase = lane_addrs[start].0 / lanes_per_phase;
        let mut end = start;
        let mut words = [0u64; 32];
        let mut nw = 0;
        while end < lane_addrs.len() && lane_addrs[end].0 / lanes_per_phase == phase {
            for k in 0..words_per_lane {
                if nw < 32 {
                    words[nw] = (lane_addrs[end].1 >> 2) + k as u64;
                    nw += 1;
                }
            }
            end += 1;
        }
        total += phase_wavefronts(&mut words[..nw]);
        ideal += 1;
        start = end;
    }
    (total, ideal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bank_conflicts_follow_the_stride() {
        let unit: Vec<(u32, u64)> = (0..32).map(|l| (l, 4 * l as u64)).collect();
        assert_eq!(shared_wavefronts(&unit, 4), (1, 1));
        let stride2: Vec<(u32, u64)> = (0..32).map(|l| (l, 8 * l as u64)).collect();
        assert_eq!(shared_wavefronts(&stride2, 4), (2, 1));
        let column: Vec<(u32, u64)> = (0..32).map(|l| (l, 128 * l as u64)).collect();
        assert_eq!(shared_wavefronts(&column, 4), (32, 1));
        let broadcast: Vec<(u32, u64)> = (0..32).map(|l| (l, 0)).collect();
        assert_eq!(shared_wavefronts(&broadcast, 4), (1, 1));
        let float4: Vec<(u32, u64)> = (0..32).map(|l| (l, 16 * l as u64)).collect();
        assert_eq!(shared_wavefronts(&float4, 16), (4, 4));
    }

    #[test]
    fn sectors_count_distinct_32_byte_blocks() {
        let mut coalesced: Vec<u64> = (0..32).map(|l| 0x1000 + 4 * l).collect();
        assert_eq!(distinct_sectors(&mut coalesced), 4);
        let mut strided: Vec<u64> = (0..32).map(|l| 0x1000 + 128 * l).collect();
        assert_eq!(distinct_sectors(&mut strided), 32);
    }
}
