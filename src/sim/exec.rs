//! The execution engine: blocks run independently (spread over host threads by the caller),
//! each as warps of 32 lanes in lockstep. Registers are lane-major per warp (`regs[reg*32+lane]`)
//! and every decoded instruction runs for all its active lanes in one tight loop.
//!
//! Control flow uses min-PC scheduling: each lane has its own pc, and a warp always runs the
//! lanes at the lowest pc among those that can run, so divergent lanes of structured code
//! reconverge where their paths meet. `bar.sync` parks lanes until every non-exited thread of the
//! block waits at the same barrier.

use super::counters::{distinct_sectors, shared_wavefronts, LaunchStats};
use super::decode::{Addr, Comb, Inst, Kernel, Op, ShflMode, Space, Special, Src, VoteMode, LOCAL_WINDOW, NO_GUARD, SHARED_WINDOW, WINDOW_SIZE};
use super::memory::{GlobalView, Region};
use super::sanitizer::{fault, Site, Stamp, WordShadow};
use crate::error::{Error, Result};

/// A block that runs longer than this is assumed stuck in a loop (minutes of simulation).
const MAX_WARP_INSTS_PER_BLOCK: u64 = 1 << 30;

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
}

impl Launch<'_> {
    pub fn threads_per_block(&self) -> u32 {
        self.block[0] * self.block[1] * self.block[2]
    }
    pub fn shared_bytes(&self) -> usize {
        self.kernel.dyn_shared_offset.max(self.kernel.static_shared) + self.dyn_shared
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
        self.valid & !self.exited & !self.waiting
    }

    /// Selects the runnable lanes with the lowest pc; false when no lane can run.
    fn schedule(&mut self) -> bool {
        let r = self.runnable();
        if r == 0 {
            self.cur_mask = 0;
            return false;
        }
        let (mut min, mut m) = (u32::MAX, 0u32);
        lanes!(r, l, {
            let pc = self.pcs[l];
            if pc < min {
                min = pc;
                m = 1 << l;
            } else if pc == min {
                m |= 1 << l;
            }
        });
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

/// Block geometry for special registers.
struct Geometry {
    ntid: [u32; 3],
    nctaid: [u32; 3],
    ctaid: [u32; 3],
    nwarps: u32,
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
    /// `stats.warp_insts` when the current block started (for the runaway-loop watchdog).
    block_start_insts: u64,
    scratch_addrs: Vec<u64>,
    scratch_shared: Vec<(u32, u64)>,
}

fn sh_load(buf: &[u8], off: usize, size: u8) -> u64 {
    let mut b = [0u8; 8];
    b[..size as usize].copy_from_slice(&buf[off..off + size as usize]);
    u64::from_le_bytes(b)
}
fn sh_store(buf: &mut [u8], off: usize, size: u8, v: u64) {
    buf[off..off + size as usize].copy_from_slice(&v.to_le_bytes()[..size as usize]);
}

/// Which memory a resolved access goes to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Global,
    Shared,
    Local,
    Param,
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
            geo: Geometry { ntid: lp.block, nctaid: lp.grid, ctaid: [0; 3], nwarps },
            stats: LaunchStats::default(),
            scratch_addrs: Vec::with_capacity(128),
            scratch_shared: Vec::with_capacity(128),
        }
    }

    fn site(&self, pc: usize, w: usize, l: usize) -> Site<'a> {
        let t = self.warps[w].base_tid + l as u32;
        Site { kernel: self.lp.kernel, pc, block: self.geo.ctaid, thread: self.lp.thread_coords(t) }
    }

    /// Runs block `linear` (x fastest) to completion.
    pub fn run_block(&mut self, linear: u32) -> Result<()> {
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
            w.cur_pc = 0;
            w.cur_mask = w.valid;
            w.sync_epoch = 0;
        }
        self.shared.fill(0);
        self.local.fill(0);
        self.block_start_insts = self.stats.warp_insts;
        loop {
            for w in 0..self.warps.len() {
                self.run_warp(w)?;
            }
            self.release_barrier()?;
            if self.warps.iter().all(|w| w.valid & !w.exited == 0) {
                return Ok(());
            }
        }
    }

    /// Called when no warp can run: every lane has exited or waits at a barrier. Releases the
    /// barrier if all waiting threads wait at the same one.
    fn release_barrier(&mut self) -> Result<()> {
        let mut at: Option<(u32, usize, usize)> = None;
        for (wi, w) in self.warps.iter().enumerate() {
            let mut bad = None;
            lanes!(w.waiting, l, {
                match at {
                    None => at = Some((w.pcs[l], wi, l)),
                    Some((pc, ..)) if pc != w.pcs[l] && bad.is_none() => bad = Some(l),
                    _ => {}
                }
            });
            if let (Some(l), Some((pc, w0, l0))) = (bad, at) {
                let other = self.site(pc as usize, w0, l0);
                let detail = format!(
                    "barrier divergence: this thread waits here while thread ({},{},{}) waits at {}; \
                     every non-exited thread of a block must reach the same __syncthreads()",
                    other.thread[0],
                    other.thread[1],
                    other.thread[2],
                    self.lp.kernel.where_(pc as usize)
                );
                return Err(fault("barrier error", &self.site(w.pcs[l] as usize, wi, l), detail));
            }
        }
        if let Some((pc, ..)) = at {
            for w in &mut self.warps {
                lanes!(w.waiting, l, {
                    w.pcs[l] = pc + 1;
                });
                w.waiting = 0;
                w.schedule();
            }
            self.epoch += 1;
            self.stats.barriers += 1;
        }
        Ok(())
    }

    fn run_warp(&mut self, wi: usize) -> Result<()> {
        let insts: &'a [Inst] = &self.lp.kernel.insts;
        loop {
            let w = &mut self.warps[wi];
            if w.cur_mask == 0 && !w.schedule() {
                return Ok(());
            }
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
                Op::Bar => {
                    w.waiting |= mask;
                    lanes!(mask, l, {
                        w.pcs[l] = pc as u32;
                    });
                    w.cur_mask &= !mask;
                    if w.cur_mask != 0 {
                        w.advance(pc as u32 + 1);
                    }
                    continue;
                }
                Op::Nop => {}
                Op::Trap => {
                    if mask != 0 {
                        let l = mask.trailing_zeros() as usize;
                        return Err(fault("trap", &self.site(pc, wi, l), "the kernel executed `trap` (a device-side assert failed)"));
                    }
                }
                Op::Ld { .. } | Op::St { .. } | Op::Atom { .. } => self.memory_op(wi, pc, inst, mask)?,
                Op::Shfl { .. } | Op::Vote { .. } | Op::WarpSync { .. } => self.warp_op(wi, pc, inst, mask)?,
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
                    "{what} names lanes {missing:#010x} in its member mask {member:#010x}, but they are not executing it \
                     with this lane (they diverged); every named non-exited lane must reach the same {what}"
                ),
            ));
        }
        Ok(())
    }

    fn warp_op(&mut self, wi: usize, pc: usize, inst: &Inst, mask: u32) -> Result<()> {
        if mask == 0 {
            return Ok(());
        }
        let first = mask.trailing_zeros() as usize;
        match inst.op {
            Op::Shfl { mode, d, p, a, b, c, mask: mm } => {
                let member = read(&self.warps[wi], &self.geo, mm, first) as u32;
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
                let member = read(&self.warps[wi], &self.geo, mm, first) as u32;
                self.check_converged(wi, pc, mask, member, "vote.sync")?;
                let w = &mut self.warps[wi];
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
                lanes!(mask, l, {
                    w.set(d, l, v);
                });
            }
            Op::WarpSync { mask: mm } => {
                let member = read(&self.warps[wi], &self.geo, mm, first) as u32;
                self.check_converged(wi, pc, mask, member, "bar.warp.sync")?;
                self.warps[wi].sync_epoch += 1;
            }
            _ => unreachable!("warp_op is called for warp-level instructions only"),
        }
        Ok(())
    }

    fn memory_op(&mut self, wi: usize, pc: usize, inst: &Inst, mask: u32) -> Result<()> {
        let (space, size, n, addr) = match inst.op {
            Op::Ld { space, size, n, addr, .. } => (space, size, n, addr),
            Op::St { space, size, n, addr, .. } => (space, size, n, addr),
            Op::Atom { space, size, addr, .. } => (space, size, 1, addr),
            _ => unreachable!("memory_op is called for ld/st/atom only"),
        };
        if mask == 0 {
            return Ok(());
        }
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
            if a % bytes.min(16) != 0 || a % size as u64 != 0 {
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
                    self.local_lane(wi, inst, l, t + off as usize)?;
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
                    for k in 0..n as usize {
                        let v = sh_load(self.lp.params, off as usize + k * size as usize, size);
                        self.warps[wi].set(d[k], l, extend(v, size, signed));
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
        Ok(())
    }

    #[inline]
    fn address(&self, wi: usize, addr: Addr, l: usize) -> u64 {
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
        let (size, n) = match inst.op {
            Op::Ld { size, n, .. } | Op::St { size, n, .. } => (size, n),
            Op::Atom { size, .. } => (size, 1),
            _ => return Ok(()),
        };
        if self.lp.sanitize {
            self.check_shared(wi, pc, inst, l, off, size as usize * n as usize)?;
        }
        match inst.op {
            Op::Ld { signed, d, .. } => {
                for k in 0..n as usize {
                    let v = sh_load(&self.shared, off + k * size as usize, size);
                    self.warps[wi].set(d[k], l, extend(v, size, signed));
                }
            }
            Op::St { v, .. } => {
                for k in 0..n as usize {
                    let val = read(&self.warps[wi], &self.geo, v[k], l);
                    sh_store(&mut self.shared, off + k * size as usize, size, val);
                }
            }
            Op::Atom { f, d, b, c, .. } => {
                let w = &self.warps[wi];
                let (bv, cv) = (read(w, &self.geo, b, l), read(w, &self.geo, c, l));
                let old = sh_load(&self.shared, off, size);
                sh_store(&mut self.shared, off, size, f(old, bv, cv));
                self.warps[wi].set(d, l, old);
            }
            _ => {}
        }
        Ok(())
    }

    /// Sanitizer checks of one lane's shared access: initialised bytes and races.
    fn check_shared(&mut self, wi: usize, pc: usize, inst: &Inst, l: usize, off: usize, bytes: usize) -> Result<()> {
        let w = &self.warps[wi];
        let stamp = Stamp { tid: w.base_tid + l as u32, epoch: self.epoch, warp_epoch: w.sync_epoch };
        let is_load = matches!(inst.op, Op::Ld { .. });
        let is_atom = matches!(inst.op, Op::Atom { .. });
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
            if (is_load || is_atom) && sh.init_bytes & byte_mask != byte_mask {
                let var = self.lp.kernel.var_at(Space::Shared, b as u64).map(|v| format!(" ({v})")).unwrap_or_default();
                return Err(fault(
                    "uninitialised read",
                    &self.site(pc, wi, l),
                    format!("shared load at offset {b}{var} reads shared memory no thread of this block has written"),
                ));
            }
            let race = if is_atom {
                None
            } else if is_load {
                sh.read(stamp)
            } else {
                sh.init_bytes |= byte_mask;
                sh.write(stamp)
            };
            if is_atom {
                sh.init_bytes |= byte_mask;
            }
            if let Some(race) = race {
                let var = self.lp.kernel.var_at(Space::Shared, b as u64);
                let detail = race.describe((word * 4) as u64, var, self.lp.block);
                return Err(fault("data race", &self.site(pc, wi, l), detail));
            }
            b += in_word;
        }
        Ok(())
    }

    fn local_lane(&mut self, wi: usize, inst: &Inst, l: usize, off: usize) -> Result<()> {
        match inst.op {
            Op::Ld { size, n, signed, d, .. } => {
                for k in 0..n as usize {
                    let v = sh_load(&self.local, off + k * size as usize, size);
                    self.warps[wi].set(d[k], l, extend(v, size, signed));
                }
            }
            Op::St { size, n, v, .. } => {
                for k in 0..n as usize {
                    let val = read(&self.warps[wi], &self.geo, v[k], l);
                    sh_store(&mut self.local, off + k * size as usize, size, val);
                }
            }
            Op::Atom { .. } => return Err(Error::Sim("atomics on local memory are not supported".into())),
            _ => {}
        }
        Ok(())
    }
}

/// Sign-extends a narrow signed load to the full register.
#[inline]
fn extend(v: u64, size: u8, signed: bool) -> u64 {
    if signed && size < 8 {
        super::alu::sext(v, size as u32 * 8) as u64
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
