//! The kernel modules build.rs embedded: each `kernels/<name>.cu` as source and, when NVRTC was
//! available at build time, as PTX; and the one place a module's PTX comes from at run time.

use super::nvrtc::{self, BASE_COMPUTE_CAPABILITY};
use crate::error::{Error, Result};
use std::borrow::Cow;

pub struct KernelModule {
    /// The file stem: `kernels/conv.cu` is "conv".
    pub name: &'static str,
    /// The CUDA source, with `kernels/common.cuh` already inlined, for run-time recompilation.
    pub source: &'static str,
    /// PTX from build-time NVRTC (for [`BASE_COMPUTE_CAPABILITY`]), if it was available.
    pub ptx: Option<&'static str>,
}

include!(concat!(env!("OUT_DIR"), "/kernels.rs"));

pub fn module(name: &str) -> Option<&'static KernelModule> {
    MODULES.iter().find(|m| m.name == name)
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

/// Module `name`'s PTX for a device of compute capability `cc`: the embedded PTX (which targets
/// [`BASE_COMPUTE_CAPABILITY`] and runs on every newer device) when `source` allows it and the
/// build had NVRTC, else the embedded source compiled with the machine's NVRTC for `cc`.
pub fn ptx(name: &str, cc: (i32, i32), source: PtxSource) -> Result<Cow<'static, str>> {
    let module = module(name).ok_or_else(|| Error::device(format!("no kernel module named {name} (no kernels/{name}.cu)")))?;
    match (module.ptx, source) {
        (Some(ptx), PtxSource::EmbeddedFirst) if cc >= BASE_COMPUTE_CAPABILITY => Ok(Cow::Borrowed(ptx)),
        _ => nvrtc::compile_ptx(name, module.source, cc).map(Cow::Owned).map_err(Error::device),
    }
}
