//! C `printf` formatting for device-side `printf` (CUDA's `vprintf`): the format string and an
//! argument buffer packed with natural alignment (ints 4 bytes, longs and pointers 8, floats
//! promoted to double).

/// Where the arguments come from: raw values by size, and strings behind pointers.
pub trait Args {
    /// The next argument of `size` bytes (4 or 8), aligned to its size; None past the end.
    fn next(&mut self, size: usize) -> Option<u64>;
    /// The NUL-terminated string at a device address.
    fn string(&mut self, ptr: u64) -> String;
}

#[derive(Default)]
struct Spec {
    left: bool,
    plus: bool,
    space: bool,
    alt: bool,
    zero: bool,
    width: usize,
    precision: Option<usize>,
    long: bool,
}

/// Formats `format` with `args`; a conversion whose argument is missing prints as itself.
pub fn format(format: &str, args: &mut dyn Args) -> String {
    let chars: Vec<char> = format.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '%' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        let mut spec = Spec::default();
        while i < chars.len() {
            match chars[i] {
                '-' => spec.left = true,
                '+' => spec.plus = true,
                ' ' => spec.space = true,
                '#' => spec.alt = true,
                '0' => spec.zero = true,
                _ => break,
            }
            i += 1;
        }
        while i < chars.len() && chars[i].is_ascii_digit() {
            spec.width = spec.width * 10 + chars[i].to_digit(10).unwrap_or(0) as usize;
            i += 1;
        }
        if i < chars.len() && chars[i] == '.' {
            i += 1;
            let mut p = 0;
            while i < chars.len() && chars[i].is_ascii_digit() {
                p = p * 10 + chars[i].to_digit(10).unwrap_or(0) as usize;
                i += 1;
            }
            spec.precision = Some(p);
        }
        while i < chars.len() && matches!(chars[i], 'h' | 'l' | 'L' | 'z' | 'j' | 't' | 'q') {
            spec.long |= matches!(chars[i], 'l' | 'L' | 'z' | 'j' | 't' | 'q');
            i += 1;
        }
        let Some(&conv) = chars.get(i) else {
            out.extend(&chars[start..]);
            break;
        };
        i += 1;
        let int_size = if spec.long { 8 } else { 4 };
        let text = match conv {
            '%' => Some("%".to_string()),
            'd' | 'i' => args.next(int_size).map(|v| {
                let v = if spec.long { v as i64 } else { v as u32 as i32 as i64 };
                signed(&spec, v < 0, v.unsigned_abs().to_string())
            }),
            'u' => args.next(int_size).map(|v| signed(&spec, false, v.to_string())),
            'x' | 'X' | 'o' => args.next(int_size).map(|v| {
                let (digits, prefix) = match conv {
                    'x' => (format!("{v:x}"), "0x"),
                    'X' => (format!("{v:X}"), "0X"),
                    _ => (format!("{v:o}"), "0"),
                };
                if spec.alt && v != 0 {
                    format!("{prefix}{digits}")
                } else {
                    digits
                }
            }),
            'c' => args.next(4).map(|v| char::from(v as u8).to_string()),
            's' => args.next(8).map(|p| {
                let s = args.string(p);
                match spec.precision {
                    Some(n) => s.chars().take(n).collect(),
                    None => s,
                }
            }),
            'p' => args.next(8).map(|p| format!("{p:#x}")),
            'f' | 'F' | 'e' | 'E' | 'g' | 'G' | 'a' | 'A' => args.next(8).map(|bits| {
                let v = f64::from_bits(bits);
                let body = float(conv, spec.precision.unwrap_or(6), spec.alt, v.abs());
                let body = if conv.is_ascii_uppercase() { body.to_uppercase() } else { body };
                signed(&spec, v.is_sign_negative() && !v.is_nan(), body)
            }),
            _ => None,
        };
        match text {
            Some(t) => out.push_str(&pad(&spec, t, conv)),
            None => out.extend(&chars[start..i]),
        }
    }
    out
}

/// Prefixes the sign the flags ask for.
fn signed(spec: &Spec, negative: bool, digits: String) -> String {
    let sign = if negative {
        "-"
    } else if spec.plus {
        "+"
    } else if spec.space {
        " "
    } else {
        ""
    };
    format!("{sign}{digits}")
}

