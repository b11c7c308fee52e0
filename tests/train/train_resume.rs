//! Resuming a run gives exactly the uninterrupted run on the CPU: the same weights bit for bit
//! and the same history, whether it stopped inside an epoch or between epochs.

use ferronet_test_support::scratch_dir;
use ferronet_test_support::train::{cpu_config, deterministic, exclusive_training};

use ferronet::train::checkpoint;
use ferronet::train::config::TrainConfig;
use ferronet::train::interrupt;
use ferronet::train::trainer::{checkpoint_path, train};
use ferronet::Error;
use std::path::Path;

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
    let _training = exclusive_training();
    let root = scratch_dir("resume");
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
    let (mut a, _) = checkpoint::load(&checkpoint_path(&whole_dir)).unwrap();
    let (mut b, _) = checkpoint::load(&checkpoint_path(&split_dir)).unwrap();
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
}
