//! The one NVRTC path: finding the library and compiling a kernel source to PTX. Shared by
//! build.rs (through `#[path]`, so it imports nothing from the crate) and, at run time, by the
//! CUDA driver and the simulator for modules without usable embedded PTX.
//!
//! Finding NVRTC without requiring LD_LIBRARY_PATH: cudarc opens `libnvrtc.so.12` by bare name,
//! and the dynamic loader satisfies a bare name with an already-loaded library of that soname, so
//! loading the library once by absolute path makes cudarc's lookup succeed. Searched in order:
//! $FERRONET_NVRTC_LIB (a file), the default loader path, the `nvidia-cuda-nvrtc-cu12` PyPI wheel
//! of `python3`, /usr/local/cuda/lib64.

use std::path::PathBuf;
use std::sync::OnceLock;

const SONAME: &str = "libnvrtc.so.12";

/// How to install NVRTC; every message about a missing NVRTC names it.
pub const INSTALL_HINT: &str = "pip install nvidia-cuda-nvrtc-cu12==12.9.86";

/// The oldest architecture the kernels are written for (Turing): build.rs compiles for it, every
/// newer GPU JIT-compiles its PTX forward, and the simulator runs it.
pub const BASE_COMPUTE_CAPABILITY: (i32, i32) = (7, 5);

/// The line a kernel source starts with to be compiled for other architectures than the base
/// one, e.g. `// ferronet: compute_80` for sm_80-only instructions, or `// ferronet: compute_75
/// compute_80` for a source whose `__CUDA_ARCH__` branches give Turing its own code (mma.sync
/// m16n8k8, no cp.async) and Ampere on its: build.rs compiles one module per architecture, and
/// drivers load the newest one a device runs.
pub const ARCH_MARKER: &str = "// ferronet:";

/// The compute capabilities a kernel source is compiled for, oldest first: its
/// [`ARCH_MARKER`] line's `compute_XY`s, else [`BASE_COMPUTE_CAPABILITY`] alone.
pub fn source_compute_capabilities(source: &str) -> Vec<(i32, i32)> {
    let mut arches: Vec<(i32, i32)> = source
        .lines()
        .find_map(|l| l.trim().strip_prefix(ARCH_MARKER))
        .map(|list| {
            list.split_whitespace()
                .filter_map(|word| word.strip_prefix("compute_")?.parse::<i32>().ok())
                .map(|n| (n / 10, n % 10))
                .collect()
        })
        .unwrap_or_default();
    if arches.is_empty() {
        arches.push(BASE_COMPUTE_CAPABILITY);
    }
    arches.sort();
    arches
}

/// Directories that may hold NVRTC, best first.
fn candidate_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(p) = std::env::var("FERRONET_NVRTC_LIB") {
        out.push(PathBuf::from(p));
    }
    if let Some(dir) = python_wheel_dir("nvidia.cuda_nvrtc") {
        out.push(dir.join("lib").join(SONAME));
    }
    out.push(PathBuf::from("/usr/local/cuda/lib64").join(SONAME));
    out
}

/// The directory of a Python package (e.g. "nvidia.cuda_nvrtc"), asked of python3 itself.
pub fn python_wheel_dir(package: &str) -> Option<PathBuf> {
    let code = format!("import {package} as m, os; print(list(m.__path__)[0])");
    let out = std::process::Command::new("python3").args(["-c", &code]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    dir.is_dir().then_some(dir)
}

/// Makes NVRTC loadable by bare name for the rest of the process. Returns where it came from,
/// or None when no NVRTC exists on this machine.
pub fn ensure_nvrtc_loaded() -> Option<String> {
    static LOADED: OnceLock<Option<String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            // SAFETY: loading NVRTC runs its initialisers only; it has no unsound constructors.
            if unsafe { libloading::Library::new(SONAME) }.is_ok() {
                return Some("the default library path".to_string());
            }
            for file in candidate_files() {
                // SAFETY: as above. The handle is leaked on purpose: the library must stay loaded
                // for the whole process so later bare-name lookups resolve to it.
                if let Ok(lib) = unsafe { libloading::Library::new(&file) } {
                    std::mem::forget(lib);
                    return Some(file.display().to_string());
                }
            }
            None
        })
        .clone()
}

/// Whether NVRTC can be called: found, loaded, and resolvable by cudarc's bare-name lookup.
pub fn available() -> bool {
    // SAFETY: only tries to dlopen NVRTC, which ensure_nvrtc_loaded made resolvable.
    ensure_nvrtc_loaded().is_some() && unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Include directories of the CUDA runtime wheel, for kernels that include CUDA headers such as
/// `cuda_fp16.h` (NVRTC ships none), and of the CCCL wheel (`nvidia-cuda-cccl-cu12`) when
/// installed, for libcu++ and cooperative groups (`cuda/pipeline`, `nv/target`); looked up once
/// per process.
fn cuda_include_dirs() -> &'static [PathBuf] {
    static DIRS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    DIRS.get_or_init(|| ["nvidia.cuda_runtime", "nvidia.cuda_cccl"].iter().filter_map(|p| python_wheel_dir(p)).map(|d| d.join("include")).collect())
}

/// Compiles the CUDA source of module `name` (`kernels/<name>.cu` with its header inlined, or a
/// test kernel) to PTX for compute capability `(major, minor)`. The error is a message naming the
/// file: NVRTC's log, or that NVRTC is missing and how to install it.
pub fn compile_ptx(name: &str, source: &str, (major, minor): (i32, i32)) -> Result<String, String> {
    if !available() {
        return Err(format!("{name}.cu must be compiled to PTX but NVRTC is not installed; install it with `{INSTALL_HINT}`"));
    }
    let mut options = vec!["--std=c++17".to_string(), format!("--gpu-architecture=compute_{major}{minor}")];
    options.extend(cuda_include_dirs().iter().map(|dir| format!("-I{}", dir.display())));
    let opts = cudarc::nvrtc::CompileOptions { options, name: Some(format!("{name}.cu")), ..Default::default() };
    match cudarc::nvrtc::compile_ptx_with_opts(source, opts) {
        Ok(ptx) => Ok(ptx.to_src().to_string()),
        Err(cudarc::nvrtc::CompileError::CompileError { log, options, .. }) => Err(format!(
            "NVRTC could not compile {name}.cu for compute_{major}{minor} (options {options:?}):\n{}",
            log.to_string_lossy()
        )),
        Err(e) => Err(format!("NVRTC could not compile {name}.cu for compute_{major}{minor}: {e:?}")),
    }
}
