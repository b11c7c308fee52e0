//! Model throughput: training steps (forward, loss, backward, SGD update) and inference on one
//! device through the executor, timed as the median of several steps after warm-up.

use super::predict::StepPredictions;
use super::timing::{time_host, Timing};
use crate::device::{CudaGraphMode, DeviceCounters};
use crate::error::{Error, Result};
use crate::exec::{
    graph_obstacle, resolve_graph_mode, Batch, Executor, FoldCounts, FuseCounts, Mode, Optimizer, OptimizerConfig, OptimizerKind, ResidentBatch, StepOptions, StepReplay,
};
use crate::graph::Graph;
use crate::ops::Backend;
use crate::precision::Precision;
use crate::shape::Layout;
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
    pub cuda_graph: CudaGraphMode,
    /// Training with each batch norm -> (add) -> activation chain fused, as `train` runs, and
    /// inference with each batch norm that reads a convolution folded into it, as `eval` and
    /// `predict` run (`--no-fusion` turns both off).
    pub fusion: bool,
    /// `--layout`: the image tensors' memory order (the device's default when absent).
    pub layout: Option<Layout>,
    /// `--precision` (the device's default when absent); fp16 without loss scaling.
    pub precision: Option<Precision>,
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
    /// The numeric format the steps ran in (`--precision`, or the device's default): 16-bit
    /// activations on GPUs at bf16/fp16, emulated on the CPU.
    pub precision: Precision,
    /// The image tensors' memory order the steps ran in (`--layout`, or the device's default).
    pub layout: Layout,
    /// Per-sample input [C, H, W].
    pub input: Vec<usize>,
    pub classes: usize,
    /// Trainable parameters (as PyTorch counts those with requires_grad).
    pub parameters: usize,
    pub warmup: usize,
    /// Forward, loss, backward and the SGD update, synchronised.
    pub train_step: Timing,
    pub train_images_per_s: f64,
    /// What the last timed training step's own work (forward, loss, backward, update) sent to
    /// the driver; all zero on the CPU.
    pub per_step: DeviceCounters,
    /// Whether every timed step sent the same (steady state).
    pub per_step_uniform: bool,
    /// Whether the timed steps replayed a captured CUDA graph (one graph launch per step).
    pub cuda_graph: bool,
    /// The batch norm -> (add) -> activation chains fused for the training step.
    pub fused: FuseCounts,
    /// Batch norms folded into their convolutions, and activations fused into their bias pass,
    /// for the inference timing.
    pub folded: FoldCounts,
    /// What the bench itself sent per step, outside `per_step`: the device-side copy of the
    /// batch (a D2D copy into a new buffer; with a CUDA graph it is one of the graph's nodes)
    /// and the synchronisation that ends the timed step.
    pub bench_per_step: DeviceCounters,
    /// Eval-mode forward of one batch, logits back on the host.
    pub inference: Timing,
    pub inference_images_per_s: f64,
    /// Most device bytes held at once during a training step (parameters, gradients, activations,
    /// workspace and momentum buffers), and during inference.
    pub peak_train_bytes: usize,
    pub peak_inference_bytes: usize,
    /// Bytes in the caching allocator's free blocks after the run, and the most bytes held from
    /// the driver at once (GPU devices; 0 on the CPU).
    pub cached_bytes: usize,
    pub peak_reserved_bytes: usize,
    /// The device runs kernels on the PTX simulator (`sim`, or the emulated CUDA driver): the
    /// timings above are the host's time of simulating them, neither a GPU's time nor a
    /// prediction of one (`--predict-batch` predicts).
    pub simulator_host_time: bool,
    /// PREDICTED training-step times on modelled GPUs (`--predict-batch` on the simulator).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicted: Option<StepPredictions>,
}

/// A training loop on random data: the batch stays in the resident buffers a step reads, as
/// `train`'s copy stream leaves each batch there during the step before; only each step's
/// dropout seed is queued from the host before the step (with a CUDA graph, before its launch).
pub struct TrainLoop<B: Backend<f32>> {
    executor: Executor<f32, B>,
    optimizer: Optimizer<f32, B>,
    resident: ResidentBatch<f32, B>,
    replay: StepReplay,
    /// The batch norm -> (add) -> activation chains the training graph fused.
    fused: FuseCounts,
}

/// What one step of a [`TrainLoop`] sent to the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepCounters {
    /// The step's own work: forward, loss, backward and the optimiser update.
    pub work: DeviceCounters,
    /// The bench's part: the upload of the step's dropout seed before the work, and the
    /// synchronisation after it that lets the host clock time the step.
    pub bench: DeviceCounters,
}

