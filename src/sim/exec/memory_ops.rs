//! Memory instructions of the executor: ld/st/atom per lane on global (through the launch's
//! view), shared, local and parameter memory, with bounds, alignment and sanitizer checks and the
//! coalescing and bank-conflict counters.

use super::{read, Geometry, Warp, Worker};
use crate::error::Result;
use crate::sim::counters::{distinct_sectors, shared_wavefronts};
use crate::sim::memory::Region;
use crate::sim::program::{Addr, Inst, MbarOp, Op, Space, LOCAL_WINDOW, SHARED_WINDOW, WINDOW_SIZE};
use crate::sim::sanitizer::{fault, Stamp};

/// Little-endian load of `size` (1, 2, 4 or 8) bytes from a byte buffer (shared, local, params).
#[inline(always)]
pub(super) fn sh_load(buf: &[u8], off: usize, size: u8) -> u64 {
    fn get<const N: usize>(buf: &[u8], off: usize) -> [u8; N] {
        let mut b = [0u8; N];
        b.copy_from_slice(&buf[off..off + N]);
        b
    }
    match size {
        1 => buf[off] as u64,
        2 => u16::from_le_bytes(get(buf, off)) as u64,
        4 => u32::from_le_bytes(get(buf, off)) as u64,
        _ => u64::from_le_bytes(get(buf, off)),
    }
}
#[inline(always)]
pub(super) fn sh_store(buf: &mut [u8], off: usize, size: u8, v: u64) {
    match size {
        1 => buf[off] = v as u8,
        2 => buf[off..off + 2].copy_from_slice(&(v as u16).to_le_bytes()),
        4 => buf[off..off + 4].copy_from_slice(&(v as u32).to_le_bytes()),
        _ => buf[off..off + 8].copy_from_slice(&v.to_le_bytes()),
    }
}

/// Which memory a resolved access goes to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Global,
    Shared,
    Local,
    Param,
}

