//! small_cnn learns the built-in synthetic dataset: above 95% test accuracy after one epoch over
//! 3,000 of its training images on the CPU, fed by the prefetching loader.

use ferronet::cpu::CpuBackend;
use ferronet::data::{load, DatasetKind, DatasetOptions, Loader};
use ferronet::exec::{Batch, Executor, Optimizer, OptimizerConfig, OptimizerKind, StepOptions};
use ferronet::models::{build, ModelOptions};
use std::sync::Arc;

#[test]
fn small_cnn_learns_the_synthetic_dataset() {
    let started = std::time::Instant::now();
    let data = load(&DatasetOptions { val_fraction: 0.0, limit: Some(3000), ..DatasetOptions::new(DatasetKind::Synthetic) }).unwrap();
    let graph = build("small_cnn", &ModelOptions::new(10, [1, 28, 28])).unwrap();
    let mut ex = Executor::<f32, _>::new(CpuBackend::new(), graph, 7).unwrap();
    let config = OptimizerConfig {
        kind: OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, decoupled: false },
        lr: 2e-3,
        weight_decay: 0.0,
        decay_weights_only: true,
        clip_grad_norm: None,
    };
    let mut optimizer = Optimizer::new(config).unwrap();
    let train = Arc::new(data.train.clone());
    for batch in Loader::new(Arc::clone(&train), &data.mean, &data.std, 64, true, None, 1, 2).unwrap() {
        ex.train_step(Batch::HostF32(&batch.x), &batch.labels, &StepOptions::default()).unwrap();
        ex.optimizer_step(&mut optimizer).unwrap();
    }
    let test = Arc::new(data.test.clone().unwrap());
    let mut correct = 0;
    for batch in Loader::new(Arc::clone(&test), &data.mean, &data.std, 250, false, None, 0, 2).unwrap() {
        let logits = ex.infer(Batch::HostF32(&batch.x)).unwrap();
        for (row, &label) in logits.chunks_exact(10).zip(&batch.labels) {
            let best = row.iter().enumerate().fold(0, |b, (i, &v)| if v > row[b] { i } else { b });
            correct += (best as u32 == label) as usize;
        }
    }
    let accuracy = correct as f64 / test.len() as f64;
    eprintln!("synthetic test accuracy {accuracy:.4} after one epoch of 3000 images in {:.1} s", started.elapsed().as_secs_f64());
    assert!(accuracy > 0.95, "test accuracy {accuracy}");
}
