//! Tensor-core instructions: `mma.sync` and `ldmatrix`, both warp-collective (`.sync.aligned`:
//! every lane of the warp executes them together). The fragment layouts are the PTX ISA's
//! ("Matrix Fragments for mma.m16n8k16 / m16n8k8"): lane `l` belongs to group `g = l / 4` and
//! is thread `t = l % 4` of its group.
//! - A (16xK, row): for f16/bf16, register `j` holds the pair of columns `2t + 8(j / 2)`, `+1`
//!   of row `g + 8(j % 2)` (m16n8k16; m16n8k8 has registers 0 and 1 only), the lower column in
//!   the lower half; for tf32, register `j` holds row `g + 8(j % 2)`, column `t + 4(j / 2)`.
//! - B (Kx8, col): for f16/bf16, register `j` holds rows `2t + 8j`, `+1` of column `g`; for tf32,
//!   register `j` holds row `t + 4j` of column `g`.
//! - C and D (16x8, f32): register `j` holds row `g + 8(j / 2)`, column `2t + j % 2`.
//!
//! Arithmetic: products of f16, bf16 and tf32 values are exact in f64, as is their sum with C in
//! f64 for all but extreme exponent ranges; each `mma` rounds that sum once to f32 (round to
//! nearest even). Hardware keeps fp32 accumulators too but leaves the order and rounding of the
//! k-sum unspecified, so results agree with a GPU to within fp32 accumulation error, not bit for
//! bit. A tf32 input register is read as the f32 it holds with its 13 low mantissa bits ignored
//! (kernels round their operands first, `cvt.rna.tf32.f32`, which leaves those bits zero; for
//! other bit patterns the ISA does not say what the hardware sees).
//!
//! `ldmatrix.m8n8.x{n}`: lanes `8i..8i+7` give the row addresses of matrix `i` (each row 8
//! 16-bit elements, 16 bytes, which must be 16-byte aligned); lane `l` receives in register `i`
//! the elements at row `g`, columns `2t` and `2t+1` of matrix `i` (with `.trans`: rows `2t` and
//! `2t+1` of column `g`), the first in the lower half.

use super::memory_ops::{RaceCheck, SharedAccess};
use super::{read, Worker};
use crate::error::Result;
use crate::sim::counters::shared_wavefronts;
use crate::sim::program::{Inst, MmaShape, Op, Space, SHARED_WINDOW, WINDOW_SIZE};
use crate::sim::sanitizer::fault;

const LDMATRIX_READ: SharedAccess = SharedAccess { reads: true, writes: false, race: RaceCheck::Read, async_copy: false };
/// Bytes of one ldmatrix row: eight 16-bit elements.
const ROW_BYTES: usize = 16;

/// A 16-bit float (bf16 when `bf`) as f64, exactly.
fn half_value(bits: u16, bf: bool) -> f64 {
    if bf {
        half::bf16::from_bits(bits).to_f64()
    } else {
        half::f16::from_bits(bits).to_f64()
    }
}

/// A tf32 operand: the register's f32 with the 13 mantissa bits below tf32's 10 dropped.
fn tf32_value(bits: u32) -> f64 {
    f32::from_bits(bits & 0xffff_e000) as f64
}

