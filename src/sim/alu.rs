//! Arithmetic semantics of PTX instructions, one plain function per opcode/type combination so
//! the decoder can pick a function pointer and the executor calls it per lane. Registers are
//! 64-bit slots: every function truncates its inputs to its own width, integer results are stored
//! zero-extended (sign-extended for signed narrow conversions), floats as their bit patterns.

pub type UnFn = fn(u64) -> u64;
pub type BinFn = fn(u64, u64) -> u64;
pub type TerFn = fn(u64, u64, u64) -> u64;
pub type QuadFn = fn(u64, u64, u64, u64) -> u64;
pub type CmpFn = fn(u64, u64) -> bool;

#[inline(always)]
pub const fn mask(w: u32) -> u64 {
    if w >= 64 {
        u64::MAX
    } else {
        (1u64 << w) - 1
    }
}

#[inline(always)]
pub fn sext(v: u64, w: u32) -> i64 {
    if w >= 64 {
        v as i64
    } else {
        let s = 64 - w;
        ((v << s) as i64) >> s
    }
}

// ---------------------------------------------------------------- integers

pub fn add<const W: u32>(a: u64, b: u64) -> u64 {
    a.wrapping_add(b) & mask(W)
}
pub fn sub<const W: u32>(a: u64, b: u64) -> u64 {
    a.wrapping_sub(b) & mask(W)
}
pub fn mul_lo<const W: u32>(a: u64, b: u64) -> u64 {
    a.wrapping_mul(b) & mask(W)
}
pub fn mul_hi<const W: u32, const S: bool>(a: u64, b: u64) -> u64 {
    let p = if S {
        (sext(a, W) as i128 * sext(b, W) as i128) as u128
    } else {
        (a & mask(W)) as u128 * (b & mask(W)) as u128
    };
    ((p >> W) as u64) & mask(W)
}
pub fn mul_wide<const W: u32, const S: bool>(a: u64, b: u64) -> u64 {
    let p = if S {
        (sext(a, W) as i128 * sext(b, W) as i128) as u128
    } else {
        (a & mask(W)) as u128 * (b & mask(W)) as u128
    };
    (p as u64) & mask(2 * W)
}
pub fn mad_lo<const W: u32>(a: u64, b: u64, c: u64) -> u64 {
    a.wrapping_mul(b).wrapping_add(c) & mask(W)
}
pub fn mad_hi<const W: u32, const S: bool>(a: u64, b: u64, c: u64) -> u64 {
    mul_hi::<W, S>(a, b).wrapping_add(c) & mask(W)
}
pub fn mad_wide<const W: u32, const S: bool>(a: u64, b: u64, c: u64) -> u64 {
    mul_wide::<W, S>(a, b).wrapping_add(c) & mask(2 * W)
}
/// Division by zero gives all ones (what the hardware sequence produces), never a panic.
pub fn div<const W: u32, const S: bool>(a: u64, b: u64) -> u64 {
    if b & mask(W) == 0 {
        return mask(W);
    }
    if S {
        (sext(a, W).wrapping_div(sext(b, W)) as u64) & mask(W)
    } else {
        ((a & mask(W)) / (b & mask(W))) & mask(W)
    }
}
/// Remainder by zero gives the dividend; the sign follows the dividend (C semantics).
pub fn rem<const W: u32, const S: bool>(a: u64, b: u64) -> u64 {
    if b & mask(W) == 0 {
        return a & mask(W);
    }
    if S {
        (sext(a, W).wrapping_rem(sext(b, W)) as u64) & mask(W)
    } else {
        ((a & mask(W)) % (b & mask(W))) & mask(W)
    }
}
pub fn min_int<const W: u32, const S: bool>(a: u64, b: u64) -> u64 {
    if S {
        (sext(a, W).min(sext(b, W)) as u64) & mask(W)
    } else {
        (a & mask(W)).min(b & mask(W))
    }
}
pub fn max_int<const W: u32, const S: bool>(a: u64, b: u64) -> u64 {
    if S {
        (sext(a, W).max(sext(b, W)) as u64) & mask(W)
    } else {
        (a & mask(W)).max(b & mask(W))
    }
}
pub fn neg_int<const W: u32>(a: u64) -> u64 {
    a.wrapping_neg() & mask(W)
}
pub fn abs_int<const W: u32>(a: u64) -> u64 {
    (sext(a, W).wrapping_abs() as u64) & mask(W)
}
pub fn and<const W: u32>(a: u64, b: u64) -> u64 {
    a & b & mask(W)
}
pub fn or<const W: u32>(a: u64, b: u64) -> u64 {
    (a | b) & mask(W)
}
pub fn xor<const W: u32>(a: u64, b: u64) -> u64 {
    (a ^ b) & mask(W)
}
pub fn not<const W: u32>(a: u64) -> u64 {
    !a & mask(W)
}
pub fn not_pred(a: u64) -> u64 {
    (a == 0) as u64
}
/// Shift amounts are unsigned 32-bit and clamp at the width.
pub fn shl<const W: u32>(a: u64, b: u64) -> u64 {
    let n = b as u32;
    if n >= W {
        0
    } else {
        (a << n) & mask(W)
    }
}
pub fn shr_u<const W: u32>(a: u64, b: u64) -> u64 {
    let n = b as u32;
    if n >= W {
        0
    } else {
        (a & mask(W)) >> n
    }
}
pub fn shr_s<const W: u32>(a: u64, b: u64) -> u64 {
    let n = (b as u32).min(W - 1);
    ((sext(a, W) >> n) as u64) & mask(W)
}
pub fn popc<const W: u32>(a: u64) -> u64 {
    (a & mask(W)).count_ones() as u64
}
pub fn clz<const W: u32>(a: u64) -> u64 {
    ((a & mask(W)).leading_zeros() - (64 - W)) as u64
}
pub fn brev<const W: u32>(a: u64) -> u64 {
    (a & mask(W)).reverse_bits() >> (64 - W)
}
/// Position of the most significant non-sign bit; 0xffffffff when there is none.
pub fn bfind<const W: u32, const S: bool>(a: u64) -> u64 {
    let v = a & mask(W);
    let v = if S && sext(v, W) < 0 { !v & mask(W) } else { v };
    if v == 0 {
        0xffff_ffff
    } else {
        (63 - v.leading_zeros()) as u64
    }
}
/// `bfind.shiftamt`: the left shift that moves [`bfind`]'s bit to the top of the W-bit value
/// (W - 1 - its position), or 0xffffffff when there is none.
pub fn bfind_shiftamt<const W: u32, const S: bool>(a: u64) -> u64 {
    match bfind::<W, S>(a) {
        0xffff_ffff => 0xffff_ffff,
        position => (W as u64 - 1) - position,
    }
}
/// Bit-field extract: `len` bits from `pos`, sign-extended from the field's top bit when signed.
pub fn bfe<const W: u32, const S: bool>(a: u64, pos: u64, len: u64) -> u64 {
    let (pos, len) = ((pos & 0xff) as u32, (len & 0xff) as u32);
    let v = a & mask(W);
    let field = if pos >= W { 0 } else { (v >> pos) & mask(len.min(W)) };
    if !S || len == 0 {
        return if len == 0 { 0 } else { field & mask(W) };
    }
    // The sign bit is the field's top bit, or the operand's when the field runs past the end.
    let sbit_pos = (pos + len - 1).min(W - 1);
    let sign = (v >> sbit_pos) & 1 == 1;
    let keep = len.min(W.saturating_sub(pos));
    let low = if pos >= W { 0 } else { (v >> pos) & mask(keep) };
    if sign {
        (low | !mask(keep)) & mask(W)
    } else {
        low
    }
}
/// Bit-field insert: `len` bits of `a` into `b` at `pos`.
pub fn bfi<const W: u32>(a: u64, b: u64, pos: u64, len: u64) -> u64 {
    let (pos, len) = ((pos & 0xff) as u32, (len & 0xff) as u32);
    if pos >= W || len == 0 {
        return b & mask(W);
    }
    let m = mask(len.min(W - pos)) << pos;
    ((b & !m) | ((a << pos) & m)) & mask(W)
}
/// Saturating signed 32-bit add/sub (`add.sat.s32`).
pub fn add_sat_s32(a: u64, b: u64) -> u64 {
    (a as i32).saturating_add(b as i32) as u32 as u64
}
pub fn sub_sat_s32(a: u64, b: u64) -> u64 {
    (a as i32).saturating_sub(b as i32) as u32 as u64
}
/// 24-bit multiplies: the low 24 bits of each operand form a 48-bit product; `.lo` keeps bits
/// 0..32 of it, `.hi` bits 16..48.
fn mul24(a: u64, b: u64, signed: bool) -> i64 {
    if signed {
        sext(a, 24) * sext(b, 24)
    } else {
        ((a & 0xff_ffff) * (b & 0xff_ffff)) as i64
    }
}
pub fn mul24_lo<const S: bool>(a: u64, b: u64) -> u64 {
    mul24(a, b, S) as u64 & 0xffff_ffff
}
pub fn mul24_hi<const S: bool>(a: u64, b: u64) -> u64 {
    (mul24(a, b, S) >> 16) as u64 & 0xffff_ffff
}
pub fn mad24_lo<const S: bool>(a: u64, b: u64, c: u64) -> u64 {
    mul24_lo::<S>(a, b).wrapping_add(c) & 0xffff_ffff
}
pub fn mad24_hi<const S: bool>(a: u64, b: u64, c: u64) -> u64 {
    mul24_hi::<S>(a, b).wrapping_add(c) & 0xffff_ffff
}
/// Funnel shifts of the 64-bit value b:a (`shf.l/r.wrap/clamp.b32`).
pub fn shf<const LEFT: bool, const WRAP: bool>(a: u64, b: u64, c: u64) -> u64 {
    let n = if WRAP { (c as u32) & 31 } else { (c as u32).min(32) };
    let v = ((b & 0xffff_ffff) << 32) | (a & 0xffff_ffff);
    if LEFT {
        ((v << n) >> 32) & 0xffff_ffff
    } else {
        (v >> n) & 0xffff_ffff
    }
}
/// `prmt.b32` in its default mode: picks four bytes out of the eight of {b, a}, with sign
/// replication when bit 3 of a selector is set.
pub fn prmt(a: u64, b: u64, c: u64) -> u64 {
    let bytes = ((b as u32 as u64) << 32) | (a as u32 as u64);
    let mut out = 0u64;
    for i in 0..4 {
        let sel = (c >> (4 * i)) & 0xf;
        let byte = (bytes >> ((sel & 7) * 8)) & 0xff;
        let byte = if sel & 8 != 0 { if byte & 0x80 != 0 { 0xff } else { 0 } } else { byte };
        out |= byte << (8 * i);
    }
    out
}
/// The special `prmt.b32` modes (`.f4e`, `.b4e`, `.rc8`, `.ecl`, `.ecr`, `.rc16`): the two low
/// bits of c select one of four fixed byte patterns over the eight bytes of {b, a}.
pub const PRMT_F4E: u8 = 1;
pub const PRMT_B4E: u8 = 2;
pub const PRMT_RC8: u8 = 3;
pub const PRMT_ECL: u8 = 4;
pub const PRMT_ECR: u8 = 5;
pub const PRMT_RC16: u8 = 6;
pub fn prmt_mode<const MODE: u8>(a: u64, b: u64, c: u64) -> u64 {
    let bytes = ((b as u32 as u64) << 32) | (a as u32 as u64);
    let s = c & 3;
    let mut out = 0u64;
    for i in 0..4u64 {
        // The source byte of result byte i, per the ISA's table for each mode.
        let src = match MODE {
            // A window of four consecutive bytes starting at byte s.
            PRMT_F4E => s + i,
            // The same window read backwards (wrapping around the eight bytes).
            PRMT_B4E => (s + 8 - i) & 7,
            PRMT_RC8 => s,
            // Bytes below s (ecl) or above s (ecr) are clamped to byte s.
            PRMT_ECL => i.max(s),
            PRMT_ECR => i.min(s),
            // The half-word s selects (s & 1), twice.
            _ => (s & 1) * 2 + (i & 1),
        };
        out |= ((bytes >> (src * 8)) & 0xff) << (8 * i);
    }
    out
}
pub fn selp(a: u64, b: u64, p: u64) -> u64 {
    if p != 0 {
        a
    } else {
        b
    }
}
/// `cvt.rna.tf32.f32`: the f32 rounded to a 10-bit mantissa, ties away from zero (the low 13
/// bits cleared); NaN and infinities pass through.
pub fn f32_to_tf32_rna(a: u64) -> u64 {
    let bits = a as u32;
    if f32::from_bits(bits).is_finite() {
        let rounded = ((bits & 0x7fff_ffff) + 0x1000) & !0x1fff;
        ((bits & 0x8000_0000) | rounded) as u64
    } else {
        bits as u64
    }
}
pub fn identity(a: u64) -> u64 {
    a
}
pub fn mask_to<const W: u32>(a: u64) -> u64 {
    a & mask(W)
}

