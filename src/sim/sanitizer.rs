//! Sanitizer state and diagnostics: shadow records for shared-memory words (initialised bytes,
//! the accesses of the current barrier interval) and the one-line messages every fault uses.

use super::program::Kernel;
use crate::error::Error;

/// Where a fault happened: kernel, instruction, block and thread.
pub struct Site<'a> {
    pub kernel: &'a Kernel,
    pub pc: usize,
    pub block: [u32; 3],
    pub thread: [u32; 3],
}

pub fn fault(kind: &str, site: &Site, detail: impl std::fmt::Display) -> Error {
    let [bx, by, bz] = site.block;
    let [tx, ty, tz] = site.thread;
    Error::KernelFault {
        kernel: site.kernel.name.clone(),
        detail: format!("{kind} at {}, block ({bx},{by},{bz}) thread ({tx},{ty},{tz}): {detail}", site.kernel.where_(site.pc)),
    }
}

/// An access by one thread, stamped with the block's barrier epoch, the warp's
/// `bar.warp.sync` count (threads of one warp that synced since are ordered), the instruction
/// (`pc`, for the report) and which execution of a memory instruction it was (`inst`: the lanes
/// of one warp instruction do not race among themselves; the word ends up with one of the values).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stamp {
    pub tid: u32,
    pub epoch: u32,
    pub warp_epoch: u32,
    pub pc: u32,
    pub inst: u32,
}

impl Stamp {
    /// Whether `self` and `other` are unordered accesses of different threads.
    fn conflicts(&self, other: &Stamp) -> bool {
        other.epoch == self.epoch
            && other.tid != self.tid
            && other.inst != self.inst
            && !(other.tid / 32 == self.tid / 32 && other.warp_epoch != self.warp_epoch)
    }
}

/// Shadow of one 4-byte shared-memory word: what happened to it in the current barrier interval
/// (the last writer, the two most recent distinct readers and atomic threads), so a conflicting
/// pair is found whichever of the two accesses ran first. Atomics do not race with atomics, but
/// do with plain accesses of other threads: a counter zeroed or read without a barrier between
/// it and other threads' `atomicAdd`s loses or misses their additions. Epochs start at 1, so the zeroed default records
/// conflict with nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct WordShadow {
    /// Block generation in which `init_bytes` were written (older generations mean nothing).
    pub init_gen: u32,
    pub init_bytes: u8,
    /// Deferred `cp.async` copies into the word that have not landed yet: any other access to
    /// it sees (or is overwritten by) memory the copy has not written.
    pub in_flight: u16,
    pub writer: Stamp,
    pub readers: [Stamp; 2],
    pub atomics: [Stamp; 2],
}

pub enum Race {
    ReadAfterWrite(Stamp),
    WriteAfterWrite(Stamp),
    WriteAfterRead(Stamp),
    AtomicAfterAccess(Stamp),
    AccessAfterAtomic(Stamp),
}

impl Race {
    /// The finding as compute-sanitizer's racecheck words it: both threads, both instructions.
    pub fn describe(&self, kernel: &Kernel, word_offset: u64, var: Option<&str>, block_dim: [u32; 3]) -> String {
        let (what, other) = match self {
            Race::ReadAfterWrite(s) => ("read of a word written by", s),
            Race::WriteAfterWrite(s) => ("write of a word also written by", s),
            Race::WriteAfterRead(s) => ("write of a word read by", s),
            Race::AtomicAfterAccess(s) => ("atomic on a word accessed without an atomic by", s),
            Race::AccessAfterAtomic(s) => ("access of a word updated atomically by", s),
        };
        let t = other.tid;
        let (x, y, z) = (t % block_dim[0], (t / block_dim[0]) % block_dim[1], t / (block_dim[0] * block_dim[1]));
        let var = var.map(|v| format!(" ({v})")).unwrap_or_default();
        format!(
            "shared-memory {what} thread ({x},{y},{z}) at {} in the same barrier interval, at shared offset {word_offset}{var}; \
             a __syncthreads() (or __syncwarp() within a warp) is missing between the two accesses",
            kernel.where_(other.pc as usize)
        )
    }
}

impl WordShadow {
    /// Records a read; returns the race it forms with the interval's write, if any.
    pub fn read(&mut self, s: Stamp) -> Option<Race> {
        if s.conflicts(&self.writer) {
            return Some(Race::ReadAfterWrite(self.writer));
        }
        if let Some(race) = self.after_atomics(s) {
            return Some(race);
        }
        remember(&mut self.readers, s);
        None
    }

