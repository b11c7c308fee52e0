//! `ferronet predict --checkpoint FILE IMAGE...` (or `--weights FILE --model NAME`): the most
//! likely classes of each image with their probabilities, the images resized to the model's input
//! and normalised as in training (or as --normalize says).

use crate::data::normalise_image;
use crate::device::DeviceRequest;
use crate::shape::Layout;
use crate::error::{Error, Result};
use crate::exec::Batch;
use crate::ops::Backend;
use crate::train::checkpoint;
use crate::train::metrics::log_softmax;
use crate::train::pretrained::{ResizeArgs, RunnableModel, WeightsArgs, IMAGENET_CLASSES};
use crate::train::session::{on_device, OnBackend};
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct PredictArgs {
    /// A checkpoint.safetensors written by `ferronet train` (or --weights).
    #[arg(long, required_unless_present = "weights")]
    pub checkpoint: Option<PathBuf>,
    #[command(flatten)]
    pub weights: WeightsArgs,
    /// torchvision's Resize and CenterCrop (default: as the checkpoint's run did).
    #[command(flatten)]
    pub resize: ResizeArgs,
    /// Image files (PNG or JPEG).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// How many classes to list per image.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Compute device: auto (CUDA if present, else CPU), cpu, cuda, cuda:N or sim (the PTX simulator).
    #[arg(long, default_value = "auto")]
    pub device: DeviceRequest,
    /// Print JSON (one array of per-image results) instead of text.
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
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct ClassProbability {
    pub class: String,
    pub probability: f64,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Prediction {
    pub image: String,
    pub top: Vec<ClassProbability>,
}

/// Images decoded per forward pass.
const PREDICT_BATCH: usize = 64;

struct PredictRun {
    args: PredictArgs,
    model: RunnableModel,
}

impl OnBackend for PredictRun {
    type Output = Vec<Prediction>;

    fn run<B: Backend<f32> + Clone>(self, backend: B, _device: String) -> Result<Vec<Prediction>> {
        let PredictRun { args, model } = self;
        let mut ex = model.restore_for_inference(backend, !args.no_fusion, args.layout)?;
        let [c, h, w] = model.input;
        let classes = model.class_names.len();
        let mut out = Vec::with_capacity(args.images.len());
        for chunk in args.images.chunks(PREDICT_BATCH) {
            let mut x = Vec::with_capacity(chunk.len() * c * h * w);
            for path in chunk {
                let pixels = model.load_image(path, &args.resize)?;
                x.extend(normalise_image(&pixels, c, &model.mean, &model.std));
            }
            let logits = ex.infer(Batch::HostF32(&x))?;
            for (path, row) in chunk.iter().zip(logits.chunks_exact(classes)) {
                let mut ranked: Vec<(usize, f64)> = log_softmax(row).into_iter().map(f64::exp).enumerate().collect();
                ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                let top = ranked
                    .into_iter()
                    .take(args.top)
                    .map(|(i, probability)| ClassProbability { class: model.class_names[i].clone(), probability })
                    .collect();
                out.push(Prediction { image: path.display().to_string(), top });
            }
        }
        Ok(out)
    }
}

/// The top classes of each image according to the checkpoint or the --weights model.
pub fn predict(args: PredictArgs) -> Result<Vec<Prediction>> {
    if args.top == 0 {
        return Err(Error::config("--top must be at least 1"));
    }
    let classes = args.weights.classes.unwrap_or(IMAGENET_CLASSES);
    let mut model = match (RunnableModel::from_weights(&args.weights, classes, None)?, &args.checkpoint) {
        (Some(model), _) => model,
        (None, Some(path)) => {
            let (tensors, meta) = checkpoint::load(path)?;
            RunnableModel::from_checkpoint(&meta, tensors)
        }
        (None, None) => return Err(Error::config("predict needs --checkpoint FILE or --weights FILE --model NAME")),
    };
    model.aux_logits &= !args.no_aux;
    on_device(args.device, PredictRun { args, model })
}

pub fn run(args: PredictArgs) -> Result<i32> {
    let json = args.json;
    let predictions = predict(args)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&predictions).expect("predictions serialise"));
        return Ok(0);
    }
    for p in &predictions {
        println!("{}:", p.image);
        for (rank, c) in p.top.iter().enumerate() {
            println!("  {}. {:<24} {:6.2}%", rank + 1, c.class, c.probability * 100.0);
        }
    }
    Ok(0)
}
