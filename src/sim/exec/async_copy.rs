//! `cp.async`: copies from global to shared memory that complete later, as on hardware. The
//! source is read when the copy is issued (so a bad address faults at the instruction that
//! names it), but the bytes land in shared memory only when the thread waits for the copy's
//! commit group (`cp.async.wait_group`/`wait_all`), or, for copies an mbarrier tracks
//! (`cp.async.mbarrier.arrive`), when everything else that barrier's phase waits for has
//! arrived. That is the latest point hardware may complete them, so a kernel that reads the
//! destination too early sees stale memory; the sanitizer reports any access to a word with a
//! copy in flight.

use super::memory_ops::{sh_load, sh_store, RaceCheck, SharedAccess};
use super::{read, Worker};
use crate::error::{Error, Result};
use crate::sim::counters::distinct_sectors;
use crate::sim::mbarrier::Mbarrier;
use crate::sim::program::{Addr, Inst, Op, Src};
use crate::sim::sanitizer::fault;

/// One thread's copy that has not landed.
#[derive(Clone, Copy)]
struct AsyncCopy {
    /// Shared-memory offset of the destination.
    dst: usize,
    size: u8,
    /// The bytes read at issue, zero past the source size.
    data: [u8; 16],
    /// The commit group (numbered per thread from 0); None until committed.
    group: Option<u32>,
    /// Shared offset of the mbarrier whose deferred arrival waits for this copy.
    mbarrier: Option<usize>,
    /// The issuing instruction, for reports.
    pc: u32,
}

/// The copies in flight in the current block.
pub(super) struct AsyncCopies {
    /// Each thread's copies, oldest first.
    per_thread: Vec<Vec<AsyncCopy>>,
    /// Commit groups each thread has closed.
    committed: Vec<u32>,
    /// mbarriers (shared offsets) with arrivals deferred until their tracked copies land, and
    /// how many.
    deferred_arrivals: Vec<(usize, u64)>,
}

impl AsyncCopies {
    pub fn new(threads: usize) -> Self {
        AsyncCopies { per_thread: vec![Vec::new(); threads], committed: vec![0; threads], deferred_arrivals: Vec::new() }
    }
}

/// The lanes of `mask`, lowest first.
fn lanes(mask: u32) -> impl Iterator<Item = usize> {
    (0..32).filter(move |l| mask >> l & 1 == 1)
}

/// The shadow words an access of `bytes` at `off` covers.
fn words(off: usize, bytes: usize) -> std::ops::Range<usize> {
    off / 4..(off + bytes).div_ceil(4)
}

const ISSUE: SharedAccess = SharedAccess { reads: false, writes: false, race: RaceCheck::Write, async_copy: true };
const LANDING: SharedAccess = SharedAccess { reads: false, writes: true, race: RaceCheck::Write, async_copy: true };
const MBARRIER_UPDATE: SharedAccess = SharedAccess { reads: true, writes: true, race: RaceCheck::None, async_copy: false };