impl Worker<'_> {
    pub(super) fn memory_op(&mut self, wi: usize, pc: usize, inst: &Inst, mask: u32) -> Result<()> {
        let (space, size, n, addr) = match inst.op {
            Op::Ld { space, size, n, addr, .. } => (space, size, n, addr),
            Op::St { space, size, n, addr, .. } => (space, size, n, addr),
            Op::Atom { space, size, addr, .. } => (space, size, 1, addr),
            Op::Mbar { addr, .. } => (Space::Shared, 8, 1, addr),
            _ => unreachable!("memory_op is called for ld/st/atom/mbarrier only"),
        };
        if mask == 0 {
            return Ok(());
        }
        self.mem_inst_seq = self.mem_inst_seq.wrapping_add(1);
        let bytes = size as u64 * n as u64;
        let mut region: Option<&Region> = None;
        self.scratch_addrs.clear();
        self.scratch_shared.clear();
        let mut global_bytes = 0u64;
        let mut shared_lanes = 0u32;
        let mut bits = mask;
        while bits != 0 {
            let l = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let a = self.address(wi, addr, l);
            if !a.is_multiple_of(bytes.min(16)) || !a.is_multiple_of(size as u64) {
                return Err(fault(
                    "misaligned access",
                    &self.site(pc, wi, l),
                    format!("{bytes}-byte {} at address {a:#x}, which is not {}-byte aligned", op_name(&inst.op, space), bytes.min(16)),
                ));
            }
            let (target, off) = self.resolve(space, a);
            match target {
                Target::Global => {
                    let r = match region {
                        Some(r) if r.contains(a, bytes) => r,
                        _ => match self.lp.mem.find(a) {
                            Some(r) if r.contains(a, bytes) => {
                                region = Some(r);
                                r
                            }
                            _ if self.lp.sampled => {
                                // Counted, not made: the address came from memory a skipped
                                // block would have written.
                                if let Op::Ld { n, d, .. } = inst.op {
                                    for k in 0..n as usize {
                                        self.warps[wi].set(d[k], l, 0);
                                    }
                                } else if let Op::Atom { d, .. } = inst.op {
                                    self.warps[wi].set(d, l, 0);
                                }
                                self.scratch_addrs.push(a);
                                global_bytes += bytes;
                                continue;
                            }
                            _ => {
                                return Err(fault(
                                    "out-of-bounds global access",
                                    &self.site(pc, wi, l),
                                    format!("{bytes}-byte {} at {a:#x}: {}", op_name(&inst.op, space), self.lp.mem.describe_miss(a, bytes)),
                                ))
                            }
                        },
                    };
                    self.global_lane(wi, pc, inst, l, r, a - r.base)?;
                    self.scratch_addrs.push(a);
                    global_bytes += bytes;
                }
                Target::Shared => {
                    let limit = self.shared.len() as u64;
                    if off.checked_add(bytes).is_none_or(|end| end > limit) {
                        let var = self.lp.kernel.var_at(Space::Shared, off).map(|v| format!(" (in {v})")).unwrap_or_default();
                        return Err(fault(
                            "out-of-bounds shared access",
                            &self.site(pc, wi, l),
                            format!(
                                "{bytes}-byte {} at shared offset {off}{var}, but the block has {limit} bytes of shared memory \
                                 ({} static + {} dynamic)",
                                op_name(&inst.op, space),
                                self.lp.kernel.static_shared,
                                self.lp.dyn_shared
                            ),
                        ));
                    }
                    self.shared_lane(wi, pc, inst, l, off as usize)?;
                    self.scratch_shared.push((l as u32, off));
                    shared_lanes += 1;
                }
                Target::Local => {
                    let lb = self.lp.kernel.local_bytes as u64;
                    if off.checked_add(bytes).is_none_or(|end| end > lb) {
                        return Err(fault(
                            "out-of-bounds local access",
                            &self.site(pc, wi, l),
                            format!("{bytes}-byte {} at local offset {off}, but each thread has {lb} bytes of local memory", op_name(&inst.op, space)),
                        ));
                    }
                    let t = (self.warps[wi].base_tid as usize + l) * lb as usize;
                    buffer_lane(&mut self.local, &mut self.warps[wi], &self.geo, &inst.op, l, t + off as usize);
                }
                Target::Param => {
                    let pb = self.lp.params.len() as u64;
                    let Op::Ld { d, signed, .. } = inst.op else {
                        return Err(fault("invalid access", &self.site(pc, wi, l), "kernel parameters are read-only"));
                    };
                    if off.checked_add(bytes).is_none_or(|end| end > pb) {
                        return Err(fault(
                            "out-of-bounds parameter access",
                            &self.site(pc, wi, l),
                            format!("{bytes}-byte load at parameter offset {off}, but the parameters take {pb} bytes"),
                        ));
                    }
                    for (k, &reg) in d.iter().take(n as usize).enumerate() {
                        let v = sh_load(self.lp.params, off as usize + k * size as usize, size);
                        self.warps[wi].set(reg, l, extend(v, size, signed));
                    }
                }
            }
        }
        if !self.scratch_addrs.is_empty() {
            self.stats.global_accesses += 1;
            self.stats.global_sectors += distinct_sectors(&mut self.scratch_addrs);
            match inst.op {
                Op::Ld { .. } => self.stats.global_load_bytes += global_bytes,
                Op::St { .. } => self.stats.global_store_bytes += global_bytes,
                _ => self.stats.global_atomic_bytes += global_bytes,
            }
        }
        if shared_lanes > 0 {
            let (waves, ideal) = shared_wavefronts(&self.scratch_shared, bytes as u32);
            self.stats.shared_accesses += 1;
            self.stats.shared_wavefronts += waves;
            self.stats.bank_conflicts += waves - ideal;
        }
        // An arrival or a transaction count may leave a phase waiting only for cp.async copies,
        // which then land before the phase completes.
        if matches!(inst.op, Op::Mbar { kind: MbarOp::Arrive { .. } | MbarOp::ExpectTx | MbarOp::CompleteTx, .. }) {
            self.settle_deferred_arrivals()?;
        }
        // A releasing access ends the interval for race checks: what the thread did before it
        // is ordered before what other threads do after they observe it.
        if matches!(inst.op, Op::St { sync: true, .. } | Op::Atom { release: true, .. } | Op::Mbar { kind: MbarOp::Arrive { .. } | MbarOp::CompleteTx, .. }) {
            self.epoch += 1;
        }
        Ok(())
    }

    #[inline]
    pub(super) fn address(&self, wi: usize, addr: Addr, l: usize) -> u64 {
        read(&self.warps[wi], &self.geo, addr.base, l).wrapping_add(addr.offset as u64)
    }

    /// The memory an address of `space` refers to and the offset within it.
    fn resolve(&self, space: Space, a: u64) -> (Target, u64) {
        match space {
            Space::Global => (Target::Global, a),
            Space::Shared => (Target::Shared, a),
            Space::Local => (Target::Local, a),
            Space::Param => (Target::Param, a),
            Space::Generic if (SHARED_WINDOW..SHARED_WINDOW + WINDOW_SIZE).contains(&a) => (Target::Shared, a - SHARED_WINDOW),
            Space::Generic if (LOCAL_WINDOW..LOCAL_WINDOW + WINDOW_SIZE).contains(&a) => (Target::Local, a - LOCAL_WINDOW),
            Space::Generic => (Target::Global, a),
        }
    }

    fn global_lane(&mut self, wi: usize, pc: usize, inst: &Inst, l: usize, r: &Region, off: u64) -> Result<()> {
        let sanitize = self.lp.sanitize;
        let uninit = |this: &Self, k: u64| {
            fault(
                "uninitialised read",
                &this.site(pc, wi, l),
                format!(
                    "global load at {:#x} (offset {} of {}) reads memory that no kernel, copy or memset has written",
                    r.base + off + k,
                    off + k,
                    r.describe()
                ),
            )
        };
        match inst.op {
            Op::Ld { size, n, signed, d, .. } => {
                for k in 0..n as u64 {
                    let o = off + k * size as u64;
                    if sanitize && !r.is_init(o, size) {
                        return Err(uninit(self, k * size as u64));
                    }
                    let v = r.load(o, size);
                    self.warps[wi].set(d[k as usize], l, extend(v, size, signed));
                }
            }
            Op::St { size, n, v, .. } => {
                for k in 0..n as u64 {
                    let o = off + k * size as u64;
                    let val = read(&self.warps[wi], &self.geo, v[k as usize], l);
                    r.store(o, size, val);
                    r.mark_init(o, size);
                }
            }
            Op::Atom { f, size, d, b, c, .. } => {
                if sanitize && !r.is_init(off, size) {
                    return Err(uninit(self, 0));
                }
                let w = &self.warps[wi];
                let (bv, cv) = (read(w, &self.geo, b, l), read(w, &self.geo, c, l));
                let old = r.rmw(off, size, f, bv, cv);
                r.mark_init(off, size);
                self.warps[wi].set(d, l, old);
            }
            _ => {}
        }
        Ok(())
    }

    fn shared_lane(&mut self, wi: usize, pc: usize, inst: &Inst, l: usize, off: usize) -> Result<()> {
        if self.lp.sanitize {
            let bytes = match inst.op {
                Op::Ld { size, n, .. } | Op::St { size, n, .. } => size as usize * n as usize,
                Op::Atom { size, .. } => size as usize,
                Op::Mbar { .. } => 8,
                _ => 0,
            };
            self.check_shared(wi, pc, SharedAccess::of(&inst.op), l, off, bytes)?;
        }
        buffer_lane(&mut self.shared, &mut self.warps[wi], &self.geo, &inst.op, l, off);
        Ok(())
    }

    /// Sanitizer checks of one lane's shared access: initialised bytes, deferred copies not
    /// landed yet, and races. Atomics race only with plain accesses; synchronising
    /// (volatile/relaxed/acquire/release) accesses do not race.
    pub(super) fn check_shared(&mut self, wi: usize, pc: usize, access: SharedAccess, l: usize, off: usize, bytes: usize) -> Result<()> {
        let w = &self.warps[wi];
        let stamp = Stamp { tid: w.base_tid + l as u32, epoch: self.epoch, warp_epoch: w.sync_epoch, pc: pc as u32, inst: self.mem_inst_seq };
        let SharedAccess { reads, writes, race: kind, async_copy } = access;
        if !async_copy {
            if let Some(word) = (off / 4..(off + bytes).div_ceil(4)).find(|&w| self.shadow[w].in_flight > 0) {
                return Err(self.not_landed_yet(wi, pc, l, word * 4, reads));
            }
        }
        let mut b = off;
        while b < off + bytes {
            let word = b / 4;
            let in_word = (4 - b % 4).min(off + bytes - b);
            let byte_mask = (((1u16 << in_word) - 1) << (b % 4)) as u8;
            let gen = self.block_gen;
            let sh = &mut self.shadow[word];
            if sh.init_gen != gen {
                sh.init_gen = gen;
                sh.init_bytes = 0;
            }
            if reads && sh.init_bytes & byte_mask != byte_mask && self.pending_uninit.is_none() {
                self.pending_uninit_at = self.stats.warp_insts;
                let var = self.lp.kernel.var_at(Space::Shared, b as u64).map(|v| format!(" ({v})")).unwrap_or_default();
                self.pending_uninit = Some(fault(
                    "uninitialised read",
                    &self.site(pc, wi, l),
                    format!("shared load at offset {b}{var} reads shared memory no thread of this block has written"),
                ));
            }
            let sh = &mut self.shadow[word];
            if writes {
                sh.init_bytes |= byte_mask;
            }
            let race = match kind {
                RaceCheck::Atomic => sh.atomic(stamp),
                RaceCheck::None => None,
                RaceCheck::Read => sh.read(stamp),
                RaceCheck::Write => sh.write(stamp),
            };
            if let Some(race) = race {
                let var = self.lp.kernel.var_at(Space::Shared, b as u64);
                let detail = race.describe(self.lp.kernel, (word * 4) as u64, var, self.lp.block);
                // The race is the root cause of an uninitialised read it explains.
                self.pending_uninit = None;
                return Err(fault("data race (missing barrier)", &self.site(pc, wi, l), detail));
            }
            b += in_word;
        }
        Ok(())
    }
}

