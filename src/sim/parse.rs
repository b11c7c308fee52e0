//! PTX front end: turns module text into a syntax tree of kernels, declarations and statements.
//! Only the syntax NVRTC emits is accepted; anything else is an `Error::Sim` naming the line.

use crate::error::{Error, Result};
use std::collections::HashMap;

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    /// Identifiers, registers, directives, opcodes and numbers: `%r1`, `.reg`, `ld.global.f32`, `0f3F800000`.
    Word(String),
    /// A string literal (only in `.pragma`).
    Str,
    Punct(char),
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    line: u32,
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '$' | '%')
}

fn tokenize(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0usize, 1u32);
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                if chars[i] == '\n' {
                    line += 1;
                }
                i += 1;
            }
            i += 2;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += 1;
            }
            i += 1;
            out.push(Token { tok: Tok::Str, line });
        } else if is_word_char(c) {
            let start = i;
            // `::` belongs to the word (`ld.shared::cta.u32`, `.L2::128B`).
            while i < chars.len() && (is_word_char(chars[i]) || (chars[i] == ':' && chars.get(i + 1) == Some(&':'))) {
                i += if chars[i] == ':' { 2 } else { 1 };
            }
            out.push(Token { tok: Tok::Word(chars[start..i].iter().collect()), line });
        } else {
            out.push(Token { tok: Tok::Punct(c), line });
            i += 1;
        }
    }
    out
}

/// A literal as written; its meaning depends on the instruction type.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Imm {
    /// An integer literal, two's complement.
    Int(u64),
    /// `0fXXXXXXXX`: the bits of an f32.
    F32Bits(u32),
    /// `0dXXXXXXXXXXXXXXXX`: the bits of an f64.
    F64Bits(u64),
    /// A decimal literal with a point or exponent.
    Float(f64),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    /// `%name` (including special registers such as `%tid.x`).
    Reg(String),
    /// A variable, parameter or label name.
    Sym(String),
    Imm(Imm),
    /// `[base+offset]`; `base` is None for an absolute address.
    Addr { base: Option<Box<Operand>>, offset: i64 },
    /// `{a, b, c, d}`.
    Vector(Vec<Operand>),
    /// `d|p`: a value and a predicate destination.
    Pair(Box<Operand>, Box<Operand>),
    /// `!%p`.
    Not(Box<Operand>),
    /// `_`: a discarded destination.
    Sink,
}

#[derive(Clone, Debug)]
pub struct Instruction {
    /// `@%p` or `@!%p`: the predicate register and whether it is negated.
    pub guard: Option<(String, bool)>,
    pub opcode: String,
    pub operands: Vec<Operand>,
    pub line: u32,
}

#[derive(Clone, Debug)]
pub enum Statement {
    Label(String),
    Instruction(Instruction),
}

/// A variable: `.shared .align 4 .b8 name[1024];`, `.global .u32 counter;`,
/// `.const .align 4 .b8 table[8] = {0, 0, 128, 63, 0, 0, 0, 64};`.
#[derive(Clone, Debug)]
pub struct VarDecl {
    pub name: String,
    pub align: u64,
    /// Bytes per element of the declared type.
    pub elem_bytes: u64,
    /// Size in bytes; 0 for `extern` arrays (sized at launch).
    pub bytes: u64,
    pub is_extern: bool,
    /// Initial element values (module-scope `.global`/`.const` only); the rest is zero.
    pub init: Vec<Imm>,
}

impl VarDecl {
    /// The variable's bytes at load time: the initialisers, little-endian, then zeros.
    pub fn initial_bytes(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.bytes as usize];
        let n = self.elem_bytes as usize;
        for (i, imm) in self.init.iter().enumerate() {
            let raw = match (*imm, n) {
                (Imm::Int(v), _) => v,
                (Imm::F32Bits(b), 8) => (f32::from_bits(b) as f64).to_bits(),
                (Imm::F32Bits(b), _) => b as u64,
                (Imm::F64Bits(b), 4) => (f64::from_bits(b) as f32).to_bits() as u64,
                (Imm::F64Bits(b), _) => b,
                (Imm::Float(f), 8) => f.to_bits(),
                (Imm::Float(f), _) => (f as f32).to_bits() as u64,
            };
            out[i * n..(i + 1) * n].copy_from_slice(&raw.to_le_bytes()[..n]);
        }
        out
    }
}