// ---------------------------------------------------------------- floats

#[inline(always)]
pub fn f(a: u64) -> f32 {
    f32::from_bits(a as u32)
}
#[inline(always)]
pub fn fb(v: f32) -> u64 {
    v.to_bits() as u64
}
#[inline(always)]
pub fn d(a: u64) -> f64 {
    f64::from_bits(a)
}
#[inline(always)]
pub fn db(v: f64) -> u64 {
    v.to_bits()
}

/// Subnormals become zero of the same sign (`.ftz`).
#[inline(always)]
pub fn ftz(v: f32) -> f32 {
    if v.is_subnormal() {
        f32::from_bits(v.to_bits() & 0x8000_0000)
    } else {
        v
    }
}
/// `.sat`: clamp to [0, 1], NaN to 0.
#[inline(always)]
pub fn sat(v: f32) -> f32 {
    if v.is_nan() {
        0.0
    } else {
        v.clamp(0.0, 1.0)
    }
}

#[inline(always)]
fn fin<const FTZ: bool>(a: u64) -> f32 {
    if FTZ {
        ftz(f(a))
    } else {
        f(a)
    }
}
#[inline(always)]
fn fout<const FTZ: bool, const SAT: bool>(v: f32) -> u64 {
    let v = if FTZ { ftz(v) } else { v };
    fb(if SAT { sat(v) } else { v })
}

