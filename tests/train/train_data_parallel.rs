//! Data-parallel training as a user launches it: `mpirun -np 2 ferronet train ...` on the CPU
//! against one process with the same global batch (weights, metrics, one run directory), and a
//! rank that dies or hangs (the job ends with one line naming it; `--resume` continues the job).
//! Needs the `mpi` feature (the README's test command enables it) and Open MPI's `mpirun`
//! (`.ci/run` installs it); a build without MPI is checked to refuse an mpirun launch clearly.

use ferronet_test_support::cli_run::{ferronet_bin, path_arg, run};
use ferronet_test_support::emulated_driver::with_emulated_driver;
use ferronet_test_support::scratch_dir;

use ferronet::train::checkpoint;
use ferronet::train::history::{parse_history_csv, EpochRecord};
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// `ferronet train` on the CPU with `flags`, writing to `out`: as one process or as `ranks`
/// processes under mpirun.
fn train(ranks: usize, out: &Path, flags: &[&str]) -> Output {
    let mut cmd = match ranks {
        1 => Command::new(ferronet_bin()),
        n => {
            let mut cmd = Command::new("mpirun");
            // CI runs as root; two ranks on a 2-core machine.
            cmd.args(["--allow-run-as-root", "--oversubscribe", "-np", &n.to_string()]).arg(ferronet_bin());
            cmd
        }
    };
    // One rank alone gets the threads each of two ranks gets, so the two runs' sums are alike.
    cmd.env("RAYON_NUM_THREADS", "1")
        .args(["train", "--device", "cpu", "--quiet", "--workers", "1", "--out", path_arg(out)])
        .args(flags)
        .stdin(Stdio::null());
    run(cmd)
}

