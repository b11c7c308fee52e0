//! The execution engine: blocks run independently (spread over host threads by the caller),
//! each as warps of 32 lanes in lockstep. Registers are lane-major per warp (`regs[reg*32+lane]`)
//! and every decoded instruction runs for all its active lanes in one tight loop.
//!
//! Control flow uses min-PC scheduling: each lane has its own pc, and a warp always runs the
//! lanes at the lowest pc among those that can run, so divergent lanes of structured code
//! reconverge where their paths meet. The warps of a block take turns in quanta of instructions
//! (round robin, deterministic), so a warp spinning on another warp's flag lets it run. `bar.sync`
//! parks lanes until every non-exited thread of the block waits at the same barrier (or, for a
//! barrier with a thread count, until that many threads arrived).
//!
//! A worker runs one block at a time to completion ([`Worker::run_block`]), except for a
//! cooperative launch, whose blocks each get a worker and advance together one round of quanta
//! at a time ([`Worker::step_block`]) so they can wait for each other.

mod async_copy;
mod device_calls;
mod memory_ops;
mod tensor_ops;

use super::counters::LaunchStats;
use super::program::{BarRedKind, Comb, Inst, Kernel, Op, ShflMode, Special, Src, VoteMode, NO_GUARD};
use super::memory::GlobalView;
use super::sanitizer::{fault, Site, WordShadow};
use crate::error::Result;

/// A block that runs longer than this is assumed stuck in a loop (minutes of simulation).
const MAX_WARP_INSTS_PER_BLOCK: u64 = 1 << 30;
/// Warp instructions a warp runs before the next warp of its block gets its turn. Hardware
/// guarantees forward progress between warps, so a warp spinning on a flag another warp sets
/// must yield; a long quantum keeps the switching cost out of the common case.
const WARP_QUANTUM: u32 = 4096;
/// Warp instructions a block may run past a read of never-written shared memory while waiting
/// to see whether another thread's write makes it a race; then the read is reported, before
/// garbage it read can send a loop spinning.
const UNINIT_GRACE: u64 = 1 << 20;

/// Everything a block needs to know about its launch.
pub struct Launch<'a> {
    pub kernel: &'a Kernel,
    pub grid: [u32; 3],
    pub block: [u32; 3],
    /// Dynamic shared memory bytes requested by the launch.
    pub dyn_shared: usize,
    pub params: &'a [u8],
    pub mem: &'a GlobalView,
    pub sanitize: bool,
    /// Only some blocks run (`SimOptions::sample_blocks`): a global access outside every
    /// allocation is counted and skipped (loads give 0) instead of faulting.
    pub sampled: bool,
    /// The zeroed global workspace of a cooperative launch's grid barrier (`%envreg1/2`), or 0.
    pub grid_workspace: u64,
}

impl Launch<'_> {
    pub fn threads_per_block(&self) -> u32 {
        self.block[0] * self.block[1] * self.block[2]
    }
    pub fn shared_bytes(&self) -> usize {
        self.kernel.shared_bytes(self.dyn_shared)
    }
    fn thread_coords(&self, t: u32) -> [u32; 3] {
        let [bx, by, _] = self.block;
        [t % bx, (t / bx) % by, t / (bx * by)]
    }
}

struct Warp {
    regs: Vec<u64>,
    pcs: [u32; 32],
    /// Lanes that exist (the last warp of a block may be partial).
    valid: u32,
    exited: u32,
    /// Lanes parked at a block barrier.
    waiting: u32,
    /// Lanes parked at a warp-synchronous instruction (shfl/vote/bar.warp.sync), waiting for the
    /// other lanes named in its member mask to arrive.
    wsync: u32,
    cur_pc: u32,
    cur_mask: u32,
    /// Count of `bar.warp.sync` executed: orders shared accesses between lanes of this warp.
    sync_epoch: u32,
    /// Linear thread index of lane 0.
    base_tid: u32,
}

macro_rules! lanes {
    ($mask:expr, $l:ident, $body:block) => {{
        let m: u32 = $mask;
        if m == u32::MAX {
            #[allow(clippy::needless_range_loop)]
            for $l in 0..32usize $body
        } else {
            let mut bits = m;
            while bits != 0 {
                let $l = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                $body
            }
        }
    }};
}

impl Warp {
    fn runnable(&self) -> u32 {
        self.valid & !self.exited & !self.waiting & !self.wsync
    }

    /// The lowest pc among the lanes of `mask` and the mask of the lanes at it (pc u32::MAX
    /// and no lane when `mask` is empty).
    fn lowest_pc(&self, mask: u32) -> (u32, u32) {
        let (mut min, mut at_min) = (u32::MAX, 0u32);
        lanes!(mask, l, {
            let pc = self.pcs[l];
            if pc < min {
                min = pc;
                at_min = 1 << l;
            } else if pc == min {
                at_min |= 1 << l;
            }
        });
        (min, at_min)
    }

