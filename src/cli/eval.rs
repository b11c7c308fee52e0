//! `ferronet eval --checkpoint FILE` (or `--weights FILE --model NAME --dataset ...`): the metrics
//! of a model on a dataset's test split (or its validation split when it has none), normalised
//! with the checkpoint's mean/std (or as --normalize says).

use crate::data;
use crate::device::DeviceRequest;
use crate::error::{Error, Result};
use crate::ops::Backend;
use crate::precision::Precision;
use crate::shape::Layout;
use crate::train::checkpoint;
use crate::train::config::{DataConfig, DatasetChoice};
use crate::train::evaluate::{evaluate, EvalSetup};
use crate::train::metrics::EvalMetrics;
use crate::train::outputs::{class_breakdown, ClassMetrics};
use crate::train::pretrained::{ResizeArgs, RunnableModel, WeightsArgs};
use crate::train::session::{on_device, OnBackend};
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// A checkpoint.safetensors written by `ferronet train` (or --weights).
    #[arg(long, required_unless_present = "weights")]
    pub checkpoint: Option<PathBuf>,
    #[command(flatten)]
    pub weights: WeightsArgs,
    /// Dataset to evaluate on (default: the one the checkpoint's model was trained on; needed with --weights).
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetChoice>,
    /// Directory of the dataset's files.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// torchvision's Resize and CenterCrop (default: as the checkpoint's run did).
    #[command(flatten)]
    pub resize: ResizeArgs,
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Compute device: auto (CUDA if present, else CPU), cpu, cuda, cuda:N or sim (the PTX simulator).
    #[arg(long, default_value = "auto")]
    pub device: DeviceRequest,
    /// Threads preparing batches.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    pub json: bool,
    /// Evaluate the model as trained, without folding each batch norm into the convolution
    /// before it and the activation after into its bias pass (folding computes the same function
    /// up to rounding with fewer passes over memory).
    #[arg(long)]
    pub no_fusion: bool,
    /// Build inception_v3 and googlenet without their auxiliary classifiers (which evaluation
    /// never runs): inception_v3 then takes inputs below 299x299, and --weights need no AuxLogits.
    #[arg(long)]
    pub no_aux: bool,
    /// Memory order of image tensors, as `train --layout` (default: nhwc on GPU devices, nchw
    /// on the CPU).
    #[arg(long, value_enum)]
    pub layout: Option<Layout>,
    /// Numeric format of the forward pass, as `train --precision` (default: bf16 on GPUs of
    /// compute capability 8.0 and newer, fp16 on Turing, fp32 on the CPU).
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
}

/// What `ferronet eval` measured.
#[derive(Debug)]
pub struct EvalOutcome {
    pub model: String,
    pub dataset: String,
    pub evaluated_on: &'static str,
    pub device: String,
    pub class_names: Vec<String>,
    pub metrics: EvalMetrics,
}

#[derive(Serialize)]
struct EvalReport<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    weights: Option<String>,
    model: &'a str,
    dataset: &'a str,
    evaluated_on: &'a str,
    device: &'a str,
    #[serde(flatten)]
    metrics: &'a EvalMetrics,
    per_class: Vec<ClassMetrics>,
    confusion_matrix: Vec<Vec<u64>>,
    confusion_matrix_normalised: Vec<Vec<f64>>,
}

struct EvalRun {
    precision: Option<Precision>,
    batch_size: usize,
    fold_batch_norms: bool,
    layout: Option<Layout>,
    workers: usize,
    model: RunnableModel,
    dataset: data::Dataset,
}

impl OnBackend for EvalRun {
    type Output = EvalOutcome;

    fn run<B: Backend<f32> + Clone>(self, backend: B, device: String) -> Result<EvalOutcome> {
        let EvalRun { precision, batch_size, fold_batch_norms, layout, workers, model, dataset } = self;
        let mut ex = model.restore_for_inference(backend, fold_batch_norms, layout)?;
        ex.set_chosen_precision(precision)?;
        let (set, evaluated_on) = match dataset.test {
            Some(test) => (test, "test"),
            None => (dataset.val, "validation"),
        };
        let setup = EvalSetup { mean: &model.mean, std: &model.std, batch_size, workers };
        let metrics = evaluate(&mut ex, Arc::new(set), &setup)?;
        Ok(EvalOutcome {
            model: model.model,
            dataset: dataset.name,
            evaluated_on,
            device,
            class_names: model.class_names,
            metrics,
        })
    }
}