/// Rounding modes of float results; the integer-rounding `.rni` family reuses the same tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rnd {
    Rn,
    Rz,
    Rm,
    Rp,
}
pub const RN: u8 = 0;
pub const RZ: u8 = 1;
pub const RM: u8 = 2;
pub const RP: u8 = 3;

pub fn rnd_tag(r: Rnd) -> u8 {
    match r {
        Rnd::Rn => RN,
        Rnd::Rz => RZ,
        Rnd::Rm => RM,
        Rnd::Rp => RP,
    }
}

/// Turns a round-to-nearest result into a directed one, given the sign of (exact - rounded); one
/// body for both widths.
macro_rules! redirect {
    ($name:ident, $t:ty) => {
        fn $name(r: $t, err: f64, mode: u8, inputs_finite: bool) -> $t {
            if r.is_infinite() && inputs_finite {
                // Overflow: directed modes stop at the largest finite value on their side.
                return match mode {
                    RZ => <$t>::MAX.copysign(r),
                    RM if r > 0.0 => <$t>::MAX,
                    RP if r < 0.0 => -<$t>::MAX,
                    _ => r,
                };
            }
            if !(err != 0.0) || r.is_nan() {
                return r;
            }
            match mode {
                RZ if r > 0.0 && err < 0.0 => r.next_down(),
                RZ if r < 0.0 && err > 0.0 => r.next_up(),
                RM if err < 0.0 => r.next_down(),
                RP if err > 0.0 => r.next_up(),
                _ => r,
            }
        }
    };
}
redirect!(redirect_f32, f32);
redirect!(redirect_f64, f64);

/// Exact a + b as s + e (Knuth's two-sum).
#[inline]
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    let e = (a - (s - bb)) + (b - bb);
    (s, e)
}

/// The sign of (exact - r) where exact = p + c and p is exact in f64.
fn residual_sign(p: f64, c: f64, r: f32) -> f64 {
    let (s, e) = two_sum(p, c);
    (s - r as f64) + e
}

pub const ADD: u8 = 0;
pub const SUB: u8 = 1;
pub const MUL: u8 = 2;
pub const DIV: u8 = 3;
pub const MIN: u8 = 4;
pub const MAX: u8 = 5;

/// The host's IEEE result of binary op `OP` (round to nearest even), for f32 and f64 alike; the
/// directed rounding modes correct it from the residual.
macro_rules! round_to_nearest {
    ($op:expr, $x:expr, $y:expr) => {
        match $op {
            ADD => $x + $y,
            SUB => $x - $y,
            MUL => $x * $y,
            DIV => $x / $y,
            MIN => $x.min($y),
            _ => $x.max($y),
        }
    };
}

