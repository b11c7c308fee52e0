//! Finds NVRTC without requiring LD_LIBRARY_PATH. cudarc opens `libnvrtc.so.12` by bare name, and
//! the dynamic loader satisfies a bare name with an already-loaded library of that soname, so
//! loading the library once by absolute path makes cudarc's lookup succeed. Searched in order:
//! $FERRONET_NVRTC_LIB (a file), the default loader path, the `nvidia-cuda-nvrtc-cu12` PyPI wheel
//! of `python3`, /usr/local/cuda/lib64. Shared by build.rs (through `#[path]`) and the runtime.

use std::path::PathBuf;
use std::sync::OnceLock;

const SONAME: &str = "libnvrtc.so.12";

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
