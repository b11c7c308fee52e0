//! Shared by the fuzz tests: the seed corpora in tests/corpus/ and the ways a file gets damaged
//! (truncation, bit flips, overwritten header words, appended junk, random bytes).

use proptest::prelude::*;
use std::path::Path;

/// Cases per fuzzer: enough to reach every mutation of every seed many times, and each fuzzer
/// stays within a few seconds.
pub const CASES: u32 = 300;

pub fn config() -> ProptestConfig {
    ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() }
}

pub fn corpus(path: &str) -> Vec<u8> {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus").join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("corpus file {}: {e}", full.display()))
}

#[derive(Clone, Debug)]
pub enum Mutation {
    /// Keep this fraction (in 1/1000) of the file.
    Truncate(u16),
    /// Flip these bits (positions taken modulo the file's size in bits).
    FlipBits(Vec<usize>),
    /// Overwrite the big-endian u32 at this byte offset (modulo the header region) with a value,
    /// which for IDX files is a dimension or the magic.
    OverwriteWord { offset: usize, value: u32 },
    /// Append these bytes.
    Append(Vec<u8>),
    /// Replace the whole file.
    Random(Vec<u8>),
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    let huge = prop_oneof![Just(u32::MAX), Just(1u32 << 31), Just(1u32 << 16), Just(0u32), any::<u32>()];
    prop_oneof![
        (0u16..1000).prop_map(Mutation::Truncate),
        prop::collection::vec(any::<usize>(), 1..8).prop_map(Mutation::FlipBits),
        (0usize..64, huge).prop_map(|(offset, value)| Mutation::OverwriteWord { offset, value }),
        prop::collection::vec(any::<u8>(), 1..64).prop_map(Mutation::Append),
        prop::collection::vec(any::<u8>(), 0..256).prop_map(Mutation::Random),
    ]
}

pub fn apply(seed: &[u8], m: &Mutation) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    match m {
        Mutation::Truncate(keep) => bytes.truncate(seed.len() * *keep as usize / 1000),
        Mutation::FlipBits(bits) => {
            if !bytes.is_empty() {
                for &b in bits {
                    let b = b % (bytes.len() * 8);
                    bytes[b / 8] ^= 1 << (b % 8);
                }
            }
        }
        Mutation::OverwriteWord { offset, value } => {
            if bytes.len() >= 4 {
                // Word-aligned within the first 64 bytes, where every format here keeps its header.
                let at = (offset / 4 * 4).min(bytes.len() - 4);
                bytes[at..at + 4].copy_from_slice(&value.to_be_bytes());
            }
        }
        Mutation::Append(extra) => bytes.extend_from_slice(extra),
        Mutation::Random(all) => bytes = all.clone(),
    }
    bytes
}
