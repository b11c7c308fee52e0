//! Turns parsed PTX into a compact instruction array per kernel: registers resolved to indices,
//! immediates typed, symbols turned into addresses, labels into instruction indices and every
//! arithmetic opcode into a function pointer from `alu`.
//!
//! Supported (anything else is an `Error::Sim` naming the instruction, kernel and line):
//! - integer: add/sub (incl. `.sat.s32`), mul/mad `.lo/.hi/.wide`, mul24/mad24, div, rem, min,
//!   max, neg, abs, and/or/xor/not/cnot (incl. `.pred`), shl/shr, shf, popc, clz, brev,
//!   bfind (also `.shiftamt`), bfe, bfi, prmt (every mode), selp, dp4a, lop3, fns;
//! - f32: add/sub/mul/fma/mad/div with `.rn/.rz/.rm/.rp`, `.ftz`, `.sat`; min/max, neg, abs,
//!   sqrt, rsqrt, rcp, ex2, lg2, sin, cos, tanh (`.approx` ones use the host's accurate
//!   functions), copysign, testp; f64 the same minus directed fma/unary rounding;
//!   f16/bf16 and packed f16x2/bf16x2: add/sub/mul/min/max/fma (`.rn`), neg, abs, setp;
//! - setp with every comparison (incl. unordered, num, nan) and `.and/.or/.xor` combining;
//! - cvt between all integer and float types with `.rn/.rz/.rm/.rp`, `.rni/.rzi/.rmi/.rpi`,
//!   `.sat`, `.ftz`, `cvt.rn.{f16x2,bf16x2}.f32`, `cvt.rna.tf32.f32`; cvta to and from
//!   shared/local/global;
//!   mov incl. special registers, `WARP_SZ` and vector pack/unpack;
//! - ld/ldu/st on param, global (`.nc`), shared (static and `extern`), local and generic
//!   addresses, scalar and v2/v4, `.volatile/.relaxed/.acquire/.release` (synchronising
//!   accesses); atom/red add (u32/s32/u64/f32/f64, f16/bf16 scalar and x2), min/max, exch, cas
//!   (32/64 and 16-bit), and/or/xor, inc/dec on global and shared;
//! - cp.async.{ca,cg}.shared.global (4/8/16 bytes, source size or ignore-src, cache hint),
//!   commit_group, wait_group, wait_all, cp.async.mbarrier.arrive[.noinc] (deferred copies:
//!   `exec::async_copy`);
//! - mma.sync.aligned.row.col with f32 accumulators: m16n8k16 f16/bf16, m16n8k8 f16/bf16 and
//!   tf32; ldmatrix.sync.aligned.m8n8.x1/x2/x4 (`.trans`) .b16 from shared memory
//!   (`exec::tensor_ops`);
//! - bar.sync/barrier.sync/bar.arrive with barrier numbers and thread counts, bar.red
//!   popc/and/or, mbarrier init/arrive/arrive_drop/arrive.expect_tx/expect_tx/complete_tx/
//!   test_wait/try_wait (`.parity`)/pending_count/inval, bar.warp.sync, shfl.sync
//!   up/down/bfly/idx (with the predicate output), vote.sync all/any/uni/ballot, redux.sync,
//!   match.any/all.sync, elect.sync, activemask, membar/fence, nanosleep, prefetch,
//!   applypriority and createpolicy (no effect on results), bra, ret/exit, trap, `call` to the
//!   device runtime's `__assertfail` (assert) and `vprintf` (printf); `%envreg1/2` (the
//!   grid-barrier workspace of a cooperative launch);
//! - module-scope `.global`/`.const` variables (with numeric initialisers), static and `extern`
//!   `.shared`, kernel `.local` arrays, call-argument `.param`s; `.reg` declared in nested
//!   `{ }` blocks (inline asm), scoped to their block.
//!
//! Not supported: calls to other functions, textures/surfaces, bulk (TMA) copies
//! (`cp.async.bulk`), `mbarrier.arrive.noComplete`, directed-rounding f64 fma and
//! directed-rounding f16 arithmetic.

use super::alu::{self, BinFn, CmpFn, CvtSpec, Rnd, TerFn, Ty, UnFn};
use super::dispatch::{self, by_mode_ftz_sat, by_width, by_width_sign};
use super::parse::{Imm, Instruction, KernelAst, ModuleAst, Operand, Statement, VarDecl};
use super::program::*;
use crate::error::{Error, Result};
use std::collections::HashMap;

fn align_up(v: usize, a: usize) -> usize {
    v.div_ceil(a.max(1)) * a.max(1)
}

fn operand_text(o: &Operand) -> String {
    match o {
        Operand::Reg(r) | Operand::Sym(r) => r.clone(),
        Operand::Imm(Imm::Int(v)) => format!("{}", *v as i64),
        Operand::Imm(Imm::F32Bits(b)) => format!("0f{b:08X}"),
        Operand::Imm(Imm::F64Bits(b)) => format!("0d{b:016X}"),
        Operand::Imm(Imm::Float(v)) => format!("{v}"),
        Operand::Addr { base, offset } => match base {
            Some(b) if *offset != 0 => format!("[{}+{offset}]", operand_text(b)),
            Some(b) => format!("[{}]", operand_text(b)),
            None => format!("[{offset}]"),
        },
        Operand::Vector(v) => format!("{{{}}}", v.iter().map(operand_text).collect::<Vec<_>>().join(", ")),
        Operand::Pair(a, b) => format!("{}|{}", operand_text(a), operand_text(b)),
        Operand::Not(a) => format!("!{}", operand_text(a)),
        Operand::Sink => "_".into(),
    }
}

fn instruction_text(i: &Instruction) -> String {
    let mut s = String::new();
    if let Some((g, neg)) = &i.guard {
        s.push_str(&format!("@{}{g} ", if *neg { "!" } else { "" }));
    }
    s.push_str(&i.opcode);
    let ops: Vec<String> = i.operands.iter().map(operand_text).collect();
    if !ops.is_empty() {
        s.push(' ');
        s.push_str(&ops.join(", "));
    }
    s
}

struct Decoder<'a> {
    kernel: &'a str,
    regs: HashMap<String, u32>,
    /// The `.pred` registers among `regs`.
    predicates: std::collections::HashSet<u32>,
    nregs: u32,
    symbols: HashMap<String, (Space, u64)>,
    labels: HashMap<String, u32>,
    line: u32,
    text: String,
}

/// Parsed opcode: base name, modifiers and the scalar type(s) in order.
struct Opcode<'a> {
    base: &'a str,
    mods: Vec<&'a str>,
    types: Vec<Ty>,
    pred: bool,
}

impl<'a> Opcode<'a> {
    fn parse(s: &'a str) -> Self {
        let mut parts = s.split('.');
        let base = parts.next().unwrap_or("");
        let mut mods = Vec::new();
        let mut types = Vec::new();
        let mut pred = false;
        for p in parts {
            // `shared::cta`, `L2::128B`: the qualifier after `::` refines the modifier.
            let p = p.split_once("::").map_or(p, |(head, _)| head);
            if p == "pred" {
                pred = true;
            } else if let Some(t) = Ty::parse(p) {
                types.push(t);
            } else if p == "f16x2" || p == "bf16x2" {
                types.push(Ty::U(32));
                mods.push(p);
            } else {
                mods.push(p);
            }
        }
        Opcode { base, mods, types, pred }
    }
    fn has(&self, m: &str) -> bool {
        self.mods.contains(&m)
    }
    fn rnd(&self) -> Option<Rnd> {
        self.mods.iter().find_map(|m| match *m {
            "rn" => Some(Rnd::Rn),
            "rz" => Some(Rnd::Rz),
            "rm" => Some(Rnd::Rm),
            "rp" => Some(Rnd::Rp),
            _ => None,
        })
    }
    fn int_rnd(&self) -> Option<Rnd> {
        self.mods.iter().find_map(|m| match *m {
            "rni" => Some(Rnd::Rn),
            "rzi" => Some(Rnd::Rz),
            "rmi" => Some(Rnd::Rm),
            "rpi" => Some(Rnd::Rp),
            _ => None,
        })
    }
}