    /// When nothing else can run, lanes parked at a warp-synchronous instruction go ahead
    /// without the lanes that never came (they exited or wait at a block barrier).
    fn release_warp_sync(&mut self) -> bool {
        if self.wsync == 0 {
            return false;
        }
        let (min, m) = self.lowest_pc(self.wsync);
        self.wsync &= !m;
        self.cur_pc = min;
        self.cur_mask = m;
        true
    }

    /// Selects the runnable lanes with the lowest pc; false when no lane can run.
    fn schedule(&mut self) -> bool {
        let r = self.runnable();
        if r == 0 {
            self.cur_mask = 0;
            return false;
        }
        let (min, m) = self.lowest_pc(r);
        self.cur_pc = min;
        self.cur_mask = m;
        true
    }

    /// Stores the current pc into the per-lane pcs of the current lanes.
    fn park_current(&mut self) {
        let pc = self.cur_pc;
        lanes!(self.cur_mask, l, {
            self.pcs[l] = pc;
        });
    }

    /// Lanes `mask` of the current ones stay at `pc` (waiting for a barrier or a warp sync); the
    /// other current lanes move on past it.
    fn hold(&mut self, mask: u32, pc: u32) {
        lanes!(mask, l, {
            self.pcs[l] = pc;
        });
        self.cur_mask &= !mask;
        if self.cur_mask != 0 {
            self.advance(pc + 1);
        }
    }

    /// The current lanes move on to `next`, merging with lanes already waiting there. Other
    /// runnable lanes are all at higher pcs (min-PC), so `next = pc + 1` keeps the order.
    fn advance(&mut self, next: u32) {
        self.cur_pc = next;
        let others = self.runnable() & !self.cur_mask;
        if others != 0 {
            lanes!(others, l, {
                if self.pcs[l] == next {
                    self.cur_mask |= 1 << l;
                }
            });
        }
    }

    /// Jumps the current lanes to `target` and picks the next lanes to run.
    fn jump(&mut self, target: u32) {
        if self.runnable() == self.cur_mask {
            self.cur_pc = target;
        } else {
            self.cur_pc = target;
            self.park_current();
            self.schedule();
        }
    }

    #[inline(always)]
    fn reg(&self, r: u32, l: usize) -> u64 {
        self.regs[r as usize * 32 + l]
    }
    #[inline(always)]
    fn set(&mut self, r: u32, l: usize, v: u64) {
        self.regs[r as usize * 32 + l] = v;
    }
}

