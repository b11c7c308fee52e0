//! `ferronet bench`: training-step and inference throughput of a zoo model on one device, what
//! each training step sends to the driver, and on the simulator a PREDICTED step time on
//! modelled GPUs.

use super::summary::ModelArgs;
use crate::bench::model::{bench_model, summary_text, ModelBenchOptions};
use crate::device::CudaGraphMode;
use crate::bench::predict::predict_step;
use crate::device::DeviceRequest;
use crate::error::{Error, Result};
use crate::precision::Precision;
use crate::shape::Layout;
use crate::select::{self, SelectedDevice};
use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Images per batch.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Number of classes of the classifier.
    #[arg(long, default_value_t = 1000)]
    pub classes: usize,
    /// Timed steps (the median is reported), for training and for inference.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Untimed steps before timing.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// SGD learning rate and momentum of the training steps.
    #[arg(long, default_value_t = 0.01)]
    pub lr: f64,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// Seed of the weights, inputs and labels.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Compute device: auto (CUDA if present, else CPU), cpu, cuda, cuda:N or sim (the PTX simulator).
    #[arg(long, default_value = "auto")]
    pub device: DeviceRequest,
    /// With --device sim: also PREDICT the training step's time at this batch on an RTX 3090,
    /// RTX 4090 and H100, from a step simulated at this batch with at most 16 blocks of each
    /// launch run and its counters scaled to the grid (see benches/RESULTS.md).
    #[arg(long)]
    pub predict_batch: Option<usize>,
    /// Replay the training step as a CUDA graph captured after the first step: auto (on GPU
    /// devices unless the model has dropout), on, or off.
    #[arg(long, value_enum, default_value_t = CudaGraphMode::Auto)]
    pub cuda_graph: CudaGraphMode,
    /// Train with batch norm, residual add and activation as separate ops (as `train
    /// --no-fusion`) and time inference as trained, without folding batch norms and activations
    /// into the convolutions (as `eval --no-fusion`).
    #[arg(long)]
    pub no_fusion: bool,
    /// Memory order of image tensors, as `train --layout` (default: nhwc on GPU devices, nchw
    /// on the CPU).
    #[arg(long, value_enum)]
    pub layout: Option<Layout>,
    /// Numeric format as `train --precision` (default: bf16 on GPUs of compute capability 8.0
    /// and newer, fp32 elsewhere).
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
    /// One JSON object on stdout instead of the text summary.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: BenchArgs) -> Result<i32> {
    let opts = ModelBenchOptions {
        batch: args.batch,
        steps: args.steps,
        warmup: args.warmup,
        lr: args.lr,
        momentum: args.momentum,
        seed: args.seed,
        cuda_graph: args.cuda_graph,
        fusion: !args.no_fusion,
        layout: args.layout,
        precision: args.precision,
    };
    opts.validate()?;
    if args.predict_batch.is_some() && args.device != DeviceRequest::Sim {
        return Err(Error::config("--predict-batch needs --device sim (predictions come from the simulator's counters)"));
    }
    let graph = args.model.build(args.classes)?;
    // The prediction first: its checks fail before the (slow) simulated bench.
    let predicted = args.predict_batch.map(|batch| predict_step(graph.clone(), batch, &opts)).transpose()?;
    let mut report = match select::open(args.device)? {
        SelectedDevice::Cpu(cpu) => bench_model(cpu, graph, &opts)?,
        SelectedDevice::Gpu(gpu) => bench_model(gpu, graph, &opts)?,
    };
    report.predicted = predicted;
    if args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| Error::config(format!("cannot encode the report: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", summary_text(&report));
    }
    Ok(0)
}