impl<B: Backend<f32>> TrainLoop<B> {
    /// Weights from `opts.seed`, inputs and labels drawn from it, SGD with momentum; fails before
    /// the first step when a step of `batch` samples cannot fit the device, or when
    /// `--cuda-graph on` cannot be honoured.
    pub fn new(backend: B, graph: Graph, batch: usize, opts: &ModelBenchOptions) -> Result<Self> {
        let optimizer_kind = OptimizerKind::Sgd { momentum: opts.momentum, dampening: 0.0, nesterov: false };
        let graph_mode = resolve_graph_mode(opts.cuda_graph, graph_obstacle(backend.can_capture()))?;
        let classes = graph.num_classes();
        let per_sample: usize = graph.input_shape().iter().product();
        let mut rng = Rng::new(opts.seed);
        let images: Vec<f32> = (0..batch * per_sample).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect();
        let labels: Vec<u32> = (0..batch).map(|_| rng.below(classes as u64) as u32).collect();
        let executor = Executor::<f32, B>::new(backend, graph, opts.seed)?;
        let (executor, fused) = match opts.fusion {
            true => executor.fuse_batch_norm_activations(),
            false => (executor, FuseCounts::default()),
        };
        let mut executor = executor.in_chosen_layout(opts.layout);
        executor.set_chosen_precision(opts.precision)?;
        let mut resident = executor.resident_batch(batch)?;
        executor.fill_resident_batch(&mut resident, &images, &labels)?;
        let optimizer = Optimizer::new(OptimizerConfig {
            kind: optimizer_kind,
            lr: opts.lr,
            weight_decay: 0.0,
            decay_weights_only: true,
            clip_grad_norm: None,
        })?;
        // The resident batch and the landing buffer it was uploaded through come on top of the
        // plan.
        let batch_bytes = 2 * batch * per_sample * std::mem::size_of::<f32>();
        executor.check_batch_fits_device(
            batch,
            Mode::Train,
            executor.backend().conv_workspace(),
            optimizer.state_bytes(executor.params()) + batch_bytes,
        )?;
        Ok(TrainLoop { executor, optimizer, resident, replay: StepReplay::new(graph_mode), fused })
    }

    pub fn backend(&self) -> &B {
        self.executor.backend()
    }

    pub fn executor(&self) -> &Executor<f32, B> {
        &self.executor
    }

    /// Whether steps now replay a captured graph.
    pub fn replays_graph(&self) -> bool {
        self.replay.replays()
    }

    /// One training step, synchronised; `around_work(true)` and `around_work(false)` run just
    /// before and just after the step's own work (with a graph, around its launch; the step
    /// that captures it records before `around_work(true)`).
    pub fn step_with(&mut self, mut around_work: impl FnMut(&B, bool)) -> Result<StepCounters> {
        let start = self.backend().counters();
        self.executor.queue_step_seed(&mut self.resident, None)?;
        let mut work_start = self.backend().counters();
        let resident = &self.resident;
        let mut before = Some(&mut around_work);
        if self.replay.next_is_launch(&self.optimizer) {
            // The step's work is the launch.
            if let Some(hook) = before.take() {
                hook(self.executor.backend(), true);
            }
        }
        self.replay.step(&mut self.executor, &mut self.optimizer, |ex, optimizer| {
            if let Some(hook) = before.take() {
                work_start = ex.backend().counters();
                hook(ex.backend(), true);
            }
            ex.train_step_resident(resident, &StepOptions::default())?;
            ex.optimizer_step(optimizer)
        })?;
        around_work(self.executor.backend(), false);
        let work_end = self.backend().counters();
        self.backend().synchronize()?;
        let end = self.backend().counters();
        let work = work_end.since(&work_start);
        Ok(StepCounters { work, bench: end.since(&start).since(&work) })
    }

    pub fn step(&mut self) -> Result<StepCounters> {
        self.step_with(|_, _| {})
    }
}

/// Benchmarks `graph` on `backend` with random inputs and labels drawn from `opts.seed`.
pub fn bench_model<B: Backend<f32>>(backend: B, graph: Graph, opts: &ModelBenchOptions) -> Result<ModelBenchReport> {
    opts.validate()?;
    let input: Vec<usize> = graph.input_shape().to_vec();
    let classes = graph.num_classes();
    let parameters = graph.trainable_params();
    let model = graph.name.clone();
    let device = backend.name();
    let simulator_host_time = backend.simulated();
    let mut train = TrainLoop::new(backend, graph, opts.batch, opts)?;
    let mut timed: Vec<StepCounters> = Vec::with_capacity(opts.steps);
    let mut warmups_left = opts.warmup;
    let train_step = time_host(opts.warmup, opts.steps, || {
        let counts = train.step()?;
        if warmups_left > 0 {
            warmups_left -= 1;
        } else {
            timed.push(counts);
        }
        Ok(())
    })?;
    let last = *timed.last().ok_or_else(|| Error::config("--steps must be at least 1"))?;
    // train_step resets the peak when it starts, so this covers the last step and its update.
    let peak_train_bytes = train.backend().memory().peak_bytes;
    let replayed_graph = train.replays_graph();
    let TrainLoop { executor, resident, fused, .. } = train;
    let layout = executor.graph().layout;
    let precision = executor.precision();
    let (mut executor, folded) = match opts.fusion {
        true => executor.fold_batch_norms()?,
        false => (executor, FoldCounts::default()),
    };
    let inference = time_host(opts.warmup, opts.steps, || {
        let batch = Batch::Device(executor.backend().copy_buf(resident.input())?);
        executor.infer(batch).map(drop)
    })?;
    let peak_inference_bytes = executor.last_peak_bytes();
    let memory = executor.backend().memory();
    Ok(ModelBenchReport {
        model,
        device,
        batch: opts.batch,
        precision,
        layout,
        input,
        classes,
        parameters,
        warmup: opts.warmup,
        train_images_per_s: opts.batch as f64 / train_step.median_s,
        train_step,
        per_step: last.work,
        per_step_uniform: timed.iter().all(|c| *c == last),
        cuda_graph: replayed_graph,
        fused,
        folded,
        bench_per_step: last.bench,
        inference_images_per_s: opts.batch as f64 / inference.median_s,
        inference,
        peak_train_bytes,
        peak_inference_bytes,
        cached_bytes: memory.cached_bytes,
        peak_reserved_bytes: memory.peak_reserved_bytes,
        simulator_host_time,
        predicted: None,
    })
}