#[derive(Clone, Debug)]
pub struct Param {
    pub name: String,
    pub bytes: u64,
    pub align: u64,
}

/// `.reg .f32 %f<63>;` declares `%f0`..`%f62`; `count` is None for a single register.
#[derive(Clone, Debug)]
pub struct RegDecl {
    pub name: String,
    pub count: Option<u32>,
    /// A `.pred` register (some instructions take either a predicate or a number).
    pub pred: bool,
}

#[derive(Clone, Debug)]
pub struct KernelAst {
    pub name: String,
    pub params: Vec<Param>,
    pub regs: Vec<RegDecl>,
    pub shared: Vec<VarDecl>,
    pub local: Vec<VarDecl>,
    /// `.param` variables declared in the body for calls (`param0`, `retval0`); the same name
    /// may be declared by several call sequences.
    pub call_params: Vec<VarDecl>,
    pub body: Vec<Statement>,
}

#[derive(Clone, Debug, Default)]
pub struct ModuleAst {
    pub kernels: Vec<KernelAst>,
    /// Module-scope `.shared` variables, visible to every kernel.
    pub shared: Vec<VarDecl>,
    /// Module-scope `.global` and `.const` variables (`__device__`, `__constant__`).
    pub globals: Vec<VarDecl>,
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
}

fn type_bytes(ty: &str) -> Option<u64> {
    Some(match ty {
        ".b8" | ".u8" | ".s8" => 1,
        ".b16" | ".u16" | ".s16" | ".f16" | ".bf16" => 2,
        ".b32" | ".u32" | ".s32" | ".f32" | ".f16x2" | ".bf16x2" => 4,
        ".b64" | ".u64" | ".s64" | ".f64" => 8,
        ".pred" => 1,
        _ => return None,
    })
}

