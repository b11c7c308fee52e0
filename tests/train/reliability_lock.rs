//! Two processes training into one run directory: the second is refused by the first's lock file
//! with one line naming the process and the lock, and without touching the first run's files.

use ferronet_test_support::scratch_dir;
use ferronet_test_support::cli_run::{run, single_error_line, spawn, train_command, wait_for_file};

use std::process::Command;
use std::time::Duration;

#[test]
fn a_second_process_on_the_same_run_directory_is_refused() {
    let root = scratch_dir("lock");
    let out = root.join("run");
    // Long enough to still be running when the second process starts.
    let mut first = spawn(train_command(&out, &["--limit", "640", "--batch-size", "32", "--epochs", "200"]));
    let ckpt = out.join("checkpoint.safetensors");
    assert!(wait_for_file(&mut first, &ckpt, Duration::from_secs(300)), "the first run writes its first checkpoint");

    // Continuing a run that is still going: the lock refuses it.
    let mut second = Command::new(env!("CARGO_BIN_EXE_ferronet"));
    second.args(["train", "--resume", "--device", "cpu", "--quiet", "--out"]).arg(&out);
    let line = single_error_line(&run(second));
    let still_running = first.try_wait().unwrap().is_none();
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(still_running, "the first run was still training when the second was refused");
    let dir = out.display();
    assert_eq!(
        line,
        format!(
            "error: invalid configuration: another training run (process {}) is using {dir}; use another --out, or delete {dir}/train.lock if that run is gone",
            first.id()
        )
    );
    // A fresh run (no --resume) into the same directory is refused before it looks at the lock.
    let line = single_error_line(&run(train_command(&out, &["--epochs", "1"])));
    assert_eq!(
        line,
        format!("error: invalid configuration: {dir} already holds a run; add --resume to continue it, or choose another --out")
    );
    let (_, meta) = ferronet::train::checkpoint::load(&ckpt).expect("the first run's checkpoint is intact");
    assert!(meta.epochs_done >= 1 && meta.epochs_done < 200);
    std::fs::remove_dir_all(&root).unwrap();
}
