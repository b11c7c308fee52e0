//! Compiles every `kernels/*.cu` to PTX with NVRTC and embeds both the PTX and the source.
//!
//! Target: compute_75 (Turing), the oldest architecture the kernels are written for; PTX is
//! JIT-compiled forward by the driver for any newer GPU. A source whose first lines say
//! `// ferronet: compute_80` (or `// ferronet: compute_75 compute_80`) is compiled for each
//! architecture named instead, one module each recording its architecture, so that drivers load
//! the newest one a device runs. A kernel that fails to compile fails the
//! build with NVRTC's log naming the file. Without NVRTC the build still succeeds (with a
//! cargo:warning) and embeds only the sources, which the runtime compiles with the machine's own
//! NVRTC. Compilation is the runtime's own function (`src/device/nvrtc.rs`), so build time and
//! run time compile alike.

#[path = "src/device/nvrtc.rs"]
mod nvrtc;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The source with each `#include "<header>.cuh"` of a header in kernels/ replaced by the
/// header's own inlined text, so the embedded source compiles on its own at run time; a `#line`
/// directive keeps compiler messages on the .cu's lines. A header is inlined once per source
/// (headers include what they need, so a second include would redefine it).
fn inline_headers(file_name: &str, src: &str, headers: &[(String, String)], seen: &mut Vec<String>) -> String {
    let mut out = String::with_capacity(src.len());
    for (i, line) in src.lines().enumerate() {
        let included = line.trim().strip_prefix("#include \"").and_then(|rest| rest.strip_suffix('"'));
        match included.and_then(|name| headers.iter().find(|(h, _)| h == name)) {
            Some((name, text)) => {
                if !seen.contains(name) {
                    seen.push(name.clone());
                    let _ = writeln!(out, "#line 1 \"{name}\"");
                    out.push_str(&inline_headers(name, text, headers, seen));
                }
                let _ = writeln!(out, "#line {} \"{file_name}\"", i + 2);
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

fn main() {
    let kernels = Path::new("kernels");
    println!("cargo:rerun-if-changed=kernels");
    println!("cargo:rerun-if-env-changed=FERRONET_NVRTC_LIB");
    let mut files: Vec<PathBuf> = std::fs::read_dir(kernels)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    let headers: Vec<(String, String)> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "cuh"))
        .map(|p| {
            let name = p.file_name().and_then(|s| s.to_str()).expect("kernel file names are UTF-8");
            let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
            (name.to_string(), text)
        })
        .collect();
    files.retain(|p| p.extension().is_some_and(|e| e == "cu"));

    let have_nvrtc = nvrtc::available();
    if !have_nvrtc {
        println!(
            "cargo:warning=NVRTC not found: kernels embedded as source only and compiled at run time \
             (install it with `{}` to compile them at build time)",
            nvrtc::INSTALL_HINT
        );
    }

    let mut out = String::from("pub static MODULES: &[KernelModule] = &[\n");
    let mut failures = Vec::new();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
        let name = file.file_stem().and_then(|s| s.to_str()).expect("kernel file names are UTF-8");
        let src = match std::fs::read_to_string(file) {
            Ok(s) => inline_headers(&format!("{name}.cu"), &s, &headers, &mut Vec::new()),
            Err(e) => panic!("cannot read {}: {e}", file.display()),
        };
        // One module per architecture the source names; they share the name and the source.
        for arch in nvrtc::source_compute_capabilities(&src) {
            let ptx = if have_nvrtc {
                match nvrtc::compile_ptx(name, &src, arch) {
                    Ok(ptx) => Some(ptx),
                    Err(log) => {
                        failures.push(log);
                        None
                    }
                }
            } else {
                None
            };
            writeln!(
                out,
                "    KernelModule {{ name: {name:?}, source: {src:?}, compute_capability: {arch:?}, ptx: {} }},",
                ptx.map(|p| format!("Some({p:?})")).unwrap_or_else(|| "None".into())
            )
            .expect("writing to a String cannot fail");
        }
    }
    out.push_str("];\n");
    if !failures.is_empty() {
        panic!("{}", failures.join("\n\n"));
    }
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("kernels.rs");
    std::fs::write(&dest, out).unwrap_or_else(|e| panic!("cannot write {}: {e}", dest.display()));
}