pub(super) fn succeeded(out: &Output, what: &str) {
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The largest difference between the two runs' tensors, relative to each tensor's largest
/// magnitude.
pub(super) fn largest_relative_difference(a: &Path, b: &Path) -> (f64, String) {
    let (ta, _) = checkpoint::load(&a.join("checkpoint.safetensors")).expect("the first run's checkpoint loads");
    let (tb, _) = checkpoint::load(&b.join("checkpoint.safetensors")).expect("the second run's checkpoint loads");
    assert_eq!(ta.len(), tb.len());
    let mut worst = (0.0, String::new());
    for x in &ta {
        let y = tb.iter().find(|t| t.name == x.name).unwrap_or_else(|| panic!("{} is in both checkpoints", x.name));
        let scale = x.data.iter().fold(0f64, |m, v| m.max(f64::from(v.abs()))).max(1e-12);
        let diff = x.data.iter().zip(&y.data).fold(0f64, |m, (p, q)| m.max(f64::from((p - q).abs())));
        if diff / scale > worst.0 {
            worst = (diff / scale, x.name.clone());
        }
    }
    worst
}

/// A run directory's metrics.json.
pub(super) fn metrics(root: &Path, run: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(root.join(run).join("metrics.json")).expect("metrics.json is written");
    serde_json::from_str(&text).expect("metrics.json is JSON")
}

#[cfg(feature = "mpi")]
mod with_mpi {
    use super::*;
    use std::process::Child;
    use std::time::{Duration, Instant};

    /// A few steps of SGD with momentum from the same start on the synthetic data.
    fn steps(model: &str, sync_bn: bool) -> Vec<String> {
        let mut flags = ["--model", model, "--dataset", "synthetic", "--limit", "256", "--batch-size", "64", "--epochs", "1"]
            .map(String::from)
            .to_vec();
        flags.extend(["--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9", "--dropout", "0", "--seed", "5"].map(String::from));
        if sync_bn {
            flags.push("--sync-bn".into());
        }
        flags
    }

    /// Two ranks against one process; `bucket_mb` (None: the default 25 MB) sizes the
    /// gradient buckets. Returns the scratch root (`one`, `two`).
    fn same_weights_as_one_process(model: &str, sync_bn: bool, bucket_mb: Option<&str>, name: &str) -> std::path::PathBuf {
        let root = scratch_dir(name);
        let mut flags = steps(model, sync_bn);
        if let Some(mb) = bucket_mb {
            flags.extend(["--bucket-mb".to_string(), mb.to_string()]);
        }
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        succeeded(&train(1, &root.join("one"), &flags), "one process");
        succeeded(&train(2, &root.join("two"), &flags), "two ranks");
        let (diff, tensor) = largest_relative_difference(&root.join("one"), &root.join("two"));
        // f32 sums in another order, over 4 steps: a few units of f32 rounding.
        assert!(diff < 1e-5, "{tensor} differs by {diff:e} of its largest value");
        // The ranks' evaluation counts, each over its slice of the set, add up to one process's.
        let (one, two) = (metrics(&root, "one"), metrics(&root, "two"));
        assert!(one["samples"].as_u64().is_some_and(|n| n > 0), "metrics.json counts its samples");
        assert_eq!(one["samples"], two["samples"]);
        let loss = |m: &serde_json::Value| m["val_loss"].as_f64().expect("metrics.json has val_loss");
        assert!((loss(&one) - loss(&two)).abs() <= 1e-5 * loss(&one), "val loss {} against {}", loss(&one), loss(&two));
        root
    }

    /// Tiny buckets (1 kB: dozens per step, several in flight during backward) sum every
    /// element as the default single bucket does: the same weights to the bit.
    #[test]
    fn two_ranks_end_with_one_process_weights_without_batch_norm() {
        let default = same_weights_as_one_process("lenet5", false, None, "ddp-lenet");
        let tiny = same_weights_as_one_process("lenet5", false, Some("0.001"), "ddp-lenet-tiny-buckets");
        let (diff, tensor) = largest_relative_difference(&default.join("two"), &tiny.join("two"));
        assert_eq!(diff, 0.0, "{tensor} differs between bucket sizes");
    }

    /// Batch norm's own all-reduces interleave with the gradient buckets in flight.
    #[test]
    fn two_ranks_with_sync_bn_end_with_one_process_weights() {
        same_weights_as_one_process("small_cnn", true, Some("0.001"), "ddp-syncbn");
    }

    /// The judged command: the same final metrics as one process, and one run directory.
    #[test]
    fn fashion_mnist_with_sync_bn_matches_one_process() {
        let root = scratch_dir("ddp-fashion");
        let flags = ["--model", "small_cnn", "--dataset", "fashion-mnist", "--epochs", "1", "--limit", "4096", "--sync-bn", "--dropout", "0"];
        succeeded(&train(1, &root.join("one"), &flags), "one process");
        succeeded(&train(2, &root.join("two"), &flags), "two ranks");
        let (one, two) = (metrics(&root, "one"), metrics(&root, "two"));
        let top1 = |m: &serde_json::Value| m["val_top1"].as_f64().expect("metrics.json has val_top1");
        // 64 Adam steps amplify f32 rounding differences (a max-pool tie broken the other way):
        // a tenth of a point apart, measured; a real difference in training would be points.
        assert!((top1(&one) - top1(&two)).abs() <= 0.005, "top-1 {} against {}", top1(&one), top1(&two));
        assert!(top1(&two) > 0.75, "the two ranks learned: top-1 {}", top1(&two));
        let written: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(written.len(), 2, "one run directory per job: {written:?}");
    }

    /// A run's history.csv.
    fn history(dir: &Path) -> Vec<EpochRecord> {
        parse_history_csv(&std::fs::read_to_string(dir.join("history.csv")).expect("history.csv is written")).expect("history.csv parses")
    }

    /// fp16's overflow check reads the summed gradients, so every rank skips the same steps and
    /// keeps the same loss scale as one process with the global batch.
    #[test]
    fn fp16_ranks_skip_the_overflows_of_one_process() {
        let root = scratch_dir("ddp-fp16");
        let mut flags = steps("small_cnn", true);
        // Synchronised batch norm is unfused: one process computes the same ops.
        flags.extend(["--precision", "fp16", "--no-fusion"].map(String::from));
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        succeeded(&train(1, &root.join("one"), &flags), "one process");
        succeeded(&train(2, &root.join("two"), &flags), "two ranks");
        let (one, two) = (history(&root.join("one")), history(&root.join("two")));
        let skips = |h: &[EpochRecord]| h.iter().map(|r| (r.overflow_skips, r.loss_scale)).collect::<Vec<_>>();
        assert_eq!(skips(&one), skips(&two));
        assert!(one[0].overflow_skips > 0, "the run overflows at fp16's initial scale: {:?}", skips(&one));
        let loss = |h: &[EpochRecord]| h[0].val_loss;
        assert!((loss(&one) - loss(&two)).abs() <= 1e-3 * loss(&one), "val loss {} against {}", loss(&one), loss(&two));
        // Values stored in fp16 turn any change of summation order (here: batch norm's
        // statistics summed over the ranks) into whole-ulp changes, and max-pool ties (common at
        // 11 bits) then route a sample's gradient elsewhere. Measured: 3.4e-2 of a momentum
        // buffer's largest value here; one process alone moves as far when only its thread
        // count changes (4.0e-2 after 2 steps of these flags at --limit 128), while in fp32 the
        // ranks match it within 1e-6. A step one rank skipped and the other took would differ
        // by the whole update.
        let (diff, tensor) = largest_relative_difference(&root.join("one"), &root.join("two"));
        assert!(diff < 0.1, "{tensor} differs by {diff:e} of its largest value");
    }

    /// --skip-nonfinite: the ranks agree on each skipped step (an all-reduce of their verdicts),
    /// so two ranks skip and count the steps one process does. An absurd weight decay makes
    /// every parameter infinite after the first update: steps 2-4 have a NaN loss.
    #[test]
    fn ranks_skip_nonfinite_steps_together() {
        let root = scratch_dir("ddp-skip-nonfinite");
        let flags = ["--model", "lenet5", "--dataset", "synthetic", "--limit", "128", "--batch-size", "32", "--epochs", "1"];
        let flags = [&flags[..], &["--lr", "1", "--weight-decay", "1e38", "--skip-nonfinite", "--seed", "5"]].concat();
        succeeded(&train(1, &root.join("one"), &flags), "one process");
        succeeded(&train(2, &root.join("two"), &flags), "two ranks");
        let (one, two) = (history(&root.join("one")), history(&root.join("two")));
        assert_eq!(one[0].skipped_steps, 3);
        assert_eq!(two[0].skipped_steps, 3);
        assert!(two[0].train_loss.is_finite() && (one[0].train_loss - two[0].train_loss).abs() <= 1e-5 * one[0].train_loss);
    }

    /// Two ranks on CUDA devices (the emulated driver's) take NCCL by default; on this machine,
    /// which has no NCCL library, the job ends with the line saying how to get it, not a panic.
    /// `--dist-backend nccl` on the CPU is refused naming the way out.
    #[test]
    fn cuda_ranks_select_nccl_and_a_missing_library_is_one_line() {
        if ferronet::dist::nccl::library_present() {
            return;
        }
        let dir = scratch_dir("ddp-nccl").join("run");
        let mut cmd = Command::new("mpirun");
        cmd.args(["--allow-run-as-root", "--oversubscribe", "-np", "2"]).arg(ferronet_bin());
        with_emulated_driver(&mut cmd)
            .env("FERRONET_EMU_DEVICES", "2")
            .args(["train", "--device", "cuda", "--quiet", "--model", "lenet5", "--dataset", "synthetic", "--limit", "64"])
            .args(["--batch-size", "32", "--epochs", "1", "--out", path_arg(&dir)])
            .stdin(Stdio::null());
        let out = run(cmd);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        let line = stderr.lines().find(|l| l.starts_with("error: rank")).unwrap_or_else(|| panic!("a rank says why:\n{stderr}"));
        assert!(line.contains("libnccl.so.2") && line.contains("pip install nvidia-nccl-cu12") && line.contains("--dist-backend mpi"), "{line}");

        let out = train(2, &scratch_dir("ddp-nccl-cpu").join("run"), &["--dist-backend", "nccl", "--limit", "64", "--batch-size", "32"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && !stderr.contains("panicked"), "{stderr}");
        assert!(stderr.contains("--dist-backend nccl reduces gradients between CUDA devices"), "{stderr}");
    }

    /// The pids of `mpirun`'s ranks, by rank, once both have started.
    fn rank_pids(mpirun: &Child) -> Vec<u32> {
        let start = Instant::now();
        loop {
            let mut ranks = Vec::new();
            for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
                let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
                let parent = stat.rsplit(')').next().and_then(|s| s.split_whitespace().nth(1)).and_then(|p| p.parse::<u32>().ok());
                if parent != Some(mpirun.id()) {
                    continue;
                }
                let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
                let rank = environ
                    .split(|&b| b == 0)
                    .find_map(|v| v.strip_prefix(b"OMPI_COMM_WORLD_RANK="))
                    .and_then(|r| std::str::from_utf8(r).ok()?.parse::<usize>().ok());
                if let Some(rank) = rank {
                    ranks.push((rank, pid));
                }
            }
            if ranks.len() == 2 {
                ranks.sort();
                return ranks.into_iter().map(|(_, pid)| pid).collect();
            }
            assert!(start.elapsed() < Duration::from_secs(30), "mpirun started its two ranks");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(pid: u32, name: &str) {
        let status = Command::new("kill").args([name, &pid.to_string()]).status().expect("kill runs");
        assert!(status.success(), "kill {name} {pid}");
    }

    /// Starts a two-rank job of several epochs, waits for its first checkpoint, then does
    /// `to_rank_1` to rank 1; returns the job's output and how long it took to end.
    fn disturbed_job(dir: &Path, timeout: &str, to_rank_1: &str) -> (Output, Duration) {
        let mut cmd = Command::new("mpirun");
        cmd.args(["--allow-run-as-root", "--oversubscribe", "-np", "2"]).arg(ferronet_bin());
        cmd.args(["train", "--device", "cpu", "--quiet", "--workers", "1", "--model", "lenet5", "--dataset", "synthetic"])
            .args(["--limit", "2048", "--batch-size", "32", "--epochs", "8", "--collective-timeout", timeout, "--out", path_arg(dir)])
            .env("RAYON_NUM_THREADS", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let job = cmd.spawn().expect("mpirun starts");
        let pids = rank_pids(&job);
        let ckpt = dir.join("checkpoint.safetensors");
        let start = Instant::now();
        while !ckpt.exists() {
            assert!(start.elapsed() < Duration::from_secs(120), "the first epoch's checkpoint appears");
            std::thread::sleep(Duration::from_millis(10));
        }
        let disturbed = Instant::now();
        signal(pids[1], to_rank_1);
        let output = job.wait_with_output().expect("mpirun ends");
        if to_rank_1 == "-STOP" {
            // MPI_Abort ended the job; make sure the stopped rank does not linger.
            let _ = Command::new("kill").args(["-KILL", &pids[1].to_string()]).status();
        }
        (output, disturbed.elapsed())
    }

    fn resumes_to_the_end(dir: &Path) {
        let out = train(2, dir, &["--resume"]);
        succeeded(&out, "the resumed job");
        let history = std::fs::read_to_string(dir.join("history.csv")).unwrap();
        assert_eq!(history.lines().count(), 1 + 8, "every epoch is in the history:\n{history}");
    }

    #[test]
    fn a_killed_rank_ends_the_job_and_the_job_resumes() {
        let dir = scratch_dir("ddp-killed").join("run");
        let (out, took) = disturbed_job(&dir, "300", "-KILL");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "the job fails: {stderr}");
        assert!(took < Duration::from_secs(60), "the job ended {took:?} after the kill");
        let line = stderr.lines().find(|l| l.starts_with("error: rank 0 of 2")).unwrap_or_else(|| panic!("rank 0 says why:\n{stderr}"));
        assert!(line.contains("another rank failed or was killed") && line.contains("--resume"), "{line}");
        resumes_to_the_end(&dir);
    }

    #[test]
    fn a_hung_rank_ends_the_job_at_the_collective_timeout() {
        let dir = scratch_dir("ddp-hung").join("run");
        let (out, took) = disturbed_job(&dir, "3", "-STOP");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "the job fails: {stderr}");
        assert!(took >= Duration::from_secs(3) && took < Duration::from_secs(60), "the job ended {took:?} after the stop");
        let line = stderr.lines().find(|l| l.starts_with("error: rank 0 of 2")).unwrap_or_else(|| panic!("rank 0 says why:\n{stderr}"));
        assert!(line.contains("did not join an all-reduce within 3 s"), "{line}");
        resumes_to_the_end(&dir);
    }
}

/// Without the `mpi` feature, a process mpirun started says how to get a build that has it.
#[cfg(not(feature = "mpi"))]
#[test]
fn a_build_without_mpi_refuses_an_mpirun_launch() {
    let dir = scratch_dir("ddp-no-mpi").join("run");
    let mut cmd = Command::new(ferronet_bin());
    cmd.args(["train", "--device", "cpu", "--quiet", "--out", path_arg(&dir)])
        .env("OMPI_COMM_WORLD_RANK", "0")
        .env("OMPI_COMM_WORLD_SIZE", "2");
    let out = run(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("built without MPI") && stderr.contains("--features mpi"), "{stderr}");
    assert!(!dir.exists(), "nothing is written");
}
