//! `ferronet bench`: training-step and inference throughput of a zoo model on one device.

use crate::bench::model::{bench_model, summary_text, ModelBenchOptions};
use crate::device::DeviceRequest;
use crate::error::{Error, Result};
use crate::models::{self, parse_input, ModelOptions};
use crate::select::{self, SelectedDevice};
use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Model name (see `ferronet models`).
    #[arg(long)]
    pub model: String,
    /// Input as C,H,W (default: the model's usual input, e.g. 3,224,224).
    #[arg(long)]
    pub input: Option<String>,
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
    };
    opts.validate()?;
    let input = match &args.input {
        Some(text) => parse_input(text)?,
        None => models::default_input(&args.model)?,
    };
    let graph = models::build(&args.model, &ModelOptions::new(args.classes, input))?;
    let report = match select::open(args.device)? {
        SelectedDevice::Cpu(cpu) => bench_model(cpu, graph, &opts)?,
        SelectedDevice::Gpu(gpu) => bench_model(gpu, graph, &opts)?,
    };
    if args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| Error::config(format!("cannot encode the report: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", summary_text(&report));
    }
    Ok(0)
}
