//! Resuming a run gives exactly the uninterrupted run on the CPU: the same weights bit for bit
//! and the same history, whether it stopped inside an epoch or between epochs; flags given with
//! --resume apply where they may change and are refused where they contradict the saved run.

use ferronet_test_support::cli_run::{ferronet_bin, run, single_error_line, train_command};
use ferronet_test_support::scratch_dir;
use ferronet_test_support::train::{cpu_config, deterministic, exclusive_training};

use ferronet::precision::Precision;
use ferronet::train::checkpoint::{self, CheckpointMeta};
use ferronet::train::config::TrainConfig;
use ferronet::train::interrupt;
use ferronet::train::trainer::{checkpoint_path, train};
use ferronet::Error;
use std::path::Path;
use std::process::Command;

/// Small but complete: dropout, augmentation, momentum and a schedule all carry state.
fn config(out: &Path) -> TrainConfig {
    let mut c = cpu_config(out.to_path_buf());
    c.data.limit = Some(192);
    c.batch_size = 32;
    c.epochs = 3;
    c.augment = true;
    c.optimizer = ferronet::train::config::OptimizerChoice::Adamw;
    c.lr = 0.003;
    c.scheduler = ferronet::train::config::SchedulerChoice::Cosine;
    c.warmup_epochs = 1;
    c
}


#[test]
fn resumed_run_equals_uninterrupted_run() {
    resumed_run_equals_uninterrupted_run_at(None);
}

/// fp16's loss scale lives on the device: an interrupted run saves it (read back) and a resumed
/// one uploads it, so the history's loss_scale and overflow_skips, the checkpoint's scaler
/// (good steps included) and the weights are the uninterrupted run's.
#[test]
fn a_resumed_fp16_run_continues_its_loss_scale() {
    let (whole, split) = resumed_run_equals_uninterrupted_run_at(Some(Precision::Fp16));
    let scaler = whole.loss_scaler.expect("an fp16 run checkpoints its loss scale");
    assert_eq!(split.loss_scaler, Some(scaler.clone()));
    assert_eq!(scaler.scale(), 65536.0 * 0.5f64.powi(scaler.overflow_skips() as i32), "{scaler:?}");
    assert!(scaler.state().good_steps + scaler.overflow_skips() <= 18, "18 steps, no growth: {scaler:?}");
    eprintln!("fp16, 18 steps: {scaler:?}");
}

/// The uninterrupted and the twice interrupted and resumed runs at `precision`: the same
/// history, weights and state; their last checkpoints' metadata.
fn resumed_run_equals_uninterrupted_run_at(precision: Option<Precision>) -> (CheckpointMeta, CheckpointMeta) {
    let config = |out: &Path| TrainConfig { precision, ..config(out) };
    let _training = exclusive_training();
    let root = scratch_dir(&format!("resume_{}", precision.map_or("default".to_string(), |p| p.to_string())));
    let whole_dir = root.join("whole");
    let whole = train(config(&whole_dir)).unwrap();

    let split_dir = root.join("split");
    // 192 images in batches of 32: 6 steps per epoch. Stop inside epoch 1 (after step 4), then
    // at the end of epoch 2's steps (step 6 of 6, before its validation), then finish.
    for stop_after in [4, 8] {
        interrupt::request_after(stop_after);
        let mut c = config(&split_dir);
        c.resume = checkpoint_path(&split_dir).exists();
        match train(c) {
            Err(Error::Interrupted) => {}
            other => panic!("expected an interruption, got {other:?}"),
        }
        let (_, meta) = checkpoint::load(&checkpoint_path(&split_dir)).unwrap();
        assert!(meta.partial_epoch.is_some(), "the interrupted epoch's progress is saved");
    }
    let mut c = config(&split_dir);
    c.resume = true;
    let split = train(c).unwrap();

    assert_eq!(deterministic(&split.history), deterministic(&whole.history));
    assert_eq!(split.final_metrics.confusion, whole.final_metrics.confusion);
    let (mut a, whole_meta) = checkpoint::load(&checkpoint_path(&whole_dir)).unwrap();
    let (mut b, split_meta) = checkpoint::load(&checkpoint_path(&split_dir)).unwrap();
    a.sort_by(|x, y| x.name.cmp(&y.name));
    b.sort_by(|x, y| x.name.cmp(&y.name));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.name, y.name);
        let same_bits = x.data.iter().zip(&y.data).all(|(p, q)| p.to_bits() == q.to_bits());
        assert!(same_bits && x.data.len() == y.data.len(), "{} differs after resuming", x.name);
    }
    assert!(a.iter().any(|t| t.name.ends_with("running_mean")), "BN running statistics are saved");
    assert!(a.iter().any(|t| t.name.starts_with("optimizer.") && t.name.ends_with("exp_avg_sq")), "Adam state is saved");
    std::fs::remove_dir_all(&root).unwrap();
    (whole_meta, split_meta)
}

/// `ferronet train --resume` with other flags: those about how the run goes (more epochs,
/// workers, the JSON log) apply and are announced in one line; a flag that would change what
/// the run computes is refused in one line naming it with its saved value.
#[test]
fn resume_applies_run_flags_and_refuses_the_others() {
    let root = scratch_dir("resume-flags");
    let out = root.join("run");
    let first = run(train_command(&out, &["--limit", "64", "--batch-size", "32", "--epochs", "1"]));
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));

    let line = single_error_line(&run(train_command(&out, &["--resume", "--lr", "0.3", "--epochs", "2", "--scheduler", "cosine"])));
    assert!(line.contains("--lr 0.3 (saved: 0.05)") && line.contains("--scheduler cosine (saved: none)"), "{line}");
    assert!(!line.contains("--epochs 2 ("), "--epochs may change: {line}");

    let log = root.join("epochs.jsonl");
    let mut resume = Command::new(ferronet_bin());
    resume.args(["train", "--resume", "--epochs", "2", "--workers", "2", "--device", "cpu", "--out"]).arg(&out).arg("--log-json").arg(&log);
    let resumed = run(resume);
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{stderr}");
    let announced: Vec<&str> = stderr.lines().filter(|l| l.starts_with("resuming")).collect();
    assert_eq!(announced.len(), 1, "{stderr}");
    let want = format!("after epoch 1 of 2 with --epochs 2 (saved: 1), --workers 2 (saved: 1), --log-json {} (saved: unset)", log.display());
    assert!(announced[0].ends_with(&want), "{stderr}");
    let (_, meta) = checkpoint::load(&checkpoint_path(&out)).unwrap();
    assert_eq!((meta.epochs_done, meta.config.epochs, meta.config.workers), (2, 2, 2));
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 1, "the log holds the resumed epoch");
    std::fs::remove_dir_all(&root).unwrap();
}