/// What a shared access does, for the sanitizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SharedAccess {
    /// It reads the bytes (so they must have been written).
    pub reads: bool,
    /// It writes the bytes (so they count as initialised afterwards).
    pub writes: bool,
    pub race: RaceCheck,
    /// A deferred copy's own issue or landing, which may touch words it has in flight.
    pub async_copy: bool,
}

/// Which race check an access takes part in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RaceCheck {
    Read,
    Write,
    Atomic,
    /// Synchronising accesses (volatile/relaxed/acquire/release, mbarriers) do not race.
    None,
}

impl SharedAccess {
    fn of(op: &Op) -> Self {
        let (reads, writes, race) = match *op {
            Op::Ld { sync, .. } => (true, false, if sync { RaceCheck::None } else { RaceCheck::Read }),
            Op::St { sync, .. } => (false, true, if sync { RaceCheck::None } else { RaceCheck::Write }),
            Op::Atom { .. } => (true, true, RaceCheck::Atomic),
            Op::Mbar { kind: MbarOp::TestWait { .. }, .. } => (true, false, RaceCheck::None),
            Op::Mbar { kind: MbarOp::Init | MbarOp::Inval, .. } => (false, true, RaceCheck::None),
            _ => (true, true, RaceCheck::None),
        };
        SharedAccess { reads, writes, race, async_copy: false }
    }
}

