//! Data-parallel training of CUDA ranks over NCCL, on the emulated driver and its emulated NCCL
//! (src/libcuda/nccl.rs, found as libnccl.so): two ranks launched with torchrun's variables (set
//! here: no torchrun needed) end with the weights and metrics of one process with their two
//! batches, as do two ranks of `mpirun --dist-backend nccl`; a rank killed mid-run ends the other
//! with one line, not a hang.

use super::train_data_parallel::{largest_relative_difference, metrics, succeeded};
use ferronet_test_support::cli_run::{ferronet_bin, path_arg, run};
use ferronet_test_support::emulated_driver::{with_emulated_driver, with_emulated_nccl};
use ferronet_test_support::scratch_dir;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// 40 grey 28x28 images of 4 classes (a bright band at the class's own height, with noise). A
/// folder has no test set, so the runs evaluate on 8 held-out images rather than a test set of
/// 1000: the emulated driver runs the kernels on the PTX simulator, which is slow.
fn tiny_folder(dir: &Path) {
    let mut seed = 7u32;
    for i in 0..40 {
        let class = i % 4;
        let folder = dir.join(format!("class{class}"));
        std::fs::create_dir_all(&folder).unwrap();
        let pixels: Vec<u8> = (0..28 * 28)
            .map(|p| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let noise = (seed >> 27) as u8;
                if p / 28 / 7 == class { 200 + noise } else { 20 + noise }
            })
            .collect();
        image::GrayImage::from_raw(28, 28, pixels).unwrap().save(folder.join(format!("{i}.png"))).unwrap();
    }
}

/// A few steps of SGD with momentum of lenet5 on `images` (global batch 16: two steps an epoch),
/// with no random flips, so one process and the ranks see the same pixels.
fn flags(images: &Path, epochs: &str) -> Vec<String> {
    let mut flags = ["--dataset", "folder", "--data-dir", path_arg(images), "--input", "1,28,28", "--val-split", "0.2", "--hflip=false"]
        .map(String::from)
        .to_vec();
    flags.extend(["--model", "lenet5", "--batch-size", "16", "--epochs", epochs, "--optimizer", "sgd", "--lr", "0.05"].map(String::from));
    flags.extend(["--momentum", "0.9", "--dropout", "0", "--seed", "5", "--workers", "1", "--quiet", "--device", "cuda"].map(String::from));
    // The tolerances below are f32 roundings of sums taken in another order; the emulated sm_86
    // device would train in bf16, whose stores turn those into whole bf16 steps.
    flags.extend(["--precision", "fp32"].map(String::from));
    flags
}

fn one_process(out: &Path, flags: &[String]) -> Output {
    let mut cmd = Command::new(ferronet_bin());
    with_emulated_driver(&mut cmd).env("RAYON_NUM_THREADS", "1").arg("train").args(flags).args(["--out", path_arg(out)]).stdin(Stdio::null());
    run(cmd)
}

/// A free TCP port for rank 0's rendezvous.
fn free_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().unwrap().port().to_string()
}

/// Two `ferronet train` processes with the variables torchrun sets, each on its own emulated
/// device (cuda:LOCAL_RANK) and the emulated NCCL; `env` adds variables.
fn torchrun_ranks(out: &Path, flags: &[String], env: &[(&str, &str)]) -> Vec<Child> {
    let port = free_port();
    (0..2)
        .map(|rank| {
            let rank = rank.to_string();
            let mut cmd = Command::new(ferronet_bin());
            with_emulated_nccl(&mut cmd)
                .env("FERRONET_EMU_DEVICES", "2")
                .env("RAYON_NUM_THREADS", "1")
                .envs([("RANK", rank.as_str()), ("LOCAL_RANK", &rank), ("WORLD_SIZE", "2"), ("LOCAL_WORLD_SIZE", "2")])
                .envs([("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", &port)])
                .envs(env.iter().copied())
                .arg("train")
                .args(flags)
                .args(["--out", path_arg(out)])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            cmd.spawn().expect("ferronet starts")
        })
        .collect()
}