impl<'a> Decoder<'a> {
    fn err<T>(&self, msg: impl std::fmt::Display) -> Result<T> {
        Err(Error::Sim(format!("kernel {}, PTX line {} (`{}`): {msg}", self.kernel, self.line, self.text)))
    }

    fn reg(&self, name: &str) -> Result<u32> {
        match self.regs.get(name) {
            Some(&r) => Ok(r),
            None => self.err(format!("undeclared register {name}")),
        }
    }

    fn special(name: &str) -> Option<Special> {
        let dim = |s: &str| match s {
            "x" => Some(0u8),
            "y" => Some(1),
            "z" => Some(2),
            _ => None,
        };
        let (head, tail) = name.split_once('.').map_or((name, None), |(h, t)| (h, Some(t)));
        Some(match (head, tail) {
            ("%tid", Some(t)) => Special::Tid(dim(t)?),
            ("%ntid", Some(t)) => Special::Ntid(dim(t)?),
            ("%ctaid", Some(t)) => Special::Ctaid(dim(t)?),
            ("%nctaid", Some(t)) => Special::Nctaid(dim(t)?),
            ("%laneid", None) => Special::LaneId,
            ("%warpid", None) => Special::WarpId,
            ("%nwarpid", None) => Special::NWarpId,
            ("%lanemask_eq", None) => Special::LaneMaskEq,
            ("%lanemask_lt", None) => Special::LaneMaskLt,
            ("%lanemask_le", None) => Special::LaneMaskLe,
            ("%lanemask_gt", None) => Special::LaneMaskGt,
            ("%lanemask_ge", None) => Special::LaneMaskGe,
            ("%smid", None) => Special::SmId,
            // Timers read 0: results must not depend on time (libcu++ reads %globaltimer only to
            // back off while it polls).
            ("%clock" | "%clock64" | "%globaltimer" | "%globaltimer_lo" | "%globaltimer_hi", None) => Special::Clock,
            ("%envreg1", None) => Special::EnvReg(1),
            ("%envreg2", None) => Special::EnvReg(2),
            _ => return None,
        })
    }

    fn imm(&self, imm: Imm, ty: Option<Ty>) -> u64 {
        match (imm, ty) {
            (Imm::F32Bits(b), Some(Ty::F64)) => alu::db(f32::from_bits(b) as f64),
            (Imm::F32Bits(b), _) => b as u64,
            (Imm::F64Bits(b), Some(Ty::F32)) => alu::fb(f64::from_bits(b) as f32),
            (Imm::F64Bits(b), _) => b,
            (Imm::Float(v), Some(Ty::F64)) => v.to_bits(),
            (Imm::Float(v), _) => alu::fb(v as f32),
            (Imm::Int(v), Some(t)) if t.bits() < 64 => v & alu::mask(t.bits()),
            (Imm::Int(v), _) => v,
        }
    }

    fn src(&self, o: &Operand, ty: Option<Ty>) -> Result<Src> {
        match o {
            Operand::Reg(name) => match Self::special(name) {
                Some(s) => Ok(Src::Special(s)),
                None => Ok(Src::Reg(self.reg(name)?)),
            },
            Operand::Imm(i) => Ok(Src::Imm(self.imm(*i, ty))),
            Operand::Sym(name) => match self.symbols.get(name) {
                Some(&(_, addr)) => Ok(Src::Imm(addr)),
                // The one predefined constant of PTX.
                None if name == "WARP_SZ" => Ok(Src::Imm(32)),
                None => self.err(format!("unknown symbol {name}")),
            },
            other => self.err(format!("unexpected operand {}", operand_text(other))),
        }
    }

    fn dst(&mut self, o: &Operand) -> Result<u32> {
        match o {
            Operand::Reg(name) => self.reg(name),
            Operand::Sink => Ok(self.sink()),
            other => self.err(format!("expected a destination register, found {}", operand_text(other))),
        }
    }

    /// A scratch register for `_` destinations.
    fn sink(&mut self) -> u32 {
        *self.regs.entry("_".into()).or_insert_with(|| {
            self.nregs += 1;
            self.nregs - 1
        })
    }

    fn addr(&self, o: &Operand) -> Result<(Addr, Option<Space>)> {
        match o {
            Operand::Addr { base: Some(b), offset } => {
                let space = match &**b {
                    Operand::Sym(s) => self.symbols.get(s).map(|&(sp, _)| sp),
                    _ => None,
                };
                Ok((Addr { base: self.src(b, Some(Ty::U(64)))?, offset: *offset }, space))
            }
            Operand::Addr { base: None, offset } => Ok((Addr { base: Src::Imm(0), offset: *offset }, None)),
            other => self.err(format!("expected an address, found {}", operand_text(other))),
        }
    }

    fn ops(&self, i: &Instruction, n: usize) -> Result<()> {
        if i.operands.len() != n {
            return self.err(format!("expected {n} operands, found {}", i.operands.len()));
        }
        Ok(())
    }

    fn space_of(&self, oc: &Opcode) -> Space {
        if oc.has("global") {
            Space::Global
        } else if oc.has("shared") {
            Space::Shared
        } else if oc.has("const") {
            // Constant memory is global memory in the simulator (module `.const` variables).
            Space::Global
        } else if oc.has("local") {
            Space::Local
        } else if oc.has("param") {
            Space::Param
        } else {
            Space::Generic
        }
    }

    /// The state space of an ld/st: the opcode's, refined by the symbol it addresses (generic
    /// accesses to a named variable, and `.param` accesses to call arguments, which live in the
    /// thread's local memory).
    fn access_space(&self, oc: &Opcode, sym_space: Option<Space>) -> Space {
        match (self.space_of(oc), sym_space) {
            (Space::Generic, Some(s)) => s,
            (Space::Param, Some(Space::Local)) => Space::Local,
            (s, _) => s,
        }
    }

    /// `call [(ret),] target, (args)`: only the device runtime's assert and printf hooks.
    fn call(&self, i: &Instruction) -> Result<Op> {
        let local = |o: &Operand| -> Result<u32> {
            match o {
                Operand::Sym(name) => match self.symbols.get(name) {
                    Some(&(Space::Local, off)) => Ok(off as u32),
                    _ => self.err(format!("call argument {name} is not a declared .param")),
                },
                other => self.err(format!("unexpected call argument {}", operand_text(other))),
            }
        };
        let (ret, rest) = match i.operands.first() {
            Some(Operand::Vector(r)) => (r.first(), &i.operands[1..]),
            _ => (None, &i.operands[..]),
        };
        let (Some(Operand::Sym(target)), Some(Operand::Vector(args))) = (rest.first(), rest.get(1)) else {
            return self.err("malformed call");
        };
        let arg = |k: usize| args.get(k).map(&local).unwrap_or_else(|| self.err(format!("{target} needs more arguments")));
        match target.as_str() {
            "__assertfail" => Ok(Op::AssertFail { args: [arg(0)?, arg(1)?, arg(2)?, arg(3)?] }),
            "vprintf" => Ok(Op::Printf { format: arg(0)?, args: arg(1)?, ret: ret.map(&local).transpose()? }),
            other => self.err(format!("calls are not supported (only assert and printf): `call {other}`")),
        }
    }

    fn vec_width(&self, oc: &Opcode) -> u8 {
        if oc.has("v4") {
            4
        } else if oc.has("v2") {
            2
        } else {
            1
        }
    }