pub fn f32_bin<const OP: u8, const MODE: u8, const FTZ: bool, const SAT: bool>(a: u64, b: u64) -> u64 {
    let (x, y) = (fin::<FTZ>(a), fin::<FTZ>(b));
    let r = round_to_nearest!(OP, x, y);
    let r = if MODE == RN || OP >= MIN {
        r
    } else {
        let (xd, yd) = (x as f64, y as f64);
        let err = match OP {
            ADD => residual_sign(xd, yd, r),
            SUB => residual_sign(xd, -yd, r),
            MUL => xd * yd - r as f64,
            // sign(x/y - r) = sign(x - r*y) * sign(y); r*y is exact in f64.
            _ => (xd - r as f64 * yd) * yd.signum(),
        };
        redirect_f32(r, err, MODE, x.is_finite() && y.is_finite())
    };
    fout::<FTZ, SAT>(r)
}

pub fn f32_fma<const MODE: u8, const FTZ: bool, const SAT: bool>(a: u64, b: u64, c: u64) -> u64 {
    let (x, y, z) = (fin::<FTZ>(a), fin::<FTZ>(b), fin::<FTZ>(c));
    let r = x.mul_add(y, z);
    let r = if MODE == RN {
        r
    } else {
        let err = residual_sign(x as f64 * y as f64, z as f64, r);
        redirect_f32(r, err, MODE, x.is_finite() && y.is_finite() && z.is_finite())
    };
    fout::<FTZ, SAT>(r)
}

pub const NEG: u8 = 0;
pub const ABS: u8 = 1;
pub const SQRT: u8 = 2;
pub const RSQRT: u8 = 3;
pub const RCP: u8 = 4;
pub const EX2: u8 = 5;
pub const LG2: u8 = 6;
pub const SIN: u8 = 7;
pub const COS: u8 = 8;
pub const TANH: u8 = 9;

/// The unary op `OP` of `x`, for f32 and f64 alike.
macro_rules! unary {
    ($op:expr, $x:expr) => {
        match $op {
            NEG => -$x,
            ABS => $x.abs(),
            SQRT => $x.sqrt(),
            RSQRT => 1.0 / $x.sqrt(),
            RCP => 1.0 / $x,
            EX2 => $x.exp2(),
            LG2 => $x.log2(),
            SIN => $x.sin(),
            COS => $x.cos(),
            _ => $x.tanh(),
        }
    };
}

/// Unary float ops. The `.approx` transcendentals use the host's accurate functions, which are
/// within the hardware's documented error bounds of the approximations.
pub fn f32_un<const OP: u8, const MODE: u8, const FTZ: bool>(a: u64) -> u64 {
    let x = fin::<FTZ>(a);
    let r = unary!(OP, x);
    let r = if MODE == RN || !(OP == SQRT || OP == RCP) {
        r
    } else if OP == SQRT {
        redirect_f32(r, x as f64 - r as f64 * r as f64, MODE, x.is_finite())
    } else {
        redirect_f32(r, (1.0 - r as f64 * x as f64) * (x as f64).signum(), MODE, x.is_finite())
    };
    fout::<FTZ, false>(r)
}

pub fn f64_bin<const OP: u8, const MODE: u8>(a: u64, b: u64) -> u64 {
    let (x, y) = (d(a), d(b));
    let r = round_to_nearest!(OP, x, y);
    if MODE == RN || OP >= MIN {
        return db(r);
    }
    let err = match OP {
        ADD => two_sum(x, y).1,
        SUB => two_sum(x, -y).1,
        MUL => x.mul_add(y, -r),
        // The residual of a correctly rounded quotient is exact under fma.
        _ => (-r).mul_add(y, x) * y.signum(),
    };
    db(redirect_f64(r, err, MODE, x.is_finite() && y.is_finite()))
}

pub fn f64_fma(a: u64, b: u64, c: u64) -> u64 {
    db(d(a).mul_add(d(b), d(c)))
}

pub fn f64_un<const OP: u8>(a: u64) -> u64 {
    let x = d(a);
    db(unary!(OP, x))
}

/// A 16-bit float (f16, or bf16 when `BF`) widened to f32, exactly.
#[inline(always)]
fn h2f<const BF: bool>(v: u64) -> f32 {
    if BF {
        half::bf16::from_bits(v as u16).to_f32()
    } else {
        half::f16::from_bits(v as u16).to_f32()
    }
}
/// An f64 rounded to the nearest 16-bit float.
#[inline(always)]
fn d2h<const BF: bool>(v: f64) -> u64 {
    h16_nearest(v, BF) as u64
}

/// The bits of the f16 (bf16 when `bf`) nearest `x`, ties to even. Not half's `from_f64`: it
/// rounds on the upper 32 bits of the f64 alone, so an f32 value one ulp above a tie (whose low
/// bit lies in the lower word) rounds as the tie. Through f32 instead: rounding to f32 with
/// round-to-odd keeps 13 or more bits beyond either format's last one and a sticky last bit,
/// so half's (correct) f32 rounding of it is the correct rounding of `x`.
fn h16_nearest(x: f64, bf: bool) -> u16 {
    let f = f64_to_f32_round_odd(x);
    if bf {
        half::bf16::from_f32(f).to_bits()
    } else {
        half::f16::from_f32(f).to_bits()
    }
}

/// `x` rounded to f32 toward zero, with the last bit set when that was inexact (round to odd);
/// magnitudes beyond f32's largest finite stay finite (odd) so that the next rounding overflows.
fn f64_to_f32_round_odd(x: f64) -> f32 {
    let nearest = x as f32;
    if x.is_nan() || x.is_infinite() || nearest as f64 == x {
        return nearest;
    }
    let toward_zero = if nearest.is_infinite() || (nearest as f64).abs() > x.abs() {
        // One step toward zero on the sign-magnitude bits (infinity steps to the largest finite).
        f32::from_bits(nearest.to_bits() - 1)
    } else {
        nearest
    };
    f32::from_bits(toward_zero.to_bits() | 1)
}

