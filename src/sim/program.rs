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
    Ld { space: Space, size: u8, n: u8, signed: bool, d: [u32; 4], addr: Addr },
    St { space: Space, size: u8, n: u8, v: [Src; 4], addr: Addr },
    /// `atom`/`red`: new = f(old, b, c); d receives old.
    Atom { space: Space, f: TerFn, size: u8, d: u32, addr: Addr, b: Src, c: Src },
    Bar,
    WarpSync { mask: Src },
    Shfl { mode: ShflMode, d: u32, p: Option<u32>, a: Src, b: Src, c: Src, mask: Src },
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