    fn decode(&mut self, i: &Instruction) -> Result<(Op, u8)> {
        let oc = Opcode::parse(&i.opcode);
        let ty = oc.types.first().copied();
        let o = &i.operands;
        let w = ty.map_or(64, |t| t.bits());
        let signed = matches!(ty, Some(Ty::S(_)));
        let ftz = oc.has("ftz");
        let sat = oc.has("sat");
        let mode = alu::rnd_tag(oc.rnd().unwrap_or(Rnd::Rn));
        let is_f32 = ty == Some(Ty::F32);
        let is_f64 = ty == Some(Ty::F64);
        let f16x2 = oc.has("f16x2");
        // 16-bit floats: f16/bf16 scalars and packed f16x2/bf16x2 pairs.
        let bf = ty == Some(Ty::Bf16) || oc.has("bf16x2");
        let h16 = matches!(ty, Some(Ty::F16 | Ty::Bf16)) || f16x2 || oc.has("bf16x2");
        let x2 = f16x2 || oc.has("bf16x2");
        let mut flops = 0u8;

        macro_rules! bin {
            ($f:expr) => {{
                self.ops(i, 3)?;
                Op::Bin { f: $f, d: self.dst(&o[0])?, a: self.src(&o[1], ty)?, b: self.src(&o[2], ty)? }
            }};
        }
        macro_rules! un {
            ($f:expr) => {{
                self.ops(i, 2)?;
                Op::Un { f: $f, d: self.dst(&o[0])?, a: self.src(&o[1], ty)? }
            }};
        }
        macro_rules! ter {
            ($f:expr, $cty:expr) => {{
                self.ops(i, 4)?;
                Op::Ter { f: $f, d: self.dst(&o[0])?, a: self.src(&o[1], ty)?, b: self.src(&o[2], ty)?, c: self.src(&o[3], $cty)? }
            }};
        }
        let float_bin = |op: u8| -> Option<BinFn> {
            if is_f32 {
                Some(dispatch::f32_binop(op, mode, ftz, sat))
            } else if is_f64 {
                Some(dispatch::f64_binop(op, mode))
            } else {
                None
            }
        };
        let unsupported = || Error::Sim(format!(
            "kernel {}, PTX line {}: the simulator does not support `{}`",
            self.kernel, self.line, i.opcode
        ));

        let op = match oc.base {
            "add" | "sub" | "mul" | "min" | "max" if h16 && !sat => {
                let code = match oc.base {
                    "add" => alu::ADD,
                    "sub" => alu::SUB,
                    "mul" => alu::MUL,
                    "min" => alu::MIN,
                    _ => alu::MAX,
                };
                if oc.rnd().is_some_and(|r| r != Rnd::Rn) || oc.has("NaN") || oc.has("xorsign") {
                    return Err(unsupported());
                }
                bin!(dispatch::h16_binop(code, bf, x2))
            }
            "fma" if h16 && !sat && oc.rnd().is_none_or(|r| r == Rnd::Rn) && !oc.has("relu") => ter!(dispatch::h16_fmaop(bf, x2), ty),
            "neg" | "abs" if h16 => un!(dispatch::h16_unop(if oc.base == "neg" { alu::NEG } else { alu::ABS }, x2)),
            "cvt" if x2 && o.len() == 3 && oc.types.get(1) == Some(&Ty::F32) && oc.rnd() == Some(Rnd::Rn) && !oc.has("relu") && !sat => {
                let f32ty = Some(Ty::F32);
                let f: BinFn = if bf { alu::pack_h16x2_f32::<true> } else { alu::pack_h16x2_f32::<false> };
                Op::Bin { f, d: self.dst(&o[0])?, a: self.src(&o[1], f32ty)?, b: self.src(&o[2], f32ty)? }
            }
            // TF32 (wmma::__float_to_tf32): f32 bits with the mantissa rounded to 10 bits.
            "cvt" if oc.has("tf32") && oc.has("rna") && oc.types.as_slice() == [Ty::F32] && !sat => un!(alu::f32_to_tf32_rna),
            "dp4a" => {
                let (Some(ta), Some(tb)) = (oc.types.first(), oc.types.get(1)) else { return Err(unsupported()) };
                let f: TerFn = match (matches!(ta, Ty::S(_)), matches!(tb, Ty::S(_))) {
                    (false, false) => alu::dp4a::<false, false>,
                    (false, true) => alu::dp4a::<false, true>,
                    (true, false) => alu::dp4a::<true, false>,
                    (true, true) => alu::dp4a::<true, true>,
                };
                ter!(f, Some(Ty::U(32)))
            }
            "lop3" if o.len() == 5 => {
                let u = Some(Ty::U(32));
                Op::Quad { f: alu::lop3, d: self.dst(&o[0])?, a: self.src(&o[1], u)?, b: self.src(&o[2], u)?, c: self.src(&o[3], u)?, e: self.src(&o[4], u)? }
            }
            "fns" => ter!(alu::fns, Some(Ty::U(32))),
            "add" | "sub" | "mul" | "min" | "max" | "div" if ty.is_some_and(|t| t.is_float()) && !f16x2 => {
                let code = match oc.base {
                    "add" => alu::ADD,
                    "sub" => alu::SUB,
                    "mul" => alu::MUL,
                    "min" => alu::MIN,
                    "max" => alu::MAX,
                    _ => alu::DIV,
                };
                if is_f64 && mode != alu::RN && code == alu::DIV && oc.rnd().is_none() {
                    return Err(unsupported());
                }
                if is_f32 && code <= alu::MUL {
                    flops = 1;
                }
                bin!(float_bin(code).ok_or_else(unsupported)?)
            }
            "add" if sat && ty == Some(Ty::S(32)) => bin!(alu::add_sat_s32),
            "sub" if sat && ty == Some(Ty::S(32)) => bin!(alu::sub_sat_s32),
            "add" | "sub" if sat => return Err(unsupported()),
            "add" => bin!(by_width!(w, add)),
            "sub" => bin!(by_width!(w, sub)),
            "mul24" if oc.has("hi") => bin!(if signed { alu::mul24_hi::<true> } else { alu::mul24_hi::<false> }),
            "mul24" => bin!(if signed { alu::mul24_lo::<true> } else { alu::mul24_lo::<false> }),
            "mad24" if oc.has("hi") => ter!(if signed { alu::mad24_hi::<true> } else { alu::mad24_hi::<false> }, ty),
            "mad24" => ter!(if signed { alu::mad24_lo::<true> } else { alu::mad24_lo::<false> }, ty),
            "mul" if oc.has("wide") => bin!(by_width_sign!(w, signed, mul_wide)),
            "mul" if oc.has("hi") => bin!(by_width_sign!(w, signed, mul_hi)),
            "mul" => bin!(by_width!(w, mul_lo)),
            "mad" if ty.is_some_and(|t| t.is_float()) => {
                if !is_f32 {
                    return Err(unsupported());
                }
                flops = 2;
                ter!(by_mode_ftz_sat!(mode, ftz, sat, f32_fma), ty)
            }
            "mad" if oc.has("wide") => {
                let cty = Some(Ty::U(2 * w));
                ter!(by_width_sign!(w, signed, mad_wide), cty)
            }
            "mad" if oc.has("hi") => ter!(by_width_sign!(w, signed, mad_hi), ty),
            "mad" => ter!(by_width!(w, mad_lo), ty),
            "fma" if is_f32 => {
                flops = 2;
                ter!(by_mode_ftz_sat!(mode, ftz, sat, f32_fma), ty)
            }
            "fma" if is_f64 && mode == alu::RN => ter!(alu::f64_fma, ty),
            "div" => bin!(by_width_sign!(w, signed, div)),
            "rem" => bin!(by_width_sign!(w, signed, rem)),
            "min" => bin!(by_width_sign!(w, signed, min_int)),
            "max" => bin!(by_width_sign!(w, signed, max_int)),
            "neg" | "abs" | "sqrt" | "rsqrt" | "rcp" | "ex2" | "lg2" | "sin" | "cos" | "tanh"
                if is_f32 || is_f64 =>
            {
                let code = match oc.base {
                    "neg" => alu::NEG,
                    "abs" => alu::ABS,
                    "sqrt" => alu::SQRT,
                    "rsqrt" => alu::RSQRT,
                    "rcp" => alu::RCP,
                    "ex2" => alu::EX2,
                    "lg2" => alu::LG2,
                    "sin" => alu::SIN,
                    "cos" => alu::COS,
                    _ => alu::TANH,
                };
                if is_f64 && mode != alu::RN {
                    return Err(unsupported());
                }
                un!(if is_f32 { dispatch::f32_unop(code, mode, ftz) } else { dispatch::f64_unop(code) })
            }
            "neg" => un!(by_width!(w, neg_int)),
            "abs" => un!(by_width!(w, abs_int)),
            "and" if oc.pred => bin!(alu::and::<1>),
            "or" if oc.pred => bin!(alu::or::<1>),
            "xor" if oc.pred => bin!(alu::xor::<1>),
            "not" if oc.pred => un!(alu::not_pred),
            "and" => bin!(by_width!(w, and)),
            "or" => bin!(by_width!(w, or)),
            "xor" => bin!(by_width!(w, xor)),
            "not" => un!(by_width!(w, not)),
            "cnot" => un!(alu::not_pred),
            "shl" => {
                self.ops(i, 3)?;
                Op::Bin { f: by_width!(w, shl), d: self.dst(&o[0])?, a: self.src(&o[1], ty)?, b: self.src(&o[2], Some(Ty::U(32)))? }
            }
            "shr" => {
                self.ops(i, 3)?;
                let f = if signed { by_width!(w, shr_s) } else { by_width!(w, shr_u) };
                Op::Bin { f, d: self.dst(&o[0])?, a: self.src(&o[1], ty)?, b: self.src(&o[2], Some(Ty::U(32)))? }
            }
            "popc" => un!(by_width!(w, popc)),
            "clz" => un!(by_width!(w, clz)),
            "brev" => un!(by_width!(w, brev)),
            "bfind" if oc.has("shiftamt") => un!(by_width_sign!(w, signed, bfind_shiftamt)),
            "bfind" => un!(by_width_sign!(w, signed, bfind)),
            "bfe" => {
                let u32ty = Some(Ty::U(32));
                self.ops(i, 4)?;
                Op::Ter {
                    f: by_width_sign!(w, signed, bfe),
                    d: self.dst(&o[0])?,
                    a: self.src(&o[1], ty)?,
                    b: self.src(&o[2], u32ty)?,
                    c: self.src(&o[3], u32ty)?,
                }
            }
            "bfi" => {
                self.ops(i, 5)?;
                let u32ty = Some(Ty::U(32));
                Op::Quad {
                    f: by_width!(w, bfi),
                    d: self.dst(&o[0])?,
                    a: self.src(&o[1], ty)?,
                    b: self.src(&o[2], ty)?,
                    c: self.src(&o[3], u32ty)?,
                    e: self.src(&o[4], u32ty)?,
                }
            }
            "prmt" => {
                let f: TerFn = match oc.mods.as_slice() {
                    [] => alu::prmt,
                    ["f4e"] => alu::prmt_mode::<{ alu::PRMT_F4E }>,
                    ["b4e"] => alu::prmt_mode::<{ alu::PRMT_B4E }>,
                    ["rc8"] => alu::prmt_mode::<{ alu::PRMT_RC8 }>,
                    ["ecl"] => alu::prmt_mode::<{ alu::PRMT_ECL }>,
                    ["ecr"] => alu::prmt_mode::<{ alu::PRMT_ECR }>,
                    ["rc16"] => alu::prmt_mode::<{ alu::PRMT_RC16 }>,
                    _ => return Err(unsupported()),
                };
                ter!(f, ty)
            }
            "shf" => {
                let f: TerFn = match (oc.has("l"), oc.has("wrap")) {
                    (true, true) => alu::shf::<true, true>,
                    (true, false) => alu::shf::<true, false>,
                    (false, true) => alu::shf::<false, true>,
                    (false, false) => alu::shf::<false, false>,
                };
                ter!(f, Some(Ty::U(32)))
            }
            "copysign" if is_f32 => bin!(alu::copysign_f32),
            "copysign" if is_f64 => bin!(alu::copysign_f64),
            "testp" if is_f32 || is_f64 => {
                self.ops(i, 2)?;
                macro_rules! t {
                    ($k:expr) => {
                        if is_f64 {
                            alu::testp::<{ $k }, true>
                        } else {
                            alu::testp::<{ $k }, false>
                        }
                    };
                }
                let f: CmpFn = if oc.has("finite") {
                    t!(alu::FINITE)
                } else if oc.has("infinite") {
                    t!(alu::INFINITE)
                } else if oc.has("number") {
                    t!(alu::NUMBER)
                } else if oc.has("notanumber") {
                    t!(alu::NOTANUMBER)
                } else if oc.has("normal") {
                    t!(alu::NORMAL)
                } else if oc.has("subnormal") {
                    t!(alu::SUBNORMAL)
                } else {
                    return Err(unsupported());
                };
                let a = self.src(&o[1], ty)?;
                Op::Setp { f, comb: None, p: self.dst(&o[0])?, q: None, a, b: Src::Imm(0) }
            }
            "trap" => Op::Trap,
            "call" => self.call(i)?,
            "selp" => {
                self.ops(i, 4)?;
                Op::Ter { f: alu::selp, d: self.dst(&o[0])?, a: self.src(&o[1], ty)?, b: self.src(&o[2], ty)?, c: self.src(&o[3], None)? }
            }
            "setp" => self.setp(i, &oc)?,
            "cvt" => {
                self.ops(i, 2)?;
                let (Some(&dst), Some(&src)) = (oc.types.first(), oc.types.get(1)) else { return Err(unsupported()) };
                let spec = CvtSpec { dst, src, float_rnd: oc.rnd().unwrap_or(Rnd::Rn), int_rnd: oc.int_rnd(), sat, ftz };
                Op::Cvt { spec, d: self.dst(&o[0])?, a: self.src(&o[1], Some(src))? }
            }
            "cvta" => {
                self.ops(i, 2)?;
                let to = oc.has("to");
                let window = if oc.has("shared") {
                    SHARED_WINDOW
                } else if oc.has("local") {
                    LOCAL_WINDOW
                } else {
                    0
                };
                let f: BinFn = if to { alu::sub::<64> } else { alu::add::<64> };
                Op::Bin { f, d: self.dst(&o[0])?, a: self.src(&o[1], Some(Ty::U(64)))?, b: Src::Imm(window) }
            }
            "mov" => self.mov(i, ty, oc.pred)?,
            "ld" | "ldu" => {
                self.ops(i, 2)?;
                let n = self.vec_width(&oc);
                let (addr, sym_space) = self.addr(&o[1])?;
                let space = self.access_space(&oc, sym_space);
                let size = (ty.ok_or_else(unsupported)?.bits() / 8) as u8;
                let mut d = [0u32; 4];
                match &o[0] {
                    Operand::Vector(v) if v.len() == n as usize => {
                        for (k, r) in v.iter().enumerate() {
                            d[k] = self.dst(r)?;
                        }
                    }
                    r if n == 1 => d[0] = self.dst(r)?,
                    _ => return self.err("vector width does not match the operand"),
                }
                Op::Ld { space, size, n, signed, sync: is_sync_access(&oc), d, addr }
            }
            "st" => {
                self.ops(i, 2)?;
                let n = self.vec_width(&oc);
                let (addr, sym_space) = self.addr(&o[0])?;
                let space = self.access_space(&oc, sym_space);
                let size = (ty.ok_or_else(unsupported)?.bits() / 8) as u8;
                let mut v = [Src::Imm(0); 4];
                match &o[1] {
                    Operand::Vector(items) if items.len() == n as usize => {
                        for (k, r) in items.iter().enumerate() {
                            v[k] = self.src(r, ty)?;
                        }
                    }
                    r if n == 1 => v[0] = self.src(r, ty)?,
                    _ => return self.err("vector width does not match the operand"),
                }
                Op::St { space, size, n, sync: is_sync_access(&oc), v, addr }
            }
            "atom" | "red" => self.atom(i, &oc)?,
            "bar" | "barrier" if oc.has("warp") => {
                self.ops(i, 1)?;
                Op::WarpSync { mask: self.src(&o[0], Some(Ty::U(32)))? }
            }
            "bar" | "barrier" => {
                let u = Some(Ty::U(32));
                let arrive = oc.has("arrive");
                let (red, o) = if oc.has("red") {
                    let kind = if oc.has("popc") {
                        BarRedKind::Popc
                    } else if oc.has("and") {
                        BarRedKind::And
                    } else if oc.has("or") {
                        BarRedKind::Or
                    } else {
                        return Err(unsupported());
                    };
                    let (Some(first), Some(last)) = (o.first(), o.last()) else { return self.err("bar.red needs d, a[, b], c") };
                    let (c, neg) = match last {
                        Operand::Not(p) => (self.src(p, None)?, true),
                        p => (self.src(p, None)?, false),
                    };
                    (Some(BarRed { kind, d: self.dst(first)?, c, neg }), &o[1..o.len() - 1])
                } else {
                    (None, &o[..])
                };
                let (id, count) = match o.len() {
                    // `barrier.sync` with no operand (PTX 8.x `__syncthreads`) is barrier 0.
                    0 if !arrive => (Src::Imm(0), None),
                    1 if !arrive => (self.src(&o[0], u)?, None),
                    2 => (self.src(&o[0], u)?, Some(self.src(&o[1], u)?)),
                    _ => return self.err("expected a barrier number and an optional thread count (required for bar.arrive)"),
                };
                if let Some(Src::Imm(c)) = count {
                    if c == 0 || c % 32 != 0 {
                        return self.err(format!("barrier thread count {c} is not a positive multiple of the warp size"));
                    }
                }
                Op::Bar { id, count, arrive, red }
            }
            "mbarrier" => self.mbarrier(i, &oc)?,
            "cp" if oc.has("async") => self.cp_async(i, &oc)?,
            "mma" => self.mma(i, &oc)?,
            "ldmatrix" => self.ldmatrix(i, &oc)?,
            "elect" if oc.has("sync") => {
                self.ops(i, 2)?;
                let Operand::Pair(d, p) = &o[0] else { return self.err("elect.sync needs a destination pair d|p") };
                Op::Elect { d: self.dst(d)?, p: self.dst(p)?, mask: self.src(&o[1], Some(Ty::U(32)))? }
            }
            "redux" if oc.has("sync") => {
                self.ops(i, 3)?;
                let f: BinFn = match (oc.mods.iter().find(|m| matches!(**m, "add" | "min" | "max" | "and" | "or" | "xor")), signed) {
                    (Some(&"add"), _) => alu::add::<32>,
                    (Some(&"min"), false) => alu::min_int::<32, false>,
                    (Some(&"min"), true) => alu::min_int::<32, true>,
                    (Some(&"max"), false) => alu::max_int::<32, false>,
                    (Some(&"max"), true) => alu::max_int::<32, true>,
                    (Some(&"and"), _) => alu::and::<32>,
                    (Some(&"or"), _) => alu::or::<32>,
                    (Some(&"xor"), _) => alu::xor::<32>,
                    _ => return Err(unsupported()),
                };
                if w != 32 {
                    return Err(unsupported());
                }
                Op::Redux { f, d: self.dst(&o[0])?, a: self.src(&o[1], ty)?, mask: self.src(&o[2], Some(Ty::U(32)))? }
            }
            "match" if oc.has("sync") && (oc.has("any") || oc.has("all")) => {
                self.ops(i, 3)?;
                let (d, p) = match &o[0] {
                    Operand::Pair(a, b) => (self.dst(a)?, Some(self.dst(b)?)),
                    other => (self.dst(other)?, None),
                };
                Op::Match { all: oc.has("all"), d, p, a: self.src(&o[1], ty)?, mask: self.src(&o[2], Some(Ty::U(32)))? }
            }
            // Hints with no effect on results: sleeping in a spin loop, cache prefetch/discard
            // and eviction priorities.
            "nanosleep" | "prefetch" | "prefetchu" | "discard" | "pmevent" | "applypriority" => Op::Nop,
            // A cache eviction policy for `.L2::cache_hint` accesses, which are only hints here.
            "createpolicy" => Op::Un { f: alu::identity, d: self.dst(o.first().ok_or_else(unsupported)?)?, a: Src::Imm(0) },
            "shfl" => {
                self.ops(i, 5)?;
                let mode = if oc.has("up") {
                    ShflMode::Up
                } else if oc.has("down") {
                    ShflMode::Down
                } else if oc.has("bfly") {
                    ShflMode::Bfly
                } else if oc.has("idx") {
                    ShflMode::Idx
                } else {
                    return Err(unsupported());
                };
                let (d, p) = match &o[0] {
                    Operand::Pair(a, b) => (self.dst(a)?, Some(self.dst(b)?)),
                    other => (self.dst(other)?, None),
                };
                let u = Some(Ty::U(32));
                Op::Shfl { mode, d, p, a: self.src(&o[1], u)?, b: self.src(&o[2], u)?, c: self.src(&o[3], u)?, mask: self.src(&o[4], u)? }
            }
            "vote" => {
                self.ops(i, 3)?;
                let mode = if oc.has("ballot") {
                    VoteMode::Ballot
                } else if oc.has("all") {
                    VoteMode::All
                } else if oc.has("any") {
                    VoteMode::Any
                } else if oc.has("uni") {
                    VoteMode::Uni
                } else {
                    return Err(unsupported());
                };
                let (a, neg) = match &o[1] {
                    Operand::Not(p) => (self.src(p, None)?, true),
                    p => (self.src(p, None)?, false),
                };
                Op::Vote { mode, d: self.dst(&o[0])?, a, neg, mask: self.src(&o[2], Some(Ty::U(32)))? }
            }
            "activemask" => {
                self.ops(i, 1)?;
                Op::Vote { mode: VoteMode::Ballot, d: self.dst(&o[0])?, a: Src::Imm(1), neg: false, mask: Src::Imm(0xffff_ffff) }
            }
            "membar" | "fence" => Op::Fence,
            "bra" | "brx" if oc.base == "bra" => {
                self.ops(i, 1)?;
                let Operand::Sym(label) = &o[0] else { return self.err("branch target must be a label") };
                match self.labels.get(label) {
                    Some(&t) => Op::Bra { target: t },
                    None => return self.err(format!("unknown label {label}")),
                }
            }
            "ret" | "exit" => Op::Exit,
            _ => return Err(unsupported()),
        };
        Ok((op, flops))
    }

