//! The kernel modules build.rs embedded: each `kernels/<name>.cu` as source and, when NVRTC was
//! available at build time, as PTX.

pub struct KernelModule {
    /// The file stem: `kernels/conv.cu` is "conv".
    pub name: &'static str,
    /// The CUDA source, with `kernels/common.cuh` already inlined, for run-time recompilation.
    pub source: &'static str,
    /// PTX from build-time NVRTC, if it was available.
    pub ptx: Option<&'static str>,
}

include!(concat!(env!("OUT_DIR"), "/kernels.rs"));

pub fn module(name: &str) -> Option<&'static KernelModule> {
    MODULES.iter().find(|m| m.name == name)
}
