//! A restricted unpickler for the `data.pkl` of a `torch.save` archive. A pickle is a program for
//! a stack machine whose GLOBAL and REDUCE opcodes import and call arbitrary Python functions;
//! this one only *describes* the few calls a state_dict of tensors needs (an OrderedDict, tensors
//! rebuilt from storages) as values, and stops at the first reference to anything else, naming
//! it. Nothing is imported or executed. It reads protocol 2 (torch.save's default) and the
//! protocol 3-4 opcodes a state_dict pickled at a higher protocol uses.

use super::ElementType;
use std::collections::HashMap;

/// A Python value as far as a state_dict needs one.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// A dict or OrderedDict, its items in insertion order.
    Dict(Vec<(Value, Value)>),
    Callable(Callable),
    /// A `torch.<Type>Storage` class, as named in a storage's persistent id.
    StorageType(ElementType),
    Storage(StorageRef),
    Tensor(TensorRef),
}

/// The functions a state_dict's pickle calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Callable {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
}

/// A storage of the archive: the file `data/<key>` holding `numel` elements of `element`.
#[derive(Clone, Debug, PartialEq)]
pub struct StorageRef {
    pub element: ElementType,
    pub key: String,
    pub numel: usize,
}

/// A tensor as `torch._utils._rebuild_tensor_v2` describes it: a strided view of a storage.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRef {
    pub storage: StorageRef,
    pub offset: usize,
    pub size: Vec<usize>,
    pub stride: Vec<usize>,
}

/// The globals a state_dict references, and what each is here.
fn allowed_global(module: &str, name: &str) -> Option<Value> {
    let storage = |element| Some(Value::StorageType(element));
    match (module, name) {
        ("collections", "OrderedDict") => Some(Value::Callable(Callable::OrderedDict)),
        ("torch._utils", "_rebuild_tensor_v2") => Some(Value::Callable(Callable::RebuildTensorV2)),
        ("torch._utils", "_rebuild_parameter") => Some(Value::Callable(Callable::RebuildParameter)),
        ("torch", "FloatStorage") => storage(ElementType::F32),
        ("torch", "DoubleStorage") => storage(ElementType::F64),
        ("torch", "HalfStorage") => storage(ElementType::F16),
        ("torch", "BFloat16Storage") => storage(ElementType::BF16),
        ("torch", "LongStorage") => storage(ElementType::I64),
        ("torch", "IntStorage") => storage(ElementType::I32),
        ("torch", "ShortStorage") => storage(ElementType::I16),
        ("torch", "CharStorage") => storage(ElementType::I8),
        ("torch", "ByteStorage") => storage(ElementType::U8),
        ("torch", "BoolStorage") => storage(ElementType::Bool),
        _ => None,
    }
}

/// What went wrong, as the text after the file's name.
pub type Problem = String;

/// The deepest nesting of containers accepted (a state_dict nests a few levels). Bounding it
/// keeps every walk over a value, and its drop, from exhausting the thread's stack.
const MAX_DEPTH: usize = 64;
/// Memo reads and writes copy values; a few bytes of pickle can double a value per read, so the
/// copies may weigh (nodes plus string bytes) at most this many times the pickle's length.
const COPY_BUDGET_PER_BYTE: usize = 16;

struct Machine<'a> {
    bytes: &'a [u8],
    at: usize,
    stack: Vec<Value>,
    /// Stack heights at each MARK still open.
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    /// What memo reads may still copy.
    copy_budget: usize,
}

/// Runs the pickle in `bytes` and returns the value it builds.
pub fn unpickle(bytes: &[u8]) -> Result<Value, Problem> {
    let copy_budget = bytes.len().saturating_mul(COPY_BUDGET_PER_BYTE);
    let mut m = Machine { bytes, at: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new(), copy_budget };
    loop {
        let opcode_at = m.at;
        let opcode = m.take(1)?[0];
        if let Some(value) = m.step(opcode).map_err(|e| format!("{e} (pickle opcode 0x{opcode:02x} at byte {opcode_at})"))? {
            return Ok(value);
        }
    }
}