    /// `mbarrier.{init,arrive,arrive_drop,expect_tx,complete_tx,test_wait,try_wait,inval,
    /// pending_count}` on shared memory (`cuda::barrier`, and the transaction counts of sm_90);
    /// `pending_count` reads a state value, not memory.
    fn mbarrier(&mut self, i: &Instruction, oc: &Opcode) -> Result<Op> {
        let o = &i.operands;
        let u32ty = Some(Ty::U(32));
        let u64ty = Some(Ty::U(64));
        let unsupported = || Error::Sim(format!("kernel {}, PTX line {}: the simulator does not support `{}`", self.kernel, self.line, i.opcode));
        let shared_addr = |this: &Self, op: &Operand| -> Result<Addr> {
            let (addr, _) = this.addr(op)?;
            if this.space_of(oc) != Space::Shared {
                return this.err("mbarrier objects are supported in shared memory only (`.shared`)");
            }
            Ok(addr)
        };
        let verb = oc.mods.first().copied().unwrap_or("");
        if oc.has("noComplete") {
            return Err(unsupported());
        }
        Ok(match verb {
            "init" => {
                self.ops(i, 2)?;
                let addr = shared_addr(self, &o[0])?;
                Op::Mbar { kind: MbarOp::Init, d: self.sink(), addr, b: self.src(&o[1], u32ty)? }
            }
            "arrive" | "arrive_drop" => {
                let (d, rest) = match o.first() {
                    Some(Operand::Addr { .. }) => (self.sink(), &o[..]),
                    Some(first) => (self.dst(first)?, &o[1..]),
                    None => return self.err("mbarrier.arrive needs an address"),
                };
                // With `.expect_tx` the operand after the address is a byte count (one arrival).
                let expect_tx = oc.has("expect_tx");
                let b = match rest.len() {
                    1 if !expect_tx => Src::Imm(1),
                    2 => self.src(&rest[1], u32ty)?,
                    _ if expect_tx => return self.err("expected [addr] and a transaction byte count"),
                    _ => return self.err("expected [addr] and an optional count"),
                };
                let addr = shared_addr(self, &rest[0])?;
                Op::Mbar { kind: MbarOp::Arrive { drop: verb == "arrive_drop", expect_tx }, d, addr, b }
            }
            "expect_tx" | "complete_tx" => {
                self.ops(i, 2)?;
                let addr = shared_addr(self, &o[0])?;
                let kind = if verb == "expect_tx" { MbarOp::ExpectTx } else { MbarOp::CompleteTx };
                Op::Mbar { kind, d: self.sink(), addr, b: self.src(&o[1], u32ty)? }
            }
            "test_wait" | "try_wait" => {
                // try_wait's optional suspend-time hint does not change the result.
                if o.len() != 3 && !(verb == "try_wait" && o.len() == 4) {
                    return self.err("expected p, [addr], state");
                }
                let parity = oc.has("parity");
                let addr = shared_addr(self, &o[1])?;
                Op::Mbar { kind: MbarOp::TestWait { parity }, d: self.dst(&o[0])?, addr, b: self.src(&o[2], if parity { u32ty } else { u64ty })? }
            }
            "inval" => {
                self.ops(i, 1)?;
                let addr = shared_addr(self, &o[0])?;
                Op::Mbar { kind: MbarOp::Inval, d: self.sink(), addr, b: Src::Imm(0) }
            }
            "pending_count" => {
                self.ops(i, 2)?;
                Op::Un { f: super::mbarrier::pending_count, d: self.dst(&o[0])?, a: self.src(&o[1], u64ty)? }
            }
            _ => return Err(unsupported()),
        })
    }

