//! Picks the `alu` function for an opcode's type, width, rounding mode and `.ftz`/`.sat`
//! modifiers, so the decoder stores one function pointer per instruction. Also the read-modify-
//! write functions of `atom`/`red`.

use super::alu::{self, BinFn, CmpFn, Ty, UnFn};

macro_rules! by_width {
    ($w:expr, $f:ident $(, $extra:expr)*) => {
        match $w {
            8 => $crate::sim::alu::$f::<8 $(, $extra)*>,
            16 => $crate::sim::alu::$f::<16 $(, $extra)*>,
            32 => $crate::sim::alu::$f::<32 $(, $extra)*>,
            _ => $crate::sim::alu::$f::<64 $(, $extra)*>,
        }
    };
}

macro_rules! by_width_sign {
    ($w:expr, $s:expr, $f:ident) => {
        match ($w, $s) {
            (8, false) => $crate::sim::alu::$f::<8, false>,
            (8, true) => $crate::sim::alu::$f::<8, true>,
            (16, false) => $crate::sim::alu::$f::<16, false>,
            (16, true) => $crate::sim::alu::$f::<16, true>,
            (32, false) => $crate::sim::alu::$f::<32, false>,
            (32, true) => $crate::sim::alu::$f::<32, true>,
            (_, false) => $crate::sim::alu::$f::<64, false>,
            (_, true) => $crate::sim::alu::$f::<64, true>,
        }
    };
}

macro_rules! by_mode_ftz_sat {
    ($mode:expr, $ftz:expr, $sat:expr, $f:ident $(, $pre:expr)*) => {
        match ($mode, $ftz, $sat) {
            (alu::RN, false, false) => $crate::sim::alu::$f::<$($pre,)* {alu::RN}, false, false>,
            (alu::RN, true, false) => $crate::sim::alu::$f::<$($pre,)* {alu::RN}, true, false>,
            (alu::RN, false, true) => $crate::sim::alu::$f::<$($pre,)* {alu::RN}, false, true>,
            (alu::RN, true, true) => $crate::sim::alu::$f::<$($pre,)* {alu::RN}, true, true>,
            (alu::RZ, false, false) => $crate::sim::alu::$f::<$($pre,)* {alu::RZ}, false, false>,
            (alu::RZ, true, _) => $crate::sim::alu::$f::<$($pre,)* {alu::RZ}, true, false>,
            (alu::RZ, false, true) => $crate::sim::alu::$f::<$($pre,)* {alu::RZ}, false, true>,
            (alu::RM, false, false) => $crate::sim::alu::$f::<$($pre,)* {alu::RM}, false, false>,
            (alu::RM, true, _) => $crate::sim::alu::$f::<$($pre,)* {alu::RM}, true, false>,
            (alu::RM, false, true) => $crate::sim::alu::$f::<$($pre,)* {alu::RM}, false, true>,
            (_, false, false) => $crate::sim::alu::$f::<$($pre,)* {alu::RP}, false, false>,
            (_, true, _) => $crate::sim::alu::$f::<$($pre,)* {alu::RP}, true, false>,
            (_, false, true) => $crate::sim::alu::$f::<$($pre,)* {alu::RP}, false, true>,
        }
    };
}

pub(super) fn f32_binop(op: u8, mode: u8, ftz: bool, sat: bool) -> BinFn {
    match op {
        alu::ADD => by_mode_ftz_sat!(mode, ftz, sat, f32_bin, { alu::ADD }),
        alu::SUB => by_mode_ftz_sat!(mode, ftz, sat, f32_bin, { alu::SUB }),
        alu::MUL => by_mode_ftz_sat!(mode, ftz, sat, f32_bin, { alu::MUL }),
        alu::DIV => by_mode_ftz_sat!(mode, ftz, sat, f32_bin, { alu::DIV }),
        alu::MIN => by_mode_ftz_sat!(alu::RN, ftz, false, f32_bin, { alu::MIN }),
        _ => by_mode_ftz_sat!(alu::RN, ftz, false, f32_bin, { alu::MAX }),
    }
}

pub(super) fn f32_unop(op: u8, mode: u8, ftz: bool) -> UnFn {
    macro_rules! m {
        ($op:expr) => {
            match (mode, ftz) {
                (alu::RN, false) => alu::f32_un::<{ $op }, { alu::RN }, false>,
                (alu::RN, true) => alu::f32_un::<{ $op }, { alu::RN }, true>,
                (alu::RZ, false) => alu::f32_un::<{ $op }, { alu::RZ }, false>,
                (alu::RZ, true) => alu::f32_un::<{ $op }, { alu::RZ }, true>,
                (alu::RM, false) => alu::f32_un::<{ $op }, { alu::RM }, false>,
                (alu::RM, true) => alu::f32_un::<{ $op }, { alu::RM }, true>,
                (_, false) => alu::f32_un::<{ $op }, { alu::RP }, false>,
                (_, true) => alu::f32_un::<{ $op }, { alu::RP }, true>,
            }
        };
    }
    match op {
        alu::NEG => m!(alu::NEG),
        alu::ABS => m!(alu::ABS),
        alu::SQRT => m!(alu::SQRT),
        alu::RSQRT => m!(alu::RSQRT),
        alu::RCP => m!(alu::RCP),
        alu::EX2 => m!(alu::EX2),
        alu::LG2 => m!(alu::LG2),
        alu::SIN => m!(alu::SIN),
        alu::COS => m!(alu::COS),
        _ => m!(alu::TANH),
    }
}

