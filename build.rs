//! Compiles every `kernels/*.cu` to PTX with NVRTC and embeds both the PTX and the source.
//!
//! Target: compute_75 (Turing), the oldest architecture the kernels are written for; PTX is
//! JIT-compiled forward by the driver for any newer GPU. A kernel that fails to compile fails the
//! build with NVRTC's log naming the file. Without NVRTC the build still succeeds (with a
//! cargo:warning) and embeds only the sources, which the runtime compiles with the machine's own
//! NVRTC.

#[path = "src/gpu/nvrtc_locate.rs"]
mod nvrtc_locate;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const ARCH: &str = "compute_75";
const COMMON_HEADER: &str = "common.cuh";

/// The source with `#include "common.cuh"` replaced by the header's text, so the embedded source
/// compiles on its own at run time; a `#line` directive keeps compiler messages on the .cu's lines.
fn inline_common(file_name: &str, src: &str, header: &str) -> String {
    let include = format!("#include \"{COMMON_HEADER}\"");
    let mut out = String::with_capacity(src.len() + header.len());
    for (i, line) in src.lines().enumerate() {
        if line.trim() == include {
            out.push_str(header);
            let _ = writeln!(out, "\n#line {} \"{file_name}\"", i + 2);
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn compile(name: &str, src: &str) -> Result<String, String> {
    let opts = cudarc::nvrtc::CompileOptions {
        arch: Some(ARCH),
        options: vec!["--std=c++17".into()],
        name: Some(format!("{name}.cu")),
        ..Default::default()
    };
    match cudarc::nvrtc::compile_ptx_with_opts(src, opts) {
        Ok(ptx) => Ok(ptx.to_src().to_string()),
        Err(cudarc::nvrtc::CompileError::CompileError { log, options, .. }) => {
            Err(format!("options {options:?}\n{}", log.to_string_lossy()))
        }
        Err(e) => Err(format!("{e:?}")),
    }
}

fn main() {
    let kernels = Path::new("kernels");
    println!("cargo:rerun-if-changed=kernels");
    println!("cargo:rerun-if-env-changed=FERRONET_NVRTC_LIB");
    let header = std::fs::read_to_string(kernels.join(COMMON_HEADER)).unwrap_or_default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(kernels)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "cu"));
    files.sort();

    let nvrtc = nvrtc_locate::ensure_nvrtc_loaded();
    if nvrtc.is_none() {
        println!(
            "cargo:warning=NVRTC not found: kernels embedded as source only and compiled at run time \
             (install it with `pip install nvidia-cuda-nvrtc-cu12==12.9.86` to compile them at build time)"
        );
    }

    let mut out = String::from("pub static MODULES: &[KernelModule] = &[\n");
    let mut failures = Vec::new();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
        let name = file.file_stem().and_then(|s| s.to_str()).expect("kernel file names are UTF-8");
        let src = match std::fs::read_to_string(file) {
            Ok(s) => inline_common(&format!("{name}.cu"), &s, &header),
            Err(e) => panic!("cannot read {}: {e}", file.display()),
        };
        let ptx = match nvrtc {
            Some(_) => match compile(name, &src) {
                Ok(ptx) => Some(ptx),
                Err(log) => {
                    failures.push(format!("kernels/{name}.cu failed to compile with NVRTC:\n{log}"));
                    None
                }
            },
            None => None,
        };
        writeln!(
            out,
            "    KernelModule {{ name: {name:?}, source: {src:?}, ptx: {} }},",
            ptx.map(|p| format!("Some({p:?})")).unwrap_or_else(|| "None".into())
        )
        .expect("writing to a String cannot fail");
    }
    out.push_str("];\n");
    if !failures.is_empty() {
        panic!("{}", failures.join("\n\n"));
    }
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("kernels.rs");
    std::fs::write(&dest, out).unwrap_or_else(|e| panic!("cannot write {}: {e}", dest.display()));
}