    /// `cp.async.{ca,cg}.shared.global` (with the optional source size and cache policy),
    /// `commit_group`, `wait_group`, `wait_all` and `mbarrier.arrive[.noinc]`; the bulk (TMA)
    /// forms are not supported.
    fn cp_async(&mut self, i: &Instruction, oc: &Opcode) -> Result<Op> {
        let o = &i.operands;
        let unsupported = || Error::Sim(format!("kernel {}, PTX line {}: the simulator does not support `{}`", self.kernel, self.line, i.opcode));
        if oc.has("bulk") {
            return Err(unsupported());
        }
        if oc.has("commit_group") {
            self.ops(i, 0)?;
            return Ok(Op::CpAsyncCommit);
        }
        if oc.has("wait_all") {
            self.ops(i, 0)?;
            return Ok(Op::CpAsyncWait { newest_pending: None });
        }
        if oc.has("wait_group") {
            self.ops(i, 1)?;
            let Operand::Imm(Imm::Int(n)) = o[0] else { return self.err("cp.async.wait_group takes an integer constant") };
            return Ok(Op::CpAsyncWait { newest_pending: Some(n as u32) });
        }
        if oc.has("mbarrier") && oc.has("arrive") {
            self.ops(i, 1)?;
            if self.space_of(oc) != Space::Shared {
                return self.err("mbarrier objects are supported in shared memory only (`.shared`)");
            }
            let (addr, _) = self.addr(&o[0])?;
            return Ok(Op::CpAsyncMbarArrive { noinc: oc.has("noinc"), addr });
        }
        if !(oc.has("shared") && oc.has("global")) || !(oc.has("ca") || oc.has("cg")) {
            return Err(unsupported());
        }
        // A trailing cache policy (`.L2::cache_hint`) is a hint with no effect on the result.
        let operands = if i.opcode.contains("cache_hint") { o.len().saturating_sub(1) } else { o.len() };
        if !(3..=4).contains(&operands) {
            return self.err("expected [dst], [src], cp-size and an optional src-size");
        }
        let size = match o[2] {
            Operand::Imm(Imm::Int(n @ (4 | 8 | 16))) => n as u8,
            _ => return self.err("cp.async copies 4, 8 or 16 bytes (an integer constant)"),
        };
        if oc.has("cg") && size != 16 {
            return self.err("cp.async.cg copies 16 bytes");
        }
        // The fourth operand is a source size, or a predicate (`ignore-src`: copy nothing, fill
        // zeros when true).
        let (src_size, ignore_src) = match operands {
            4 => {
                let s = self.src(&o[3], Some(Ty::U(32)))?;
                (s, matches!(s, Src::Reg(r) if self.predicates.contains(&r)))
            }
            _ => (Src::Imm(size as u64), false),
        };
        let (dst, _) = self.addr(&o[0])?;
        let (src, _) = self.addr(&o[1])?;
        Ok(Op::CpAsync { dst, src, size, src_size, ignore_src })
    }