/// The two ranks' run against one process's: the same weights within `tolerance` of each
/// tensor's largest value (f32 rounding), the same evaluation.
fn same_as_one_process(root: &Path, tolerance: f64) {
    let (diff, tensor) = largest_relative_difference(&root.join("one"), &root.join("two"));
    assert!(diff < tolerance, "{tensor} differs by {diff:e} of its largest value");
    let (one, two) = (metrics(root, "one"), metrics(root, "two"));
    assert!(one["samples"].as_u64().is_some_and(|n| n > 0), "metrics.json counts its samples");
    assert_eq!(one["samples"], two["samples"]);
    let loss = |m: &serde_json::Value| m["val_loss"].as_f64().expect("metrics.json has val_loss");
    assert!((loss(&one) - loss(&two)).abs() <= 1e-5 * loss(&one), "val loss {} against {}", loss(&one), loss(&two));
    assert!(two["device"].as_str().is_some_and(|d| d.contains("emulated")), "the ranks trained on emulated CUDA devices: {two}");
}

/// One process and two torchrun ranks with `flags` in a scratch directory `name`.
fn torchrun_against_one_process(name: &str, tolerance: f64, flags: impl Fn(&Path) -> Vec<String>) {
    let root = scratch_dir(name);
    let images = root.join("images");
    tiny_folder(&images);
    let flags = flags(&images);
    succeeded(&one_process(&root.join("one"), &flags), "one process");
    for (rank, child) in torchrun_ranks(&root.join("two"), &flags, &[]).into_iter().enumerate() {
        succeeded(&child.wait_with_output().expect("the rank ends"), &format!("rank {rank}"));
    }
    same_as_one_process(&root, tolerance);
    let written: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(written.len(), 3, "the images and one run directory per job: {written:?}");
}

#[test]
fn torchrun_cuda_ranks_over_nccl_end_with_one_process_weights() {
    // f32 gradient sums in another order, over 2 steps: a few units of f32 rounding.
    torchrun_against_one_process("ddp-torchrun", 1e-5, |images| flags(images, "1"));
}

/// Batch norm's statistics summed over the ranks through the group's NCCL collectives.
#[test]
fn torchrun_cuda_ranks_with_sync_bn_end_with_one_process_weights() {
    // Batch norm's per-channel f32 sums over 8 x 28 x 28 values a rank, against 16 x 28 x 28 in
    // one process: sqrt(n) f32 roundings apart, about 1e-5 of the statistics (1.2e-5 measured).
    torchrun_against_one_process("ddp-torchrun-syncbn", 1e-4, |images| {
        let mut flags = flags(images, "1");
        let model = flags.iter().position(|f| f == "lenet5").expect("the flags name the model");
        flags[model] = "small_cnn".into();
        flags.push("--sync-bn".into());
        flags
    });
}

/// `mpirun -np 2 ... --dist-backend nccl`: MPI launches, NCCL sums the gradients.
#[cfg(feature = "mpi")]
#[test]
fn mpirun_cuda_ranks_over_nccl_end_with_one_process_weights() {
    let root = scratch_dir("ddp-mpirun-nccl");
    let images = root.join("images");
    tiny_folder(&images);
    let flags = flags(&images, "1");
    succeeded(&one_process(&root.join("one"), &flags), "one process");
    let mut cmd = Command::new("mpirun");
    cmd.args(["--allow-run-as-root", "--oversubscribe", "-np", "2"]).arg(ferronet_bin());
    with_emulated_nccl(&mut cmd)
        .env("FERRONET_EMU_DEVICES", "2")
        .env("RAYON_NUM_THREADS", "1")
        .arg("train")
        .args(&flags)
        .args(["--dist-backend", "nccl", "--out", path_arg(&root.join("two"))])
        .stdin(Stdio::null());
    succeeded(&run(cmd), "two ranks");
    same_as_one_process(&root, 1e-5);
}

/// Waits for `child` at most `limit`: its output and how long it took.
fn ends_within(mut child: Child, limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    while child.try_wait().expect("the rank can be waited for").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("rank 0 still runs {limit:?} after rank 1 was killed or stopped");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (child.wait_with_output().expect("the rank's output"), start.elapsed())
}