impl Worker<'_> {
    /// Forgets the copies a block left in flight (they died with its shared memory).
    pub(super) fn reset_async_copies(&mut self) {
        for (tid, copies) in self.async_copies.per_thread.iter_mut().enumerate() {
            for c in copies.drain(..) {
                for w in words(c.dst, c.size as usize) {
                    if let Some(sh) = self.shadow.get_mut(w) {
                        sh.in_flight = sh.in_flight.saturating_sub(1);
                    }
                }
            }
            self.async_copies.committed[tid] = 0;
        }
        self.async_copies.deferred_arrivals.clear();
    }

    pub(super) fn async_op(&mut self, wi: usize, pc: usize, inst: &Inst, mask: u32) -> Result<()> {
        if mask == 0 {
            return Ok(());
        }
        self.mem_inst_seq = self.mem_inst_seq.wrapping_add(1);
        let base = self.warps[wi].base_tid as usize;
        match inst.op {
            Op::CpAsync { dst, src, size, src_size, ignore_src } => self.issue_copies(wi, pc, mask, [dst, src], size, (src_size, ignore_src))?,
            Op::CpAsyncCommit => {
                for l in lanes(mask) {
                    let group = self.async_copies.committed[base + l];
                    for c in self.async_copies.per_thread[base + l].iter_mut().filter(|c| c.group.is_none()) {
                        c.group = Some(group);
                    }
                    self.async_copies.committed[base + l] += 1;
                }
            }
            Op::CpAsyncWait { newest_pending } => {
                for l in lanes(mask) {
                    let tid = base + l;
                    let committed = self.async_copies.committed[tid];
                    match newest_pending {
                        Some(n) => self.land_where(tid, |c| c.group.is_some_and(|g| g + n < committed))?,
                        None => {
                            // `wait_all` commits the uncommitted copies and waits for everything.
                            self.async_copies.committed[tid] += 1;
                            self.land_where(tid, |_| true)?;
                        }
                    }
                }
            }
            Op::CpAsyncMbarArrive { noinc, addr } => {
                for l in lanes(mask) {
                    self.track_with_mbarrier(wi, pc, l, addr, noinc)?;
                }
                self.settle_deferred_arrivals()?;
                // Like mbarrier.arrive, a release.
                self.epoch += 1;
            }
            _ => unreachable!("async_op is called for cp.async instructions only"),
        }
        Ok(())
    }

    /// Issues each lane's copy of `size` bytes; `source` is the source size, or the ignore-src
    /// predicate when its flag is set.
    fn issue_copies(&mut self, wi: usize, pc: usize, mask: u32, [dst, src]: [Addr; 2], size: u8, source: (Src, bool)) -> Result<()> {
        self.scratch_addrs.clear();
        let mut global_bytes = 0u64;
        for l in lanes(mask) {
            let (to, from) = (self.address(wi, dst, l), self.address(wi, src, l));
            let from_bytes = match source {
                (p, true) if read(&self.warps[wi], &self.geo, p, l) != 0 => 0,
                (_, true) => size as u64,
                (n, false) => read(&self.warps[wi], &self.geo, n, l),
            };
            let site = || self.site(pc, wi, l);
            if from_bytes > size as u64 {
                return Err(fault("invalid cp.async", &site(), format!("source size {from_bytes} exceeds the copy size {size}")));
            }
            if !to.is_multiple_of(size as u64) || !from.is_multiple_of(size as u64) {
                return Err(fault(
                    "misaligned access",
                    &site(),
                    format!("{size}-byte cp.async from {from:#x} to shared offset {to}: both addresses must be {size}-byte aligned"),
                ));
            }
            let limit = self.shared.len() as u64;
            if to.checked_add(size as u64).is_none_or(|end| end > limit) {
                return Err(fault(
                    "out-of-bounds shared access",
                    &site(),
                    format!("{size}-byte cp.async to shared offset {to}, but the block has {limit} bytes of shared memory"),
                ));
            }
            let mut data = [0u8; 16];
            if from_bytes > 0 {
                self.read_source(wi, pc, l, from, &mut data[..from_bytes as usize])?;
                self.scratch_addrs.push(from);
                global_bytes += from_bytes;
            }
            let off = to as usize;
            if self.lp.sanitize {
                // The copy may land any time before its wait: it races like a write now.
                self.check_shared(wi, pc, ISSUE, l, off, size as usize)?;
                for w in words(off, size as usize) {
                    self.shadow[w].in_flight += 1;
                }
            }
            let tid = self.warps[wi].base_tid as usize + l;
            self.async_copies.per_thread[tid].push(AsyncCopy { dst: off, size, data, group: None, mbarrier: None, pc: pc as u32 });
        }
        if !self.scratch_addrs.is_empty() {
            self.stats.global_accesses += 1;
            self.stats.global_sectors += distinct_sectors(&mut self.scratch_addrs);
            self.stats.global_load_bytes += global_bytes;
        }
        Ok(())
    }

    /// Reads a copy's source bytes from global memory (zeros for a sampled launch's address
    /// outside every allocation).
    fn read_source(&self, wi: usize, pc: usize, l: usize, from: u64, out: &mut [u8]) -> Result<()> {
        let n = out.len() as u64;
        let region = match self.lp.mem.find(from) {
            Some(r) if r.contains(from, n) => r,
            _ if self.lp.sampled => return Ok(()),
            _ => {
                return Err(fault(
                    "out-of-bounds global access",
                    &self.site(pc, wi, l),
                    format!("{n}-byte cp.async source at {from:#x}: {}", self.lp.mem.describe_miss(from, n)),
                ))
            }
        };
        let off = from - region.base;
        for (k, byte) in out.iter_mut().enumerate() {
            let o = off + k as u64;
            if self.lp.sanitize && !region.is_init(o, 1) {
                return Err(fault(
                    "uninitialised read",
                    &self.site(pc, wi, l),
                    format!(
                        "cp.async reads global memory at {:#x} (offset {o} of {}) that no kernel, copy or memset has written",
                        region.base + o,
                        region.describe()
                    ),
                ));
            }
            *byte = region.load(o, 1) as u8;
        }
        Ok(())
    }

    /// Lands, oldest first, the copies of thread `tid` that `due` selects.
    fn land_where(&mut self, tid: usize, due: impl Fn(&AsyncCopy) -> bool) -> Result<()> {
        let copies = std::mem::take(&mut self.async_copies.per_thread[tid]);
        let (landing, pending): (Vec<AsyncCopy>, Vec<AsyncCopy>) = copies.into_iter().partition(|c| due(c));
        self.async_copies.per_thread[tid] = pending;
        for c in landing {
            let size = c.size as usize;
            if self.lp.sanitize {
                for w in words(c.dst, size) {
                    self.shadow[w].in_flight -= 1;
                }
                self.check_shared(tid / 32, c.pc as usize, LANDING, tid % 32, c.dst, size)?;
            }
            self.shared[c.dst..c.dst + size].copy_from_slice(&c.data[..size]);
        }
        Ok(())
    }

    /// `cp.async.mbarrier.arrive[.noinc]` for lane `l`: the thread's copies not yet tracked by
    /// an mbarrier defer one arrival on this one until they land; with none in flight the
    /// arrival happens now.
    fn track_with_mbarrier(&mut self, wi: usize, pc: usize, l: usize, addr: Addr, noinc: bool) -> Result<()> {
        let at = self.address(wi, addr, l);
        let limit = self.shared.len() as u64;
        if !at.is_multiple_of(8) || at.checked_add(8).is_none_or(|end| end > limit) {
            return Err(fault(
                "invalid mbarrier",
                &self.site(pc, wi, l),
                format!("cp.async.mbarrier.arrive on shared offset {at}, which is not an 8-byte aligned offset within the block's {limit} bytes"),
            ));
        }
        let off = at as usize;
        if self.lp.sanitize {
            self.check_shared(wi, pc, MBARRIER_UPDATE, l, off, 8)?;
        }
        let tid = self.warps[wi].base_tid as usize + l;
        let mut tracked = false;
        for c in self.async_copies.per_thread[tid].iter_mut().filter(|c| c.mbarrier.is_none()) {
            c.mbarrier = Some(off);
            tracked = true;
        }
        let mut m = Mbarrier::decode(sh_load(&self.shared, off, 8));
        if tracked {
            if !noinc {
                m.pending += 1;
            }
            match self.async_copies.deferred_arrivals.iter_mut().find(|(o, _)| *o == off) {
                Some((_, n)) => *n += 1,
                None => self.async_copies.deferred_arrivals.push((off, 1)),
            }
        } else if noinc {
            m = m.arrive(1, false);
        }
        // Without `.noinc` and nothing in flight, the increment and the arrival cancel out.
        sh_store(&mut self.shared, off, 8, m.encode());
        Ok(())
    }

    /// Completes the phases that wait only for deferred arrivals: their tracked copies land
    /// (every thread's), then the arrivals happen.
    pub(super) fn settle_deferred_arrivals(&mut self) -> Result<()> {
        let mut k = 0;
        while k < self.async_copies.deferred_arrivals.len() {
            let (off, n) = self.async_copies.deferred_arrivals[k];
            let m = Mbarrier::decode(sh_load(&self.shared, off, 8));
            if m.pending > n || m.tx != 0 {
                k += 1;
                continue;
            }
            self.async_copies.deferred_arrivals.swap_remove(k);
            for tid in 0..self.async_copies.per_thread.len() {
                self.land_where(tid, |c| c.mbarrier == Some(off))?;
            }
            sh_store(&mut self.shared, off, 8, m.arrive(n, false).encode());
        }
        Ok(())
    }

    /// The report of an access to a word with a copy in flight, naming the copy.
    pub(super) fn not_landed_yet(&self, wi: usize, pc: usize, l: usize, off: usize, reads: bool) -> Error {
        let var = self.lp.kernel.var_at(crate::sim::program::Space::Shared, off as u64).map(|v| format!(" ({v})")).unwrap_or_default();
        let issuer = self.async_copies.per_thread.iter().enumerate().find_map(|(tid, copies)| {
            copies.iter().find(|c| (c.dst..c.dst + c.size as usize).contains(&off)).map(|c| (tid, c.pc))
        });
        let by = match issuer {
            Some((tid, issue_pc)) => {
                let [x, y, z] = self.lp.thread_coords(tid as u32);
                format!("a cp.async of thread ({x},{y},{z}) at {}", self.lp.kernel.where_(issue_pc as usize))
            }
            None => "a cp.async".into(),
        };
        fault(
            "cp.async not waited for",
            &self.site(pc, wi, l),
            format!(
                "shared {} at offset {off}{var} touches memory that {by} has not written yet; the copy lands only at a \
                 cp.async.wait_group/wait_all covering its commit group (__pipeline_wait_prior, cuda::pipeline's \
                 consumer_wait) or when an mbarrier tracking it completes its phase",
                if reads { "read" } else { "write" }
            ),
        )
    }
}