    /// The registers of a `{...}` operand, exactly `n` of them.
    fn reg_vector(&mut self, o: &Operand, n: usize, what: &str) -> Result<Vec<u32>> {
        match o {
            Operand::Vector(v) if v.len() == n => v.iter().map(|r| self.dst(r)).collect(),
            _ => self.err(format!("{what} must be a vector of {n} registers")),
        }
    }

    /// `mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32` and the m16n8k8 forms
    /// with f16/bf16 or tf32 inputs; other shapes, layouts and accumulator types are refused.
    fn mma(&mut self, i: &Instruction, oc: &Opcode) -> Result<Op> {
        let unsupported = || Error::Sim(format!("kernel {}, PTX line {}: the simulator does not support `{}`", self.kernel, self.line, i.opcode));
        self.ops(i, 4)?;
        if !(oc.has("sync") && oc.has("aligned") && oc.has("row") && oc.has("col")) || oc.has("satfinite") {
            return Err(unsupported());
        }
        // The types are d, a, b, c in order; tf32 is not a register type, so it stays a modifier.
        let tf32 = oc.mods.iter().filter(|m| **m == "tf32").count() == 2;
        let shape = match (oc.has("m16n8k16"), oc.has("m16n8k8"), oc.types.as_slice()) {
            (true, false, [Ty::F32, Ty::F16, Ty::F16, Ty::F32]) => MmaShape::K16Half { bf: false },
            (true, false, [Ty::F32, Ty::Bf16, Ty::Bf16, Ty::F32]) => MmaShape::K16Half { bf: true },
            (false, true, [Ty::F32, Ty::F16, Ty::F16, Ty::F32]) => MmaShape::K8Half { bf: false },
            (false, true, [Ty::F32, Ty::Bf16, Ty::Bf16, Ty::F32]) => MmaShape::K8Half { bf: true },
            (false, true, [Ty::F32, Ty::F32]) if tf32 => MmaShape::K8Tf32,
            _ => return Err(unsupported()),
        };
        let (na, nb) = shape.fragment_regs();
        let o = &i.operands;
        let d = self.reg_vector(&o[0], 4, "mma's D")?;
        let a = self.reg_vector(&o[1], na, "mma's A")?;
        let b = self.reg_vector(&o[2], nb, "mma's B")?;
        let c = self.reg_vector(&o[3], 4, "mma's C")?;
        let fill = |regs: &[u32], out: &mut [Src]| regs.iter().zip(out.iter_mut()).for_each(|(&r, o)| *o = Src::Reg(r));
        let (mut sa, mut sb, mut sc) = ([Src::Imm(0); 4], [Src::Imm(0); 2], [Src::Imm(0); 4]);
        fill(&a, &mut sa);
        fill(&b, &mut sb);
        fill(&c, &mut sc);
        Ok(Op::Mma { shape, d: [d[0], d[1], d[2], d[3]], a: sa, b: sb, c: sc })
    }