/// One lane's ld/st/atom on a plain byte buffer (shared or local memory), bounds already checked.
#[inline]
fn buffer_lane(buf: &mut [u8], w: &mut Warp, geo: &Geometry, op: &Op, l: usize, off: usize) {
    match *op {
        Op::Ld { size, n, signed, d, .. } => {
            for (k, &reg) in d.iter().take(n as usize).enumerate() {
                let v = sh_load(buf, off + k * size as usize, size);
                w.set(reg, l, extend(v, size, signed));
            }
        }
        Op::St { size, n, v, .. } => {
            for (k, &src) in v.iter().take(n as usize).enumerate() {
                let val = read(w, geo, src, l);
                sh_store(buf, off + k * size as usize, size, val);
            }
        }
        Op::Atom { f, size, d, b, c, .. } => {
            let (bv, cv) = (read(w, geo, b, l), read(w, geo, c, l));
            let old = sh_load(buf, off, size);
            sh_store(buf, off, size, f(old, bv, cv));
            w.set(d, l, old);
        }
        Op::Mbar { kind, d, b, .. } => {
            let (old, bv) = (sh_load(buf, off, 8), read(w, geo, b, l));
            let (new, result) = crate::sim::mbarrier::apply(kind, old, bv);
            sh_store(buf, off, 8, new);
            w.set(d, l, result);
        }
        _ => {}
    }
}

/// Sign-extends a narrow signed load to the full register.
#[inline]
fn extend(v: u64, size: u8, signed: bool) -> u64 {
    if signed && size < 8 {
        crate::sim::alu::sext(v, size as u32 * 8) as u64
    } else {
        v
    }
}

fn op_name(op: &Op, space: Space) -> String {
    let kind = match op {
        Op::Ld { .. } => "load",
        Op::St { .. } => "store",
        _ => "atomic",
    };
    let sp = match space {
        Space::Global => "global ",
        Space::Shared => "shared ",
        Space::Local => "local ",
        Space::Param => "param ",
        Space::Generic => "",
    };
    format!("{sp}{kind}")
}