/// f16/bf16 add, sub, mul, min, max: computed in f64 (exact for sums and products of 16-bit
/// floats' significands, so one rounding to 16 bits) as `.rn` requires.
pub fn h16_bin<const OP: u8, const BF: bool>(a: u64, b: u64) -> u64 {
    let (x, y) = (h2f::<BF>(a) as f64, h2f::<BF>(b) as f64);
    d2h::<BF>(match OP {
        ADD => x + y,
        SUB => x - y,
        MUL => x * y,
        MIN => x.min(y),
        _ => x.max(y),
    })
}
/// `fma.rn` of 16-bit floats: the product is exact in f64, so the sum rounds once there first.
pub fn h16_fma<const BF: bool>(a: u64, b: u64, c: u64) -> u64 {
    d2h::<BF>((h2f::<BF>(a) as f64).mul_add(h2f::<BF>(b) as f64, h2f::<BF>(c) as f64))
}
pub fn h16_un<const OP: u8>(a: u64) -> u64 {
    // neg and abs flip or clear the sign bit, also of NaNs.
    match OP {
        NEG => (a ^ 0x8000) & 0xffff,
        _ => a & 0x7fff,
    }
}
/// The two 16-bit halves of packed operands through `f`, lane by lane.
#[inline(always)]
fn halves2(a: u64, b: u64, f: impl Fn(u64, u64) -> u64) -> u64 {
    f(a & 0xffff, b & 0xffff) | (f((a >> 16) & 0xffff, (b >> 16) & 0xffff) << 16)
}
pub fn h16x2_bin<const OP: u8, const BF: bool>(a: u64, b: u64) -> u64 {
    halves2(a, b, h16_bin::<OP, BF>)
}
pub fn h16x2_fma<const BF: bool>(a: u64, b: u64, c: u64) -> u64 {
    let lo = h16_fma::<BF>(a & 0xffff, b & 0xffff, c & 0xffff);
    let hi = h16_fma::<BF>((a >> 16) & 0xffff, (b >> 16) & 0xffff, (c >> 16) & 0xffff);
    lo | (hi << 16)
}
pub fn h16x2_un<const OP: u8>(a: u64) -> u64 {
    halves2(a, 0, |x, _| h16_un::<OP>(x))
}
/// `cvt.rn.f16x2.f32 d, a, b` (bf16x2 when `BF`): a to the upper half, b to the lower.
pub fn pack_h16x2_f32<const BF: bool>(a: u64, b: u64) -> u64 {
    (d2h::<BF>(f(a) as f64) << 16) | d2h::<BF>(f(b) as f64)
}
pub fn cmp_h16<const C: u8, const BF: bool>(a: u64, b: u64) -> bool {
    float_cmp::<C>(h2f::<BF>(a) as f64, h2f::<BF>(b) as f64)
}

/// `dp4a`: c plus the dot product of the four bytes of a and b (each signed or not).
pub fn dp4a<const SA: bool, const SB: bool>(a: u64, b: u64, c: u64) -> u64 {
    let byte = |v: u64, i: u32, s: bool| -> i64 {
        let x = (v >> (8 * i)) & 0xff;
        if s {
            x as u8 as i8 as i64
        } else {
            x as i64
        }
    };
    let dot: i64 = (0..4).map(|i| byte(a, i, SA) * byte(b, i, SB)).sum();
    (c as i64).wrapping_add(dot) as u64 & 0xffff_ffff
}
/// `lop3.b32 d, a, b, c, lut`: bit i of the result is bit (a_i b_i c_i) of the truth table.
pub fn lop3(a: u64, b: u64, c: u64, lut: u64) -> u64 {
    let mut r = 0u64;
    for minterm in 0..8u32 {
        if lut >> minterm & 1 == 1 {
            let pick = |v: u64, bit: u32| if minterm >> bit & 1 == 1 { v } else { !v };
            r |= pick(a, 2) & pick(b, 1) & pick(c, 0);
        }
    }
    r & 0xffff_ffff
}
/// `fns.b32 d, mask, base, offset`: the position of the offset-th set bit of mask counting up
/// from base (down for a negative offset; offset 0 asks whether base itself is set), or
/// 0xffffffff when there is none.
pub fn fns(mask: u64, base: u64, offset: u64) -> u64 {
    let (m, base, n) = (mask as u32, (base as u32).min(31), offset as u32 as i32);
    let set = |p: u32| m >> p & 1 == 1;
    let found = match n {
        0 => set(base).then_some(base),
        n if n > 0 => (base..32).filter(|&p| set(p)).nth(n as usize - 1),
        n => (0..=base).rev().filter(|&p| set(p)).nth(n.unsigned_abs() as usize - 1),
    };
    found.map_or(0xffff_ffff, |p| p as u64)
}

/// `copysign.f32 d, a, b`: the magnitude of b with the sign of a.
pub fn copysign_f32(a: u64, b: u64) -> u64 {
    fb(f(b).copysign(f(a)))
}
pub fn copysign_f64(a: u64, b: u64) -> u64 {
    db(d(b).copysign(d(a)))
}

// ---------------------------------------------------------------- comparisons

pub const EQ: u8 = 0;
pub const NE: u8 = 1;
pub const LT: u8 = 2;
pub const LE: u8 = 3;
pub const GT: u8 = 4;
pub const GE: u8 = 5;
pub const EQU: u8 = 6;
pub const NEU: u8 = 7;
pub const LTU: u8 = 8;
pub const LEU: u8 = 9;
pub const GTU: u8 = 10;
pub const GEU: u8 = 11;
pub const NUM: u8 = 12;
pub const NAN: u8 = 13;

