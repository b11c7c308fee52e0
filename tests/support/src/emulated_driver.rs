//! The emulated CUDA driver (src/libcuda, built as target/<profile>/examples/libcuda.so by every
//! `cargo test`) for tests of ferronet's real CUDA path. The loader reads LD_LIBRARY_PATH when a
//! process starts, so these tests run a child process with the library first on it: the ferronet
//! binary, or their own test binary running a chosen subset of its tests.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The directory holding libcuda.so: `examples/` of the target directory this test binary was
/// built into (test binaries live in target/<profile>/deps).
pub fn libcuda_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's own path");
    let profile = exe.parent().and_then(Path::parent).expect("test binaries live in target/<profile>/deps");
    let dir = profile.join("examples");
    assert!(
        dir.join("libcuda.so").is_file(),
        "{} is missing: build the emulated driver with `cargo build --release --example cuda` \
         (plain `cargo test --release` builds it too)",
        dir.join("libcuda.so").display()
    );
    dir
}

/// `cmd` with the emulated driver first on the loader's path.
pub fn with_emulated_driver(cmd: &mut Command) -> &mut Command {
    let dir = libcuda_dir();
    let path = match std::env::var("LD_LIBRARY_PATH") {
        Ok(old) if !old.is_empty() => format!("{}:{old}", dir.display()),
        _ => dir.display().to_string(),
    };
    cmd.env("LD_LIBRARY_PATH", path)
}

/// `cmd` with the emulated driver first on the loader's path, and its emulated NCCL
/// (src/libcuda/nccl.rs) found as NCCL: a directory holding libnccl.so, a link to the emulated
/// libcuda.so (the loader finds the file already loaded under its other name and shares that
/// copy, so NCCL's collectives use the emulated devices' memory and streams). Kept apart from
/// libcuda.so's directory, so runs with the emulated driver alone have no NCCL.
pub fn with_emulated_nccl(cmd: &mut Command) -> &mut Command {
    let dir = libcuda_dir().join("emulated-nccl");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let link = dir.join("libnccl.so");
    if std::fs::symlink_metadata(&link).is_err() {
        // Tests run in parallel: another one may make the link first.
        let _ = std::os::unix::fs::symlink("../libcuda.so", &link);
    }
    let path = std::env::var("LD_LIBRARY_PATH").ok().filter(|p| !p.is_empty());
    let path = [Some(libcuda_dir().display().to_string()), Some(dir.display().to_string()), path].into_iter().flatten().collect::<Vec<_>>().join(":");
    cmd.env("LD_LIBRARY_PATH", path)
}

/// Runs the tests of this test binary that libtest's `args` select (filters, `--exact`,
/// `--ignored`) in a child process with the emulated driver on the loader's path and
/// [`GPU_DEVICE_ENV`](crate::gpu::GPU_DEVICE_ENV) set to `device`, so `gpu()` opens that CUDA
/// device through cudarc. Fails unless the child passed and ran at least one test (so a filter
/// that matches nothing fails too).
#[track_caller]
pub fn run_own_tests(device: &str, args: &[&str]) {
    let exe = std::env::current_exe().expect("the test binary's own path");
    let out = with_emulated_driver(&mut Command::new(&exe))
        .args(args)
        .env(crate::gpu::GPU_DEVICE_ENV, device)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", exe.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the tests {args:?} failed through the emulated driver:\n{stdout}{stderr}");
    let passed = passed_count(&stdout).unwrap_or_else(|| panic!("no libtest summary in:\n{stdout}{stderr}"));
    assert!(passed > 0, "{args:?} selected no test:\n{stdout}");
}

/// N of libtest's summary line "test result: ok. N passed; ...".
fn passed_count(stdout: &str) -> Option<usize> {
    let line = stdout.lines().find(|l| l.starts_with("test result: "))?;
    let (before, _) = line.split_once(" passed;")?;
    before.rsplit(' ').next()?.parse().ok()
}

