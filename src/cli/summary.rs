//! `ferronet summary` (per-layer shapes, parameters and MACs of a model) and `ferronet models`.

use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::models::summary::{summarize, ModelSummary};
use crate::models::{self, parse_input, ModelOptions};
use clap::Args;

/// Which model, and its variant: the options `summary` and `bench` share.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model name (see `ferronet models`).
    #[arg(long)]
    pub model: String,
    /// Input as C,H,W (default: the model's usual input, e.g. 3,224,224).
    #[arg(long)]
    pub input: Option<String>,
    /// CIFAR stem (resnet, mobilenet_v2, shufflenet): 3x3 stride-1 first conv, no stem max-pool.
    #[arg(long)]
    pub cifar_stem: bool,
    /// Divide every hidden width by this (tiny variants).
    #[arg(long, default_value_t = 1)]
    pub width_divisor: usize,
    /// MobileNetV2 width multiplier.
    #[arg(long, default_value_t = 1.0)]
    pub width_mult: f64,
    /// Leave out the auxiliary classifiers of inception_v3 and googlenet.
    #[arg(long)]
    pub no_aux: bool,
}

impl ModelArgs {
    /// The model's options for a classifier of `classes` classes.
    pub fn options(&self, classes: usize) -> Result<ModelOptions> {
        let input = match &self.input {
            Some(text) => parse_input(text)?,
            None => models::default_input(&self.model)?,
        };
        Ok(ModelOptions {
            classes,
            input,
            cifar_stem: self.cifar_stem,
            width_divisor: self.width_divisor,
            width_mult: self.width_mult,
            aux_logits: !self.no_aux,
        })
    }

    /// The model's graph for a classifier of `classes` classes.
    pub fn build(&self, classes: usize) -> Result<Graph> {
        models::build(&self.model, &self.options(classes)?)
    }
}

#[derive(Args, Debug, Clone)]
pub struct SummaryArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Number of classes of the classifier.
    #[arg(long, default_value_t = 10)]
    pub classes: usize,
    /// Batch size the activation-memory estimate is for.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// One JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Plan the training memory with batch norm, residual add and activation as separate ops
    /// (as `train --no-fusion` runs) instead of fused.
    #[arg(long)]
    pub no_fusion: bool,
}

pub fn run(args: SummaryArgs) -> Result<i32> {
    if args.batch == 0 {
        return Err(Error::config("--batch must be at least 1"));
    }
    let graph = args.model.build(args.classes)?;
    let summary = summarize(&graph, args.batch, !args.no_fusion)?;
    if args.json {
        let text = serde_json::to_string_pretty(&summary).map_err(|e| Error::config(format!("cannot encode the summary: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", table(&summary));
    }
    Ok(0)
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn shape_text(dims: &[usize]) -> String {
    format!("[{}]", dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "))
}

/// The human-readable table: one row per layer, then the totals.
pub fn table(s: &ModelSummary) -> String {
    let rows: Vec<[String; 5]> = s
        .layers
        .iter()
        .map(|l| [l.name.clone(), l.op.clone(), shape_text(&l.output_shape), thousands(l.params as u64), thousands(l.macs)])
        .collect();
    let header = ["layer", "op", "output", "params", "MACs"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |row: &[String; 5]| {
        format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {:>w4$}\n",
            row[0], row[1], row[2], row[3], row[4],
            w0 = widths[0], w1 = widths[1], w2 = widths[2], w3 = widths[3], w4 = widths[4]
        )
    };
    let mut out = format!("{} for input {} (batch {})\n", s.model, shape_text(&s.input), s.batch);
    out += &line(&header);
    out += &format!("{}\n", "-".repeat(widths.iter().sum::<usize>() + 8));
    for row in &rows {
        out += &line(row);
    }
    out += &format!("trainable params:      {}\n", thousands(s.trainable_params as u64));
    out += &format!("non-trainable params:  {}\n", thousands(s.non_trainable_params as u64));
    out += &format!("total params:          {}\n", thousands(s.total_params as u64));
    out += &format!("MACs per sample:       {} ({:.3} G)\n", thousands(s.macs), s.macs as f64 / 1e9);
    out += &format!(
        "activation memory:     {:.1} MiB at batch {} (what the tape keeps for backward: inputs, masks, indices, statistics)\n",
        s.activation_bytes as f64 / (1u64 << 20) as f64,
        s.batch
    );
    out += &format!(
        "planned step peak:     {:.1} MiB (executor plan: live activations, tape, gradients, and the device \
         layer's default convolution workspace of {} MiB)\n",
        s.peak_step_bytes as f64 / (1u64 << 20) as f64,
        s.workspace_bytes >> 20
    );
    out += &format!(
        "planned GPU step peak: {:.1} MiB (as above on a GPU of {} SMs, channels-last: implicit-GEMM convolutions, \
         no column buffers; the largest convolution workspace, split-K partial products, is {:.1} MiB)\n",
        s.gpu_peak_step_bytes as f64 / (1u64 << 20) as f64,
        crate::sim::DEFAULT_SIM_MULTIPROCESSORS,
        s.gpu_workspace_bytes as f64 / (1u64 << 20) as f64
    );
    if s.fused_chains > 0 {
        out += &format!(
            "fused for training:    {} batch norm -> (add) -> activation chains (their intermediate tensors are \
             not kept; --no-fusion plans them unfused)\n",
            s.fused_chains
        );
    }
    out
}

pub fn list_models() -> Result<i32> {
    let width = models::names().iter().map(|n| n.len()).max().unwrap_or(0);
    for (name, description) in models::descriptions() {
        println!("{name:<width$}  {description}");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(12), "12");
    }
}