pub fn cmp_code(name: &str) -> Option<u8> {
    Some(match name {
        "eq" => EQ,
        "ne" => NE,
        "lt" | "lo" => LT,
        "le" | "ls" => LE,
        "gt" | "hi" => GT,
        "ge" | "hs" => GE,
        "equ" => EQU,
        "neu" => NEU,
        "ltu" => LTU,
        "leu" => LEU,
        "gtu" => GTU,
        "geu" => GEU,
        "num" => NUM,
        "nan" => NAN,
        _ => return None,
    })
}

#[inline(always)]
fn float_cmp<const C: u8>(x: f64, y: f64) -> bool {
    let unordered = x.is_nan() || y.is_nan();
    match C {
        EQ => x == y,
        NE => !unordered && x != y,
        LT => x < y,
        LE => x <= y,
        GT => x > y,
        GE => x >= y,
        EQU => unordered || x == y,
        NEU => x != y,
        LTU => unordered || x < y,
        LEU => unordered || x <= y,
        GTU => unordered || x > y,
        GEU => unordered || x >= y,
        NUM => !unordered,
        _ => unordered,
    }
}
pub fn cmp_f32<const C: u8, const FTZ: bool>(a: u64, b: u64) -> bool {
    float_cmp::<C>(fin::<FTZ>(a) as f64, fin::<FTZ>(b) as f64)
}
pub fn cmp_f64<const C: u8>(a: u64, b: u64) -> bool {
    float_cmp::<C>(d(a), d(b))
}
pub fn cmp_int<const W: u32, const C: u8, const S: bool>(a: u64, b: u64) -> bool {
    let (x, y) = if S {
        (sext(a, W) as i128, sext(b, W) as i128)
    } else {
        ((a & mask(W)) as i128, (b & mask(W)) as i128)
    };
    match C {
        EQ => x == y,
        NE => x != y,
        LT => x < y,
        LE => x <= y,
        GT => x > y,
        _ => x >= y,
    }
}

pub const FINITE: u8 = 0;
pub const INFINITE: u8 = 1;
pub const NUMBER: u8 = 2;
pub const NOTANUMBER: u8 = 3;
pub const NORMAL: u8 = 4;
pub const SUBNORMAL: u8 = 5;

/// `testp.op.f32/f64 p, a` (the second operand of the comparison signature is unused).
pub fn testp<const K: u8, const F64: bool>(a: u64, _: u64) -> bool {
    let x = if F64 { d(a) } else { f(a) as f64 };
    let sub = if F64 { x.is_subnormal() } else { f(a).is_subnormal() };
    match K {
        FINITE => x.is_finite(),
        INFINITE => x.is_infinite(),
        NUMBER => !x.is_nan(),
        NOTANUMBER => x.is_nan(),
        NORMAL => x.is_finite() && x != 0.0 && !sub,
        _ => sub,
    }
}

// ---------------------------------------------------------------- conversions

/// A scalar PTX type as far as conversions care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    U(u32),
    S(u32),
    F16,
    Bf16,
    F32,
    F64,
}

impl Ty {
    pub fn parse(s: &str) -> Option<Ty> {
        Some(match s {
            "u8" | "b8" => Ty::U(8),
            "u16" | "b16" => Ty::U(16),
            "u32" | "b32" => Ty::U(32),
            "u64" | "b64" => Ty::U(64),
            "s8" => Ty::S(8),
            "s16" => Ty::S(16),
            "s32" => Ty::S(32),
            "s64" => Ty::S(64),
            "f16" => Ty::F16,
            "bf16" => Ty::Bf16,
            "f32" => Ty::F32,
            "f64" => Ty::F64,
            _ => return None,
        })
    }
    pub fn bits(self) -> u32 {
        match self {
            Ty::U(w) | Ty::S(w) => w,
            Ty::F16 | Ty::Bf16 => 16,
            Ty::F32 => 32,
            Ty::F64 => 64,
        }
    }
    pub fn is_float(self) -> bool {
        matches!(self, Ty::F16 | Ty::Bf16 | Ty::F32 | Ty::F64)
    }
}

/// Which rounding a `cvt` applies: to a float (`.rn`...) or to an integral value (`.rni`...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CvtSpec {
    pub dst: Ty,
    pub src: Ty,
    pub float_rnd: Rnd,
    pub int_rnd: Option<Rnd>,
    pub sat: bool,
    pub ftz: bool,
}

fn round_integral(v: f64, r: Rnd) -> f64 {
    match r {
        Rnd::Rn => v.round_ties_even(),
        Rnd::Rz => v.trunc(),
        Rnd::Rm => v.floor(),
        Rnd::Rp => v.ceil(),
    }
}

/// An exact integer rounded to f32 in the given mode.
fn int_to_f32(v: i128, r: Rnd) -> f32 {
    let n = v as f32;
    let err = if n.is_finite() { (v - n as i128) as f64 } else { 0.0 };
    redirect_f32(n, err, rnd_tag(r), true)
}
fn int_to_f64(v: i128, r: Rnd) -> f64 {
    let n = v as f64;
    let err = if n.is_finite() { (v - n as i128) as f64 } else { 0.0 };
    redirect_f64(n, err, rnd_tag(r), true)
}

