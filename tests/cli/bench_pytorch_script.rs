//! benches/pytorch_reference.py needs PyTorch and a GPU to compare anything, neither of which CI
//! has; this checks its syntax and runs its torch-free unit tests (flags, the ferronet command,
//! ratios, the failure without PyTorch).

use std::path::Path;
use std::process::Command;

fn python(args: &[&str]) -> std::process::Output {
    Command::new("python3")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        // Leave no __pycache__ in the source tree.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python3 runs (CI installs its NVRTC wheels with it)")
}

#[test]
fn the_pytorch_reference_script_compiles_and_its_unit_tests_pass() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/pytorch_reference.py");
    let check = "import sys; compile(open(sys.argv[1]).read(), sys.argv[1], 'exec')";
    let out = python(&["-c", check, script.to_str().expect("UTF-8 path")]);
    assert!(out.status.success(), "syntax: {}", String::from_utf8_lossy(&out.stderr));
    let out = python(&["-m", "unittest", "discover", "-s", "benches", "-p", "test_pytorch_reference.py"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("OK"), "{stderr}");
}
