//! The executor: runs a graph on a backend for training steps, loss evaluations and inference.
//!
//! ```text
//! let mut ex = Executor::new(CpuBackend::new(), graph, seed)?;
//! ex.train_step(Batch::Host(&images), &labels, &StepOptions::default())?; // queues forward, loss, backward
//! ex.optimizer_step(&mut optimizer)?;                                      // update
//! let totals = ex.read_train_metrics()?;                                   // loss sum, hits (one small read)
//! let logits = ex.infer(Batch::Host(&images))?;                            // eval
//! ```
//! A training step reads nothing back: its loss, top-1 hits, label check and non-finite check
//! accumulate on the device (`exec::metrics`) until `read_train_metrics`, so on a GPU the host
//! queues steps ahead of the device. `train_step_readback` also returns the step's loss and
//! logits (tests, comparisons). Evaluation accumulates likewise (`infer_accumulate`).
//! fp16's dynamic loss scale lives on the device too (`start_dynamic_loss_scale`): backward's
//! seed and the gradients' unscaling read it there and `optimizer_step` updates it there.
//! The seed draws the initial weights first and then one dropout seed per training step, so a
//! seed fixes a whole run. Gradient checks call `train_step` with `input_grad` and a fixed
//! `dropout_seed`, read `grad`/`input_grad`, and evaluate perturbed losses with `loss`, which
//! leaves BN running statistics alone when `update_running_stats` is false.

use super::backward::{Backward, FinalGradients};
use super::buffer_cache::BufferCache;
use super::forward::{Forward, ForwardResult};
use super::grad_average::GradientAveraging;
use super::memory::plan_memory;
use super::metrics::{EvalCounts, TrainTotals};
use super::optim::Optimizer;
use super::params::{GradStore, ParamStore};
use super::plan::{Mode, Plan};
use super::precision::StorageRounding;
use super::tape::Value;
use super::{Buf, Words};
use crate::device::{ConvWorkspace, Device};
use crate::dist::nccl::NcclComm;
use crate::dist::{BucketCounts, ProcessGroup};
use crate::element::Element;
use crate::error::{Error, Result};
use crate::graph::fuse::FuseCounts;
use crate::graph::{Graph, NodeId, Op, ParamId};
use crate::ops::node::numel;
use crate::ops::{Input, NodeOp};
use crate::ops::dropout::step_seed_words;
use crate::ops::loss::{check_labels, eval_words, train_words};
use crate::ops::precision::{check_loss_scale_growth_interval, LossScaleFactor, LOSS_SCALE_STATE_LEN};
use crate::ops::Backend;
use crate::precision::Precision;
use crate::rng::Rng;
use crate::shape::Layout;
use serde::Serialize;
use std::sync::Arc;

/// Gradients of the loss with respect to each loss output's logits.
type OutputGrads<E, B> = Vec<(NodeId, Buf<E, B>)>;

/// A batch's images and labels held on the device at fixed addresses and refilled for each
/// step (`fill_resident_batch`, `train_step_resident`): what a captured CUDA graph reads. The
/// next batch's upload lands beside them on the device's copy stream while the step before runs.
pub struct ResidentBatch<E: Element, B: Backend<E>> {
    input: Value<E, B>,
    labels: Words<E, B>,
    /// The step's dropout seed (`queue_step_seed`).
    step_seed: Words<E, B>,
    landing_input: Option<Buf<E, B>>,
    landing_labels: Option<Words<E, B>>,
    n: usize,
}

impl<E: Element, B: Backend<E>> ResidentBatch<E, B> {
    /// The images on the device.
    pub fn input(&self) -> &Buf<E, B> {
        &self.input
    }
    /// Samples per batch.
    pub fn len(&self) -> usize {
        self.n
    }
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
}

/// Evaluation figures accumulating on the device over the batches of one pass.
pub struct EvalAccumulator<E: Element, B: Device<E>> {
    words: Words<E, B>,
    classes: usize,
}