pub fn convert(s: &CvtSpec, a: u64) -> u64 {
    // Source value: exact integer, or float widened to f64 (exact for f16/bf16/f32).
    enum V {
        I(i128),
        F(f64),
    }
    let v = match s.src {
        Ty::U(w) => V::I((a & mask(w)) as i128),
        Ty::S(w) => V::I(sext(a, w) as i128),
        Ty::F16 => V::F(half::f16::from_bits(a as u16).to_f64()),
        Ty::Bf16 => V::F(half::bf16::from_bits(a as u16).to_f64()),
        Ty::F32 => V::F(if s.ftz { ftz(f(a)) } else { f(a) } as f64),
        Ty::F64 => V::F(d(a)),
    };
    match s.dst {
        Ty::U(w) | Ty::S(w) => {
            let signed = matches!(s.dst, Ty::S(_));
            let (lo, hi) = if signed {
                (-(1i128 << (w - 1)), (1i128 << (w - 1)) - 1)
            } else {
                (0, (1i128 << w) - 1)
            };
            let n = match v {
                V::I(i) if s.sat => i.clamp(lo, hi),
                V::I(i) => i,
                // Float to integer always saturates; NaN becomes 0.
                V::F(x) if x.is_nan() => 0,
                V::F(x) => {
                    let r = round_integral(x, s.int_rnd.unwrap_or(Rnd::Rz));
                    if r <= lo as f64 {
                        lo
                    } else if r >= hi as f64 {
                        hi
                    } else {
                        r as i128
                    }
                }
            };
            if signed {
                // Signed results are kept sign-extended; narrower consumers truncate.
                n as i64 as u64
            } else {
                (n as u64) & mask(w)
            }
        }
        Ty::F32 => {
            let r = match v {
                V::I(i) => int_to_f32(i, s.float_rnd),
                V::F(x) => {
                    let x = match s.int_rnd {
                        Some(r) => round_integral(x, r),
                        None => x,
                    };
                    let n = x as f32;
                    if s.src == Ty::F64 {
                        redirect_f32(n, if n.is_finite() { x - n as f64 } else { 0.0 }, rnd_tag(s.float_rnd), x.is_finite())
                    } else {
                        n
                    }
                }
            };
            let r = if s.ftz { ftz(r) } else { r };
            fb(if s.sat { sat(r) } else { r })
        }
        Ty::F64 => {
            let r = match v {
                V::I(i) => int_to_f64(i, s.float_rnd),
                V::F(x) => match s.int_rnd {
                    Some(r) => round_integral(x, r),
                    None => x,
                },
            };
            db(if s.sat { if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) } } else { r })
        }
        Ty::F16 | Ty::Bf16 => {
            let x = match v {
                V::I(i) => i as f64,
                V::F(x) => match s.int_rnd {
                    Some(r) => round_integral(x, r),
                    None => x,
                },
            };
            let x = if s.sat { if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) } } else { x };
            let bf = s.dst == Ty::Bf16;
            let nearest = h16_nearest(x, bf);
            redirect_h16(nearest, x, s.float_rnd, bf) as u64
        }
    }
}

