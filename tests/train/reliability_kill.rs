//! A run killed with SIGKILL loses at most its current epoch: `ferronet train --resume` continues
//! from the last checkpoint and ends with the same weights (bit for bit) and the same history as
//! a run that was never interrupted. A half-written temporary checkpoint left behind by the kill
//! does not disturb the resume.

use ferronet_test_support::scratch_dir;
use ferronet_test_support::cli_run::{run, spawn, train_command, wait_for_file};

use ferronet::train::checkpoint::{self, NamedTensor};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// 640 images in batches of 32 (20 steps an epoch), augmented, SGD with momentum: long enough an
/// epoch to kill inside it, short enough for CI.
const RUN_FLAGS: [&str; 11] =
    ["--limit", "640", "--batch-size", "32", "--epochs", "3", "--seed", "11", "--augment", "--lr", "0.02"];

/// history.csv without the wall-clock columns, which differ between any two runs.
fn deterministic_history(dir: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(dir.join("history.csv")).expect("history.csv is written");
    let mut rows = text.lines().map(|l| l.split(',').map(String::from).collect::<Vec<_>>());
    let header = rows.next().expect("history.csv has a header");
    let timing = ["epoch_seconds", "train_images_per_second", "inference_ms_per_batch"];
    let keep: Vec<usize> = (0..header.len()).filter(|&i| !timing.contains(&header[i].as_str())).collect();
    assert_eq!(keep.len() + timing.len(), header.len(), "every timing column is in the header: {header:?}");
    std::iter::once(header).chain(rows).map(|row| keep.iter().map(|&i| row[i].clone()).collect()).collect()
}

fn sorted_tensors(dir: &Path) -> Vec<NamedTensor> {
    let (mut tensors, _) = checkpoint::load(&dir.join("checkpoint.safetensors")).expect("the final checkpoint loads");
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    tensors
}

#[test]
fn a_killed_run_resumes_to_the_uninterrupted_result() {
    let root = scratch_dir("kill");
    let whole = root.join("whole");
    let out = run(train_command(&whole, &RUN_FLAGS));
    assert!(out.status.success(), "uninterrupted run: {}", String::from_utf8_lossy(&out.stderr));

    // One epoch (with its validation and the start-up) has passed when the first checkpoint
    // appears; a fraction of that time later the run is inside epoch 2. On a loaded machine the
    // epochs' lengths vary, so a kill that landed after epoch 2 is retried with a shorter delay.
    let mut landed = None;
    for (attempt, divisor) in [3u32, 8, 20, 50].into_iter().enumerate() {
        let dir = root.join(format!("killed-{attempt}"));
        let ckpt = dir.join("checkpoint.safetensors");
        let started = Instant::now();
        let mut child = spawn(train_command(&dir, &RUN_FLAGS));
        assert!(wait_for_file(&mut child, &ckpt, Duration::from_secs(300)), "the first checkpoint appears while the run goes on");
        std::thread::sleep(started.elapsed() / divisor);
        child.kill().expect("SIGKILL reaches the run");
        child.wait().unwrap();
        let (_, meta) = checkpoint::load(&ckpt).unwrap();
        if meta.epochs_done == 1 && !dir.join("metrics.json").exists() {
            landed = Some(dir);
            break;
        }
    }
    let killed = landed.expect("one of the kills lands inside epoch 2");
    assert!(killed.join("train.lock").exists(), "a killed run leaves its lock behind");
    assert!(!killed.join("metrics.json").exists(), "the killed run did not finish");

    // A kill during a checkpoint write leaves a partial temporary file next to the checkpoint.
    std::fs::write(killed.join(".checkpoint.safetensors.tmp"), b"\x40\0\0\0\0\0\0\0{\"garbage").unwrap();
    let mut resume = Command::new(env!("CARGO_BIN_EXE_ferronet"));
    resume.args(["train", "--resume", "--device", "cpu", "--quiet", "--workers", "1", "--out"]).arg(&killed);
    let out = run(resume);
    assert!(out.status.success(), "resume after the kill: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!killed.join("train.lock").exists(), "the stale lock was taken over and released");
    assert!(!killed.join(".checkpoint.safetensors.tmp").exists(), "the temporary file was replaced and renamed");

    assert_eq!(deterministic_history(&killed), deterministic_history(&whole));
    assert_eq!(deterministic_history(&whole).len(), 4, "a header and three epochs");
    let (a, b) = (sorted_tensors(&whole), sorted_tensors(&killed));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((&x.name, &x.shape), (&y.name, &y.shape));
        let same_bits = x.data.len() == y.data.len() && x.data.iter().zip(&y.data).all(|(p, q)| p.to_bits() == q.to_bits());
        assert!(same_bits, "{} differs after the killed run resumed", x.name);
    }
    assert!(a.iter().any(|t| t.name.starts_with("optimizer.")), "the momentum buffers are compared too");
    std::fs::remove_dir_all(&root).unwrap();
}
