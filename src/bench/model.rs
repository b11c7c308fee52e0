//! Model throughput: training steps (forward, loss, backward, SGD update) and inference on one
//! device through the executor, timed as the median of several steps after warm-up.

use super::timing::{time_host, Timing};
use crate::error::{Error, Result};
use crate::exec::{Batch, Executor, Mode, Optimizer, OptimizerConfig, OptimizerKind, StepOptions};
use crate::graph::Graph;
use crate::ops::Backend;
use crate::rng::Rng;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq)]
pub struct ModelBenchOptions {
    pub batch: usize,
    pub steps: usize,
    pub warmup: usize,
    pub lr: f64,
    pub momentum: f64,
    pub seed: u64,
}

impl ModelBenchOptions {
    pub fn validate(&self) -> Result<()> {
        if self.batch == 0 {
            return Err(Error::config("--batch must be at least 1"));
        }
        if self.steps == 0 {
            return Err(Error::config("--steps must be at least 1 (the timed steps after warm-up)"));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ModelBenchReport {
    pub model: String,
    pub device: String,
    pub batch: usize,
    /// Per-sample input [C, H, W].
    pub input: Vec<usize>,
    pub classes: usize,
    /// Trainable parameters (as PyTorch counts those with requires_grad).
    pub parameters: usize,
    pub warmup: usize,
    /// Forward, loss, backward and the SGD update, synchronised.
    pub train_step: Timing,
    pub train_images_per_s: f64,
    /// Eval-mode forward of one batch, logits back on the host.
    pub inference: Timing,
    pub inference_images_per_s: f64,
    /// Most device bytes held at once during a training step (parameters, gradients, activations,
    /// workspace and momentum buffers), and during inference.
    pub peak_train_bytes: usize,
    pub peak_inference_bytes: usize,
}

/// Benchmarks `graph` on `backend` with random inputs and labels drawn from `opts.seed`.
pub fn bench_model<B: Backend<f32>>(backend: B, graph: Graph, opts: &ModelBenchOptions) -> Result<ModelBenchReport> {
    opts.validate()?;
    let input: Vec<usize> = graph.input_shape().to_vec();
    let classes = graph.num_classes();
    let parameters = graph.trainable_params();
    let mut rng = Rng::new(opts.seed);
    let per_sample: usize = input.iter().product();
    let images: Vec<f32> = (0..opts.batch * per_sample).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect();
    let labels: Vec<u32> = (0..opts.batch).map(|_| rng.below(classes as u64) as u32).collect();
    let device = backend.name();
    let mut executor = Executor::<f32, B>::new(backend, graph, opts.seed)?;
    // The batch stays on the device, as a data loader with prefetching would leave it; each step
    // consumes a device-side copy.
    let images = executor.backend().upload(&images)?;
    let mut optimizer = Optimizer::new(OptimizerConfig {
        kind: OptimizerKind::Sgd { momentum: opts.momentum, dampening: 0.0, nesterov: false },
        lr: opts.lr,
        weight_decay: 0.0,
        decay_weights_only: true,
        clip_grad_norm: None,
    })?;
    // The resident batch (already on the device) and each step's copy of it come on top of the
    // plan.
    let batch_bytes = 2 * opts.batch * per_sample * std::mem::size_of::<f32>();
    executor.check_batch_fits_device(
        opts.batch,
        Mode::Train,
        executor.backend().workspace_bytes(),
        optimizer.state_bytes(executor.params()) + batch_bytes,
    )?;
    let step_options = StepOptions::default();
    let train_step = time_host(opts.warmup, opts.steps, || {
        let batch = Batch::Device(executor.backend().copy_buf(&images)?);
        executor.train_step(batch, &labels, &step_options)?;
        executor.optimizer_step(&mut optimizer)?;
        executor.backend().synchronize()
    })?;
    // train_step resets the peak when it starts, so this covers the last step and its update.
    let peak_train_bytes = executor.backend().memory().peak_bytes;
    let inference = time_host(opts.warmup, opts.steps, || {
        let batch = Batch::Device(executor.backend().copy_buf(&images)?);
        executor.infer(batch).map(drop)
    })?;
    let peak_inference_bytes = executor.last_peak_bytes();
    Ok(ModelBenchReport {
        model: executor.graph().name.clone(),
        device,
        batch: opts.batch,
        input,
        classes,
        parameters,
        warmup: opts.warmup,
        train_images_per_s: opts.batch as f64 / train_step.median_s,
        train_step,
        inference_images_per_s: opts.batch as f64 / inference.median_s,
        inference,
        peak_train_bytes,
        peak_inference_bytes,
    })
}

/// The report as a few aligned lines.
pub fn summary_text(r: &ModelBenchReport) -> String {
    let mib = |b: usize| b as f64 / (1u64 << 20) as f64;
    format!(
        "{} on {}: batch {} of {:?}, {} classes, {} parameters; median of {} steps after {} warm-up\n\
         training step  {:>10.2} ms  {:>10.1} images/s  (min {:.2} ms, max {:.2} ms)\n\
         inference      {:>10.2} ms  {:>10.1} images/s  (min {:.2} ms, max {:.2} ms)\n\
         peak memory    training {:.1} MiB, inference {:.1} MiB\n",
        r.model,
        r.device,
        r.batch,
        r.input,
        r.classes,
        r.parameters,
        r.train_step.reps,
        r.warmup,
        r.train_step.median_s * 1e3,
        r.train_images_per_s,
        r.train_step.min_s * 1e3,
        r.train_step.max_s * 1e3,
        r.inference.median_s * 1e3,
        r.inference_images_per_s,
        r.inference.min_s * 1e3,
        r.inference.max_s * 1e3,
        mib(r.peak_train_bytes),
        mib(r.peak_inference_bytes),
    )
}