impl Worker<'_> {
    /// `mma.sync`: gathers A, B and C from all 32 lanes' registers, computes D and scatters it
    /// to the lanes of `mask` (all of them for a converged warp).
    pub(super) fn mma(&mut self, wi: usize, inst: &Inst, mask: u32) {
        let Op::Mma { shape, d, a, b, c } = inst.op else { unreachable!("mma is called for mma.sync only") };
        let k = shape.k();
        let w = &self.warps[wi];
        let geo = &self.geo;
        let mut ma = [[0f64; 16]; 16];
        let mut mb = [[0f64; 8]; 16];
        let mut mc = [[0f64; 8]; 16];
        for l in 0..32usize {
            let (g, t) = (l / 4, l % 4);
            let reg = |s| read(w, geo, s, l) as u32;
            match shape {
                MmaShape::K16Half { bf } | MmaShape::K8Half { bf } => {
                    let (na, nb) = shape.fragment_regs();
                    for (j, &src) in a.iter().take(na).enumerate() {
                        let v = reg(src);
                        let (row, col) = (g + 8 * (j % 2), 2 * t + 8 * (j / 2));
                        ma[row][col] = half_value(v as u16, bf);
                        ma[row][col + 1] = half_value((v >> 16) as u16, bf);
                    }
                    for (j, &src) in b.iter().take(nb).enumerate() {
                        let v = reg(src);
                        let row = 2 * t + 8 * j;
                        mb[row][g] = half_value(v as u16, bf);
                        mb[row + 1][g] = half_value((v >> 16) as u16, bf);
                    }
                }
                MmaShape::K8Tf32 => {
                    for (j, &src) in a.iter().enumerate() {
                        ma[g + 8 * (j % 2)][t + 4 * (j / 2)] = tf32_value(reg(src));
                    }
                    for (j, &src) in b.iter().enumerate() {
                        mb[t + 4 * j][g] = tf32_value(reg(src));
                    }
                }
            }
            for (j, &src) in c.iter().enumerate() {
                mc[g + 8 * (j / 2)][2 * t + j % 2] = f32::from_bits(reg(src)) as f64;
            }
        }
        let w = &mut self.warps[wi];
        for l in 0..32usize {
            if mask >> l & 1 == 0 {
                continue;
            }
            let (g, t) = (l / 4, l % 4);
            for (j, &dst) in d.iter().enumerate() {
                let (row, col) = (g + 8 * (j / 2), 2 * t + j % 2);
                let sum = (0..k).fold(mc[row][col], |acc, kk| acc + ma[row][kk] * mb[kk][col]);
                w.set(dst, l, (sum as f32).to_bits() as u64);
            }
        }
        match shape {
            MmaShape::K8Tf32 => self.stats.tensor_flops_tf32 += shape.flops(),
            _ => self.stats.tensor_flops_16bit += shape.flops(),
        }
    }

    /// `ldmatrix`: reads each matrix's eight rows from the addresses its eight lanes give, with
    /// alignment, bounds and sanitizer checks per row, and counts the wavefronts (a matrix whose
    /// rows fall in distinct banks takes one).
    pub(super) fn ldmatrix(&mut self, wi: usize, pc: usize, inst: &Inst, mask: u32) -> Result<()> {
        let Op::Ldmatrix { n, trans, space, d, addr } = inst.op else { unreachable!("ldmatrix is called for ldmatrix only") };
        self.mem_inst_seq = self.mem_inst_seq.wrapping_add(1);
        self.scratch_shared.clear();
        let mut rows = [[0u16; 8]; 32];
        for (l, row) in rows.iter_mut().enumerate().take(8 * n as usize) {
            let a = self.address(wi, addr, l);
            let off = match space {
                Space::Shared => a,
                _ if (SHARED_WINDOW..SHARED_WINDOW + WINDOW_SIZE).contains(&a) => a - SHARED_WINDOW,
                _ => {
                    return Err(fault("invalid ldmatrix address", &self.site(pc, wi, l), format!("row address {a:#x} is not in shared memory")));
                }
            };
            if off % ROW_BYTES as u64 != 0 {
                return Err(fault(
                    "misaligned ldmatrix row",
                    &self.site(pc, wi, l),
                    format!("this lane gives row {} of matrix {} at shared offset {off}, which is not 16-byte aligned", l % 8, l / 8),
                ));
            }
            let limit = self.shared.len() as u64;
            if off + ROW_BYTES as u64 > limit {
                let var = self.lp.kernel.var_at(Space::Shared, off).map(|v| format!(" (in {v})")).unwrap_or_default();
                return Err(fault(
                    "out-of-bounds shared access",
                    &self.site(pc, wi, l),
                    format!("ldmatrix row at shared offset {off}{var}, but the block has {limit} bytes of shared memory"),
                ));
            }
            let off = off as usize;
            if self.lp.sanitize {
                self.check_shared(wi, pc, LDMATRIX_READ, l, off, ROW_BYTES)?;
            }
            for (e, v) in row.iter_mut().enumerate() {
                *v = u16::from_le_bytes([self.shared[off + 2 * e], self.shared[off + 2 * e + 1]]);
            }
            self.scratch_shared.push((l as u32, off as u64));
        }
        let w = &mut self.warps[wi];
        for l in 0..32usize {
            if mask >> l & 1 == 0 {
                continue;
            }
            let (g, t) = (l / 4, l % 4);
            for (i, &dst) in d.iter().take(n as usize).enumerate() {
                let m = &rows[8 * i..8 * i + 8];
                let (lo, hi) = if trans { (m[2 * t][g], m[2 * t + 1][g]) } else { (m[g][2 * t], m[g][2 * t + 1]) };
                w.set(dst, l, lo as u64 | (hi as u64) << 16);
            }
        }
        let (waves, ideal) = shared_wavefronts(&self.scratch_shared, ROW_BYTES as u32);
        self.stats.shared_accesses += 1;
        self.stats.shared_wavefronts += waves;
        self.stats.bank_conflicts += waves - ideal;
        Ok(())
    }
}