/// Evaluates the checkpoint on the test split of the dataset it names (or the one it was
/// trained on), normalised with the checkpoint's statistics; or the --weights model on --dataset.
pub fn eval(args: &EvalArgs) -> Result<EvalOutcome> {
    if args.batch_size == 0 || args.workers == 0 {
        return Err(Error::config("--batch-size and --workers must be at least 1"));
    }
    let (mut model, dataset) = match &args.checkpoint {
        Some(path) if args.weights.weights.is_none() => from_checkpoint(args, path)?,
        _ => from_weights(args)?,
    };
    model.aux_logits &= !args.no_aux;
    on_device(args.device, EvalRun { precision: args.precision, batch_size: args.batch_size, fold_batch_norms: !args.no_fusion, layout: args.layout, workers: args.workers, model, dataset })
}

/// The --weights model and the --dataset it is evaluated on, whose class names it takes.
fn from_weights(args: &EvalArgs) -> Result<(RunnableModel, data::Dataset)> {
    let choice = args.dataset.ok_or_else(|| Error::config("eval --weights needs --dataset to evaluate on"))?;
    let data_config = DataConfig {
        dataset: choice,
        data_dir: args.data_dir.clone(),
        val_split: None,
        input: None,
        gray_to_rgb: false,
        limit: None,
        resize: args.resize,
    };
    data_config.validate()?;
    let dataset = data::load(&data_config.dataset_options(args.weights.model_input()?, 0)?)?;
    let classes = args.weights.classes.unwrap_or(dataset.classes.len());
    if classes != dataset.classes.len() {
        return Err(Error::config(format!(
            "{} has {} classes but --classes is {classes}; evaluate on a dataset with the model's classes",
            dataset.name,
            dataset.classes.len()
        )));
    }
    let mut model = RunnableModel::from_weights(&args.weights, classes, Some((&dataset.mean, &dataset.std)))?
        .ok_or_else(|| Error::config("eval needs --checkpoint FILE or --weights FILE --model NAME"))?;
    model.class_names = dataset.classes.clone();
    Ok((model, dataset))
}

/// The checkpoint's model and the dataset it is evaluated on (by default, its own).
fn from_checkpoint(args: &EvalArgs, path: &std::path::Path) -> Result<(RunnableModel, data::Dataset)> {
    let (tensors, meta) = checkpoint::load(path)?;
    let mut data_config = meta.config.data.clone();
    if let Some(dataset) = args.dataset {
        data_config.dataset = dataset;
        data_config.data_dir = None;
    }
    if args.data_dir.is_some() {
        data_config.data_dir = args.data_dir.clone();
    }
    if args.resize.is_set() {
        data_config.resize = args.resize;
    }
    data_config.validate()?;
    let dataset = data::load(&data_config.dataset_options(meta.input, meta.config.seed)?)?;
    if dataset.classes.len() != meta.class_names.len() {
        return Err(Error::config(format!(
            "{} has {} classes but the model was trained on {} ({})",
            dataset.name,
            dataset.classes.len(),
            meta.class_names.len(),
            meta.config.data.dataset.name()
        )));
    }
    Ok((RunnableModel::from_checkpoint(&meta, tensors), dataset))
}

pub fn run(args: EvalArgs) -> Result<i32> {
    let out = eval(&args)?;
    let metrics = &out.metrics;
    let (per_class, confusion_matrix, confusion_matrix_normalised) = class_breakdown(metrics, &out.class_names);
    if args.json {
        let path_text = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let report = EvalReport {
            checkpoint: path_text(&args.checkpoint),
            weights: path_text(&args.weights.weights),
            model: &out.model,
            dataset: &out.dataset,
            evaluated_on: out.evaluated_on,
            device: &out.device,
            metrics,
            per_class,
            confusion_matrix,
            confusion_matrix_normalised,
        };
        println!("{}", serde_json::to_string_pretty(&report).expect("the report serialises"));
        return Ok(0);
    }
    println!("{} on the {} {} set ({} images, {}):", out.model, out.dataset, out.evaluated_on, metrics.samples, out.device);
    println!(
        "  top-1 {:.2}%  top-5 {:.2}%  loss {:.4}  macro precision {:.4} recall {:.4} F1 {:.4}  {:.2} ms/batch of {}",
        metrics.top1 * 100.0,
        metrics.top5 * 100.0,
        metrics.loss,
        metrics.macro_precision,
        metrics.macro_recall,
        metrics.macro_f1,
        metrics.inference_ms_per_batch,
        args.batch_size
    );
    let width = out.class_names.iter().map(String::len).max().unwrap_or(5).max(5);
    println!("  {:width$}  precision  recall      F1  support", "class");
    for c in &per_class {
        println!("  {:width$}  {:9.4}  {:6.4}  {:6.4}  {:7}", c.class, c.precision, c.recall, c.f1, c.support);
    }
    println!("  confusion matrix (rows: true class, columns: predicted):");
    for row in &confusion_matrix {
        let cells: Vec<String> = row.iter().map(|v| format!("{v:6}")).collect();
        println!("  {}", cells.join(""));
    }
    Ok(0)
}