/// An input batch of N samples in NCHW order.
pub enum Batch<'a, E: Element, B: Device<E>> {
    Host(&'a [E]),
    /// Host f32 data (what the data loader produces) for a model of any element type.
    HostF32(&'a [f32]),
    /// Already on the device.
    Device(Buf<E, B>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct StepOptions {
    /// Cross-entropy label smoothing (0 = none).
    pub label_smoothing: f64,
    /// Whether BN running statistics move towards this batch's (false for gradient checks).
    pub update_running_stats: bool,
    /// Also compute the gradient with respect to the input batch.
    pub input_grad: bool,
    /// Dropout seed of this step; None draws one from the executor's generator.
    pub dropout_seed: Option<u64>,
}

impl Default for StepOptions {
    fn default() -> Self {
        StepOptions { label_smoothing: 0.0, update_running_stats: true, input_grad: false, dropout_seed: None }
    }
}

/// A training step's figures read back by `train_step_readback`.
#[derive(Clone, Debug, PartialEq)]
pub struct StepOutput<E> {
    /// sum over loss outputs of loss_weight * mean cross-entropy.
    pub loss: f64,
    /// The main output's logits [N, classes].
    pub logits: Vec<E>,
}

/// Dynamic loss scaling's state as the device holds it (`train::loss_scale::LossScaler` is its
/// host form, read back from here when a run needs it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossScaleState {
    /// The factor the next step's loss is multiplied by.
    pub scale: f64,
    /// Finite steps since the scale last changed.
    pub good_steps: usize,
    /// Steps skipped for an overflow so far.
    pub overflow_skips: usize,
}

impl LossScaleState {
    fn to_words<E: Element>(self) -> [E; LOSS_SCALE_STATE_LEN] {
        [self.scale, self.good_steps as f64, self.overflow_skips as f64].map(E::from_f64)
    }
    fn from_words<E: Element>(words: &[E]) -> Self {
        LossScaleState { scale: words[0].to_f64(), good_steps: words[1].to_f64() as usize, overflow_skips: words[2].to_f64() as usize }
    }
}

/// A loss scale on the device ([`LOSS_SCALE_STATE_LEN`] values) that the steps' backward seeds
/// and gradient unscaling read when they run, so that a replayed CUDA graph takes the scale the
/// steps before it left; with a growth interval it is dynamic, updated on the device after each
/// optimiser step from that step's overflow check.
struct LossScaling<E: Element, B: Backend<E>> {
    state: Buf<E, B>,
    growth_interval: Option<usize>,
}

/// What `Executor::fold_batch_norms` removed from the graph.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FoldCounts {
    pub batch_norms: usize,
    pub activations: usize,
}

pub struct Executor<E: Element, B: Backend<E>> {
    backend: B,
    graph: Graph,
    params: ParamStore<E, B>,
    grads: GradStore<E, B>,
    input_grad: Option<Value<E, B>>,
    rng: Rng,
    scratch: BufferCache<E, B>,
    last_peak_bytes: usize,
    /// The training metrics words (`ops::loss::train_words`), made by the first step or start.
    train_metrics: Option<Words<E, B>>,
    /// `--sync-bn`: the ranks whose batches training's batch-norm statistics span.
    batch_norm_group: Option<Arc<ProcessGroup>>,
    /// Data parallelism: the ranks each step's gradients are averaged over.
    gradient_averaging: Option<GradientAveraging>,
    /// How the last step's gradients went over the ranks.
    last_bucket_counts: Option<BucketCounts>,
    /// `--precision`: what is rounded where (`exec::precision`).
    rounding: StorageRounding<E, B>,
    /// The factor the loss is multiplied by before backward (loss scaling); the gradients are
    /// divided by it again before the optimiser. None without scaling.
    loss_scale: Option<LossScaling<E, B>>,
}

/// Checks what the executor relies on: node 0 is the only input, every input precedes its
/// consumer, every parameter id exists, outputs are per-sample vectors of logits.
fn validate(graph: &Graph) -> Result<()> {
    let bad = |msg: String| Err(Error::shape(format!("graph {}: {msg}", graph.name)));
    if graph.nodes.first().map(|n| &n.op) != Some(&Op::Input(Input)) {
        return bad("node 0 must be the input".into());
    }
    for (i, node) in graph.nodes.iter().enumerate().skip(1) {
        if node.op == Op::Input(Input) || node.inputs.is_empty() || node.inputs.iter().any(|&j| j >= i) {
            return bad(format!("node {} ({i}) must read only earlier nodes and not be an input", node.name));
        }
        if node.op.params().iter().any(|&p| p >= graph.params.len()) {
            return bad(format!("node {} refers to a parameter that does not exist", node.name));
        }
    }
    if graph.outputs.iter().filter(|o| !o.auxiliary).count() != 1 {
        return bad("there must be exactly one main output".into());
    }
    for o in &graph.outputs {
        if o.node >= graph.nodes.len() || graph.nodes[o.node].shape.len() != 1 {
            return bad("every output must be a node of per-sample shape [classes]".into());
        }
    }
    Ok(())
}

impl<E: Element, B: Backend<E>> Executor<E, B> {
    /// Materialises the graph's parameters on `backend`, initialised from `seed`.
    pub fn new(backend: B, graph: Graph, seed: u64) -> Result<Self> {
        validate(&graph)?;
        let mut rng = Rng::new(seed);
        let params = ParamStore::new(&backend, &graph.params, &mut rng)?;
        let grads = GradStore::new(graph.params.len());
        Ok(Executor {
            backend,
            graph,
            params,
            grads,
            input_grad: None,
            rng,
            scratch: BufferCache::new(true),
            last_peak_bytes: 0,
            train_metrics: None,
            batch_norm_group: None,
            gradient_averaging: None,
            last_bucket_counts: None,
            rounding: StorageRounding::new(Precision::Fp32),
            loss_scale: None,
        })
    }

    /// Training's batch norms take their statistics over the batches of every rank of `group`
    /// (synchronised batch norm) instead of this process's batch alone.
    pub fn synchronise_batch_norms(&mut self, group: Arc<ProcessGroup>) {
        self.batch_norm_group = Some(group);
    }

    /// This model for evaluation with every batch norm that reads a convolution folded into it
    /// and each activation that then reads the convolution alone fused into its bias pass
    /// (`graph::fold`), and how many batch norms and activations went: one pass over memory fewer
    /// each, the same function up to rounding. The result cannot train.
    pub fn fold_batch_norms(self) -> Result<(Self, FoldCounts)> {
        // A graph fused for training folds as its unfused self.
        let folded = crate::graph::fold::fold_batch_norms(&crate::graph::fuse::unfuse(&self.graph));
        let mut params = self.params;
        super::fold::fold_values(&self.backend, &mut params, &folded)?;
        let count = FoldCounts { batch_norms: folded.folds.len(), activations: folded.fused_activations };
        let grads = GradStore::new(folded.graph.params.len());
        let graph = folded.graph;
        let gradient_averaging = None;
        let rounding = StorageRounding::new(self.rounding.precision());
        Ok((Executor { graph, params, grads, input_grad: None, last_peak_bytes: 0, train_metrics: None, gradient_averaging, rounding, ..self }, count))
    }

    /// This model for training with every batch norm -> (residual add) -> activation chain whose
    /// intermediate tensors nothing else reads fused into one node (`graph::fuse`), and how many
    /// went: the same parameters, loss and gradients up to rounding, fewer passes over memory
    /// and fewer tensors kept for backward.
    pub fn fuse_batch_norm_activations(self) -> (Self, FuseCounts) {
        let fused = crate::graph::fuse::fuse_batch_norm_activations(&self.graph);
        let gradient_averaging = self.gradient_averaging.map(|a| a.for_graph(&fused.graph));
        (Executor { graph: fused.graph, gradient_averaging, ..self }, fused.counts)
    }

    /// This model with its image tensors in `layout`: as built for NCHW; for NHWC,
    /// channels-last between the input and the classifier (`graph::layout`), with the same
    /// parameters, loss and gradients up to rounding. A channels-last model stays so.
    pub fn in_layout(self, layout: Layout) -> Self {
        if layout == Layout::Nchw {
            return self;
        }
        let graph = crate::graph::layout::channels_last(&self.graph);
        let gradient_averaging = self.gradient_averaging.map(|a| a.for_graph(&graph));
        Executor { graph, gradient_averaging, ..self }
    }

    /// This model in the layout a run chose, or without a choice in its device's
    /// (`Device::default_layout`).
    pub fn in_chosen_layout(self, choice: Option<Layout>) -> Self {
        let layout = choice.unwrap_or_else(|| self.backend.default_layout());
        self.in_layout(layout)
    }

    /// Runs every later step and evaluation at `precision` (emulated storage: values rounded to
    /// the format in f32 buffers, see `exec::precision`).
    pub fn set_precision(&mut self, precision: Precision) {
        self.rounding = StorageRounding::new(precision);
        // Now, so that memory plans made before the first step see the GEMMs' engine.
        self.backend.declare_gemm_operand_format(precision);
    }
    pub fn precision(&self) -> Precision {
        self.rounding.precision()
    }
    /// `set_precision` with the precision a run chose, or without a choice its device's
    /// (`Device::default_precision`); a choice the device cannot run is refused
    /// (`Device::check_precision`).
    pub fn set_chosen_precision(&mut self, choice: Option<Precision>) -> Result<()> {
        let precision = choice.unwrap_or_else(|| self.backend.default_precision());
        self.backend.check_precision(precision)?;
        self.set_precision(precision);
        Ok(())
    }

    /// Multiplies the loss of the next training steps by `scale` before backward and divides
    /// their parameter gradients by it after, the scale staying as set (1 turns scaling off).
    pub fn set_loss_scale(&mut self, scale: f64) -> Result<()> {
        if scale == 1.0 {
            self.loss_scale = None;
            return Ok(());
        }
        self.put_loss_scale(LossScaleState { scale, good_steps: 0, overflow_skips: 0 }, None)
    }

    /// Dynamic loss scaling (`train::loss_scale`) from `state` on: each training step's loss is
    /// multiplied by the device's scale, and each `optimizer_step` updates it on the device from
    /// the optimiser's overflow check (which this turns on: `Optimizer::skip_nonfinite_updates`),
    /// halving it on an overflow and doubling it after `growth_interval` finite steps in a row.
    /// Nothing is read back per step (`read_loss_scale`).
    pub fn start_dynamic_loss_scale(&mut self, state: LossScaleState, growth_interval: usize) -> Result<()> {
        check_loss_scale_growth_interval(growth_interval)?;
        self.put_loss_scale(state, Some(growth_interval))
    }

    /// Writes `state` into the device's loss scale, in place when there is one (a captured graph
    /// reads it there).
    fn put_loss_scale(&mut self, state: LossScaleState, growth_interval: Option<usize>) -> Result<()> {
        if !(state.scale > 0.0 && state.scale.is_finite() && (state.scale as f32).is_normal()) {
            return Err(Error::config(format!("loss scale {} must be a positive finite number within f32's normal range", state.scale)));
        }
        let words = state.to_words::<E>();
        match &mut self.loss_scale {
            Some(scaling) => {
                self.backend.overwrite(&mut scaling.state, &words)?;
                scaling.growth_interval = growth_interval;
            }
            None => self.loss_scale = Some(LossScaling { state: self.backend.upload(&words)?, growth_interval }),
        }
        Ok(())
    }

    /// The loss scale's state on the device (one small download, which waits for the queued
    /// steps); None without loss scaling.
    pub fn read_loss_scale(&self) -> Result<Option<LossScaleState>> {
        self.loss_scale.as_ref().map(|scaling| Ok(LossScaleState::from_words(&self.backend.download(&scaling.state)?))).transpose()
    }

    /// Turns reuse of the executor's own scratch buffers on (the default) or off.
    pub fn set_buffer_pooling(&mut self, enabled: bool) {
        self.scratch = BufferCache::new(enabled);
    }
    /// (allocations, reuses) of the executor's scratch buffers so far.
    pub fn pool_stats(&self) -> (usize, usize) {
        (self.scratch.allocations(), self.scratch.reuses())
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }
    pub fn graph(&self) -> &Graph {
        &self.graph
    }
    pub fn params(&self) -> &ParamStore<E, B> {
        &self.params
    }
    pub fn params_mut(&mut self) -> &mut ParamStore<E, B> {
        &mut self.params
    }
    pub fn grads(&self) -> &GradStore<E, B> {
        &self.grads
    }
    /// The generator state (for checkpoints) and its restoration.
    pub fn rng_state(&self) -> [u64; 4] {
        self.rng.state()
    }
    pub fn set_rng_state(&mut self, state: [u64; 4]) {
        self.rng = Rng::from_state(state);
    }

    /// Host values of a parameter by name (checkpoints, gradient checks).
    pub fn param_host(&self, name: &str) -> Result<Vec<E>> {
        self.params.get_host(&self.backend, name)
    }
    /// Replaces a parameter's values by name.
    pub fn set_param_host(&mut self, name: &str, values: &[E]) -> Result<()> {
        self.params.set_host(&self.backend, name, values)
    }
    /// Host values of a parameter's gradient by name; None when it has none (frozen).
    pub fn grad_host_by_name(&self, name: &str) -> Result<Option<Vec<E>>> {
        self.grad_host(self.params.id(name)?)
    }
    /// Host values of a parameter's gradient from the last training step; None when frozen.
    pub fn grad_host(&self, id: ParamId) -> Result<Option<Vec<E>>> {
        self.grads.get(id).map(|g| self.backend.download(g)).transpose()
    }
    /// Host values of the loss gradient with respect to the input batch of the last training
    /// step run with `input_grad`.
    pub fn input_grad_host(&self) -> Result<Option<Vec<E>>> {
        self.input_grad.as_deref().map(|g| self.backend.download(g)).transpose()
    }

    /// Device bytes at the peak of the last step (parameters included).
    pub fn last_peak_bytes(&self) -> usize {
        self.last_peak_bytes
    }

    /// Device bytes a step with `batch` samples is planned to need at its peak: parameters,
    /// gradients, activations by liveness and the tape, convolution workspace as `workspace`
    /// says, the metrics words and, at reduced precision, the rounded weight copies (tf32's
    /// rounded operand copies are not counted). Optimiser state comes on top
    /// (`Optimizer::state_bytes`).
    pub fn planned_peak_bytes(&self, batch: usize, mode: Mode, workspace: ConvWorkspace) -> Result<usize> {
        let plan = self.plan(mode, false);
        let elem = std::mem::size_of::<E>();
        let stored = match self.rounding.precision().stored_format() {
            Some(format) if self.backend.stores_16bit() => format.bytes(),
            _ => elem,
        };
        let synchronised = self.batch_norm_group.is_some();
        let activations = plan_memory(&self.graph, &plan, batch, elem, stored, workspace, synchronised, |p| {
            self.params.is_trainable(p)
        })?;
        let metric_words = train_words::LEN + batch + if mode == Mode::Eval { eval_words::len(self.graph.num_classes()) } else { 0 };
        let weight_copies = self.rounding.weight_copy_bytes(&self.graph, &self.params);
        Ok(self.params.bytes() + weight_copies + activations.peak + 4 * metric_words)
    }

    /// Checks before running that a step with `batch` samples fits in `free_bytes` of device
    /// memory next to `extra_bytes` (optimiser state, data already resident). When it does not,
    /// the error names the largest batch size that would.
    pub fn check_batch_fits(
        &self,
        batch: usize,
        mode: Mode,
        workspace: ConvWorkspace,
        extra_bytes: usize,
        free_bytes: usize,
    ) -> Result<()> {
        let need = |b: usize| self.planned_peak_bytes(b, mode, workspace).map(|p| p + extra_bytes);
        let requested = need(batch)?;
        if requested <= free_bytes {
            return Ok(());
        }
        // The peak grows with the batch size: bisect for the largest that fits.
        let (mut fits, mut fails) = (0, batch);
        while fails - fits > 1 {
            let mid = (fits + fails) / 2;
            if need(mid)? <= free_bytes {
                fits = mid;
            } else {
                fails = mid;
            }
        }
        let hint = if fits == 0 {
            "even a batch of 1 does not fit; use a smaller model, input size or convolution workspace".to_string()
        } else {
            format!("a batch size of at most {fits} fits; lower the batch size")
        };
        Err(Error::OutOfMemory { requested, free: free_bytes, hint })
    }

    /// On a device with memory of its own (a GPU), checks before the first step that a step
    /// with `batch` samples fits what the device has: its free memory plus what this backend's
    /// buffers (parameters, resident data) already hold, since the plan and `extra_bytes` count
    /// those. Devices using host memory (the CPU) are not checked.
    pub fn check_batch_fits_device(&self, batch: usize, mode: Mode, workspace: ConvWorkspace, extra_bytes: usize) -> Result<()> {
        let Some(free) = self.backend.free_memory()? else { return Ok(()) };
        let available = free + self.backend.memory().current_bytes;
        self.check_batch_fits(batch, mode, workspace, extra_bytes, available)
    }

    fn plan(&self, mode: Mode, input_grad: bool) -> Plan {
        Plan::new(&self.graph, mode, |p| self.params.is_trainable(p), input_grad)
    }

    /// Puts the batch on the device and returns it with its sample count.
    fn upload_batch(&self, batch: Batch<'_, E, B>) -> Result<(Value<E, B>, usize)> {
        let buf = match batch {
            Batch::Host(data) => self.backend.upload(data)?,
            Batch::HostF32(data) => {
                let converted: Vec<E> = data.iter().map(|&v| <E as Element>::from_f64(v as f64)).collect();
                self.backend.upload(&converted)?
            }
            Batch::Device(buf) => buf,
        };
        let per_sample: usize = self.graph.input_shape().iter().product();
        let len = crate::device::Buffer::len(&buf);
        if len == 0 || !len.is_multiple_of(per_sample) {
            return Err(Error::shape(format!(
                "an input batch of {len} values is not a whole number of samples of shape {:?} ({per_sample} values each)",
                self.graph.input_shape()
            )));
        }
        Ok((Arc::new(buf), len / per_sample))
    }

    fn forward(
        &mut self,
        plan: &Plan,
        input: Value<E, B>,
        n: usize,
        update_running_stats: bool,
        step_seed: Option<&Words<E, B>>,
    ) -> Result<ForwardResult<E, B>> {
        self.rounding.refresh_weights(&self.backend, &self.graph, &self.params)?;
        Forward {
            backend: &self.backend,
            graph: &self.graph,
            plan,
            params: &mut self.params,
            scratch: &mut self.scratch,
            n,
            update_running_stats,
            step_seed,
            batch_norm_group: self.batch_norm_group.as_deref(),
            rounding: &self.rounding,
        }
        .run(input)
    }

    /// Per weighted loss output: its weight and mean loss on the device; and per output,
    /// d(total loss)/d(logits).
    fn output_losses(
        &self,
        result: &ForwardResult<E, B>,
        labels: &Words<E, B>,
        n: usize,
        label_smoothing: f64,
    ) -> Result<(Vec<(f64, Buf<E, B>)>, OutputGrads<E, B>)> {
        let mut losses = Vec::new();
        let mut output_grads = Vec::new();
        for out in &self.graph.outputs {
            let Some(logits) = result.outputs.get(&out.node) else { continue };
            if out.loss_weight == 0.0 {
                continue;
            }
            let classes = numel(&self.graph.nodes[out.node].shape);
            let (loss, mut dlogits) = self.backend.softmax_cross_entropy(logits, labels, n, classes, label_smoothing)?;
            // The gradient of loss_scale * loss_weight * loss, over the ranks' count in a
            // data-parallel step: every rank's local-mean loss is 1/world of the global batch's
            // mean, so the ranks' summed gradients are the global batch's and each activation
            // gradient is the one a single process stores (fp16's range and rounding alike).
            let ranks = self.gradient_averaging.as_ref().map_or(1, GradientAveraging::world_size) as f64;
            match &self.loss_scale {
                Some(scaling) => {
                    let seed = LossScaleFactor::Seed { weight: out.loss_weight, ranks };
                    self.backend.scale_by_loss_scale(&mut dlogits, &scaling.state, seed)?;
                }
                None if out.loss_weight / ranks != 1.0 => self.backend.scale(<E as Element>::from_f64(out.loss_weight / ranks), &mut dlogits)?,
                None => {}
            }
            losses.push((out.loss_weight, loss));
            output_grads.push((out.node, dlogits));
        }
        Ok((losses, output_grads))
    }

    /// The labels on the device, after checking there is one per sample.
    fn upload_labels(&self, labels: &[u32], n: usize) -> Result<Words<E, B>> {
        if labels.len() != n {
            return Err(Error::shape(format!("{} labels for a batch of {n} samples", labels.len())));
        }
        self.backend.upload_idx(labels)
    }

    /// Starts the training metrics from `start` (zero for a new epoch; a checkpoint's figures
    /// for a resumed one), dropping whatever was accumulated. One small upload, into the
    /// buffer the last steps used (a captured graph keeps accumulating there).
    pub fn start_train_metrics(&mut self, start: &TrainTotals) -> Result<()> {
        let words = start.to_words()?;
        match &mut self.train_metrics {
            Some(metrics) => self.backend.overwrite_idx(metrics, &words)?,
            None => self.train_metrics = Some(self.backend.upload_idx(&words)?),
        }
        Ok(())
    }

    /// Device buffers for batches of `n` samples, for `train_step_resident`.
    pub fn resident_batch(&self, n: usize) -> Result<ResidentBatch<E, B>> {
        let per_sample: usize = self.graph.input_shape().iter().product();
        let input = Arc::new(self.backend.zeros(n * per_sample)?);
        Ok(ResidentBatch {
            input,
            labels: self.backend.upload_idx(&vec![0; n])?,
            step_seed: self.backend.upload_idx(&step_seed_words(0))?,
            landing_input: None,
            landing_labels: None,
            n,
        })
    }

    /// Queues copies of a batch (host f32 data, as the loader makes it) into `resident`; the
    /// upload itself overlaps the work already queued (`Device::overwrite_through`).
    pub fn fill_resident_batch(&self, resident: &mut ResidentBatch<E, B>, x: &[f32], labels: &[u32]) -> Result<()> {
        let per_sample: usize = self.graph.input_shape().iter().product();
        if x.len() != resident.n * per_sample || labels.len() != resident.n {
            return Err(Error::shape(format!(
                "a batch of {} values and {} labels for device buffers of {} samples of shape {:?}",
                x.len(),
                labels.len(),
                resident.n,
                self.graph.input_shape()
            )));
        }
        let converted: Vec<E> = x.iter().map(|&v| <E as Element>::from_f64(v as f64)).collect();
        let input = Arc::get_mut(&mut resident.input).ok_or_else(|| Error::device("a resident batch is still held by a step"))?;
        self.backend.overwrite_through(input, &mut resident.landing_input, &converted)?;
        self.backend.overwrite_idx_through(&mut resident.labels, &mut resident.landing_labels, labels)
    }

    /// Draws the next step's dropout seed (`seed`, else the executor's generator's next value,
    /// as every training step draws one) and queues it into `resident` for the step that
    /// `train_step_resident` queues or a replayed graph runs next. One call per step.
    pub fn queue_step_seed(&mut self, resident: &mut ResidentBatch<E, B>, seed: Option<u64>) -> Result<()> {
        let words = self.draw_step_seed(seed);
        self.backend.overwrite_idx(&mut resident.step_seed, &words)
    }

    /// A step's dropout seed as the words the kernels read: `seed`, else the generator's next
    /// value.
    fn draw_step_seed(&mut self, seed: Option<u64>) -> [u32; 2] {
        step_seed_words(seed.unwrap_or_else(|| self.rng.next_u64()))
    }

    /// `train_step` on the batch in `resident` with the dropout seed `queue_step_seed` put there
    /// (`opts.dropout_seed` is not read): every buffer it reads or writes outside the allocator
    /// (the batch, its seed, the metrics, parameters and optimiser state) keeps its address from
    /// step to step, so the step can be captured as a graph and replayed.
    pub fn train_step_resident(&mut self, resident: &ResidentBatch<E, B>, opts: &StepOptions) -> Result<()> {
        self.step(resident.input.clone(), resident.n, &resident.labels, &resident.step_seed, opts, false).map(drop)
    }

    /// The training metrics so far: one small download, which waits for the queued steps. An
    /// out-of-range label seen by any step since the start is the error naming it.
    pub fn read_train_metrics(&self) -> Result<TrainTotals> {
        match &self.train_metrics {
            Some(words) => TrainTotals::from_words(&self.backend.download_idx(words)?, self.graph.num_classes()),
            None => Ok(TrainTotals::default()),
        }
    }

    /// Forward, loss and backward on one batch, queued on the device with nothing read back:
    /// gradients land in `grads()` (trainable parameters only) and, with `input_grad`, in
    /// `input_grad_host()`; the loss, top-1 hits, label check and non-finite check accumulate
    /// in the training metrics (`read_train_metrics`). A NaN/inf loss does not stop the step.
    pub fn train_step(&mut self, batch: Batch<'_, E, B>, labels: &[u32], opts: &StepOptions) -> Result<()> {
        let (input, n) = self.upload_batch(batch)?;
        let labels = self.upload_labels(labels, n)?;
        let step_seed = self.upload_step_seed(opts)?;
        self.step(input, n, &labels, &step_seed, opts, false).map(drop)
    }

    /// `train_step`, then reads back the step's loss and the main output's logits (a download
    /// of each; for tests and comparisons, not for training loops).
    pub fn train_step_readback(&mut self, batch: Batch<'_, E, B>, labels: &[u32], opts: &StepOptions) -> Result<StepOutput<E>> {
        let (input, n) = self.upload_batch(batch)?;
        let labels = self.upload_labels(labels, n)?;
        let step_seed = self.upload_step_seed(opts)?;
        let logits = self.step(input, n, &labels, &step_seed, opts, true)?.expect("a readback step downloads the logits");
        Ok(StepOutput { loss: self.read_train_metrics()?.last_loss, logits })
    }

    /// The dropout seed of a step queued from the host (`draw_step_seed` of `opts.dropout_seed`).
    fn upload_step_seed(&mut self, opts: &StepOptions) -> Result<Words<E, B>> {
        let words = self.draw_step_seed(opts.dropout_seed);
        self.backend.upload_idx(&words)
    }

    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        input: Value<E, B>,
        n: usize,
        labels: &Words<E, B>,
        step_seed: &Words<E, B>,
        opts: &StepOptions,
        read_logits: bool,
    ) -> Result<Option<Vec<E>>> {
        // Last step's gradients go first: they would otherwise double the gradient memory.
        self.grads.clear();
        self.input_grad = None;
        self.backend.reset_peak();
        let plan = self.plan(Mode::Train, opts.input_grad);
        let mut result = self.forward(&plan, input, n, opts.update_running_stats, Some(step_seed))?;
        let (losses, output_grads) = self.output_losses(&result, labels, n, opts.label_smoothing)?;
        if self.train_metrics.is_none() {
            self.start_train_metrics(&TrainTotals::default())?;
        }
        let metrics = self.train_metrics.as_mut().expect("started above");
        for (weight, loss) in &losses {
            self.backend.accumulate_step_loss(loss, *weight, metrics)?;
        }
        let main_logits = &result.outputs[&self.graph.main_output().node];
        self.backend.finish_train_step(main_logits, labels, n, self.graph.num_classes(), metrics)?;
        let logits = if read_logits { Some(self.backend.download(main_logits)?) } else { None };
        drop(losses);
        result.outputs.clear();
        // The buckets borrow the averaging plan; they end (and are dropped) inside this block.
        let bucket_counts = {
            let mut buckets = match &self.gradient_averaging {
                Some(averaging) => Some((averaging.final_after(), averaging.start(&self.backend)?)),
                None => None,
            };
            let final_gradients = buckets.as_mut().map(|(final_after, step)| FinalGradients { final_after, hook: step.hook() });
            self.input_grad = Backward {
                backend: &self.backend,
                graph: &self.graph,
                plan: &plan,
                params: &self.params,
                grads: &mut self.grads,
                scratch: &mut self.scratch,
                n,
                batch_norm_group: self.batch_norm_group.as_deref(),
                final_gradients,
                rounding: &self.rounding,
            }
            .run(result.tape, output_grads)?;
            match buckets {
                Some((_, buckets)) => Some(buckets.finish(&mut self.grads)?),
                None => None,
            }
        };
        if bucket_counts.is_some() {
            self.last_bucket_counts = bucket_counts;
        }
        self.finish_param_grads()?;
        self.last_peak_bytes = self.backend.memory().peak_bytes;
        Ok(logits)
    }

    /// The parameter gradients as the optimiser takes them: the GEMM weights' rounded to the
    /// format (bf16/fp16), then every one divided by the loss scale (in f32, where an fp16
    /// overflow stays infinite for the optimiser's non-finite check to find).
    fn finish_param_grads(&mut self) -> Result<()> {
        self.rounding.store_param_grads(&self.backend, &mut self.grads)?;
        if let Some(scaling) = &self.loss_scale {
            let ids: Vec<ParamId> = self.grads.ids().collect();
            for id in ids {
                let grad = self.grads.get_mut(id).expect("ids() lists held gradients");
                self.backend.scale_by_loss_scale(grad, &scaling.state, LossScaleFactor::Unscale)?;
            }
        }
        Ok(())
    }

    /// The training-mode loss of a batch without backward or a tape (gradient checks); reads
    /// the loss back, and a NaN/inf loss is an error.
    pub fn loss_only(&mut self, batch: Batch<'_, E, B>, labels: &[u32], opts: &StepOptions) -> Result<f64> {
        let (input, n) = self.upload_batch(batch)?;
        check_labels(labels, self.graph.num_classes())?;
        let labels = self.upload_labels(labels, n)?;
        let step_seed = self.upload_step_seed(opts)?;
        let plan = Plan::new(&self.graph, Mode::Train, |_| false, false);
        let result = self.forward(&plan, input, n, opts.update_running_stats, Some(&step_seed))?;
        let mut total = 0.0;
        for (weight, loss) in self.output_losses(&result, &labels, n, opts.label_smoothing)?.0 {
            total += weight * self.backend.download(&loss)?[0].to_f64();
        }
        if !total.is_finite() {
            return Err(Error::Numerical(format!("the loss is {total}; lower the learning rate or check the input data")));
        }
        Ok(total)
    }

    /// An empty evaluation accumulator for `infer_accumulate`.
    pub fn eval_metrics(&self) -> Result<EvalAccumulator<E, B>> {
        let classes = self.graph.num_classes();
        Ok(EvalAccumulator { words: self.backend.upload_idx(&vec![0; eval_words::len(classes)])?, classes })
    }

    /// Eval-mode forward of one labelled batch whose loss, top-1/top-5 and confusion counts
    /// accumulate in `metrics` on the device; nothing is read back.
    pub fn infer_accumulate(&mut self, batch: Batch<'_, E, B>, labels: &[u32], metrics: &mut EvalAccumulator<E, B>) -> Result<()> {
        self.backend.reset_peak();
        let (input, n) = self.upload_batch(batch)?;
        let labels = self.upload_labels(labels, n)?;
        let plan = self.plan(Mode::Eval, false);
        let result = self.forward(&plan, input, n, false, None)?;
        let logits = &result.outputs[&self.graph.main_output().node];
        self.backend.accumulate_eval(logits, &labels, n, metrics.classes, &mut metrics.words)?;
        drop(result);
        self.last_peak_bytes = self.backend.memory().peak_bytes;
        Ok(())
    }

    /// The evaluation figures accumulated so far: one download, which waits for the queued
    /// batches.
    pub fn read_eval_metrics(&self, metrics: &EvalAccumulator<E, B>) -> Result<EvalCounts> {
        Ok(EvalCounts::from_words(&self.backend.download_idx(&metrics.words)?, metrics.classes))
    }

    /// Eval-mode logits [N, classes] of the main output; no tape, activations freed early.
    pub fn infer(&mut self, batch: Batch<'_, E, B>) -> Result<Vec<E>> {
        self.backend.reset_peak();
        let (input, n) = self.upload_batch(batch)?;
        let plan = self.plan(Mode::Eval, false);
        let result = self.forward(&plan, input, n, false, None)?;
        let logits = self.backend.download(&result.outputs[&self.graph.main_output().node])?;
        drop(result);
        self.backend.synchronize()?;
        self.last_peak_bytes = self.backend.memory().peak_bytes;
        Ok(logits)
    }

    /// Drops the last training step's gradients without an update (a skipped step).
    pub fn discard_gradients(&mut self) {
        self.grads.clear();
        self.input_grad = None;
    }

    /// Averages every training step's gradients over the ranks of `group` (data parallelism:
    /// every rank's batch is an equal slice of the global batch) in buckets of `bucket_bytes`
    /// whose all-reduce starts during backward, as PyTorch's DDP with bucket_cap_mb: summed in
    /// f64 through the host over MPI, or with `nccl` (the same ranks' communicator) in device
    /// memory on a CUDA GPU. The gradients keep their buffers.
    pub fn average_gradients_over(&mut self, group: Arc<ProcessGroup>, nccl: Option<NcclComm>, bucket_bytes: usize) {
        self.gradient_averaging = Some(GradientAveraging::new::<E>(group, nccl, bucket_bytes, &self.graph));
    }

    /// How the last training step's gradients went over the ranks (None without
    /// `average_gradients_over`).
    pub fn last_bucket_counts(&self) -> Option<BucketCounts> {
        self.last_bucket_counts
    }

    /// Replaces every parameter and buffer by rank 0's: at the start, so all ranks begin from
    /// one model, and after each epoch, so batch norm's running statistics (which each rank
    /// updates from its own slice of the batch) are rank 0's everywhere, as PyTorch's DDP
    /// broadcasts its buffers.
    pub fn broadcast_params(&mut self, group: &ProcessGroup) -> Result<()> {
        if group.world_size() == 1 {
            return Ok(());
        }
        let ids: Vec<ParamId> = self.params.iter().map(|(id, _)| id).collect();
        for id in ids {
            let mut values: Vec<f64> = self.backend.download(self.params.value(id))?.into_iter().map(Element::to_f64).collect();
            group.broadcast(&mut values)?;
            let values: Vec<E> = values.into_iter().map(E::from_f64).collect();
            self.backend.overwrite(self.params.value_mut(id), &values)?;
        }
        Ok(())
    }

    /// Applies one optimiser step with the last training step's gradients, then frees them (so
    /// an evaluation between steps does not carry gradient memory); with dynamic loss scaling,
    /// then updates the scale on the device from the step's overflow check. Reads nothing back:
    /// a clipping optimiser's gradient norm is `Optimizer::last_grad_norm`.
    pub fn optimizer_step(&mut self, optimizer: &mut Optimizer<E, B>) -> Result<()> {
        let dynamic = self.loss_scale.as_mut().and_then(|s| s.growth_interval.map(|interval| (&mut s.state, interval)));
        let stepped = self.grads.ids().next().is_some();
        if dynamic.is_some() {
            optimizer.skip_nonfinite_updates();
        }
        optimizer.step(&self.backend, &mut self.params, &self.grads)?;
        if let (Some((state, growth_interval)), true) = (dynamic, stepped) {
            let clip = optimizer.clip_state().expect("a step that checks the gradient norm keeps its clip state");
            self.backend.update_loss_scale(state, clip, growth_interval)?;
        }
        self.grads.clear();
        Ok(())
    }
}