    /// Records an atomic; returns the race it forms with the interval's plain accesses, if any.
    pub fn atomic(&mut self, s: Stamp) -> Option<Race> {
        if let Some(&other) = std::iter::once(&self.writer).chain(&self.readers).find(|o| s.conflicts(o)) {
            return Some(Race::AtomicAfterAccess(other));
        }
        remember(&mut self.atomics, s);
        None
    }

    fn after_atomics(&self, s: Stamp) -> Option<Race> {
        self.atomics.iter().find(|a| s.conflicts(a)).map(|&a| Race::AccessAfterAtomic(a))
    }

    /// Records a write; returns the race it forms with the interval's earlier accesses, if any.
    pub fn write(&mut self, s: Stamp) -> Option<Race> {
        if s.conflicts(&self.writer) {
            return Some(Race::WriteAfterWrite(self.writer));
        }
        for r in self.readers {
            if s.conflicts(&r) {
                return Some(Race::WriteAfterRead(r));
            }
        }
        if let Some(race) = self.after_atomics(s) {
            return Some(race);
        }
        self.writer = s;
        None
    }
}

/// Keeps `s` among the two most recent stamps of distinct threads.
fn remember(recent: &mut [Stamp; 2], s: Stamp) {
    if recent[1].tid != s.tid {
        recent[0] = recent[1];
    }
    recent[1] = s;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(tid: u32, epoch: u32) -> Stamp {
        Stamp { tid, epoch, warp_epoch: 0, pc: 0, inst: tid + 100 * epoch }
    }

    #[test]
    fn races_need_two_threads_in_one_epoch() {
        let mut w = WordShadow::default();
        assert!(w.write(st(0, 1)).is_none());
        assert!(w.read(st(0, 1)).is_none());
        assert!(matches!(w.read(st(1, 1)), Some(Race::ReadAfterWrite(_))));
        assert!(w.read(st(1, 2)).is_none());
        assert!(w.read(st(2, 2)).is_none());
        assert!(matches!(w.write(st(1, 2)), Some(Race::WriteAfterRead(_))));
        assert!(w.write(st(3, 3)).is_none());
        assert!(matches!(w.write(st(4, 3)), Some(Race::WriteAfterWrite(_))));
    }

    #[test]
    fn warp_sync_orders_lanes_of_one_warp() {
        let mut w = WordShadow::default();
        assert!(w.write(Stamp { tid: 0, epoch: 1, warp_epoch: 0, pc: 0, inst: 1 }).is_none());
        assert!(w.read(Stamp { tid: 5, epoch: 1, warp_epoch: 1, pc: 0, inst: 2 }).is_none());
        assert!(w.read(Stamp { tid: 40, epoch: 1, warp_epoch: 1, pc: 0, inst: 3 }).is_some());
    }

    #[test]
    fn lanes_of_one_instruction_do_not_race() {
        let mut w = WordShadow::default();
        for tid in 0..32 {
            assert!(w.write(Stamp { tid, epoch: 1, warp_epoch: 0, pc: 7, inst: 9 }).is_none());
        }
        assert!(matches!(w.write(Stamp { tid: 3, epoch: 1, warp_epoch: 0, pc: 8, inst: 10 }), Some(Race::WriteAfterWrite(_))));
    }

    #[test]
    fn atomics_race_with_plain_accesses_of_other_threads_only() {
        let mut w = WordShadow::default();
        assert!(w.write(st(0, 1)).is_none());
        assert!(matches!(w.atomic(st(40, 1)), Some(Race::AtomicAfterAccess(s)) if s.tid == 0));
        let mut w = WordShadow::default();
        for tid in [3, 40, 70] {
            assert!(w.atomic(st(tid, 1)).is_none());
        }
        assert!(w.read(st(70, 1)).is_some(), "thread 40's atomic is unordered with thread 70's read");
        assert!(w.read(st(0, 2)).is_none());
        assert!(w.atomic(st(0, 2)).is_none());
    }

    #[test]
    fn a_read_before_another_threads_write_is_a_race_too() {
        let mut w = WordShadow::default();
        assert!(w.read(st(1, 4)).is_none());
        assert!(matches!(w.write(st(33, 4)), Some(Race::WriteAfterRead(s)) if s.tid == 1));
    }
}