impl Machine<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Problem> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.bytes.len()).ok_or("the pickle ends early")?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }
    fn u8(&mut self) -> Result<u8, Problem> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Problem> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, Problem> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn text(&mut self, len: usize) -> Result<String, Problem> {
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| "a string is not UTF-8".to_string())
    }
    /// A newline-terminated line (GLOBAL's module and name).
    fn line(&mut self) -> Result<String, Problem> {
        let rest = &self.bytes[self.at..];
        let len = rest.iter().position(|&b| b == b'\n').ok_or("the pickle ends early")?;
        let line = self.text(len)?;
        self.at += 1;
        Ok(line)
    }

    fn pop(&mut self) -> Result<Value, Problem> {
        self.stack.pop().ok_or_else(|| "the stack is empty".to_string())
    }
    fn top(&mut self) -> Result<&mut Value, Problem> {
        self.stack.last_mut().ok_or_else(|| "the stack is empty".to_string())
    }
    /// The values pushed since the last MARK, which is closed.
    fn pop_mark(&mut self) -> Result<Vec<Value>, Problem> {
        let height = self.marks.pop().ok_or("no MARK is open")?;
        if height > self.stack.len() {
            return Err("a MARK lies above the stack".into());
        }
        Ok(self.stack.split_off(height))
    }
    /// Pays for copying `v` out of or into the memo.
    fn charge(copy_budget: &mut usize, v: &Value) -> Result<(), Problem> {
        *copy_budget = copy_budget.checked_sub(weight(v)).ok_or("its memo copies grow without bound")?;
        Ok(())
    }
    fn memo_get(&mut self, key: u32) -> Result<Value, Problem> {
        let value = self.memo.get(&key).ok_or_else(|| format!("memo entry {key} was never stored"))?;
        Self::charge(&mut self.copy_budget, value)?;
        Ok(value.clone())
    }
    fn memo_put(&mut self, key: u32) -> Result<(), Problem> {
        let value = self.stack.last().ok_or("the stack is empty")?;
        Self::charge(&mut self.copy_budget, value)?;
        self.memo.insert(key, value.clone());
        Ok(())
    }

    fn global(module: &str, name: &str) -> Result<Value, Problem> {
        allowed_global(module, name).ok_or_else(|| {
            format!(
                "refusing to load it: its pickle references {module}.{name}, which is not a tensor; only state_dicts of tensors are accepted"
            )
        })
    }

    /// Executes one opcode; the value at STOP.
    fn step(&mut self, opcode: u8) -> Result<Option<Value>, Problem> {
        match opcode {
            0x80 => {
                let protocol = self.u8()?;
                if !(2..=5).contains(&protocol) {
                    return Err(format!("pickle protocol {protocol} is not one torch.save writes (2 to 5)"));
                }
            }
            0x95 => {
                self.take(8)?; // FRAME: a length hint for buffered readers
            }
            b'.' => return self.pop().map(Some),
            b'(' => self.marks.push(self.stack.len()),
            b')' => self.stack.push(Value::Tuple(Vec::new())),
            b'}' => self.stack.push(Value::Dict(Vec::new())),
            b']' => self.stack.push(Value::List(Vec::new())),
            b't' => {
                let items = self.pop_mark()?;
                items.iter().try_for_each(nestable)?;
                self.stack.push(Value::Tuple(items));
            }
            0x85..=0x87 => {
                let n = (opcode - 0x84) as usize;
                if self.stack.len() < n {
                    return Err("the stack is empty".into());
                }
                let items = self.stack.split_off(self.stack.len() - n);
                items.iter().try_for_each(nestable)?;
                self.stack.push(Value::Tuple(items));
            }
            b'N' => self.stack.push(Value::None),
            0x88 => self.stack.push(Value::Bool(true)),
            0x89 => self.stack.push(Value::Bool(false)),
            b'K' => {
                let v = self.u8()?;
                self.stack.push(Value::Int(v.into()));
            }
            b'M' => {
                let v = self.u16()?;
                self.stack.push(Value::Int(v.into()));
            }
            b'J' => {
                let v = self.u32()? as i32;
                self.stack.push(Value::Int(v.into()));
            }
            0x8a => {
                let len = self.u8()? as usize;
                if len > 8 {
                    return Err(format!("an integer of {len} bytes does not fit 64 bits"));
                }
                let bytes = self.take(len)?;
                // Two's complement little-endian, sign-extended from its top byte.
                let fill = if bytes.last().is_some_and(|&b| b & 0x80 != 0) { 0xff } else { 0 };
                let mut full = [fill; 8];
                full[..len].copy_from_slice(bytes);
                self.stack.push(Value::Int(i64::from_le_bytes(full)));
            }
            b'G' => {
                let v = f64::from_be_bytes(self.take(8)?.try_into().unwrap());
                self.stack.push(Value::Float(v));
            }
            b'X' => {
                let len = self.u32()? as usize;
                let s = self.text(len)?;
                self.stack.push(Value::Str(s));
            }
            0x8c => {
                let len = self.u8()? as usize;
                let s = self.text(len)?;
                self.stack.push(Value::Str(s));
            }
            b'q' => {
                let key = self.u8()?;
                self.memo_put(key.into())?;
            }
            b'r' => {
                let key = self.u32()?;
                self.memo_put(key)?;
            }
            0x94 => self.memo_put(self.memo.len() as u32)?,
            b'h' => {
                let key = self.u8()?;
                let v = self.memo_get(key.into())?;
                self.stack.push(v);
            }
            b'j' => {
                let key = self.u32()?;
                let v = self.memo_get(key)?;
                self.stack.push(v);
            }
            b'c' => {
                let (module, name) = (self.line()?, self.line()?);
                let v = Self::global(&module, &name)?;
                self.stack.push(v);
            }
            0x93 => {
                let (name, module) = (self.pop()?, self.pop()?);
                let v = match (module, name) {
                    (Value::Str(module), Value::Str(name)) => Self::global(&module, &name)?,
                    _ => return Err("STACK_GLOBAL needs a module and a name".into()),
                };
                self.stack.push(v);
            }
            b'R' => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let v = call(callable, args)?;
                self.stack.push(v);
            }
            b'Q' => {
                let pid = self.pop()?;
                let v = storage(pid)?;
                self.stack.push(v);
            }
            b's' => {
                let value = self.pop()?;
                let key = self.pop()?;
                nestable(&key)?;
                nestable(&value)?;
                dict_items(self.top()?)?.push((key, value));
            }
            b'u' => {
                let flat = self.pop_mark()?;
                flat.iter().try_for_each(nestable)?;
                if flat.len() % 2 != 0 {
                    return Err("SETITEMS has a key without a value".into());
                }
                let mut flat = flat.into_iter();
                let items = dict_items(self.top()?)?;
                while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
                    items.push((k, v));
                }
            }
            b'a' => {
                let value = self.pop()?;
                nestable(&value)?;
                list_items(self.top()?)?.push(value);
            }
            b'e' => {
                let values = self.pop_mark()?;
                values.iter().try_for_each(nestable)?;
                list_items(self.top()?)?.extend(values);
            }
            b'b' => {
                // An OrderedDict's instance state (a state_dict's `_metadata`, module versions)
                // does not change its items, which are all a state_dict is.
                self.pop()?;
                if !matches!(self.top()?, Value::Dict(_)) {
                    return Err("BUILD sets the state of something other than a dict".into());
                }
            }
            other => return Err(format!("opcode 0x{other:02x} is not one a state_dict's pickle uses")),
        }
        Ok(None)
    }
}