pub fn parse_number(word: &str) -> Option<Imm> {
    let w = word.strip_suffix('U').unwrap_or(word);
    if let Some(h) = w.strip_prefix("0f").or_else(|| w.strip_prefix("0F")) {
        return u32::from_str_radix(h, 16).ok().map(Imm::F32Bits);
    }
    if let Some(h) = w.strip_prefix("0d").or_else(|| w.strip_prefix("0D")) {
        return u64::from_str_radix(h, 16).ok().map(Imm::F64Bits);
    }
    if let Some(h) = w.strip_prefix("0x").or_else(|| w.strip_prefix("0X")) {
        return u64::from_str_radix(h, 16).ok().map(Imm::Int);
    }
    if w.contains(['.', 'e', 'E']) {
        return w.parse::<f64>().ok().map(Imm::Float);
    }
    w.parse::<u64>().ok().map(Imm::Int)
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }
    fn line(&self) -> u32 {
        self.toks.get(self.pos).or(self.toks.last()).map_or(0, |t| t.line)
    }
    fn err<T>(&self, msg: impl std::fmt::Display) -> Result<T> {
        Err(Error::Sim(format!("PTX line {}: {msg}", self.line())))
    }
    fn next(&mut self) -> Result<Tok> {
        match self.toks.get(self.pos) {
            Some(t) => {
                self.pos += 1;
                Ok(t.tok.clone())
            }
            None => self.err("unexpected end of module"),
        }
    }
    fn word(&mut self) -> Result<String> {
        match self.next()? {
            Tok::Word(w) => Ok(w),
            t => {
                self.pos -= 1;
                self.err(format!("expected a name, found {t:?}"))
            }
        }
    }
    fn expect(&mut self, c: char) -> Result<()> {
        match self.next()? {
            Tok::Punct(p) if p == c => Ok(()),
            t => {
                self.pos -= 1;
                self.err(format!("expected '{c}', found {t:?}"))
            }
        }
    }
    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Punct(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn eat_word(&mut self, w: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Word(x)) if x == w) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn skip_line(&mut self) {
        let line = self.line();
        while self.toks.get(self.pos).is_some_and(|t| t.line == line) {
            self.pos += 1;
        }
    }
    fn skip_past(&mut self, c: char) -> Result<()> {
        while self.next()? != Tok::Punct(c) {}
        Ok(())
    }
    fn number(&mut self) -> Result<u64> {
        let w = self.word()?;
        match parse_number(&w) {
            Some(Imm::Int(v)) => Ok(v),
            _ => self.err(format!("expected an integer, found '{w}'")),
        }
    }

    /// After `.shared`/`.local`: `[.align N] .type name[N]?` up to and including `;`.
    fn var_decl(&mut self, is_extern: bool) -> Result<VarDecl> {
        let decl = self.initialised_var_decl(is_extern)?;
        if !decl.init.is_empty() {
            return self.err(format!("variable '{}' of this state space cannot be initialised", decl.name));
        }
        Ok(decl)
    }

    /// After `.shared`/`.local`/`.global`/`.const`: `[.align N] .type name[N]? [= init]` up to
    /// and including `;`.
    fn initialised_var_decl(&mut self, is_extern: bool) -> Result<VarDecl> {
        let mut align = 1;
        if self.eat_word(".align") {
            align = self.number()?;
        }
        let ty = self.word()?;
        let Some(elem) = type_bytes(&ty) else { return self.err(format!("unknown variable type '{ty}'")) };
        align = align.max(elem);
        let name = self.word()?;
        let mut bytes = elem;
        if self.eat('[') {
            if self.eat(']') {
                bytes = 0;
            } else {
                let count = self.number()?;
                let Some(total) = elem.checked_mul(count) else { return self.err(format!("array '{name}' is too large")) };
                bytes = total;
                self.expect(']')?;
            }
        }
        let mut init = Vec::new();
        if self.eat('=') {
            let braced = self.eat('{');
            loop {
                let neg = self.eat('-');
                let w = self.word()?;
                let Some(v) = parse_number(&w) else {
                    return self.err(format!("initialiser '{w}' of '{name}' is not a number (address initialisers are not supported)"));
                };
                init.push(match (neg, v) {
                    (false, v) => v,
                    (true, Imm::Int(i)) => Imm::Int(i.wrapping_neg()),
                    (true, Imm::Float(f)) => Imm::Float(-f),
                    (true, _) => return self.err(format!("bad negative initialiser of '{name}'")),
                });
                if !braced || !self.eat(',') {
                    break;
                }
            }
            if braced {
                self.expect('}')?;
            }
            if init.len() as u64 * elem > bytes {
                return self.err(format!("'{name}' has more initialisers than elements"));
            }
        }
        self.expect(';')?;
        Ok(VarDecl { name, align, elem_bytes: elem, bytes, is_extern, init })
    }

    fn operand(&mut self) -> Result<Operand> {
        let op = self.primary()?;
        if self.eat('|') {
            let second = self.primary()?;
            return Ok(Operand::Pair(Box::new(op), Box::new(second)));
        }
        Ok(op)
    }

    /// Comma-separated operands up to `close` (possibly none), as a vector operand.
    fn list(&mut self, close: char) -> Result<Operand> {
        let mut items = Vec::new();
        if !self.eat(close) {
            loop {
                items.push(self.primary()?);
                if self.eat(close) {
                    break;
                }
                self.expect(',')?;
            }
        }
        Ok(Operand::Vector(items))
    }

    fn primary(&mut self) -> Result<Operand> {
        match self.next()? {
            Tok::Punct('[') => {
                let mut base = None;
                let mut offset: i64 = 0;
                if let Some(Tok::Word(w)) = self.peek().cloned() {
                    self.pos += 1;
                    match parse_number(&w) {
                        Some(Imm::Int(v)) => offset = v as i64,
                        Some(_) => return self.err(format!("bad address '{w}'")),
                        None => base = Some(Box::new(word_operand(w))),
                    }
                }
                if self.eat('+') {
                    let neg = self.eat('-');
                    let v = self.number()? as i64;
                    offset = offset.wrapping_add(if neg { -v } else { v });
                } else if self.eat('-') {
                    offset = offset.wrapping_sub(self.number()? as i64);
                }
                self.expect(']')?;
                Ok(Operand::Addr { base, offset })
            }
            Tok::Punct('{') => self.list('}'),
            // `call` argument and return lists.
            Tok::Punct('(') => self.list(')'),
            Tok::Punct('!') => Ok(Operand::Not(Box::new(self.primary()?))),
            Tok::Punct('-') => {
                let w = self.word()?;
                match parse_number(&w) {
                    Some(Imm::Int(v)) => Ok(Operand::Imm(Imm::Int(v.wrapping_neg()))),
                    Some(Imm::Float(f)) => Ok(Operand::Imm(Imm::Float(-f))),
                    _ => self.err(format!("bad negative literal '-{w}'")),
                }
            }
            Tok::Word(w) => Ok(word_operand(w)),
            t => {
                self.pos -= 1;
                self.err(format!("unexpected {t:?} in an operand"))
            }
        }
    }

    fn instruction(&mut self) -> Result<Instruction> {
        let line = self.line();
        let mut guard = None;
        if self.eat('@') {
            let neg = self.eat('!');
            guard = Some((self.word()?, neg));
        }
        let opcode = self.word()?;
        let mut operands = Vec::new();
        if !self.eat(';') {
            loop {
                operands.push(self.operand()?);
                if self.eat(';') {
                    break;
                }
                self.expect(',')?;
            }
        }
        Ok(Instruction { guard, opcode, operands, line })
    }

    fn entry(&mut self) -> Result<KernelAst> {
        let name = self.word()?;
        let mut params = Vec::new();
        if self.eat('(') {
            while !self.eat(')') {
                if !self.eat_word(".param") {
                    return self.err("expected .param in a kernel signature");
                }
                let mut align = 0;
                if self.eat_word(".align") {
                    align = self.number()?;
                }
                let ty = self.word()?;
                let Some(elem) = type_bytes(&ty) else { return self.err(format!("unknown parameter type '{ty}'")) };
                // `.ptr .global .align 4` qualifiers may follow the type.
                while let Some(Tok::Word(w)) = self.peek() {
                    if w == ".ptr" || w == ".global" || w == ".shared" || w == ".const" || w == ".local" {
                        self.pos += 1;
                    } else if w == ".align" {
                        self.pos += 1;
                        self.number()?;
                    } else {
                        break;
                    }
                }
                let pname = self.word()?;
                let mut bytes = elem;
                if self.eat('[') {
                    bytes = elem * self.number()?;
                    self.expect(']')?;
                }
                params.push(Param { name: pname, bytes, align: align.max(elem) });
                self.eat(',');
            }
        }
        // Performance directives (.maxntid 256, 1, 1 / .reqntid / .minnctapersm / .maxnreg).
        while let Some(Tok::Word(w)) = self.peek() {
            if w.starts_with('.') {
                self.pos += 1;
                loop {
                    self.number()?;
                    if !self.eat(',') {
                        break;
                    }
                }
            } else {
                break;
            }
        }
        self.expect('{')?;
        let mut k = KernelAst { name, params, regs: Vec::new(), shared: Vec::new(), local: Vec::new(), call_params: Vec::new(), body: Vec::new() };
        // Registers declared inside nested `{ }` blocks (inline asm) are renamed apart so they
        // shadow outer names within their block only: one map per open block, innermost last.
        let mut scopes: Vec<HashMap<String, String>> = Vec::new();
        let mut blocks_opened = 0u32;
        let mut depth = 1;
        while depth > 0 {
            match self.peek().cloned() {
                Some(Tok::Punct('{')) => {
                    self.pos += 1;
                    depth += 1;
                    blocks_opened += 1;
                    scopes.push(HashMap::new());
                }
                Some(Tok::Punct('}')) => {
                    self.pos += 1;
                    depth -= 1;
                    scopes.pop();
                }
                Some(Tok::Word(w)) if w == ".reg" => {
                    self.pos += 1;
                    // Every register is a 64-bit slot in the simulator; only predicates are told apart.
                    let pred = self.word()? == ".pred";
                    loop {
                        let rname = self.word()?;
                        let mut count = None;
                        if self.eat('<') {
                            count = Some(self.number()? as u32);
                            self.expect('>')?;
                        }
                        match scopes.last_mut() {
                            None => k.regs.push(RegDecl { name: rname, count, pred }),
                            Some(scope) => {
                                let names: Vec<String> = match count {
                                    Some(c) => (0..c).map(|i| format!("{rname}{i}")).collect(),
                                    None => vec![rname],
                                };
                                for name in names {
                                    let unique = format!("{name}$block{blocks_opened}");
                                    k.regs.push(RegDecl { name: unique.clone(), count: None, pred });
                                    scope.insert(name, unique);
                                }
                            }
                        }
                        if self.eat(';') {
                            break;
                        }
                        self.expect(',')?;
                    }
                }
                Some(Tok::Word(w)) if w == ".shared" => {
                    self.pos += 1;
                    let decl = self.var_decl(false)?;
                    k.shared.push(decl);
                }
                Some(Tok::Word(w)) if w == ".local" => {
                    self.pos += 1;
                    let decl = self.var_decl(false)?;
                    k.local.push(decl);
                }
                Some(Tok::Word(w)) if w == ".param" => {
                    self.pos += 1;
                    let decl = self.var_decl(false)?;
                    k.call_params.push(decl);
                }
                Some(Tok::Word(w)) if w == ".loc" || w == ".file" => self.skip_line(),
                Some(Tok::Word(w)) if w == ".pragma" => self.skip_past(';')?,
                Some(Tok::Word(w)) if w.starts_with('.') => {
                    return self.err(format!("unsupported directive '{w}' in kernel {}", k.name));
                }
                Some(Tok::Word(w)) if self.toks.get(self.pos + 1).is_some_and(|t| t.tok == Tok::Punct(':')) => {
                    self.pos += 2;
                    k.body.push(Statement::Label(w));
                }
                Some(_) => {
                    let mut inst = self.instruction()?;
                    if scopes.iter().any(|s| !s.is_empty()) {
                        rename_scoped(&mut inst, &scopes);
                    }
                    k.body.push(Statement::Instruction(inst));
                }
                None => return self.err(format!("kernel {} has no closing brace", k.name)),
            }
        }
        Ok(k)
    }

    /// Skips a `.func` declaration or definition (called functions are reported when a kernel
    /// uses `call`).
    fn skip_func(&mut self) -> Result<()> {
        loop {
            match self.next()? {
                Tok::Punct(';') => return Ok(()),
                Tok::Punct('{') => {
                    let mut depth = 1;
                    while depth > 0 {
                        match self.next()? {
                            Tok::Punct('{') => depth += 1,
                            Tok::Punct('}') => depth -= 1,
                            _ => {}
                        }
                    }
                    return Ok(());
                }
                _ => {}
            }
        }
    }

    fn module(&mut self) -> Result<ModuleAst> {
        let mut m = ModuleAst::default();
        while self.pos < self.toks.len() {
            let w = self.word()?;
            match w.as_str() {
                ".version" | ".target" | ".address_size" => {
                    self.pos -= 1;
                    self.skip_line();
                }
                ".visible" | ".weak" => {}
                ".extern" => {
                    if self.eat_word(".shared") {
                        let decl = self.var_decl(true)?;
                        m.shared.push(decl);
                    } else if self.eat_word(".func") {
                        self.skip_func()?;
                    }
                }
                ".shared" => {
                    let decl = self.var_decl(false)?;
                    m.shared.push(decl);
                }
                ".global" | ".const" => {
                    let decl = self.initialised_var_decl(false)?;
                    m.globals.push(decl);
                }
                ".entry" => {
                    let k = self.entry()?;
                    m.kernels.push(k);
                }
                ".func" => self.skip_func()?,
                other => {
                    self.pos -= 1;
                    return self.err(format!("unsupported module-scope directive '{other}'"));
                }
            }
        }
        Ok(m)
    }
}