fn pad(spec: &Spec, text: String, conv: char) -> String {
    let len = text.chars().count();
    if len >= spec.width {
        return text;
    }
    let fill = spec.width - len;
    if spec.left {
        format!("{text}{}", " ".repeat(fill))
    } else if spec.zero && !matches!(conv, 's' | 'c' | '%') && !text.ends_with("inf") && !text.ends_with("nan") {
        // Zeros go between the sign (or 0x) and the digits.
        let split = text.find(|c: char| c.is_ascii_digit()).unwrap_or(0);
        let split = if text[split..].starts_with("0x") || text[split..].starts_with("0X") { split + 2 } else { split };
        format!("{}{}{}", &text[..split], "0".repeat(fill), &text[split..])
    } else {
        format!("{}{text}", " ".repeat(fill))
    }
}

/// `v` (non-negative) in C's %f, %e or %g style with precision `p`.
fn float(conv: char, p: usize, alt: bool, v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return "inf".into();
    }
    match conv.to_ascii_lowercase() {
        'f' => format!("{v:.p$}"),
        'e' => exp_style(v, p),
        'a' => format!("{v:e}"),
        _ => {
            // %g: e-style when the exponent is below -4 or at least the precision, trailing zeros
            // removed unless '#'.
            let p = p.max(1);
            let e = exp_style(v, p - 1);
            let exp: i32 = e.rsplit('e').next().and_then(|x| x.parse().ok()).unwrap_or(0);
            let s = if exp < -4 || exp >= p as i32 { e } else { format!("{v:.*}", (p as i32 - 1 - exp) as usize) };
            if alt {
                return s;
            }
            let (mantissa, exponent) = match s.find('e') {
                Some(k) => (s[..k].to_string(), s[k..].to_string()),
                None => (s, String::new()),
            };
            let mantissa = if mantissa.contains('.') { mantissa.trim_end_matches('0').trim_end_matches('.').to_string() } else { mantissa };
            format!("{mantissa}{exponent}")
        }
    }
}

/// C's %e: one digit, `p` decimals, and an exponent of at least two digits with its sign.
fn exp_style(v: f64, p: usize) -> String {
    let s = format!("{v:.p$e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    format!("{mantissa}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Arguments packed as CUDA packs them.
    struct Packed(Vec<u8>, usize);
    impl Args for Packed {
        fn next(&mut self, size: usize) -> Option<u64> {
            let at = self.1.div_ceil(size) * size;
            let bytes = self.0.get(at..at + size)?;
            self.1 = at + size;
            let mut b = [0u8; 8];
            b[..size].copy_from_slice(bytes);
            Some(u64::from_le_bytes(b))
        }
        fn string(&mut self, ptr: u64) -> String {
            format!("<str@{ptr}>")
        }
    }

    fn pack(items: &[(usize, u64)]) -> Packed {
        let mut buf = Vec::new();
        for &(size, v) in items {
            while buf.len() % size != 0 {
                buf.push(0);
            }
            buf.extend_from_slice(&v.to_le_bytes()[..size]);
        }
        Packed(buf, 0)
    }

    #[test]
    fn formats_like_c() {
        let mut a = pack(&[(4, (-42i32) as u32 as u64), (8, 3.25f64.to_bits()), (4, 255), (8, 7)]);
        assert_eq!(format("%d|%8.3f|%#x|%s|%%", &mut a), "-42|   3.250|0xff|<str@7>|%");
        let mut a = pack(&[(8, 0.0001234f64.to_bits()), (8, 123456789.0f64.to_bits()), (8, 1.5e-7f64.to_bits()), (8, 100.0f64.to_bits())]);
        assert_eq!(format("%g %g %e %g", &mut a), "0.0001234 1.23457e+08 1.500000e-07 100");
        let mut a = pack(&[(4, 5), (4, (-1i32) as u32 as u64), (8, (-1i64) as u64), (4, 65)]);
        assert_eq!(format("[%05d] [%-4d] %ld %c", &mut a), "[00005] [-1  ] -1 A");
    }

    #[test]
    fn missing_arguments_print_the_conversion() {
        let mut a = pack(&[]);
        assert_eq!(format("x=%d y=%f", &mut a), "x=%d y=%f");
    }
}