pub(super) fn f64_unop(op: u8) -> UnFn {
    match op {
        alu::NEG => alu::f64_un::<{ alu::NEG }>,
        alu::ABS => alu::f64_un::<{ alu::ABS }>,
        alu::SQRT => alu::f64_un::<{ alu::SQRT }>,
        alu::RSQRT => alu::f64_un::<{ alu::RSQRT }>,
        alu::RCP => alu::f64_un::<{ alu::RCP }>,
        alu::EX2 => alu::f64_un::<{ alu::EX2 }>,
        alu::LG2 => alu::f64_un::<{ alu::LG2 }>,
        alu::SIN => alu::f64_un::<{ alu::SIN }>,
        alu::COS => alu::f64_un::<{ alu::COS }>,
        _ => alu::f64_un::<{ alu::TANH }>,
    }
}

pub(super) fn f64_binop(op: u8, mode: u8) -> BinFn {
    macro_rules! m {
        ($op:expr) => {
            match mode {
                alu::RN => alu::f64_bin::<{ $op }, { alu::RN }>,
                alu::RZ => alu::f64_bin::<{ $op }, { alu::RZ }>,
                alu::RM => alu::f64_bin::<{ $op }, { alu::RM }>,
                _ => alu::f64_bin::<{ $op }, { alu::RP }>,
            }
        };
    }
    match op {
        alu::ADD => m!(alu::ADD),
        alu::SUB => m!(alu::SUB),
        alu::MUL => m!(alu::MUL),
        alu::DIV => m!(alu::DIV),
        alu::MIN => m!(alu::MIN),
        _ => m!(alu::MAX),
    }
}

pub(super) fn cmp_fn(code: u8, ty: Ty, ftz: bool) -> Option<CmpFn> {
    macro_rules! float {
        ($c:expr) => {
            match ty {
                Ty::F64 => alu::cmp_f64::<{ $c }>,
                _ if ftz => alu::cmp_f32::<{ $c }, true>,
                _ => alu::cmp_f32::<{ $c }, false>,
            }
        };
    }
    macro_rules! int {
        ($c:expr) => {
            match ty {
                Ty::S(w) => by_width!(w, cmp_int, { $c }, true),
                Ty::U(w) => by_width!(w, cmp_int, { $c }, false),
                _ => return None,
            }
        };
    }
    macro_rules! half {
        ($bf:expr) => {
            return Some(match code {
                alu::EQ => alu::cmp_h16::<{ alu::EQ }, $bf>,
                alu::NE => alu::cmp_h16::<{ alu::NE }, $bf>,
                alu::LT => alu::cmp_h16::<{ alu::LT }, $bf>,
                alu::LE => alu::cmp_h16::<{ alu::LE }, $bf>,
                alu::GT => alu::cmp_h16::<{ alu::GT }, $bf>,
                alu::GE => alu::cmp_h16::<{ alu::GE }, $bf>,
                alu::EQU => alu::cmp_h16::<{ alu::EQU }, $bf>,
                alu::NEU => alu::cmp_h16::<{ alu::NEU }, $bf>,
                alu::LTU => alu::cmp_h16::<{ alu::LTU }, $bf>,
                alu::LEU => alu::cmp_h16::<{ alu::LEU }, $bf>,
                alu::GTU => alu::cmp_h16::<{ alu::GTU }, $bf>,
                alu::GEU => alu::cmp_h16::<{ alu::GEU }, $bf>,
                alu::NUM => alu::cmp_h16::<{ alu::NUM }, $bf>,
                _ => alu::cmp_h16::<{ alu::NAN }, $bf>,
            })
        };
    }
    match ty {
        Ty::F16 => half!(false),
        Ty::Bf16 => half!(true),
        _ => {}
    }
    if ty.is_float() {
        return Some(match code {
            alu::EQ => float!(alu::EQ),
            alu::NE => float!(alu::NE),
            alu::LT => float!(alu::LT),
            alu::LE => float!(alu::LE),
            alu::GT => float!(alu::GT),
            alu::GE => float!(alu::GE),
            alu::EQU => float!(alu::EQU),
            alu::NEU => float!(alu::NEU),
            alu::LTU => float!(alu::LTU),
            alu::LEU => float!(alu::LEU),
            alu::GTU => float!(alu::GTU),
            alu::GEU => float!(alu::GEU),
            alu::NUM => float!(alu::NUM),
            _ => float!(alu::NAN),
        });
    }
    // For bit types (`setp.eq.b32`) treat as unsigned.
    Some(match code {
        alu::EQ => int!(alu::EQ),
        alu::NE => int!(alu::NE),
        alu::LT => int!(alu::LT),
        alu::LE => int!(alu::LE),
        alu::GT => int!(alu::GT),
        alu::GE => int!(alu::GE),
        _ => return None,
    })
}