/// The innermost block-scoped register called `name`, if any.
fn scoped_name<'s>(name: &str, scopes: &'s [HashMap<String, String>]) -> Option<&'s String> {
    scopes.iter().rev().find_map(|s| s.get(name))
}

/// Points an instruction's register names (and the bare names inline asm gives its scoped
/// registers, which parse as symbols) at the block-scoped registers they refer to.
fn rename_scoped(inst: &mut Instruction, scopes: &[HashMap<String, String>]) {
    fn operand(o: &mut Operand, scopes: &[HashMap<String, String>]) {
        match o {
            Operand::Reg(n) | Operand::Sym(n) => {
                if let Some(unique) = scoped_name(n, scopes) {
                    *o = Operand::Reg(unique.clone());
                }
            }
            Operand::Addr { base: Some(b), .. } => operand(b, scopes),
            Operand::Vector(items) => items.iter_mut().for_each(|i| operand(i, scopes)),
            Operand::Pair(a, b) => {
                operand(a, scopes);
                operand(b, scopes);
            }
            Operand::Not(a) => operand(a, scopes),
            Operand::Addr { base: None, .. } | Operand::Imm(_) | Operand::Sink => {}
        }
    }
    if let Some((g, _)) = &mut inst.guard {
        if let Some(unique) = scoped_name(g, scopes) {
            *g = unique.clone();
        }
    }
    inst.operands.iter_mut().for_each(|o| operand(o, scopes));
}