/// The threads waiting at one barrier id: the first one's pc, warp and lane (for messages),
/// the thread count it waits for, and how many threads and warps wait.
#[derive(Clone, Copy)]
struct BarrierGroup {
    pc: u32,
    warp: usize,
    lane: usize,
    count: Option<u32>,
    threads: u32,
    warps: u32,
    last_warp: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum WarpSync {
    Done,
    /// The lanes wait at the instruction for the rest of their member mask.
    Parked,
}

/// The lanes of `mask` grouped by the member mask each names (cooperative groups' tiles give
/// each tile its own): (lanes, member mask) pairs, and how many there are.
fn member_groups(w: &Warp, g: &Geometry, mm: Src, mask: u32) -> ([(u32, u32); 32], usize) {
    let mut groups = [(0u32, 0u32); 32];
    let mut n = 0;
    let mut todo = mask;
    while todo != 0 {
        let member = read(w, g, mm, todo.trailing_zeros() as usize) as u32;
        let mut lanes_of = 0u32;
        lanes!(todo, l, {
            if read(w, g, mm, l) as u32 == member {
                lanes_of |= 1 << l;
            }
        });
        groups[n] = (lanes_of, member);
        n += 1;
        todo &= !lanes_of;
    }
    (groups, n)
}

/// Block geometry for special registers.
struct Geometry {
    ntid: [u32; 3],
    nctaid: [u32; 3],
    ctaid: [u32; 3],
    nwarps: u32,
    grid_workspace: u64,
}

#[inline(always)]
fn read(w: &Warp, g: &Geometry, s: Src, l: usize) -> u64 {
    match s {
        Src::Reg(r) => w.reg(r, l),
        Src::Imm(v) => v,
        Src::Special(sp) => special(w, g, sp, l),
    }
}

fn special(w: &Warp, g: &Geometry, sp: Special, l: usize) -> u64 {
    let t = w.base_tid + l as u32;
    let [bx, by, _] = g.ntid;
    let lane_bit = 1u64 << l;
    (match sp {
        Special::Tid(0) => t % bx,
        Special::Tid(1) => (t / bx) % by,
        Special::Tid(_) => t / (bx * by),
        Special::Ntid(d) => g.ntid[d as usize],
        Special::Ctaid(d) => g.ctaid[d as usize],
        Special::Nctaid(d) => g.nctaid[d as usize],
        Special::LaneId => l as u32,
        Special::WarpId => w.base_tid / 32,
        Special::NWarpId => g.nwarps,
        Special::LaneMaskEq => lane_bit as u32,
        Special::LaneMaskLt => (lane_bit - 1) as u32,
        Special::LaneMaskLe => ((lane_bit << 1) - 1) as u32,
        Special::LaneMaskGt => !(((lane_bit << 1) - 1) as u32),
        Special::LaneMaskGe => !((lane_bit - 1) as u32),
        Special::SmId => 0,
        Special::Clock => 0,
        Special::EnvReg(1) => (g.grid_workspace >> 32) as u32,
        Special::EnvReg(_) => g.grid_workspace as u32,
    }) as u64
}

/// Per-host-thread state reused across the blocks it runs.
pub struct Worker<'a> {
    lp: &'a Launch<'a>,
    warps: Vec<Warp>,
    shared: Vec<u8>,
    shadow: Vec<WordShadow>,
    local: Vec<u8>,
    /// Barrier epoch, increasing over all blocks this worker runs (so stale shadow never matches).
    epoch: u32,
    /// Epoch at which the current block started: shadow init older than this is stale.
    block_gen: u32,
    geo: Geometry,
    pub stats: LaunchStats,
    /// Device `printf` output of the blocks this worker ran, in execution order.
    pub printf_output: String,
    /// `stats.warp_insts` when the current block started (for the runaway-loop watchdog).
    block_start_insts: u64,
    scratch_addrs: Vec<u64>,
    scratch_shared: Vec<(u32, u64)>,
    /// Executions of memory instructions so far: tells the lanes of one instruction apart from
    /// accesses of other instructions in race checks.
    mem_inst_seq: u32,
    /// Threads that signalled each named barrier with `bar.arrive` since it last completed.
    bar_arrivals: [u32; 16],
    /// Whether the kernel uses barriers for a thread count (checked while warps still run).
    counted_barriers: bool,
    /// The first read of never-written shared memory in the current barrier interval. It is
    /// reported when the interval ends, unless another thread writes the word before then:
    /// that is a race whichever order the simulator happened to run the two in.
    pending_uninit: Option<crate::error::Error>,
    /// `stats.warp_insts` when `pending_uninit` was recorded.
    pending_uninit_at: u64,
    async_copies: async_copy::AsyncCopies,
}

impl<'a> Worker<'a> {
    pub fn new(lp: &'a Launch<'a>) -> Self {
        let nthreads = lp.threads_per_block();
        let nwarps = nthreads.div_ceil(32);
        let warps = (0..nwarps)
            .map(|w| Warp {
                regs: vec![0; lp.kernel.nregs * 32],
                pcs: [0; 32],
                valid: if (w + 1) * 32 <= nthreads { u32::MAX } else { (1u32 << (nthreads - w * 32)) - 1 },
                exited: 0,
                waiting: 0,
                wsync: 0,
                cur_pc: 0,
                cur_mask: 0,
                sync_epoch: 0,
                base_tid: w * 32,
            })
            .collect();
        let shared_bytes = lp.shared_bytes();
        Worker {
            lp,
            warps,
            shared: vec![0; shared_bytes],
            shadow: if lp.sanitize { vec![WordShadow::default(); shared_bytes.div_ceil(4)] } else { Vec::new() },
            local: vec![0; lp.kernel.local_bytes * nthreads as usize],
            epoch: 0,
            block_gen: 0,
            block_start_insts: 0,
            geo: Geometry { ntid: lp.block, nctaid: lp.grid, ctaid: [0; 3], nwarps, grid_workspace: lp.grid_workspace },
            stats: LaunchStats::default(),
            printf_output: String::new(),
            scratch_addrs: Vec::with_capacity(128),
            scratch_shared: Vec::with_capacity(128),
            mem_inst_seq: 0,
            bar_arrivals: [0; 16],
            counted_barriers: lp.kernel.insts.iter().any(|i| matches!(i.op, Op::Bar { count: Some(_), .. })),
            pending_uninit: None,
            pending_uninit_at: 0,
            async_copies: async_copy::AsyncCopies::new(nthreads as usize),
        }
    }

