//! A NaN/inf loss stops the run with a message naming the epoch, the step and the checkpoint
//! state, or, with --skip-nonfinite, the step is skipped and counted. An absurd weight decay
//! makes every parameter infinite after the first update, so step 2 is the first NaN loss.

use ferronet_test_support::scratch_dir;
use ferronet_test_support::train::{cpu_config, shared_training};

use ferronet::train::trainer::train;
use ferronet::Error;

fn exploding(out: std::path::PathBuf) -> ferronet::train::config::TrainConfig {
    let mut c = cpu_config(out);
    c.data.limit = Some(128);
    c.batch_size = 32;
    c.epochs = 1;
    c.lr = 1.0;
    c.weight_decay = 1e38;
    c
}

#[test]
fn nan_loss_stops_or_is_skipped() {
    let _training = shared_training();
    let root = scratch_dir("nonfinite");
    let err = train(exploding(root.join("stop"))).expect_err("the loss becomes NaN");
    let msg = err.to_string();
    assert!(matches!(err, Error::Numerical(_)), "{msg}");
    assert!(msg.contains("epoch 1, step 2") && msg.contains("no checkpoint was written yet"), "{msg}");
    assert!(!msg.contains('\n'));

    let mut skipping = exploding(root.join("skip"));
    skipping.skip_nonfinite = true;
    let run = train(skipping).unwrap();
    // 128 images in batches of 32: step 1 trains, steps 2-4 are skipped.
    assert_eq!(run.history[0].skipped_steps, 3);
    assert!(run.history[0].train_loss.is_finite());
    std::fs::remove_dir_all(&root).unwrap();
}