fn word_operand(w: String) -> Operand {
    if w == "_" {
        return Operand::Sink;
    }
    if w.starts_with('%') {
        return Operand::Reg(w);
    }
    match parse_number(&w) {
        Some(imm) if w.starts_with(|c: char| c.is_ascii_digit()) => Operand::Imm(imm),
        _ => Operand::Sym(w),
    }
}

/// Parses a whole PTX module.
pub fn parse_module(text: &str) -> Result<ModuleAst> {
    Parser { toks: tokenize(text), pos: 0 }.module()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entry_with_operands() {
        let ptx = r#"
.version 8.8
.target sm_75
.address_size 64
.extern .shared .align 16 .b8 dyn[];
.visible .entry k(
	.param .u64 k_param_0,
	.param .f32 k_param_1
)
.maxntid 256, 1, 1
{
	.reg .pred 	%p<2>;
	.reg .b32 	%r<33>;
	.shared .align 4 .b8 tile[1024];
	ld.param.u64 	%rd5, [k_param_0];
	@!%p1 bra 	$L__BB0_7;
	shfl.sync.bfly.b32 	%r21|%p4, %r17, %r19, %r18, %r20;
	ld.global.v4.f32 	{%f1, %f2, %f3, %f4}, [%rd4+-16];
	mov.f32 %f1, 0f3F800000;
$L__BB0_7:
	{ cvt.rn.f16.f32 %rs1, %f1;}
	ret;
}
"#;
        let m = parse_module(ptx).unwrap();
        assert_eq!(m.shared.len(), 1);
        assert!(m.shared[0].is_extern);
        let k = &m.kernels[0];
        assert_eq!(k.params.len(), 2);
        assert_eq!(k.params[1].bytes, 4);
        assert_eq!(k.shared[0].bytes, 1024);
        assert_eq!(k.regs[1].count, Some(33));
        let insts: Vec<&Instruction> = k
            .body
            .iter()
            .filter_map(|s| match s {
                Statement::Instruction(i) => Some(i),
                Statement::Label(_) => None,
            })
            .collect();
        assert_eq!(insts.len(), 7);
        assert_eq!(insts[1].guard, Some(("%p1".to_string(), true)));
        assert!(matches!(&insts[2].operands[0], Operand::Pair(..)));
        assert_eq!(insts[3].operands[1], Operand::Addr { base: Some(Box::new(Operand::Reg("%rd4".into()))), offset: -16 });
        assert_eq!(insts[4].operands[1], Operand::Imm(Imm::F32Bits(0x3F80_0000)));
        assert!(matches!(k.body[5], Statement::Label(ref l) if l == "$L__BB0_7"));
    }
}
