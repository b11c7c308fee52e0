//! The decoded form of a kernel that the executor runs: operands, instructions with resolved
//! registers and branch targets, and the kernel's memory layout.

use super::alu::{BinFn, CmpFn, CvtSpec, QuadFn, TerFn, UnFn};

/// Generic addresses of the shared and local windows (`cvta`): far above any global allocation.
pub const SHARED_WINDOW: u64 = 1 << 48;
pub const LOCAL_WINDOW: u64 = 2 << 48;
pub const WINDOW_SIZE: u64 = 1 << 48;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    Tid(u8),
    Ntid(u8),
    Ctaid(u8),
    Nctaid(u8),
    LaneId,
    WarpId,
    NWarpId,
    LaneMaskEq,
    LaneMaskLt,
    LaneMaskLe,
    LaneMaskGt,
    LaneMaskGe,
    SmId,
    Clock,
    /// `%envreg1`/`%envreg2`: the high and low halves of the grid-synchronisation workspace's
    /// address that a cooperative launch passes (0 otherwise), as cooperative groups reads it.
    EnvReg(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Src {
    Reg(u32),
    Imm(u64),
    Special(Special),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    Global,
    Shared,
    Local,
    Param,
    Generic,
}

#[derive(Clone, Copy, Debug)]
pub struct Addr {
    pub base: Src,
    pub offset: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShflMode {
    Up,
    Down,
    Bfly,
    Idx,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteMode {
    All,
    Any,
    Uni,
    Ballot,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comb {
    And,
    Or,
    Xor,
}

#[derive(Clone, Copy, Debug)]
pub enum Op {
    Un { f: UnFn, d: u32, a: Src },
    Bin { f: BinFn, d: u32, a: Src, b: Src },
    Ter { f: TerFn, d: u32, a: Src, b: Src, c: Src },
    Quad { f: QuadFn, d: u32, a: Src, b: Src, c: Src, e: Src },
    /// `setp.cmp[.bool] p[|q], a, b[, c]`: q receives the complement of the comparison.
    Setp { f: CmpFn, comb: Option<(Comb, Src, bool)>, p: u32, q: Option<u32>, a: Src, b: Src },
    Cvt { spec: CvtSpec, d: u32, a: Src },
    /// `mov.b64 {lo, hi}, a`: splits a into `n` fields of `bits`.
    Unpack { ds: [u32; 4], n: u8, bits: u8, a: Src },
    /// `mov.b64 d, {lo, hi}`.
    Pack { d: u32, srcs: [Src; 4], n: u8, bits: u8 },
    /// `sync`: a volatile, relaxed, acquire or release access, which synchronises threads by
    /// itself (a flag another thread polls) instead of racing with them.
    Ld { space: Space, size: u8, n: u8, signed: bool, sync: bool, d: [u32; 4], addr: Addr },
    /// A `sync` store (see `Ld`) also releases: it orders the thread's earlier accesses before
    /// those of threads that observe it.
    St { space: Space, size: u8, n: u8, sync: bool, v: [Src; 4], addr: Addr },
    /// `atom`/`red`: new = f(old, b, c); d receives old. `release`: `.release`/`.acq_rel`.
    Atom { space: Space, f: TerFn, size: u8, release: bool, d: u32, addr: Addr, b: Src, c: Src },
    /// `fence`/`membar`: orders the thread's accesses before it with those of threads that
    /// synchronise with it afterwards.
    Fence,
    /// `bar.sync`/`barrier.sync`/`bar.arrive` on barrier `id` (0..15) for `count` threads
    /// (all the block's when absent); `arrive` signals without waiting; `red`: `bar.red`
    /// (`__syncthreads_count/and/or`).
    Bar { id: Src, count: Option<Src>, arrive: bool, red: Option<BarRed> },
    /// An `mbarrier` operation on the 8-byte barrier object at `addr` in shared memory.
    Mbar { kind: MbarOp, d: u32, addr: Addr, b: Src },
    /// `cp.async.{ca,cg}.shared.global [dst], [src], size[, src_size]`: copies `size` bytes, of
    /// which the first `src_size` come from global memory and the rest are zeros; with
    /// `ignore_src`, `src_size` is the `ignore-src` predicate (true: all zeros). The copy is
    /// deferred: it lands when a wait covers its commit group (or an mbarrier tracking it
    /// completes its phase).
    CpAsync { dst: Addr, src: Addr, size: u8, src_size: Src, ignore_src: bool },
    /// `cp.async.commit_group`: the thread's uncommitted copies become its newest group.
    CpAsyncCommit,
    /// `cp.async.wait_group n` (all but the newest `n` groups land) or `cp.async.wait_all`
    /// (`None`: every copy lands, committed or not).
    CpAsyncWait { newest_pending: Option<u32> },
    /// `cp.async.mbarrier.arrive[.noinc] [addr]`: the mbarrier at `addr` gets an arrival once the
    /// thread's earlier copies landed; without `.noinc` its pending count grows by one first, so
    /// the arrival is in addition to the expected ones.
    CpAsyncMbarArrive { noinc: bool, addr: Addr },
    /// `elect.sync d|p, membermask`: the lowest lane of the member mask among those executing
    /// is the leader; d receives its lane id and p whether this lane is it.
    Elect { d: u32, p: u32, mask: Src },
    WarpSync { mask: Src },
    /// `redux.sync`: d = f folded over the value of every lane in the member mask.
    Redux { f: BinFn, d: u32, a: Src, mask: Src },
    /// `match.any.sync` (d = lanes with the same value) or `match.all.sync` (d = the member
    /// mask if all values agree, else 0; p = whether they agree).
    Match { all: bool, d: u32, p: Option<u32>, a: Src, mask: Src },
    Shfl { mode: ShflMode, d: u32, p: Option<u32>, a: Src, b: Src, c: Src, mask: Src },
    /// `mma.sync.aligned.{shape}.row.col.f32.{f16,bf16,tf32}.{..}.f32 {d}, {a}, {b}, {c}`: the
    /// warp's 16x8 fp32 tile D = A (16xK) * B (Kx8) + C, each spread over the lanes' registers
    /// as the PTX ISA's fragment layouts place them (`exec::tensor_ops`).
    Mma { shape: MmaShape, d: [u32; 4], a: [Src; 4], b: [Src; 2], c: [Src; 4] },
    /// `ldmatrix.sync.aligned.m8n8.x{n}{.trans}{.shared}.b16 {d}, [addr]`: `n` 8x8 matrices of
    /// 16-bit elements, whose eight 16-byte rows come from the addresses of lanes 8i..8i+7
    /// (shared offsets, or generic addresses in the shared window).
    Ldmatrix { n: u8, trans: bool, space: Space, d: [u32; 4], addr: Addr },
    Vote { mode: VoteMode, d: u32, a: Src, neg: bool, mask: Src },
    Bra { target: u32 },
    Exit,
    /// `trap`: aborts the launch with an error.
    Trap,
    /// `call __assertfail`: local offsets of the message, file, line and function arguments.
    AssertFail { args: [u32; 4] },
    /// `call vprintf`: local offsets of the format and argument-buffer pointers, and of the
    /// return value if the call has one.
    Printf { format: u32, args: u32, ret: Option<u32> },
    Nop,
}

/// The `mma.sync` forms the simulator executes, all with fp32 accumulators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmaShape {
    /// m16n8k16 with f16 (or bf16 when `bf`) inputs, two per 32-bit register.
    K16Half { bf: bool },
    /// m16n8k8 with f16 (or bf16) inputs, two per register.
    K8Half { bf: bool },
    /// m16n8k8 with tf32 inputs, one per register.
    K8Tf32,
}

impl MmaShape {
    pub fn k(self) -> usize {
        match self {
            MmaShape::K16Half { .. } => 16,
            MmaShape::K8Half { .. } | MmaShape::K8Tf32 => 8,
        }
    }
    /// Registers holding this lane's part of A and of B.
    pub fn fragment_regs(self) -> (usize, usize) {
        match self {
            MmaShape::K16Half { .. } | MmaShape::K8Tf32 => (4, 2),
            MmaShape::K8Half { .. } => (2, 1),
        }
    }
    /// Floating-point operations of one warp's instruction (a multiply-add counts 2).
    pub fn flops(self) -> u64 {
        2 * 16 * 8 * self.k() as u64
    }
}

/// `bar.red.{popc,and,or}`: d receives the count of participating threads whose predicate
/// (`c`, negated when `neg`) holds, or whether all or any of them hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarRed {
    pub kind: BarRedKind,
    pub d: u32,
    pub c: Src,
    pub neg: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarRedKind {
    Popc,
    And,
    Or,
}

/// The `mbarrier` operations (the object's layout is `exec::mbarrier`'s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MbarOp {
    /// `mbarrier.init [addr], count`.
    Init,
    /// `mbarrier.arrive[_drop] state, [addr][, count]`: d receives the state before the
    /// arrival (its phase is what `test_wait` waits to change). `expect_tx`:
    /// `mbarrier.arrive.expect_tx state, [addr], tx`: one arrival after expecting `tx` more
    /// transaction bytes (b is then the byte count).
    Arrive { drop: bool, expect_tx: bool },
    /// `mbarrier.expect_tx [addr], tx`: the current phase also waits for `tx` more bytes.
    ExpectTx,
    /// `mbarrier.complete_tx [addr], tx`: `tx` of the expected bytes arrived.
    CompleteTx,
    /// `mbarrier.test_wait/try_wait[.parity] p, [addr], state|parity`.
    TestWait { parity: bool },
    /// `mbarrier.inval [addr]`.
    Inval,
}

pub const NO_GUARD: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
pub struct Inst {
    pub op: Op,
    /// Predicate register guarding the instruction, or NO_GUARD.
    pub guard: u32,
    pub guard_neg: bool,
    /// f32 floating-point operations per active lane (add/mul 1, fma 2).
    pub flops: u8,
}

#[derive(Debug)]
pub struct Kernel {
    pub name: String,
    /// (offset, bytes) of each parameter in the parameter buffer.
    pub params: Vec<(usize, usize)>,
    pub param_bytes: usize,
    pub nregs: usize,
    /// Bytes of static shared memory; dynamic shared memory starts at `dyn_shared_offset`.
    pub static_shared: usize,
    pub dyn_shared_offset: usize,
    pub local_bytes: usize,
    pub insts: Vec<Inst>,
    /// Source line and text of each instruction, for diagnostics.
    pub lines: Vec<(u32, String)>,
    /// Named shared and local variables (name, space, offset, bytes) for diagnostics.
    pub vars: Vec<(String, Space, usize, usize)>,
}

impl Kernel {
    /// Shared memory a block uses with `dyn_shared` bytes of dynamic shared memory.
    pub fn shared_bytes(&self, dyn_shared: usize) -> usize {
        self.dyn_shared_offset.max(self.static_shared) + dyn_shared
    }
    /// "line 42 (`ld.global.f32 %f1, [%rd4]`)" for instruction `pc`.
    pub fn where_(&self, pc: usize) -> String {
        match self.lines.get(pc) {
            Some((line, text)) => format!("PTX line {line} (`{text}`)"),
            None => format!("instruction {pc}"),
        }
    }
    /// The named variable of `space` holding `offset`, for error messages.
    pub fn var_at(&self, space: Space, offset: u64) -> Option<&str> {
        self.vars
            .iter()
            .find(|(_, s, o, b)| *s == space && offset >= *o as u64 && offset < (*o + (*b).max(1)) as u64)
            .map(|(n, ..)| n.as_str())
    }
}