/// What reached the driver, as one line of counts.
fn counters_text(c: &DeviceCounters) -> String {
    format!(
        "{} kernel launches, {} graph launches, {} memsets, {} device copies, {} allocations, {} frees, \
         {} host syncs ({} synchronize, {} D2H copies), {} H2D copies (queued), {} B H2D, {} B D2H",
        c.kernel_launches,
        c.graph_launches,
        c.memsets,
        c.d2d_copies,
        c.allocations,
        c.frees,
        c.host_syncs,
        c.synchronizes,
        c.d2h_copies,
        c.h2d_copies,
        c.h2d_bytes,
        c.d2h_bytes
    )
}

/// The report as a few aligned lines.
pub fn summary_text(r: &ModelBenchReport) -> String {
    let mib = |b: usize| b as f64 / (1u64 << 20) as f64;
    let mut out = format!(
        "{} on {}, {}{}: batch {} of {:?}, {} classes, {} parameters; median of {} steps after {} warm-up\n\
         training step  {:>10.2} ms  {:>10.1} images/s  (min {:.2} ms, max {:.2} ms; {} batch norm -> activation and {} batch norm -> add -> activation chains fused)\n\
         inference      {:>10.2} ms  {:>10.1} images/s  (min {:.2} ms, max {:.2} ms; {} batch norms folded, {} activations fused)\n\
         peak memory    training {:.1} MiB, inference {:.1} MiB; {:.1} MiB cached, {:.1} MiB held at most\n\
         per step       {}{}\n\
         bench per step {} (its dropout seed and timing synchronisation)\n",
        r.model,
        r.device,
        r.layout.name(),
        match r.precision {
            Precision::Fp32 => String::new(),
            p => format!(" at {p}"),
        },
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
        r.fused.batch_norm_activations,
        r.fused.batch_norm_add_activations,
        r.inference.median_s * 1e3,
        r.inference_images_per_s,
        r.inference.min_s * 1e3,
        r.inference.max_s * 1e3,
        r.folded.batch_norms,
        r.folded.activations,
        mib(r.peak_train_bytes),
        mib(r.peak_inference_bytes),
        mib(r.cached_bytes),
        mib(r.peak_reserved_bytes),
        counters_text(&r.per_step),
        match (r.cuda_graph, r.per_step_uniform) {
            (true, true) => " (each step replays a captured CUDA graph)",
            (false, true) => "",
            (_, false) => " (last timed step; the timed steps differed)",
        },
        counters_text(&r.bench_per_step),
    );
    if r.simulator_host_time {
        out += "(times above: the host simulating the kernels on the PTX simulator, not a GPU's time; \
                --predict-batch N gives PREDICTED GPU step times)\n";
    }
    if let Some(p) = &r.predicted {
        out += &format!(
            "PREDICTED step at batch {} (simulated at that batch, at most {} blocks of each launch run and its counters \
             scaled to the grid; not measured):\n  per step {}\n  per step {:.3} GB of DRAM traffic (PREDICTED, no cache); \
             allocator peak {:.1} MiB live, {:.1} MiB held (simulated at that batch)\n",
            p.batch,
            p.sampled_blocks,
            counters_text(&p.per_step),
            p.dram_bytes as f64 / 1e9,
            p.peak_bytes as f64 / (1u64 << 20) as f64,
            p.peak_reserved_bytes as f64 / (1u64 << 20) as f64
        );
        for g in &p.gpus {
            out += &format!(
                "  {:<9} PREDICTED {:>9.3} ms = kernels {:.3} + transfers {:.3} + launch gaps {:.3} + syncs {:.3} + allocs {:.3}\n",
                g.gpu,
                g.predicted_step_ms,
                g.predicted_kernels_ms,
                g.predicted_transfers_ms,
                g.predicted_launch_gaps_ms,
                g.predicted_syncs_ms,
                g.predicted_allocs_ms
            );
            for k in g.top_kernels.iter().take(3) {
                out += &format!("            {:>9.3} ms in {} ({} launches, {:?}-bound)\n", k.predicted_ms, k.kernel, k.launches, k.limit);
            }
        }
    }
    out
}
