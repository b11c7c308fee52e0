//! The one error type of ferronet. Every variant renders as a single line that names the problem
//! and, where the user can act, what to do.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug)]
pub enum Error {
    /// Tensor shapes or layer geometry that do not fit together.
    Shape(String),
    /// A flag, option or configuration value that is impossible.
    Config(String),
    /// A file that could not be read or written.
    Io { path: PathBuf, source: std::io::Error },
    /// A file whose contents are corrupt, truncated or of the wrong kind.
    Data { path: PathBuf, problem: String },
    /// A driver, compiler or kernel-launch failure.
    Device(String),
    /// A device allocation that did not fit.
    OutOfMemory { requested: usize, free: usize, hint: String },
    /// A PTX instruction or construct the simulator does not support, or its own state failing.
    Sim(String),
    /// A kernel that misbehaved on the device (out-of-bounds or misaligned access, data race,
    /// barrier misuse, failed assert, trap), found by the simulator's checks: a bug in the
    /// kernel, not in how it was called.
    KernelFault { kernel: String, detail: String },
    /// A NaN/inf loss or another numerical fault.
    Numerical(String),
    /// A data-parallel job that cannot go on: a rank died, hangs or is being stopped.
    Distributed(String),
    /// The user asked to stop (Ctrl-C).
    Interrupted,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn shape(msg: impl Into<String>) -> Self {
        Error::Shape(msg.into())
    }
    pub fn config(msg: impl Into<String>) -> Self {
        Error::Config(msg.into())
    }
    pub fn device(msg: impl Into<String>) -> Self {
        Error::Device(msg.into())
    }
    pub fn data(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Error::Data { path: path.into(), problem: problem.into() }
    }
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// The same error with `context` (what was being done) in front of its message; the kind
    /// stays, so a kernel fault met while checking an op still reads as a kernel fault.
    pub fn context(self, context: impl std::fmt::Display) -> Self {
        match self {
            Error::Shape(m) => Error::Shape(format!("{context}: {m}")),
            Error::Config(m) => Error::Config(format!("{context}: {m}")),
            Error::Data { path, problem } => Error::Data { path, problem: format!("{context}: {problem}") },
            Error::Device(m) => Error::Device(format!("{context}: {m}")),
            Error::Sim(m) => Error::Sim(format!("{context}: {m}")),
            Error::KernelFault { kernel, detail } => Error::KernelFault { kernel, detail: format!("{detail} (while {context})") },
            Error::Numerical(m) => Error::Numerical(format!("{context}: {m}")),
            Error::Distributed(m) => Error::Distributed(format!("{context}: {m}")),
            other @ (Error::Io { .. } | Error::OutOfMemory { .. } | Error::Interrupted) => other,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Shape(m) => write!(f, "shape error: {m}"),
            Error::Config(m) => write!(f, "invalid configuration: {m}"),
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Data { path, problem } => write!(f, "{}: {problem}", path.display()),
            Error::Device(m) => write!(f, "device error: {m}"),
            Error::OutOfMemory { requested, free, hint } => write!(
                f,
                "out of device memory: requested {} MiB with {} MiB free; {hint}",
                requested >> 20,
                free >> 20
            ),
            Error::Sim(m) => write!(f, "simulator: {m}"),
            Error::KernelFault { kernel, detail } => write!(f, "kernel fault in {kernel}: {detail}"),
            Error::Numerical(m) => write!(f, "numerical fault: {m}"),
            Error::Distributed(m) => write!(f, "data-parallel job: {m}"),
            Error::Interrupted => write!(f, "interrupted"),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_the_kind_of_error() {
        let fault = Error::KernelFault { kernel: "conv::im2col".into(), detail: "data race (missing barrier) at PTX line 9".into() };
        assert_eq!(
            fault.context("checking conv2d (3x3)").to_string(),
            "kernel fault in conv::im2col: data race (missing barrier) at PTX line 9 (while checking conv2d (3x3))"
        );
        assert_eq!(Error::config("lr must be positive").context("checking sgd").to_string(), "invalid configuration: checking sgd: lr must be positive");
    }
}