/// How many containers deep `v` is (a scalar: 0).
fn depth(v: &Value) -> usize {
    match v {
        Value::Tuple(items) | Value::List(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Dict(items) => 1 + items.iter().map(|(k, v)| depth(k).max(depth(v))).max().unwrap_or(0),
        _ => 0,
    }
}

/// Whether `item` may go into a container that is itself inside nothing (on the stack).
fn nestable(item: &Value) -> Result<(), Problem> {
    if depth(item) >= MAX_DEPTH {
        return Err(format!("it nests containers more than {MAX_DEPTH} deep"));
    }
    Ok(())
}

/// What copying `v` costs: its nodes and string bytes.
fn weight(v: &Value) -> usize {
    1 + match v {
        Value::Str(s) => s.len(),
        Value::Tuple(items) | Value::List(items) => items.iter().map(weight).sum(),
        Value::Dict(items) => items.iter().map(|(k, v)| weight(k) + weight(v)).sum(),
        _ => 0,
    }
}

fn dict_items(v: &mut Value) -> Result<&mut Vec<(Value, Value)>, Problem> {
    match v {
        Value::Dict(items) => Ok(items),
        _ => Err("SETITEM on something other than a dict".into()),
    }
}

fn list_items(v: &mut Value) -> Result<&mut Vec<Value>, Problem> {
    match v {
        Value::List(items) => Ok(items),
        _ => Err("APPEND on something other than a list".into()),
    }
}

fn count(v: &Value, what: &str) -> Result<usize, Problem> {
    match v {
        Value::Int(n) => usize::try_from(*n).map_err(|_| format!("{what} {n} is negative")),
        other => Err(format!("{what} is {other:?}, not an integer")),
    }
}

fn counts(v: &Value, what: &str) -> Result<Vec<usize>, Problem> {
    match v {
        Value::Tuple(items) => items.iter().map(|i| count(i, what)).collect(),
        other => Err(format!("{what} is {other:?}, not a tuple")),
    }
}

/// What REDUCE builds: the call of an allowed callable, described.
fn call(callable: Value, args: Value) -> Result<Value, Problem> {
    let Value::Tuple(args) = args else { return Err("REDUCE's arguments are not a tuple".into()) };
    match (callable, args.as_slice()) {
        (Value::Callable(Callable::OrderedDict), []) => Ok(Value::Dict(Vec::new())),
        // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
        (Value::Callable(Callable::RebuildTensorV2), [Value::Storage(storage), offset, size, stride, ..]) if args.len() >= 6 => {
            let (size, stride) = (counts(size, "a tensor's size")?, counts(stride, "a tensor's stride")?);
            if size.len() != stride.len() {
                return Err(format!("a tensor has size {size:?} but stride {stride:?}"));
            }
            Ok(Value::Tensor(TensorRef { storage: storage.clone(), offset: count(offset, "a storage offset")?, size, stride }))
        }
        // (data, requires_grad, backward_hooks): an nn.Parameter is its tensor here.
        (Value::Callable(Callable::RebuildParameter), [tensor @ Value::Tensor(_), ..]) => Ok(tensor.clone()),
        (callable, args) => Err(format!("cannot build a state_dict value by calling {callable:?} with {} arguments", args.len())),
    }
}

/// The storage a persistent id names: ('storage', torch.<Type>Storage, key, location, numel).
fn storage(pid: Value) -> Result<Value, Problem> {
    match pid {
        Value::Tuple(fields) => match fields.as_slice() {
            [Value::Str(kind), Value::StorageType(element), Value::Str(key), _location, numel] if kind == "storage" => {
                Ok(Value::Storage(StorageRef { element: *element, key: key.clone(), numel: count(numel, "a storage's size")? }))
            }
            _ => Err(format!("persistent id {fields:?} does not name a tensor storage")),
        },
        other => Err(format!("persistent id {other:?} does not name a tensor storage")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An OrderedDict {"w": tensor of FloatStorage "0", offset 1, size (2,), stride (3,)},
    /// as torch.save pickles it (protocol 2, memoised).
    fn state_dict_pickle() -> Vec<u8> {
        let mut p = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01(X\x01\x00\x00\x00wq\x02".to_vec();
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\nq\x03((X\x07\x00\x00\x00storagectorch\nFloatStorage\n");
        p.extend(b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x07tQK\x01K\x02\x85K\x03\x85\x89h\x00)Rtq\x04Ru}b.");
        p
    }

    #[test]
    fn a_state_dict_pickle_becomes_tensor_descriptions() {
        let v = unpickle(&state_dict_pickle()).unwrap();
        let storage = StorageRef { element: ElementType::F32, key: "0".into(), numel: 7 };
        let tensor = TensorRef { storage, offset: 1, size: vec![2], stride: vec![3] };
        assert_eq!(v, Value::Dict(vec![(Value::Str("w".into()), Value::Tensor(tensor))]));
    }

    #[test]
    fn other_globals_are_refused_by_name_before_anything_runs() {
        let err = unpickle(b"\x80\x02cposix\nsystem\nX\x02\x00\x00\x00ls\x85R.").unwrap_err();
        assert!(err.contains("references posix.system, which is not a tensor"), "{err}");
        let err = unpickle(b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93.").unwrap_err();
        assert!(err.contains("builtins.eval"), "{err}");
    }

    #[test]
    fn corrupt_pickles_are_errors_not_panics() {
        let good = state_dict_pickle();
        for end in 0..good.len() {
            assert!(unpickle(&good[..end]).is_err(), "a pickle cut at {end} must fail");
        }
        let deep = [&b"\x80\x02"[..], &[b']'; 100], &[b'a'; 99], b"."].concat();
        assert!(unpickle(&deep).unwrap_err().contains("more than 64 deep"));
        let doubling = [&b"\x80\x02]q\x00"[..], &b"h\x00h\x00\x86q\x00".repeat(40), b"."].concat();
        assert!(unpickle(&doubling).unwrap_err().contains("without bound"));
        for bad in [&b"\x80\x02t."[..], b"\x80\x02h\x05.", b"\x80\x02K\x01s.", b"\x80\x02)\x8a\x09\x00.", b"\x80\x02\xff."] {
            assert!(unpickle(bad).is_err(), "{bad:?}");
        }
        // Every single-byte corruption either fails cleanly or yields some value.
        for at in 0..good.len() {
            let mut p = good.clone();
            p[at] ^= 0x5a;
            let _ = unpickle(&p);
        }
    }
}