/// Turns the round-to-nearest f16 (or bf16) `bits` of `exact` into the result of rounding mode
/// `r`. Both formats are sign-magnitude, so the neighbouring value is one step of the bits.
fn redirect_h16(bits: u16, exact: f64, r: Rnd, bf: bool) -> u16 {
    let value = |b: u16| if bf { half::bf16::from_bits(b).to_f64() } else { half::f16::from_bits(b).to_f64() };
    let max_finite: u16 = if bf { 0x7f7f } else { 0x7bff };
    let rounded = value(bits);
    if r == Rnd::Rn || rounded.is_nan() || rounded == exact {
        return bits;
    }
    let negative = bits & 0x8000 != 0;
    if rounded.is_infinite() {
        // Overflow: directed modes stop at the largest finite value on their side.
        let toward_zero = match r {
            Rnd::Rz => true,
            Rnd::Rm => !negative,
            _ => negative,
        };
        return if toward_zero { max_finite | (bits & 0x8000) } else { bits };
    }
    let up = |b: u16| match b {
        0x0000 | 0x8000 => 0x0001,
        _ if b & 0x8000 != 0 => b - 1,
        _ => b + 1,
    };
    let down = |b: u16| match b {
        0x0000 | 0x8000 => 0x8001,
        _ if b & 0x8000 != 0 => b + 1,
        _ => b - 1,
    };
    match r {
        Rnd::Rz if rounded.abs() > exact.abs() => if negative { up(bits) } else { down(bits) },
        Rnd::Rm if rounded > exact => down(bits),
        Rnd::Rp if rounded < exact => up(bits),
        _ => bits,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cvt(dst: Ty, src: Ty, float_rnd: Rnd, int_rnd: Option<Rnd>, sat: bool, a: u64) -> u64 {
        convert(&CvtSpec { dst, src, float_rnd, int_rnd, sat, ftz: false }, a)
    }

    #[test]
    fn integer_division_follows_c_and_never_panics() {
        assert_eq!(div::<32, true>((-7i32) as u32 as u64, 2) as u32 as i32, -3);
        assert_eq!(rem::<32, true>((-7i32) as u32 as u64, 2) as u32 as i32, -1);
        assert_eq!(rem::<32, true>(7, (-2i32) as u32 as u64) as u32 as i32, 1);
        assert_eq!(div::<32, true>(i32::MIN as u32 as u64, u32::MAX as u64) as u32 as i32, i32::MIN);
        assert_eq!(div::<32, false>(5, 0), 0xffff_ffff);
    }

    #[test]
    fn directed_rounding_brackets_the_exact_value() {
        let (a, b) = (fb(1.0), fb(3.0));
        let down = f(f32_bin::<DIV, RM, false, false>(a, b));
        let up = f(f32_bin::<DIV, RP, false, false>(a, b));
        assert_eq!(up, down.next_up());
        assert!((down as f64) < 1.0 / 3.0 && (up as f64) > 1.0 / 3.0);
        let e = f32::EPSILON;
        assert_eq!(f(f32_fma::<RM, false, false>(fb(1.0 + e), fb(1.0 - e), fb(0.0))), 1.0f32.next_down());
        assert_eq!(f(f32_fma::<RN, false, false>(fb(1.0 + e), fb(1.0 - e), fb(0.0))), 1.0);
        assert_eq!(f(f32_bin::<ADD, RZ, false, false>(fb(1.0), fb(-1e-10))), 1.0f32.next_down());
        assert_eq!(f(f32_bin::<ADD, RZ, false, false>(fb(f32::MAX), fb(f32::MAX))), f32::MAX);
    }

    #[test]
    fn prmt_modes_follow_the_isa_tables() {
        // Bytes 0..8 of {b, a}: B3 22 91 80 | FF E6 55 C4. Each row lists the results for
        // selectors 0..3; the bits of c above the two selector bits are ignored.
        let (a, b) = (0x8091_22B3, 0xC455_E6FF);
        let rows: [(TerFn, [u64; 4]); 6] = [
            (prmt_mode::<PRMT_F4E>, [0x8091_22B3, 0xFF80_9122, 0xE6FF_8091, 0x55E6_FF80]),
            (prmt_mode::<PRMT_B4E>, [0xE655_C4B3, 0x55C4_B322, 0xC4B3_2291, 0xB322_9180]),
            (prmt_mode::<PRMT_RC8>, [0xB3B3_B3B3, 0x2222_2222, 0x9191_9191, 0x8080_8080]),
            (prmt_mode::<PRMT_ECL>, [0x8091_22B3, 0x8091_2222, 0x8091_9191, 0x8080_8080]),
            (prmt_mode::<PRMT_ECR>, [0xB3B3_B3B3, 0x2222_22B3, 0x9191_22B3, 0x8091_22B3]),
            (prmt_mode::<PRMT_RC16>, [0x22B3_22B3, 0x8091_8091, 0x22B3_22B3, 0x8091_8091]),
        ];
        for (row, (f, want)) in rows.iter().enumerate() {
            for (sel, &w) in want.iter().enumerate() {
                assert_eq!(f(a, b, 0x8F94 | sel as u64), w, "mode {} selector {sel}", row + 1);
            }
        }
    }

    #[test]
    fn sixteen_bit_rounding_sees_bits_below_the_upper_word() {
        // One f32 ulp above a bf16 tie: the deciding bit is in the f64's lower 32 bits.
        let above_tie = f32::from_bits(0x3f80_8001) as f64;
        assert_eq!(h16_nearest(above_tie, true), 0x3f81);
        assert_eq!(h16_nearest(f32::from_bits(0x3f80_8000) as f64, true), 0x3f80, "the tie goes to even");
        // f16: 1 + 2^-11 is a tie, one f32 ulp above it rounds up.
        assert_eq!(h16_nearest(1.0 + 2f64.powi(-11) + 2f64.powi(-23), false), 0x3c01);
        assert_eq!(h16_nearest(1.0 + 2f64.powi(-11), false), 0x3c00);
        // An f64 just above a tie, beyond f32's precision, and overflow.
        assert_eq!(h16_nearest(1.0 + 2f64.powi(-11) + 2f64.powi(-40), false), 0x3c01);
        assert_eq!(h16_nearest(65520.0, false), 0x7c00);
        assert_eq!(h16_nearest(1e300, true), 0x7f80);
        assert_eq!(h16_nearest(-1e300, false), 0xfc00);
    }

    #[test]
    fn tf32_rounds_ties_away_from_zero() {
        let tf32 = |x: f32| f32::from_bits(f32_to_tf32_rna(fb(x)) as u32);
        let ulp = 2f32.powi(-10);
        assert_eq!(tf32(1.0 + ulp / 2.0), 1.0 + ulp, "a tie rounds away from zero");
        assert_eq!(tf32(-(1.0 + ulp / 2.0)), -(1.0 + ulp));
        assert_eq!(tf32(1.0 + ulp / 2.0 - 2f32.powi(-23)), 1.0, "below the tie rounds down");
        assert!(tf32(f32::NAN).is_nan());
    }

    #[test]
    fn conversions_round_and_saturate() {
        let f25 = fb(2.5);
        assert_eq!(cvt(Ty::S(32), Ty::F32, Rnd::Rn, Some(Rnd::Rn), false, f25), 2);
        assert_eq!(cvt(Ty::S(32), Ty::F32, Rnd::Rn, Some(Rnd::Rp), false, f25), 3);
        assert_eq!(cvt(Ty::S(32), Ty::F32, Rnd::Rn, Some(Rnd::Rm), false, fb(-2.5)) as u32 as i32, -3);
        assert_eq!(cvt(Ty::U(8), Ty::S(32), Rnd::Rn, None, true, 300), 255);
        assert_eq!(cvt(Ty::U(8), Ty::S(32), Rnd::Rn, None, true, (-5i32) as u32 as u64), 0);
        assert_eq!(cvt(Ty::S(32), Ty::F32, Rnd::Rn, Some(Rnd::Rz), false, fb(f32::NAN)), 0);
        assert_eq!(cvt(Ty::S(32), Ty::F32, Rnd::Rn, Some(Rnd::Rz), false, fb(1e20)) as u32, i32::MAX as u32);
        // 2^24 + 1 is not representable: rz rounds down, rp up.
        let v = (1u64 << 24) + 1;
        assert_eq!(f(cvt(Ty::F32, Ty::S(32), Rnd::Rz, None, false, v)), 16777216.0);
        assert_eq!(f(cvt(Ty::F32, Ty::S(32), Rnd::Rp, None, false, v)), 16777218.0);
    }
}
