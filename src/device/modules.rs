//! The kernel modules build.rs embedded: each `kernels/<name>.cu` as source and, when NVRTC was
//! available at build time, as PTX; and the one place a module's PTX comes from at run time.

use super::nvrtc;
use crate::error::{Error, Result};
use std::borrow::Cow;

pub struct KernelModule {
    /// The file stem: `kernels/conv.cu` is "conv".
    pub name: &'static str,
    /// The CUDA source, with `kernels/common.cuh` already inlined, for run-time recompilation.
    pub source: &'static str,
    /// The architecture the module is compiled for and the oldest device that loads it:
    /// [`nvrtc::BASE_COMPUTE_CAPABILITY`] unless the source names others
    /// ([`nvrtc::ARCH_MARKER`]); a source naming several has one module per architecture, oldest
    /// first, all of the same name.
    pub compute_capability: (i32, i32),
    /// PTX from build-time NVRTC (for `compute_capability`), if it was available.
    pub ptx: Option<&'static str>,
}

include!(concat!(env!("OUT_DIR"), "/kernels.rs"));

/// The module `name` a device of compute capability `cc` loads: the newest of its architectures
/// the device runs. A device older than all of them is refused.
pub fn module(name: &str, cc: (i32, i32)) -> Result<&'static KernelModule> {
    let mut variants = MODULES.iter().filter(|m| m.name == name).peekable();
    let oldest = variants.peek().copied().ok_or_else(|| Error::device(format!("no kernel module named {name} (no kernels/{name}.cu)")))?;
    variants.filter(|m| m.compute_capability <= cc).last().ok_or_else(|| {
        let ((major, minor), (have_major, have_minor)) = (oldest.compute_capability, cc);
        Error::device(format!(
            "kernel module {name} needs a GPU of compute capability {major}.{minor} or newer; this device is {have_major}.{have_minor}"
        ))
    })
}

/// Where a module's PTX may come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PtxSource {
    /// The embedded build-time PTX when there is one, else the source compiled now.
    EmbeddedFirst,
    /// The source compiled now, for a driver that rejected the embedded PTX (one older than the
    /// NVRTC that produced it).
    CompiledNow,
}

/// Module `name`'s PTX for a device of compute capability `cc`, of the module [`module`] picks:
/// its embedded PTX (which targets the module's architecture and runs on every newer device) when
/// `source` allows it, compiled now for that architecture when the build had no NVRTC, or, for
/// [`PtxSource::CompiledNow`], its source compiled with the machine's NVRTC for `cc`.
pub fn ptx(name: &str, cc: (i32, i32), source: PtxSource) -> Result<Cow<'static, str>> {
    let module = module(name, cc)?;
    match (module.ptx, source) {
        (Some(ptx), PtxSource::EmbeddedFirst) => Ok(Cow::Borrowed(ptx)),
        // What build.rs would have embedded, for a build without NVRTC.
        (None, PtxSource::EmbeddedFirst) => nvrtc::compile_ptx(name, module.source, module.compute_capability).map(Cow::Owned).map_err(Error::device),
        (_, PtxSource::CompiledNow) => nvrtc::compile_ptx(name, module.source, cc).map(Cow::Owned).map_err(Error::device),
    }
}
