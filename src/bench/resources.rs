//! ptxas's registers and static shared memory per kernel, from kernels/RESOURCES.md (which
//! `cargo test --test ptxas_gate` regenerates from the embedded PTX).

use std::collections::HashMap;

const RESOURCES_MD: &str = include_str!("../../kernels/RESOURCES.md");
/// The architecture whose ptxas numbers stand for all the modelled GPUs (Ampere; Ada and Hopper
/// compile these kernels to within a few registers of it).
pub const ARCH: &str = "sm_86";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelResources {
    pub registers: u32,
    pub shared_bytes: u32,
}

/// "module::kernel" -> resources on [`ARCH`].
pub fn kernel_resources() -> HashMap<String, KernelResources> {
    parse(RESOURCES_MD, ARCH)
}

fn parse(text: &str, arch: &str) -> HashMap<String, KernelResources> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.trim().trim_matches('|').split('|').map(str::trim).collect();
        if let [module, kernel, row_arch, registers, shared, ..] = cells.as_slice() {
            if *row_arch != arch {
                continue;
            }
            if let (Ok(registers), Ok(shared_bytes)) = (registers.parse(), shared.parse()) {
                out.insert(format!("{module}::{kernel}"), KernelResources { registers, shared_bytes });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_sgemm_has_resources() {
        let table = kernel_resources();
        let sgemm = table.get("gemm::sgemm_nn").expect("sgemm_nn in RESOURCES.md");
        assert!(sgemm.registers > 0 && sgemm.shared_bytes > 0, "{sgemm:?}");
        let rows = parse("| a | k | sm_86 | 12 | 132 | 0 | 0/0 |\n| a | k | sm_75 | 99 | 0 | 0 | 0/0 |\n| --- |", "sm_86");
        assert_eq!(rows["a::k"], KernelResources { registers: 12, shared_bytes: 132 });
    }
}