    fn site(&self, pc: usize, w: usize, l: usize) -> Site<'a> {
        let t = self.warps[w].base_tid + l as u32;
        Site { kernel: self.lp.kernel, pc, block: self.geo.ctaid, thread: self.lp.thread_coords(t) }
    }

    /// Runs block `linear` (x fastest) to completion. A pending uninitialised read is the
    /// root cause of any later fault of the block.
    pub fn run_block(&mut self, linear: u32) -> Result<()> {
        self.begin_block(linear);
        let result = loop {
            match self.step_block() {
                Ok(false) => continue,
                Ok(true) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.finish_block(result)
    }

    /// Sets up block `linear` (x fastest) to run with [`Worker::step_block`].
    pub fn begin_block(&mut self, linear: u32) {
        self.pending_uninit = None;
        let [gx, gy, _] = self.lp.grid;
        self.geo.ctaid = [linear % gx, (linear / gx) % gy, linear / (gx * gy)];
        self.epoch += 1;
        self.block_gen = self.epoch;
        // Fresh state per block; zeroed so a kernel that reads garbage does so deterministically.
        for w in &mut self.warps {
            w.regs.fill(0);
            w.pcs = [0; 32];
            w.exited = 0;
            w.waiting = 0;
            w.wsync = 0;
            w.cur_pc = 0;
            w.cur_mask = w.valid;
            w.sync_epoch = 0;
        }
        self.reset_async_copies();
        self.shared.fill(0);
        self.local.fill(0);
        self.bar_arrivals = [0; 16];
        self.block_start_insts = self.stats.warp_insts;
    }

    /// Gives every warp of the current block one quantum, round robin; Ok(true) once every
    /// thread has exited (or a pending uninitialised read has waited out its grace).
    pub fn step_block(&mut self) -> Result<bool> {
        let mut preempted = false;
        for w in 0..self.warps.len() {
            preempted |= self.run_warp(w, WARP_QUANTUM)?;
        }
        if self.pending_uninit.is_some() && self.stats.warp_insts - self.pending_uninit_at > UNINIT_GRACE {
            return Ok(true); // finish_block reports the pending read
        }
        if preempted {
            // A barrier for a thread count completes once enough warps arrived, even while
            // others run on (maybe waiting for what the released threads do next).
            if self.counted_barriers {
                self.release_barriers(false)?;
            }
            return Ok(false);
        }
        // Every warp is blocked (at a barrier) or done.
        self.release_barriers(true)?;
        Ok(self.warps.iter().all(|w| w.valid & !w.exited == 0))
    }

    /// A fingerprint of everything the current block's future depends on besides global memory
    /// (registers, control state, shared memory, named-barrier arrivals).
    pub fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for w in &self.warps {
            (&w.regs, w.pcs, w.exited, w.waiting, w.wsync, w.cur_pc, w.cur_mask).hash(&mut h);
        }
        (&self.shared, self.bar_arrivals).hash(&mut h);
        h.finish()
    }

    /// Bytes of global memory the blocks this worker ran have stored or updated atomically.
    pub fn global_writes(&self) -> u64 {
        self.stats.global_store_bytes + self.stats.global_atomic_bytes
    }

    /// The fault of a cooperative launch whose blocks wait for each other forever, at the
    /// current block's first unfinished lane.
    pub fn grid_deadlock(&self) -> crate::error::Error {
        let (wi, w) = self.warps.iter().enumerate().find(|(_, w)| w.valid & !w.exited != 0).unwrap_or((0, &self.warps[0]));
        let l = (w.valid & !w.exited).trailing_zeros() as usize % 32;
        let pc = if w.cur_mask >> l & 1 == 1 { w.cur_pc } else { w.pcs[l] };
        fault(
            "grid deadlock",
            &self.site(pc as usize, wi, l),
            "every unfinished block of the cooperative launch waits for the others and none can change anything they wait \
             for (their states repeat and no block writes global memory); every block must reach each grid-wide sync",
        )
    }

    /// The outcome of the current block given how its steps ended: a pending uninitialised read
    /// is the root cause of any later fault.
    pub fn finish_block(&mut self, result: Result<()>) -> Result<()> {
        match self.pending_uninit.take() {
            Some(uninit) => Err(uninit),
            None => result,
        }
    }

    /// Releases the barriers whose participants have all arrived. `all_blocked`: no warp can
    /// run (every lane has exited or waits), so a barrier of the whole block is complete when
    /// every waiting thread waits at it, and nothing to release is a deadlock.
    fn release_barriers(&mut self, all_blocked: bool) -> Result<()> {
        if all_blocked {
            if let Some(uninit) = self.pending_uninit.take() {
                return Err(uninit);
            }
        }
        let insts = &self.lp.kernel.insts;
        let mut groups: [Option<BarrierGroup>; 16] = [None; 16];
        let mut total_waiting = 0u32;
        for (wi, w) in self.warps.iter().enumerate() {
            let mut divergent = None;
            lanes!(w.waiting, l, {
                let pc = w.pcs[l];
                let Op::Bar { id, count, .. } = insts[pc as usize].op else { unreachable!("lanes wait at barriers only") };
                let id = (read(w, &self.geo, id, l) & 15) as usize;
                let count = count.map(|c| read(w, &self.geo, c, l) as u32);
                let g = groups[id].get_or_insert(BarrierGroup { pc, warp: wi, lane: l, count, threads: 0, warps: 0, last_warp: usize::MAX });
                if g.count.is_none() && g.pc != pc && divergent.is_none() {
                    divergent = Some((l, *g));
                }
                g.threads += 1;
                if g.last_warp != wi {
                    g.last_warp = wi;
                    g.warps += 1;
                }
                total_waiting += 1;
            });
            if let (true, Some((l, other))) = (all_blocked, divergent) {
                let first = self.site(other.pc as usize, other.warp, other.lane);
                let detail = format!(
                    "barrier divergence: this thread waits here while thread ({},{},{}) waits at {}; \
                     every non-exited thread of a block must reach the same __syncthreads()",
                    first.thread[0],
                    first.thread[1],
                    first.thread[2],
                    self.lp.kernel.where_(other.pc as usize)
                );
                return Err(fault("barrier error", &self.site(w.pcs[l] as usize, wi, l), detail));
            }
        }
        let mut released = false;
        for (id, g) in groups.iter().enumerate() {
            let Some(g) = g else { continue };
            // Hardware counts a warp's arrival as the whole warp.
            let ready = match g.count {
                None => all_blocked && g.threads == total_waiting,
                Some(c) => g.warps * 32 + self.bar_arrivals[id] >= c,
            };
            if !ready {
                continue;
            }
            self.bar_arrivals[id] = 0;
            let released_here = |w: &Warp, geo: &Geometry| {
                let mut freed = 0u32;
                lanes!(w.waiting, l, {
                    let Op::Bar { id: bid, .. } = insts[w.pcs[l] as usize].op else { unreachable!("lanes wait at barriers only") };
                    if (read(w, geo, bid, l) & 15) as usize == id {
                        freed |= 1 << l;
                    }
                });
                freed
            };
            // bar.red: the reduction over every released thread, handed to each of them.
            if let Op::Bar { red: Some(red), .. } = insts[g.pc as usize].op {
                let (mut count, mut threads) = (0u64, 0u64);
                for w in &self.warps {
                    lanes!(released_here(w, &self.geo), l, {
                        threads += 1;
                        count += ((read(w, &self.geo, red.c, l) != 0) != red.neg) as u64;
                    });
                }
                let v = match red.kind {
                    BarRedKind::Popc => count,
                    BarRedKind::And => (count == threads) as u64,
                    BarRedKind::Or => (count > 0) as u64,
                };
                for w in &mut self.warps {
                    lanes!(released_here(w, &self.geo), l, {
                        w.set(red.d, l, v);
                    });
                }
            }
            for w in &mut self.warps {
                let freed = released_here(w, &self.geo);
                lanes!(freed, l, {
                    w.pcs[l] += 1;
                });
                w.waiting &= !freed;
                if freed != 0 && w.cur_mask == 0 {
                    w.schedule();
                }
            }
            released = true;
            self.stats.barriers += 1;
        }
        if released {
            self.epoch += 1;
        } else if all_blocked && total_waiting > 0 {
            let g = groups.iter().flatten().next().copied().expect("a waiting thread has a barrier");
            let detail = format!(
                "barrier deadlock: {} threads wait at barrier {} {}, and no other thread can arrive",
                g.threads,
                groups.iter().position(|x| x.is_some()).unwrap_or(0),
                match g.count {
                    Some(c) => format!("for {c} threads, but only {} arrived", g.warps * 32),
                    None => format!("for the whole block, but {} other threads wait at other barriers", total_waiting - g.threads),
                }
            );
            return Err(fault("barrier error", &self.site(g.pc as usize, g.warp, g.lane), detail));
        }
        Ok(())
    }

    /// Runs warp `wi` until none of its lanes can run (false) or for `quantum` instructions
    /// (true: it was preempted and can go on).
    fn run_warp(&mut self, wi: usize, quantum: u32) -> Result<bool> {
        let insts: &'a [Inst] = &self.lp.kernel.insts;
        let mut budget = quantum;
        loop {
            let w = &mut self.warps[wi];
            if w.cur_mask == 0 && !w.schedule() && !w.release_warp_sync() {
                return Ok(false);
            }
            if budget == 0 {
                return Ok(true);
            }
            budget -= 1;
            let pc = w.cur_pc as usize;
            let inst = &insts[pc];
            if self.stats.warp_insts - self.block_start_insts > MAX_WARP_INSTS_PER_BLOCK {
                let l = w.cur_mask.trailing_zeros() as usize;
                return Err(fault(
                    "runaway kernel",
                    &self.site(pc, wi, l),
                    format!("the block executed more than {MAX_WARP_INSTS_PER_BLOCK} warp instructions; is a loop missing its exit?"),
                ));
            }
            let mut mask = w.cur_mask;
            if inst.guard != NO_GUARD {
                let mut g = 0u32;
                lanes!(mask, l, {
                    if (w.reg(inst.guard, l) != 0) != inst.guard_neg {
                        g |= 1 << l;
                    }
                });
                mask = g;
            }
            // Lane instructions count the warp's active lanes (predicated-off lanes still
            // occupy their slot, as in warp execution efficiency); FLOPs only the enabled ones.
            self.stats.warp_insts += 1;
            self.stats.lane_insts += w.cur_mask.count_ones() as u64;
            self.stats.flops += inst.flops as u64 * mask.count_ones() as u64;
            let geo = &self.geo;
            match inst.op {
                Op::Bin { f, d, a, b } => lanes!(mask, l, {
                    let v = f(read(w, geo, a, l), read(w, geo, b, l));
                    w.set(d, l, v);
                }),
                Op::Ter { f, d, a, b, c } => lanes!(mask, l, {
                    let v = f(read(w, geo, a, l), read(w, geo, b, l), read(w, geo, c, l));
                    w.set(d, l, v);
                }),
                Op::Un { f, d, a } => lanes!(mask, l, {
                    let v = f(read(w, geo, a, l));
                    w.set(d, l, v);
                }),
                Op::Quad { f, d, a, b, c, e } => lanes!(mask, l, {
                    let v = f(read(w, geo, a, l), read(w, geo, b, l), read(w, geo, c, l), read(w, geo, e, l));
                    w.set(d, l, v);
                }),
                Op::Setp { f, comb, p, q, a, b } => lanes!(mask, l, {
                    let mut t = f(read(w, geo, a, l), read(w, geo, b, l));
                    let mut nt = !t;
                    if let Some((c, src, neg)) = comb {
                        let x = (read(w, geo, src, l) != 0) != neg;
                        let combine = |v: bool| match c {
                            Comb::And => v && x,
                            Comb::Or => v || x,
                            Comb::Xor => v ^ x,
                        };
                        t = combine(t);
                        nt = combine(nt);
                    }
                    w.set(p, l, t as u64);
                    if let Some(q) = q {
                        w.set(q, l, nt as u64);
                    }
                }),
                Op::Cvt { ref spec, d, a } => lanes!(mask, l, {
                    let v = super::alu::convert(spec, read(w, geo, a, l));
                    w.set(d, l, v);
                }),
                Op::Unpack { ds, n, bits, a } => lanes!(mask, l, {
                    let v = read(w, geo, a, l);
                    for (k, &d) in ds.iter().take(n as usize).enumerate() {
                        w.set(d, l, (v >> (k as u32 * bits as u32)) & super::alu::mask(bits as u32));
                    }
                }),
                Op::Pack { d, srcs, n, bits } => lanes!(mask, l, {
                    let mut v = 0u64;
                    for (k, &s) in srcs.iter().take(n as usize).enumerate() {
                        v |= (read(w, geo, s, l) & super::alu::mask(bits as u32)) << (k as u32 * bits as u32);
                    }
                    w.set(d, l, v);
                }),
                Op::Bra { target } => {
                    let not_taken = w.cur_mask & !mask;
                    if not_taken == 0 {
                        w.jump(target);
                    } else if mask == 0 {
                        w.advance(pc as u32 + 1);
                    } else {
                        lanes!(mask, l, {
                            w.pcs[l] = target;
                        });
                        lanes!(not_taken, l, {
                            w.pcs[l] = pc as u32 + 1;
                        });
                        w.schedule();
                    }
                    continue;
                }
                Op::Exit => {
                    w.exited |= mask;
                    w.cur_mask &= !mask;
                    if w.cur_mask != 0 {
                        w.advance(pc as u32 + 1);
                    }
                    continue;
                }
                Op::Bar { arrive: true, id, .. } => {
                    // Signals the warp's arrival without waiting.
                    if mask != 0 {
                        let l = mask.trailing_zeros() as usize;
                        self.bar_arrivals[(read(w, geo, id, l) & 15) as usize] += 32;
                    }
                }
                Op::Bar { .. } => {
                    w.waiting |= mask;
                    w.hold(mask, pc as u32);
                    continue;
                }
                Op::Nop => {}
                Op::Fence => self.epoch += 1,
                Op::AssertFail { args } => {
                    if mask != 0 {
                        return Err(self.assert_fail(wi, pc, mask, args));
                    }
                }
                Op::Printf { format, args, ret } => self.printf(wi, mask, format, args, ret),
                Op::Trap => {
                    if mask != 0 {
                        let l = mask.trailing_zeros() as usize;
                        return Err(fault("trap", &self.site(pc, wi, l), "the kernel executed `trap` (a device-side assert failed)"));
                    }
                }
                Op::Ld { .. } | Op::St { .. } | Op::Atom { .. } => self.memory_op(wi, pc, inst, mask)?,
                Op::Mbar { .. } => self.memory_op(wi, pc, inst, mask)?,
                Op::CpAsync { .. } | Op::CpAsyncCommit | Op::CpAsyncWait { .. } | Op::CpAsyncMbarArrive { .. } => self.async_op(wi, pc, inst, mask)?,
                Op::Shfl { .. } | Op::Vote { .. } | Op::WarpSync { .. } | Op::Redux { .. } | Op::Match { .. } | Op::Elect { .. } | Op::Mma { .. } | Op::Ldmatrix { .. } => {
                    if self.warp_op(wi, pc, inst, mask)? == WarpSync::Parked {
                        continue;
                    }
                }
            }
            self.warps[wi].advance(pc as u32 + 1);
        }
    }

    /// Checks that the lanes named in a `.sync` member mask are converged here.
    fn check_converged(&self, wi: usize, pc: usize, mask: u32, member: u32, what: &str) -> Result<()> {
        let w = &self.warps[wi];
        let missing = member & w.valid & !w.exited & !mask;
        if self.lp.sanitize && missing != 0 && mask != 0 {
            let l = mask.trailing_zeros() as usize;
            return Err(fault(
                "warp-synchronous error",
                &self.site(pc, wi, l),
                format!(
                    "{what} names lanes {missing:#010x} in its member mask {member:#010x}, but they wait at another \
                     barrier or warp-synchronous instruction; every named non-exited lane must reach the same {what}"
                ),
            ));
        }
        Ok(())
    }

    /// Runs a warp-synchronous instruction for `mask` plus any lanes parked at it, or parks them
    /// all while lanes named in the member mask are still on their way (as `.sync` waits on
    /// Volta and later).
    fn warp_op(&mut self, wi: usize, pc: usize, inst: &Inst, mask: u32) -> Result<WarpSync> {
        let w = &mut self.warps[wi];
        let mut arrived = 0u32;
        lanes!(w.wsync, l, {
            if w.pcs[l] == pc as u32 {
                arrived |= 1 << l;
            }
        });
        w.wsync &= !arrived;
        w.cur_mask |= arrived;
        let mask = mask | arrived;
        if mask == 0 {
            return Ok(WarpSync::Done);
        }
        let first = mask.trailing_zeros() as usize;
        let mm = match inst.op {
            Op::Shfl { mask, .. } | Op::Vote { mask, .. } | Op::WarpSync { mask } | Op::Redux { mask, .. } | Op::Match { mask, .. } | Op::Elect { mask, .. } => mask,
            // `.aligned` collectives: every lane of the warp takes part.
            Op::Mma { .. } | Op::Ldmatrix { .. } => Src::Imm(u32::MAX as u64),
            _ => unreachable!("warp_op is called for warp-level instructions only"),
        };
        let member = read(w, &self.geo, mm, first) as u32;
        if member & !mask & w.runnable() != 0 {
            w.wsync |= mask;
            w.hold(mask, pc as u32);
            return Ok(WarpSync::Parked);
        }
        match inst.op {
            Op::Shfl { mode, d, p, a, b, c, .. } => {
                self.check_converged(wi, pc, mask, member, "shfl.sync")?;
                let w = &self.warps[wi];
                let mut vals = [0u64; 32];
                let mut oks = 0u32;
                let mut bad_source = None;
                lanes!(mask, l, {
                    let lane = l as i32;
                    let bval = (read(w, &self.geo, b, l) & 31) as i32;
                    let cval = read(w, &self.geo, c, l) as u32;
                    let segmask = ((cval >> 8) & 31) as i32;
                    let clamp = (cval & 31) as i32;
                    let max_lane = (lane & segmask) | (clamp & !segmask);
                    let min_lane = lane & segmask;
                    let (j, ok) = match mode {
                        ShflMode::Up => (lane - bval, lane - bval >= max_lane),
                        ShflMode::Down => (lane + bval, lane + bval <= max_lane),
                        ShflMode::Bfly => (lane ^ bval, (lane ^ bval) <= max_lane),
                        ShflMode::Idx => {
                            let j = min_lane | (bval & !segmask);
                            (j, j <= max_lane)
                        }
                    };
                    let j = if ok { j as usize } else { l };
                    if ok {
                        oks |= 1 << l;
                    }
                    if mask & (1 << j) == 0 && bad_source.is_none() {
                        bad_source = Some((l, j));
                    }
                    vals[l] = read(w, &self.geo, a, j);
                });
                if let (true, Some((l, j))) = (self.lp.sanitize, bad_source) {
                    return Err(fault(
                        "warp-synchronous error",
                        &self.site(pc, wi, l),
                        format!("shfl.sync reads lane {j}, which is not executing it (inactive, exited or beyond the block); the value is undefined"),
                    ));
                }
                let w = &mut self.warps[wi];
                lanes!(mask, l, {
                    w.set(d, l, vals[l]);
                    if let Some(p) = p {
                        w.set(p, l, ((oks >> l) & 1) as u64);
                    }
                });
            }
            Op::Vote { mode, d, a, neg, mask: mm } => {
                self.check_converged(wi, pc, mask, member, "vote.sync")?;
                let w = &mut self.warps[wi];
                let (groups, n) = member_groups(w, &self.geo, mm, mask);
                for &(lanes_of, member) in &groups[..n] {
                    let voters = mask & member;
                    let mut ballot = 0u32;
                    lanes!(voters, l, {
                        if (read(w, &self.geo, a, l) != 0) != neg {
                            ballot |= 1 << l;
                        }
                    });
                    let v = match mode {
                        VoteMode::Ballot => ballot as u64,
                        VoteMode::All => (ballot == voters) as u64,
                        VoteMode::Any => (ballot != 0) as u64,
                        VoteMode::Uni => (ballot == 0 || ballot == voters) as u64,
                    };
                    lanes!(lanes_of, l, {
                        w.set(d, l, v);
                    });
                }
            }
            Op::Elect { d, p, mask: mm } => {
                self.check_converged(wi, pc, mask, member, "elect.sync")?;
                let w = &mut self.warps[wi];
                let (groups, n) = member_groups(w, &self.geo, mm, mask);
                for &(lanes_of, member) in &groups[..n] {
                    // No leader when none of the member mask executes here (lane id 32 never matches).
                    let leader = (mask & member).trailing_zeros();
                    lanes!(lanes_of, l, {
                        w.set(d, l, (leader % 32) as u64);
                        w.set(p, l, (l as u32 == leader) as u64);
                    });
                }
            }
            Op::Mma { .. } => {
                self.check_converged(wi, pc, mask, member, "mma.sync")?;
                self.mma(wi, inst, mask);
            }
            Op::Ldmatrix { .. } => {
                self.check_converged(wi, pc, mask, member, "ldmatrix.sync")?;
                self.ldmatrix(wi, pc, inst, mask)?;
            }
            Op::WarpSync { .. } => {
                self.check_converged(wi, pc, mask, member, "bar.warp.sync")?;
                self.warps[wi].sync_epoch += 1;
            }
            Op::Redux { f, d, a, mask: mm } => {
                self.check_converged(wi, pc, mask, member, "redux.sync")?;
                let w = &mut self.warps[wi];
                let (groups, n) = member_groups(w, &self.geo, mm, mask);
                for &(lanes_of, member) in &groups[..n] {
                    let mut acc: Option<u64> = None;
                    lanes!(mask & member, l, {
                        let v = read(w, &self.geo, a, l) & 0xffff_ffff;
                        acc = Some(acc.map_or(v, |x| f(x, v)));
                    });
                    let v = acc.unwrap_or(0);
                    lanes!(lanes_of, l, {
                        w.set(d, l, v);
                    });
                }
            }
            Op::Match { all, d, p, a, mask: mm } => {
                self.check_converged(wi, pc, mask, member, "match.sync")?;
                let w = &mut self.warps[wi];
                let mut vals = [0u64; 32];
                lanes!(mask, l, {
                    vals[l] = read(w, &self.geo, a, l);
                });
                let (groups, n) = member_groups(w, &self.geo, mm, mask);
                for &(lanes_of, member) in &groups[..n] {
                    let voters = mask & member;
                    let first = vals[(voters.trailing_zeros() % 32) as usize];
                    let mut agree = voters != 0;
                    lanes!(voters, l, {
                        agree &= vals[l] == first;
                    });
                    lanes!(lanes_of, l, {
                        let same = if all {
                            if agree {
                                voters
                            } else {
                                0
                            }
                        } else {
                            let mut m = 0u32;
                            lanes!(voters, k, {
                                if vals[k] == vals[l] {
                                    m |= 1 << k;
                                }
                            });
                            m
                        };
                        w.set(d, l, same as u64);
                        if let Some(p) = p {
                            w.set(p, l, agree as u64);
                        }
                    });
                }
            }
            _ => unreachable!("warp_op is called for warp-level instructions only"),
        }
        Ok(WarpSync::Done)
    }
}