/// Starts two torchrun ranks for many epochs, waits for the first checkpoint, sends `signal` to
/// rank 1 and returns rank 0's output and how long it took to end after the signal. `timeout`:
/// the seconds the emulated NCCL waits for a peer that does not answer.
fn disturbed_torchrun_job(name: &str, signal: &str, timeout: &str) -> (Output, Duration) {
    let root = scratch_dir(name);
    let images = root.join("images");
    tiny_folder(&images);
    let dir = root.join("run");
    let mut ranks = torchrun_ranks(&dir, &flags(&images, "50"), &[("FERRONET_EMU_NCCL_TIMEOUT_S", timeout)]).into_iter();
    let (rank0, mut rank1) = (ranks.next().unwrap(), ranks.next().unwrap());
    let start = Instant::now();
    while !dir.join("checkpoint.safetensors").exists() {
        assert!(start.elapsed() < Duration::from_secs(120), "the first epoch's checkpoint appears");
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = Command::new("kill").args([signal, &rank1.id().to_string()]).status().expect("kill runs");
    assert!(status.success(), "kill {signal} rank 1");
    let ended = ends_within(rank0, Duration::from_secs(60));
    let _ = rank1.kill();
    let _ = rank1.wait();
    ended
}

/// Rank 0's one line about the lost rank 1.
fn the_line_about_rank_1(out: &Output, cause: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "rank 0 fails: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let line = stderr.lines().find(|l| l.starts_with("error: rank 0 of 2")).unwrap_or_else(|| panic!("rank 0 says why:\n{stderr}"));
    assert!(line.contains("NCCL failed") && line.contains(cause) && line.contains("--resume"), "{line}");
}

/// A killed peer is seen at once (its sockets close).
#[test]
fn a_killed_torchrun_rank_ends_the_other_with_one_line() {
    let (out, took) = disturbed_torchrun_job("ddp-torchrun-killed", "-KILL", "60");
    the_line_about_rank_1(&out, "rank 1 closed its connection");
    assert!(took < Duration::from_secs(20), "rank 0 ended {took:?} after the kill");
}

/// A hung peer (stopped) ends the other at the emulated NCCL's timeout (5 s here: above the
/// ranks' skew on a loaded machine, so no healthy wait hits it).
#[test]
fn a_hung_torchrun_rank_ends_the_other_at_the_timeout() {
    let (out, took) = disturbed_torchrun_job("ddp-torchrun-hung", "-STOP", "5");
    the_line_about_rank_1(&out, "rank 1 did not answer within 5 s");
    assert!(took >= Duration::from_secs(5) && took < Duration::from_secs(40), "rank 0 ended {took:?} after the stop");
}

/// torchrun itself (where PyTorch is installed): its agent serves a TCPStore on MASTER_PORT
/// (TORCHELASTIC_USE_AGENT_STORE=True), through which rank 0 hands NCCL's id over.
#[test]
fn a_real_torchrun_launch_hands_the_id_over_its_agents_store() {
    if Command::new("torchrun").arg("--help").stdout(Stdio::null()).stderr(Stdio::null()).status().map_or(true, |s| !s.success()) {
        eprintln!("torchrun is not installed: the launch through its agent's store is not checked here");
        return;
    }
    let root = scratch_dir("ddp-real-torchrun");
    let images = root.join("images");
    tiny_folder(&images);
    let mut cmd = Command::new("torchrun");
    cmd.args(["--standalone", "--nproc-per-node", "2", "--no-python"]).arg(ferronet_bin());
    with_emulated_nccl(&mut cmd)
        .env("FERRONET_EMU_DEVICES", "2")
        .arg("train")
        .args(flags(&images, "1"))
        .args(["--out", path_arg(&root.join("run"))])
        .stdin(Stdio::null());
    succeeded(&run(cmd), "torchrun's two ranks");
    assert!(root.join("run").join("checkpoint.safetensors").exists(), "rank 0 wrote the run");
}

/// CPU ranks under torchrun's variables are refused in one line with the mpirun command.
#[test]
fn torchrun_cpu_ranks_are_refused_with_the_mpirun_command() {
    let dir = scratch_dir("ddp-torchrun-cpu").join("run");
    let mut cmd = Command::new(ferronet_bin());
    cmd.args(["train", "--device", "cpu", "--quiet", "--out", path_arg(&dir)])
        .envs([("RANK", "0"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "1")])
        .stdin(Stdio::null());
    let line = ferronet_test_support::cli_run::single_error_line(&run(cmd));
    assert!(line.contains("mpirun -np 2 ferronet train") && line.contains("--device cuda"), "{line}");
    assert!(!dir.exists(), "nothing is written");
}
