//! Numerical faults as a user sees them from the `ferronet` binary: a NaN loss stops the run with
//! one line naming the epoch, the step and the last good checkpoint (or that there is none yet),
//! --skip-nonfinite skips such steps instead, and an absurd learning rate is refused up front.

use ferronet_test_support::scratch_dir;
use ferronet_test_support::cli_run::{run, single_error_line, train_command};

use ferronet::train::checkpoint;
use ferronet::train::config::TrainConfig;
use ferronet::train::interrupt;
use ferronet::train::trainer::{checkpoint_path, train};
use ferronet::Error;
use ferronet_test_support::train::exclusive_training;
use std::process::Command;

/// 128 images in batches of 32: 4 steps an epoch. An absurd weight decay makes every parameter
/// infinite after the first update, so step 2 has the first NaN loss.
const EXPLODING: [&str; 10] = ["--limit", "128", "--batch-size", "32", "--epochs", "1", "--lr", "1", "--weight-decay", "1e38"];

#[test]
fn a_nan_loss_before_any_checkpoint_stops_the_run() {
    let root = scratch_dir("nan-first");
    let out = root.join("run");
    let line = single_error_line(&run(train_command(&out, &EXPLODING)));
    assert_eq!(
        line,
        "error: numerical fault: epoch 1, step 2: the loss is NaN; lower the learning rate or check the input data \
         (no checkpoint was written yet; --skip-nonfinite skips such steps)"
    );
    assert!(!checkpoint_path(&out).exists());

    let skip = root.join("skip");
    let mut cmd = train_command(&skip, &EXPLODING);
    cmd.arg("--skip-nonfinite");
    let done = run(cmd);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let history = std::fs::read_to_string(skip.join("history.csv")).unwrap();
    let (header, row) = (history.lines().next().unwrap(), history.lines().nth(1).unwrap());
    let column = header.split(',').position(|c| c == "skipped_steps").unwrap();
    assert_eq!(row.split(',').nth(column), Some("3"), "steps 2-4 were skipped: {history}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_nan_loss_after_a_checkpoint_names_it() {
    let _training = exclusive_training();
    let root = scratch_dir("nan-later");
    let out = root.join("run");
    let config = TrainConfig {
        out: Some(out.clone()),
        quiet: true,
        device: "cpu".parse().unwrap(),
        epochs: 2,
        batch_size: 32,
        data: ferronet::train::config::DataConfig { limit: Some(128), ..TrainConfig::default().data },
        ..TrainConfig::default()
    };
    // Stop inside epoch 2, after its first step; the checkpoint records that position.
    interrupt::request_after(5);
    assert!(matches!(train(config), Err(Error::Interrupted)));
    // Poison the classifier so the resumed run's next step has a NaN loss.
    let ckpt = checkpoint_path(&out);
    let (mut tensors, meta) = checkpoint::load(&ckpt).unwrap();
    tensors.iter_mut().filter(|t| t.name == "fc2.weight").for_each(|t| t.data.fill(f32::NAN));
    checkpoint::save(&ckpt, &tensors, &meta).unwrap();

    let mut resume = Command::new(env!("CARGO_BIN_EXE_ferronet"));
    resume.args(["train", "--resume", "--device", "cpu", "--quiet", "--out"]).arg(&out);
    assert_eq!(
        single_error_line(&run(resume)),
        format!(
            "error: numerical fault: epoch 2, step 2: the loss is NaN; lower the learning rate or check the input data \
             (the last good checkpoint is {}, in epoch 2 after step 1; --skip-nonfinite skips such steps)",
            ckpt.display()
        )
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn an_absurd_learning_rate_is_refused_before_any_work() {
    let root = scratch_dir("lr");
    let out = root.join("run");
    let line = single_error_line(&run(train_command(&out, &["--lr", "11"])));
    assert_eq!(line, "error: invalid configuration: --lr 11 must be in (0, 10]");
    assert!(!out.exists(), "no run directory for a refused run");
    std::fs::remove_dir_all(&root).unwrap();
}
