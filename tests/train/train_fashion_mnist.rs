//! The judged run: small_cnn trained on the CPU on the real Fashion-MNIST files for 2 epochs
//! (Adam, batch 64, dropout 0.1, the learning rate cut tenfold for the second) reaches at least
//! 89% test accuracy.
//! CI installs the files with `apt-get install -y dataset-fashion-mnist`.

use ferronet_test_support::scratch_dir;
use ferronet_test_support::fashion_mnist_dir;
use ferronet_test_support::train::{cpu_config, shared_training};

use ferronet::train::config::{DatasetChoice, OptimizerChoice, SchedulerChoice};
use ferronet::train::trainer::train;
use std::time::Instant;

#[test]
fn small_cnn_reaches_89_percent_on_fashion_mnist() {
    fashion_mnist_dir();
    let _training = shared_training();
    let root = scratch_dir("fashion-mnist");
    let mut c = cpu_config(root.join("run"));
    c.data.dataset = DatasetChoice::FashionMnist;
    c.epochs = 2;
    c.batch_size = 64;
    c.dropout = Some(0.1);
    c.optimizer = OptimizerChoice::Adam;
    c.lr = 0.002;
    c.weight_decay = 0.0;
    c.scheduler = SchedulerChoice::Step;
    c.step_size = 1;
    c.gamma = 0.1;
    let start = Instant::now();
    let run = train(c).unwrap();
    let seconds = start.elapsed().as_secs_f64();
    let m = &run.final_metrics;
    eprintln!(
        "fashion-mnist: test top-1 {:.4} after {} epochs in {seconds:.1} s ({:.1} s training)",
        m.top1,
        run.history.len(),
        run.train_seconds
    );
    assert_eq!((run.evaluated_on, m.samples), ("test", 10_000));
    assert!(m.top1 >= 0.89, "test top-1 {:.4} is below 0.89", m.top1);
    std::fs::remove_dir_all(&root).unwrap();
}