    /// `ldmatrix.sync.aligned.m8n8.x{1,2,4}{.trans}{.shared}.b16`.
    fn ldmatrix(&mut self, i: &Instruction, oc: &Opcode) -> Result<Op> {
        let unsupported = || Error::Sim(format!("kernel {}, PTX line {}: the simulator does not support `{}`", self.kernel, self.line, i.opcode));
        self.ops(i, 2)?;
        let n = match (oc.has("x1"), oc.has("x2"), oc.has("x4")) {
            (true, false, false) => 1,
            (false, true, false) => 2,
            (false, false, true) => 4,
            _ => return Err(unsupported()),
        };
        if !(oc.has("sync") && oc.has("aligned") && oc.has("m8n8")) || oc.types.as_slice() != [Ty::U(16)] || !matches!(self.space_of(oc), Space::Shared | Space::Generic) {
            return Err(unsupported());
        }
        let regs = match &i.operands[0] {
            r @ Operand::Reg(_) if n == 1 => vec![self.dst(r)?],
            v => self.reg_vector(v, n as usize, "ldmatrix's destination")?,
        };
        let mut d = [0u32; 4];
        d[..regs.len()].copy_from_slice(&regs);
        let (addr, _) = self.addr(&i.operands[1])?;
        Ok(Op::Ldmatrix { n, trans: oc.has("trans"), space: self.space_of(oc), d, addr })
    }

    fn setp(&mut self, i: &Instruction, oc: &Opcode) -> Result<Op> {
        let o = &i.operands;
        let ty = oc.types.first().copied();
        let unsupported = || Error::Sim(format!("kernel {}, PTX line {}: the simulator does not support `{}`", self.kernel, self.line, i.opcode));
        let code = oc.mods.iter().find_map(|m| alu::cmp_code(m)).ok_or_else(unsupported)?;
        if oc.has("f16x2") || oc.has("bf16x2") {
            return Err(unsupported());
        }
        let f = dispatch::cmp_fn(code, ty.ok_or_else(unsupported)?, oc.has("ftz")).ok_or_else(unsupported)?;
        let comb = if oc.has("and") {
            Some(Comb::And)
        } else if oc.has("or") {
            Some(Comb::Or)
        } else if oc.has("xor") {
            Some(Comb::Xor)
        } else {
            None
        };
        let (p, q) = match &o[0] {
            Operand::Pair(a, b) => (self.dst(a)?, Some(self.dst(b)?)),
            other => (self.dst(other)?, None),
        };
        let comb = match comb {
            Some(c) => {
                self.ops(i, 4)?;
                let (src, neg) = match &o[3] {
                    Operand::Not(p) => (self.src(p, None)?, true),
                    p => (self.src(p, None)?, false),
                };
                Some((c, src, neg))
            }
            None => {
                self.ops(i, 3)?;
                None
            }
        };
        Ok(Op::Setp { f, comb, p, q, a: self.src(&o[1], ty)?, b: self.src(&o[2], ty)? })
    }

    fn mov(&mut self, i: &Instruction, ty: Option<Ty>, pred: bool) -> Result<Op> {
        self.ops(i, 2)?;
        let o = &i.operands;
        let bits = if pred { 1 } else { ty.map_or(64, |t| t.bits()) };
        match (&o[0], &o[1]) {
            (Operand::Vector(ds), src) => {
                let n = ds.len();
                if n == 0 || n > 4 || !(bits as usize).is_multiple_of(n) {
                    return self.err("bad vector unpack");
                }
                let mut regs = [0u32; 4];
                for (k, r) in ds.iter().enumerate() {
                    regs[k] = self.dst(r)?;
                }
                Ok(Op::Unpack { ds: regs, n: n as u8, bits: (bits as usize / n) as u8, a: self.src(src, ty)? })
            }
            (dst, Operand::Vector(ss)) => {
                let n = ss.len();
                if n == 0 || n > 4 || !(bits as usize).is_multiple_of(n) {
                    return self.err("bad vector pack");
                }
                let mut srcs = [Src::Imm(0); 4];
                for (k, s) in ss.iter().enumerate() {
                    srcs[k] = self.src(s, None)?;
                }
                Ok(Op::Pack { d: self.dst(dst)?, srcs, n: n as u8, bits: (bits as usize / n) as u8 })
            }
            (dst, src) => {
                let f: UnFn = match bits {
                    1 => alu::mask_to::<1>,
                    8 => alu::mask_to::<8>,
                    16 => alu::mask_to::<16>,
                    32 => alu::mask_to::<32>,
                    _ => alu::identity,
                };
                Ok(Op::Un { f, d: self.dst(dst)?, a: self.src(src, ty)? })
            }
        }
    }

    fn atom(&mut self, i: &Instruction, oc: &Opcode) -> Result<Op> {
        let o = &i.operands;
        let is_red = oc.base == "red";
        let ty = oc.types.first().copied();
        let unsupported = || Error::Sim(format!("kernel {}, PTX line {}: the simulator does not support `{}`", self.kernel, self.line, i.opcode));
        let ty = ty.ok_or_else(unsupported)?;
        let w = ty.bits();
        let x2 = oc.has("f16x2") || oc.has("bf16x2");
        let signed = matches!(ty, Ty::S(_));
        let half_add = oc.has("add") && (matches!(ty, Ty::F16 | Ty::Bf16) || x2);
        if w == 16 && !(half_add || oc.has("cas") || oc.has("exch")) || !matches!(w, 16 | 32 | 64) {
            return Err(unsupported());
        }
        let f: TerFn = if half_add {
            match (ty, oc.has("bf16x2")) {
                (Ty::F16, _) => dispatch::atom_add_h16::<false>,
                (Ty::Bf16, _) => dispatch::atom_add_h16::<true>,
                (_, false) => dispatch::atom_add_h16x2::<false>,
                (_, true) => dispatch::atom_add_h16x2::<true>,
            }
        } else if oc.has("add") {
            match ty {
                Ty::F32 => dispatch::atom_add_f32,
                Ty::F64 => dispatch::atom_add_f64,
                _ if w == 32 => dispatch::atom_add::<32>,
                _ => dispatch::atom_add::<64>,
            }
        } else if oc.has("min") || oc.has("max") {
            let is_min = oc.has("min");
            match (ty, w, signed, is_min) {
                (Ty::F32, _, _, true) => dispatch::atom_min_f32,
                (Ty::F32, _, _, false) => dispatch::atom_max_f32,
                (Ty::F64, ..) => return Err(unsupported()),
                (_, 32, false, true) => dispatch::atom_min::<32, false>,
                (_, 32, true, true) => dispatch::atom_min::<32, true>,
                (_, 32, false, false) => dispatch::atom_max::<32, false>,
                (_, 32, true, false) => dispatch::atom_max::<32, true>,
                (_, _, false, true) => dispatch::atom_min::<64, false>,
                (_, _, true, true) => dispatch::atom_min::<64, true>,
                (_, _, false, false) => dispatch::atom_max::<64, false>,
                (_, _, true, false) => dispatch::atom_max::<64, true>,
            }
        } else if oc.has("exch") {
            dispatch::atom_exch
        } else if oc.has("cas") {
            if w == 16 {
                dispatch::atom_cas16
            } else if w == 32 {
                dispatch::atom_cas32
            } else {
                dispatch::atom_cas
            }
        } else if oc.has("and") {
            dispatch::atom_and
        } else if oc.has("or") {
            dispatch::atom_or
        } else if oc.has("xor") {
            dispatch::atom_xor
        } else if oc.has("inc") && w == 32 {
            dispatch::atom_inc
        } else if oc.has("dec") && w == 32 {
            dispatch::atom_dec
        } else {
            return Err(unsupported());
        };
        let (d, rest) = if is_red { (self.sink(), &o[..]) } else { (self.dst(&o[0])?, &o[1..]) };
        let cas = oc.has("cas");
        if rest.len() != if cas { 3 } else { 2 } {
            return self.err("wrong operand count");
        }
        let (addr, sym_space) = self.addr(&rest[0])?;
        let mut space = self.space_of(oc);
        if space == Space::Generic {
            space = sym_space.unwrap_or(Space::Generic);
        }
        let b = self.src(&rest[1], Some(ty))?;
        let c = if cas { self.src(&rest[2], Some(ty))? } else { Src::Imm(0) };
        let release = oc.has("release") || oc.has("acq_rel");
        Ok(Op::Atom { space, f, size: (w / 8) as u8, release, d, addr, b, c })
    }
}

