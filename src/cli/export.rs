//! `ferronet export --checkpoint FILE --format torchvision|onnx --out FILE` (or `--weights FILE
//! --model NAME` in place of `--checkpoint`): a model's weights for PyTorch, or the model itself
//! for ONNX runtimes.

use crate::cpu::CpuBackend;
use crate::error::{Error, Result};
use crate::train::checkpoint;
use crate::train::files::write_atomic;
use crate::train::pretrained::{RunnableModel, WeightsArgs, IMAGENET_CLASSES};
use crate::train::session::model_tensors;
use crate::weights::onnx::{onnx_model, ModelDescription, OPSET};
use crate::weights::torchvision_safetensors;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// A safetensors state_dict that torchvision's model of the same name, built with
    /// num_classes=N, loads with load_state_dict(strict=True).
    Torchvision,
    /// An ONNX model (opset 17) of the evaluation graph: input `input` [batch, C, H, W] (batch
    /// dynamic), output `logits` [batch, classes]; the normalisation it expects is in its
    /// metadata_props.
    Onnx,
}

#[derive(Args, Debug, Clone)]
pub struct ExportArgs {
    /// A checkpoint.safetensors written by `ferronet train` (or --weights).
    #[arg(long, required_unless_present = "weights")]
    pub checkpoint: Option<PathBuf>,
    #[command(flatten)]
    pub weights: WeightsArgs,
    /// What to write.
    #[arg(long, value_enum, default_value = "torchvision")]
    pub format: ExportFormat,
    /// The file to write (replaced atomically).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

pub fn run(args: ExportArgs) -> Result<i32> {
    let classes = args.weights.classes.unwrap_or(IMAGENET_CLASSES);
    let (model, batches_tracked) = match (RunnableModel::from_weights(&args.weights, classes, None)?, &args.checkpoint) {
        (Some(model), _) => (model, 0),
        (None, Some(path)) => {
            let (tensors, meta) = checkpoint::load(path)?;
            // Every training step updates each layer's running statistics once.
            let steps = meta.optimizer_steps.iter().map(|(_, steps)| *steps).max().unwrap_or(0);
            (RunnableModel::from_checkpoint(&meta, tensors), i64::try_from(steps).unwrap_or(i64::MAX))
        }
        (None, None) => return Err(Error::config("export needs --checkpoint FILE or --weights FILE --model NAME")),
    };
    // The model is rebuilt on the CPU, so its values are checked against its parameters by name and shape.
    let ex = model.restore(CpuBackend::new())?;
    let values = model_tensors(&ex)?;
    let (bytes, how) = match args.format {
        ExportFormat::Torchvision => (
            torchvision_safetensors(&values, batches_tracked)?,
            "as a torchvision state_dict; in PyTorch: model.load_state_dict(safetensors.torch.load_file(path))".to_string(),
        ),
        ExportFormat::Onnx => {
            let about = ModelDescription { model: &model.model, class_names: &model.class_names, mean: &model.mean, std: &model.std };
            let normalisation = format!("(pixel / 255 - mean) / std, mean {:?}, std {:?}", model.mean, model.std);
            (
                onnx_model(ex.graph(), &values, &about)?,
                format!("as ONNX opset {OPSET}; input `input` [batch, C, H, W] normalised as {normalisation}"),
            )
        }
    };
    write_atomic(&args.out, &bytes)?;
    println!("wrote {}: {} ({} classes, input {:?}) {how}", args.out.display(), model.model, model.class_names.len(), model.input);
    Ok(0)
}
