//! `ferronet export --checkpoint FILE --format torchvision --out FILE`: a trained model's weights
//! for PyTorch.

use crate::error::{Error, Result};
use crate::train::checkpoint;
use crate::train::files::write_atomic;
use crate::train::session::build_model;
use crate::weights::torchvision_safetensors;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// A safetensors state_dict that torchvision's model of the same name, built with
    /// num_classes=N, loads with load_state_dict(strict=True).
    Torchvision,
}

#[derive(Args, Debug, Clone)]
pub struct ExportArgs {
    /// A checkpoint.safetensors written by `ferronet train`.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// What to write (ONNX is not written yet).
    #[arg(long, value_enum, default_value = "torchvision")]
    pub format: ExportFormat,
    /// The file to write (replaced atomically).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

pub fn run(args: ExportArgs) -> Result<i32> {
    let (tensors, meta) = checkpoint::load(&args.checkpoint)?;
    let graph = build_model(&meta.model, meta.class_names.len(), meta.input, meta.config.cifar_stem)?;
    let params = graph
        .params
        .iter()
        .map(|spec| {
            tensors.iter().find(|t| t.name == spec.name).cloned().ok_or_else(|| {
                Error::data(&args.checkpoint, format!("has no tensor {} for model {}; is it a complete checkpoint?", spec.name, meta.model))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    // Every training step updates each layer's running statistics once.
    let steps = meta.optimizer_steps.iter().map(|(_, steps)| *steps).max().unwrap_or(0);
    let bytes = torchvision_safetensors(&params, i64::try_from(steps).unwrap_or(i64::MAX))?;
    write_atomic(&args.out, &bytes)?;
    println!(
        "wrote {}: {} ({} classes, input {:?}) as a torchvision state_dict; in PyTorch: model.load_state_dict(safetensors.torch.load_file(path))",
        args.out.display(),
        meta.model,
        meta.class_names.len(),
        meta.input
    );
    Ok(0)
}