/// Volatile and memory-model-qualified (`.relaxed/.acquire/.release`) accesses: the ones
/// threads synchronise through.
fn is_sync_access(oc: &Opcode) -> bool {
    ["volatile", "relaxed", "acquire", "release"].iter().any(|m| oc.has(m))
}

/// Lays out variables one after another with their alignment; returns the end offset.
fn layout(vars: &[&VarDecl], start: usize, space: Space, symbols: &mut HashMap<String, (Space, u64)>, named: &mut Vec<(String, Space, usize, usize)>) -> usize {
    let mut off = start;
    for v in vars {
        off = align_up(off, v.align as usize);
        symbols.insert(v.name.clone(), (space, off as u64));
        named.push((v.name.clone(), space, off, v.bytes as usize));
        off += v.bytes as usize;
    }
    off
}

/// Every identifier the instructions of `k` name (registers, symbols, labels).
fn identifiers(k: &KernelAst) -> std::collections::HashSet<String> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == '%';
    k.body
        .iter()
        .filter_map(|s| match s {
            Statement::Instruction(i) => Some(instruction_text(i)),
            Statement::Label(_) => None,
        })
        .flat_map(|text| text.split(|c: char| !is_ident(c)).filter(|t| !t.is_empty()).map(str::to_string).collect::<Vec<_>>())
        .collect()
}

/// Decodes kernel `k`; `globals` holds the device addresses of the module's `.global`/`.const`
/// variables.
pub fn decode_kernel(module: &ModuleAst, k: &KernelAst, globals: &HashMap<String, u64>) -> Result<Kernel> {
    let mut symbols: HashMap<String, (Space, u64)> = globals.iter().map(|(n, &a)| (n.clone(), (Space::Global, a))).collect();
    let mut vars = Vec::new();
    // Parameters: laid out by their alignment, addressed by offset in the parameter buffer.
    let mut params = Vec::new();
    let mut poff = 0usize;
    for p in &k.params {
        poff = align_up(poff, p.align as usize);
        symbols.insert(p.name.clone(), (Space::Param, poff as u64));
        params.push((poff, p.bytes as usize));
        poff += p.bytes as usize;
    }
    // As ptxas does, a kernel holds the module-scope shared variables it names, not every one
    // in the module (NVRTC places a device function's `__shared__` arrays at module scope, one
    // per template instantiation).
    let named = if module.shared.is_empty() { Default::default() } else { identifiers(k) };
    let statics: Vec<&VarDecl> = module
        .shared
        .iter()
        .filter(|v| named.contains(v.name.as_str()))
        .chain(&k.shared)
        .filter(|v| !v.is_extern)
        .collect();
    let static_shared = layout(&statics, 0, Space::Shared, &mut symbols, &mut vars);
    let dyn_shared_offset = align_up(static_shared, 16);
    for v in module.shared.iter().chain(&k.shared).filter(|v| v.is_extern) {
        symbols.insert(v.name.clone(), (Space::Shared, dyn_shared_offset as u64));
        vars.push((v.name.clone(), Space::Shared, dyn_shared_offset, 0));
    }
    // Call arguments live in each thread's local memory after its local arrays; a name declared
    // by several call sequences gets one slot big enough for all of them.
    let mut call_params: Vec<VarDecl> = Vec::new();
    for p in &k.call_params {
        match call_params.iter_mut().find(|q| q.name == p.name) {
            Some(q) => {
                q.bytes = q.bytes.max(p.bytes);
                q.align = q.align.max(p.align);
            }
            None => call_params.push(p.clone()),
        }
    }
    let locals: Vec<&VarDecl> = k.local.iter().chain(&call_params).collect();
    let local_bytes = layout(&locals, 0, Space::Local, &mut symbols, &mut vars);

    let mut regs = HashMap::new();
    let mut nregs = 0u32;
    let mut predicates = std::collections::HashSet::new();
    for r in &k.regs {
        let first = nregs;
        match r.count {
            Some(c) => {
                for idx in 0..c {
                    regs.insert(format!("{}{idx}", r.name), nregs);
                    nregs += 1;
                }
            }
            None => {
                regs.insert(r.name.clone(), nregs);
                nregs += 1;
            }
        }
        if r.pred {
            predicates.extend(first..nregs);
        }
    }
    let mut labels = HashMap::new();
    let mut count = 0u32;
    for s in &k.body {
        match s {
            Statement::Label(l) => {
                labels.insert(l.clone(), count);
            }
            Statement::Instruction(_) => count += 1,
        }
    }
    let mut dec = Decoder { kernel: &k.name, regs, predicates, nregs, symbols, labels, line: 0, text: String::new() };
    let mut insts = Vec::with_capacity(count as usize);
    let mut lines = Vec::with_capacity(count as usize);
    for s in &k.body {
        let Statement::Instruction(i) = s else { continue };
        let text = instruction_text(i);
        dec.line = i.line;
        dec.text = text.clone();
        let (op, flops) = dec.decode(i)?;
        let (guard, guard_neg) = match &i.guard {
            Some((g, neg)) => (dec.reg(g)?, *neg),
            None => (NO_GUARD, false),
        };
        insts.push(Inst { op, guard, guard_neg, flops });
        lines.push((i.line, text));
    }
    // Falling off the end of a kernel is an exit.
    insts.push(Inst { op: Op::Exit, guard: NO_GUARD, guard_neg: false, flops: 0 });
    lines.push((0, "(end of kernel)".into()));
    Ok(Kernel {
        name: k.name.clone(),
        params,
        param_bytes: poff,
        nregs: dec.nregs as usize,
        static_shared,
        dyn_shared_offset,
        local_bytes,
        insts,
        lines,
        vars,
    })
}

/// A kernel that failed to decode keeps its message, reported when it is launched, so one
/// unsupported kernel does not take the rest of its module down.
pub type DecodedKernel = std::result::Result<std::sync::Arc<Kernel>, String>;

/// Every kernel of a parsed module, decoded against the addresses of its global variables.
pub fn decode_module(ast: &ModuleAst, globals: &HashMap<String, u64>) -> HashMap<String, DecodedKernel> {
    ast.kernels
        .iter()
        .map(|k| {
            let decoded = match decode_kernel(ast, k, globals) {
                Ok(kernel) => Ok(std::sync::Arc::new(kernel)),
                Err(Error::Sim(m)) => Err(m),
                Err(e) => Err(e.to_string()),
            };
            (k.name.clone(), decoded)
        })
        .collect()
}
