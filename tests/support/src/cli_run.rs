//! Helpers shared by the reliability tests, which run the real `ferronet` binary as a user would:
//! starting it, waiting for files it writes, and reading its one-line errors.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `ferronet` binary cargo built beside this test binary (target/<profile>/ferronet, the
/// test itself being target/<profile>/deps/<name>-<hash>).
pub fn ferronet_bin() -> PathBuf {
    let test_exe = std::env::current_exe().expect("the test binary knows its path");
    let bin = test_exe.parent().and_then(Path::parent).expect("a test binary lives in target/<profile>/deps").join("ferronet");
    assert!(bin.is_file(), "{} is missing: run the tests through `cargo test`, which builds it", bin.display());
    bin
}

/// `ferronet train` on the CPU on the synthetic dataset, quiet, writing to `out`, with `extra`
/// flags after the common ones.
pub fn train_command(out: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(ferronet_bin());
    cmd.args(["train", "--device", "cpu", "--dataset", "synthetic", "--model", "small_cnn", "--quiet", "--workers", "1"])
        .arg("--out")
        .arg(out)
        .args(extra)
        .stdin(Stdio::null());
    cmd
}

/// Starts `cmd` in the background with its output captured.
pub fn spawn(mut cmd: Command) -> Child {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("the ferronet binary starts")
}

/// Waits until `path` exists or `child` ends; true when the file appeared while it still ran.
pub fn wait_for_file(child: &mut Child, path: &Path, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if path.exists() {
            return true;
        }
        if child.try_wait().expect("the child can be polled").is_some() {
            return path.exists();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

/// Runs `ferronet ARGS...` to completion and returns its output.
pub fn ferronet(args: &[&str]) -> Output {
    let mut cmd = Command::new(ferronet_bin());
    cmd.args(args);
    run(cmd)
}

/// A path as a command-line argument (test paths are UTF-8).
pub fn path_arg(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// Runs `cmd` to completion and returns its output.
pub fn run(mut cmd: Command) -> Output {
    cmd.output().expect("the ferronet binary runs")
}

/// The output of a failed run: exit code 2, nothing on stdout and exactly one line on stderr,
/// which is returned without its newline.
pub fn single_error_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "exit code of a refused run; stderr: {stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout: {}", String::from_utf8_lossy(&out.stdout));
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    stderr.trim_end_matches('\n').to_string()
}