/// 16-bit float arithmetic: f16 or bf16 (`bf`), scalar or packed pairs (`x2`).
pub(super) fn h16_binop(op: u8, bf: bool, x2: bool) -> BinFn {
    macro_rules! m {
        ($op:expr) => {
            match (bf, x2) {
                (false, false) => alu::h16_bin::<{ $op }, false>,
                (true, false) => alu::h16_bin::<{ $op }, true>,
                (false, true) => alu::h16x2_bin::<{ $op }, false>,
                (true, true) => alu::h16x2_bin::<{ $op }, true>,
            }
        };
    }
    match op {
        alu::ADD => m!(alu::ADD),
        alu::SUB => m!(alu::SUB),
        alu::MUL => m!(alu::MUL),
        alu::MIN => m!(alu::MIN),
        _ => m!(alu::MAX),
    }
}
pub(super) fn h16_fmaop(bf: bool, x2: bool) -> alu::TerFn {
    match (bf, x2) {
        (false, false) => alu::h16_fma::<false>,
        (true, false) => alu::h16_fma::<true>,
        (false, true) => alu::h16x2_fma::<false>,
        (true, true) => alu::h16x2_fma::<true>,
    }
}
pub(super) fn h16_unop(op: u8, x2: bool) -> UnFn {
    match (op == alu::NEG, x2) {
        (true, false) => alu::h16_un::<{ alu::NEG }>,
        (false, false) => alu::h16_un::<{ alu::ABS }>,
        (true, true) => alu::h16x2_un::<{ alu::NEG }>,
        (false, true) => alu::h16x2_un::<{ alu::ABS }>,
    }
}
pub(super) fn atom_add_h16<const BF: bool>(old: u64, b: u64, _: u64) -> u64 {
    alu::h16_bin::<{ alu::ADD }, BF>(old, b)
}
pub(super) fn atom_add_h16x2<const BF: bool>(old: u64, b: u64, _: u64) -> u64 {
    alu::h16x2_bin::<{ alu::ADD }, BF>(old, b)
}
pub(super) fn atom_cas16(old: u64, b: u64, c: u64) -> u64 {
    if old as u16 == b as u16 {
        c & 0xffff
    } else {
        old
    }
}
pub(super) fn atom_add<const W: u32>(old: u64, b: u64, _: u64) -> u64 {
    alu::add::<W>(old, b)
}
pub(super) fn atom_add_f32(old: u64, b: u64, _: u64) -> u64 {
    alu::fb(alu::f(old) + alu::f(b))
}
pub(super) fn atom_add_f64(old: u64, b: u64, _: u64) -> u64 {
    alu::db(alu::d(old) + alu::d(b))
}
pub(super) fn atom_min<const W: u32, const S: bool>(old: u64, b: u64, _: u64) -> u64 {
    alu::min_int::<W, S>(old, b)
}
pub(super) fn atom_max<const W: u32, const S: bool>(old: u64, b: u64, _: u64) -> u64 {
    alu::max_int::<W, S>(old, b)
}
pub(super) fn atom_min_f32(old: u64, b: u64, _: u64) -> u64 {
    alu::fb(alu::f(old).min(alu::f(b)))
}
pub(super) fn atom_max_f32(old: u64, b: u64, _: u64) -> u64 {
    alu::fb(alu::f(old).max(alu::f(b)))
}
pub(super) fn atom_exch(_: u64, b: u64, _: u64) -> u64 {
    b
}
pub(super) fn atom_cas(old: u64, b: u64, c: u64) -> u64 {
    if old == b {
        c
    } else {
        old
    }
}
pub(super) fn atom_cas32(old: u64, b: u64, c: u64) -> u64 {
    if old as u32 == b as u32 {
        c & 0xffff_ffff
    } else {
        old
    }
}
pub(super) fn atom_and(old: u64, b: u64, _: u64) -> u64 {
    old & b
}
pub(super) fn atom_or(old: u64, b: u64, _: u64) -> u64 {
    old | b
}
pub(super) fn atom_xor(old: u64, b: u64, _: u64) -> u64 {
    old ^ b
}
pub(super) fn atom_inc(old: u64, b: u64, _: u64) -> u64 {
    let (o, b) = (old as u32, b as u32);
    (if o >= b { 0 } else { o + 1 }) as u64
}
pub(super) fn atom_dec(old: u64, b: u64, _: u64) -> u64 {
    let (o, b) = (old as u32, b as u32);
    (if o == 0 || o > b { b } else { o - 1 }) as u64
}

pub(super) use {by_mode_ftz_sat, by_width, by_width_sign};
