//! The training configuration: the `ferronet train` flags, checked for impossible values before
//! any work, and stored in every checkpoint so `--resume` and `eval` rebuild the same run.

use crate::device::{CudaGraphMode, DeviceRequest};
use crate::dist::DistBackend;
use crate::error::{Error, Result};
use crate::models::parse_input;
use crate::precision::Precision;
use crate::shape::Layout;
use crate::train::pretrained::NormalizeChoice;
use crate::train::schedule::{PlateauMode, ScheduleKind};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Command, ValueEnum};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
pub enum DatasetChoice {
    Synthetic,
    Mnist,
    FashionMnist,
    Cifar10,
    Cifar100,
    /// Tiny-ImageNet's official layout (tiny-imagenet-200/): 200 classes of 64x64 images.
    TinyImagenet,
    /// One sub-folder of images per class under --data-dir.
    Folder,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
pub enum OptimizerChoice {
    Sgd,
    Adam,
    Adamw,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
pub enum SchedulerChoice {
    None,
    Step,
    Cosine,
    Plateau,
}

/// Where the images come from and how they are shaped for the model (shared by train and eval).
#[derive(Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataConfig {
    /// Dataset to train on.
    #[arg(long, value_enum, default_value = "synthetic")]
    pub dataset: DatasetChoice,
    /// Directory holding the dataset's files (defaults to the dataset's usual system location).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Fraction of the training images held out for validation (datasets with a test set
    /// validate on it when this is 0; others default to 0.2).
    #[arg(long)]
    pub val_split: Option<f64>,
    /// Resize images to C,H,W (bilinear), e.g. 3,224,224.
    #[arg(long, value_parser = parse_chw)]
    pub input: Option<[usize; 3]>,
    /// Repeat grayscale images over 3 channels (to feed RGB models).
    #[arg(long)]
    pub gray_to_rgb: bool,
    /// Use only the first N training images (quick runs).
    #[arg(long)]
    pub limit: Option<usize>,
    #[command(flatten)]
    #[serde(flatten)]
    pub resize: crate::train::pretrained::ResizeArgs,
}

/// Every flag of `ferronet train`. Defaults train `small_cnn` on the synthetic dataset.
#[derive(Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Model of the zoo (`ferronet models` lists them).
    #[arg(long, default_value = "small_cnn")]
    pub model: String,
    #[command(flatten)]
    pub data: DataConfig,
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Images per training step [default: by model and dataset, see below].
    #[arg(long, default_value_t = 64, hide_default_value = true)]
    pub batch_size: usize,
    /// Base learning rate [default: by model and dataset, see below].
    #[arg(long, default_value_t = 0.05, hide_default_value = true)]
    pub lr: f64,
    /// [default: by model and dataset, see below]
    #[arg(long, value_enum, default_value = "sgd", hide_default_value = true)]
    pub optimizer: OptimizerChoice,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// SGD dampening.
    #[arg(long, default_value_t = 0.0)]
    pub dampening: f64,
    /// SGD Nesterov momentum.
    #[arg(long)]
    pub nesterov: bool,
    #[arg(long, default_value_t = 0.9)]
    pub beta1: f64,
    #[arg(long, default_value_t = 0.999)]
    pub beta2: f64,
    /// Adam/AdamW epsilon.
    #[arg(long, default_value_t = 1e-8)]
    pub eps: f64,
    /// L2 weight decay (decoupled for AdamW) [default: by model and dataset, see below].
    #[arg(long, default_value_t = 5e-4, hide_default_value = true)]
    pub weight_decay: f64,
    /// Exempt biases and batch-norm parameters from weight decay.
    #[arg(long)]
    pub no_decay_bn_bias: bool,
    /// Cross-entropy label smoothing in [0, 1).
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f64,
    /// Override the dropout probability of every dropout layer of the model [default: by model
    /// and dataset, see below; else the model's own].
    #[arg(long)]
    pub dropout: Option<f64>,
    /// [default: by model and dataset, see below]
    #[arg(long, value_enum, default_value = "none", hide_default_value = true)]
    pub scheduler: SchedulerChoice,
    /// StepLR: epochs between decays.
    #[arg(long, default_value_t = 10)]
    pub step_size: usize,
    /// StepLR: decay factor.
    #[arg(long, default_value_t = 0.1)]
    pub gamma: f64,
    /// ReduceLROnPlateau: min watches the validation loss, max the validation top-1.
    #[arg(long, value_enum, default_value = "min")]
    pub plateau_mode: PlateauMode,
    #[arg(long, default_value_t = 0.1)]
    pub plateau_factor: f64,
    #[arg(long, default_value_t = 10)]
    pub plateau_patience: usize,
    /// Epochs of linear learning-rate warm-up before the schedule.
    #[arg(long, default_value_t = 0)]
    pub warmup_epochs: usize,
    /// Stop after this many epochs without a better validation top-1.
    #[arg(long, value_name = "PATIENCE")]
    pub early_stopping: Option<usize>,
    /// Clip gradients to this global L2 norm.
    #[arg(long)]
    pub clip_grad_norm: Option<f64>,
    /// Train only the last K layers that have parameters; freeze the rest.
    #[arg(long, value_name = "K")]
    pub freeze_all_but: Option<usize>,
    /// Basic augmentation: random crop with padding 4 and horizontal flip [default: on for
    /// cifar10, cifar100 and tiny-imagenet; --augment=false turns it off].
    #[arg(long, num_args = 0..=1, default_value_t = false, default_missing_value = "true", require_equals = true, hide_default_value = true)]
    pub augment: bool,
    /// Random-crop padding in pixels (0 = no crop).
    #[arg(long)]
    pub crop_padding: Option<usize>,
    /// Random horizontal flip [default: on for image folders; --hflip=false turns it off].
    #[arg(long, num_args = 0..=1, default_value_t = false, default_missing_value = "true", require_equals = true, hide_default_value = true)]
    pub hflip: bool,
    /// Colour jitter strengths B,C,S,H (brightness, contrast, saturation in [0, 1], hue in [0, 0.5]).
    #[arg(long, value_parser = parse_jitter, value_name = "B,C,S,H")]
    pub color_jitter: Option<[f32; 4]>,
    /// Normalise images with the dataset's own mean and std, with ImageNet's (what torchvision's
    /// pretrained weights expect) or not at all (pixels in [0, 1]) [default: dataset; imagenet
    /// with --init-from on 3-channel inputs].
    #[arg(long, value_enum, default_value = "dataset", hide_default_value = true)]
    #[serde(default = "dataset_normalization")]
    pub normalize: NormalizeChoice,
    /// Use the CIFAR stem (3x3 stride-1 first conv, no stem max-pool) where the model has one
    /// [default: on for cifar10 and cifar100 without --init-from; --cifar-stem=false turns it off].
    #[arg(long, num_args = 0..=1, default_value_t = false, default_missing_value = "true", require_equals = true, hide_default_value = true)]
    pub cifar_stem: bool,
    /// Leave out the auxiliary classifiers of inception_v3 and googlenet (inception_v3 needs
    /// them off below 299x299).
    #[arg(long)]
    #[serde(default)]
    pub no_aux: bool,
    /// Start from the weights of a PyTorch state_dict: the .pth/.pt of torch.save(model.state_dict(), FILE)
    /// (e.g. torchvision's) or a safetensors file, matched to the model's torchvision-style parameter
    /// names (a `module.` prefix is dropped). What it lacks or holds in another shape (a classifier for
    /// another number of classes) keeps its initialisation and is listed; only tensors are read from a
    /// .pth, nothing in it runs.
    #[arg(long, value_name = "FILE")]
    #[serde(default)]
    pub init_from: Option<PathBuf>,
    /// With --init-from: the classifier (the layers producing the logits) keeps its initialisation
    /// instead of the file's values, to fine-tune on other classes.
    #[arg(long, requires = "init_from")]
    #[serde(default)]
    pub replace_classifier: bool,
    /// Train only the classifier (the layers producing the logits); freeze everything else.
    #[arg(long, conflicts_with = "freeze_all_but")]
    #[serde(default)]
    pub freeze_backbone: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Compute device: auto (CUDA if present, else CPU), cpu, cuda, cuda:N or sim (the PTX simulator).
    #[arg(long, default_value = "auto")]
    pub device: DeviceRequest,
    /// Threads preparing batches ahead of the training step.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Output directory (default: runs/<next free number>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue from --out's checkpoint.safetensors with its saved configuration. Only --epochs,
    /// --device, --workers, --quiet, --log-json, --cuda-graph, --skip-nonfinite, --no-fusion,
    /// --data-dir, --collective-timeout, --bucket-mb and --dist-backend may change (and are
    /// announced); another flag that differs from the saved value is refused.
    #[arg(long)]
    pub resume: bool,
    /// No progress bar or per-epoch lines.
    #[arg(long)]
    pub quiet: bool,
    /// Also append one JSON object per epoch to this file.
    #[arg(long, value_name = "FILE")]
    pub log_json: Option<PathBuf>,
    /// Skip a step whose loss is NaN/inf instead of stopping.
    #[arg(long)]
    pub skip_nonfinite: bool,
    /// Numeric format: fp32; tf32 (convolution and linear operands rounded to tf32); bf16 or
    /// fp16 (activations, activation gradients and the weights convolutions and linear layers
    /// read in the format; fp32 master weights, optimiser state, batch-norm statistics and loss;
    /// fp16 with dynamic loss scaling, its scale and skipped steps in history.csv). GPUs store
    /// bf16/fp16 activations in 16 bits; the CPU emulates them (f32 values rounded exactly as
    /// the format stores them). Default: bf16 on GPUs of compute capability 8.0 and newer, fp16
    /// on Turing (7.5), fp32 on the CPU.
    #[arg(long, value_enum)]
    #[serde(default)]
    pub precision: Option<Precision>,
    /// Replay each full-size training step as a CUDA graph captured after the first step: auto
    /// (on GPU devices, but not with --skip-nonfinite or data-parallel ranks), on, or off. The partial
    /// last batch of an epoch is queued from the host; the graph is captured again when the
    /// learning rate changes.
    #[arg(long, value_enum, default_value_t = CudaGraphMode::Auto)]
    #[serde(default = "auto_graph")]
    pub cuda_graph: CudaGraphMode,
    /// Memory order of image tensors between the input and the classifier: nchw, or nhwc
    /// (channels-last: the batch converted once where it enters and once before the classifier,
    /// every op between on channels-last tensors; the same results up to rounding). Default:
    /// nhwc on GPU devices (cuda, sim), where the simulator PREDICTS it faster (see
    /// benches/RESULTS.md), nchw on the CPU, whose channels-last ops reorder around its
    /// channels-first ones.
    #[arg(long, value_enum)]
    #[serde(default)]
    pub layout: Option<Layout>,
    /// Train with batch norm, residual add and activation as separate ops instead of fused ones
    /// (each batch norm -> (add) -> activation chain one op by default; the same results up to
    /// rounding), for checking.
    #[arg(long)]
    #[serde(default)]
    pub no_fusion: bool,
    /// In a data-parallel run: batch norm's training statistics over the global batch (every
    /// rank's slice), as PyTorch's SyncBatchNorm, instead of each rank's slice alone.
    #[arg(long)]
    #[serde(default)]
    pub sync_bn: bool,
    /// In a data-parallel run (`mpirun -np N ferronet train ...`): how long a rank waits for
    /// the others in a gradient all-reduce before it ends the job (a rank died or hangs).
    #[arg(long, default_value_t = DEFAULT_COLLECTIVE_TIMEOUT, value_name = "SECONDS")]
    #[serde(default = "default_collective_timeout")]
    pub collective_timeout: f64,
    /// In a data-parallel run: the gradients are averaged in buckets of this many MB, each
    /// all-reduced as soon as backward has finished its gradients, overlapping the rest of
    /// backward (PyTorch DDP's bucket_cap_mb).
    #[arg(long, default_value_t = DEFAULT_BUCKET_MB, value_name = "MB")]
    #[serde(default = "default_bucket_mb")]
    pub bucket_mb: f64,
    /// In a data-parallel run: how the ranks' gradients are all-reduced: auto (NCCL between
    /// CUDA devices, MPI through the host for CPU ranks), nccl or mpi.
    #[arg(long, value_enum, default_value_t = DistBackend::Auto)]
    #[serde(default)]
    pub dist_backend: DistBackend,
}

const DEFAULT_COLLECTIVE_TIMEOUT: f64 = 300.0;
const DEFAULT_BUCKET_MB: f64 = 25.0;

/// Checkpoints written before `--bucket-mb` existed.
fn default_bucket_mb() -> f64 {
    DEFAULT_BUCKET_MB
}

/// Checkpoints written before `--collective-timeout` existed.
fn default_collective_timeout() -> f64 {
    DEFAULT_COLLECTIVE_TIMEOUT
}

/// Checkpoints written before `--cuda-graph` existed.
fn auto_graph() -> CudaGraphMode {
    CudaGraphMode::Auto
}

/// Checkpoints written before `--normalize` existed.
fn dataset_normalization() -> NormalizeChoice {
    NormalizeChoice::Dataset
}

impl Default for TrainConfig {
    /// The flags' defaults (what `ferronet train` with no arguments runs).
    fn default() -> Self {
        use clap::FromArgMatches;
        let matches = Self::augment_args(Command::new("train")).get_matches_from(["train"]);
        Self::from_arg_matches(&matches).expect("the defaults of every flag parse")
    }
}

/// The flags of a configuration that the user gave on the command line (clap's
/// `ValueSource::CommandLine`), by clap id (the field's name: `lr`, `batch_size`): recipes fill
/// the others, and `--resume` checks the given ones against the saved run.
#[derive(Clone, Debug, PartialEq)]
pub struct GivenFlags(Option<BTreeSet<String>>);

impl GivenFlags {
    /// Every flag counts as given: a configuration built in code means each of its values.
    pub fn every() -> Self {
        GivenFlags(None)
    }

    pub fn from_ids(ids: impl IntoIterator<Item = String>) -> Self {
        GivenFlags(Some(ids.into_iter().collect()))
    }

    /// The train flags typed on the command line of `matches` (not defaults). Argument groups,
    /// which clap reports as typed with their members, are no flags and are left out.
    pub fn from_matches(matches: &ArgMatches) -> Self {
        let typed = TrainConfig::flags().into_iter().map(|arg| arg.get_id().to_string());
        Self::from_ids(typed.filter(|id| matches.value_source(id) == Some(ValueSource::CommandLine)))
    }

    pub fn contains(&self, id: &str) -> bool {
        self.0.as_ref().is_none_or(|ids| ids.contains(id))
    }
}

impl TrainConfig {
    /// The `ferronet train` flags, as clap declares them (ids, long names, possible values).
    pub fn flags() -> Vec<clap::Arg> {
        Self::augment_args(Command::new("train")).get_arguments().cloned().collect()
    }
}

/// The largest learning rate accepted: anything above is a typo, not a schedule.
const MAX_LR: f64 = 10.0;

/// `C,H,W` with each dimension at least 1 (the syntax of `ferronet summary --input`).
pub fn parse_chw(s: &str) -> std::result::Result<[usize; 3], String> {
    parse_input(s).map_err(|e| e.to_string())
}

fn parse_jitter(s: &str) -> std::result::Result<[f32; 4], String> {
    let bad = || format!("expected four numbers B,C,S,H such as 0.4,0.4,0.4,0.1, got `{s}`");
    let values: Vec<f32> = s.split(',').map(|p| p.trim().parse()).collect::<std::result::Result<_, _>>().map_err(|_| bad())?;
    let j: [f32; 4] = values.try_into().map_err(|_| bad())?;
    if j[..3].iter().any(|v| !(0.0..=1.0).contains(v)) || !(0.0..=0.5).contains(&j[3]) {
        return Err(format!("brightness, contrast and saturation must be in [0, 1] and hue in [0, 0.5], got `{s}`"));
    }
    Ok(j)
}

fn check(ok: bool, msg: impl FnOnce() -> String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::config(msg()))
    }
}

impl DataConfig {
    pub fn validate(&self) -> Result<()> {
        if let Some(v) = self.val_split {
            check((0.0..1.0).contains(&v), || format!("--val-split {v} must be in [0, 1)"))?;
        }
        check(self.limit != Some(0), || "--limit must be at least 1 image".into())?;
        check(self.dataset != DatasetChoice::Folder || self.data_dir.is_some(), || {
            "--dataset folder needs --data-dir DIR with one sub-folder of images per class".into()
        })
    }
}

impl TrainConfig {
    /// `--collective-timeout` as a duration; an impossible value is the error naming it.
    pub fn collective_timeout(&self) -> Result<Duration> {
        let seconds = self.collective_timeout;
        match Duration::try_from_secs_f64(seconds) {
            Ok(timeout) if !timeout.is_zero() => Ok(timeout),
            _ => Err(Error::config(format!("--collective-timeout {seconds} must be a positive number of seconds"))),
        }
    }

    /// `--bucket-mb` in bytes; an impossible value is the error naming it.
    pub fn bucket_bytes(&self) -> Result<usize> {
        let bytes = self.bucket_mb * 1e6;
        match bytes.is_finite() && bytes >= 1.0 {
            true => Ok(bytes as usize),
            false => Err(Error::config(format!("--bucket-mb {} must be a positive size of at least one byte", self.bucket_mb))),
        }
    }

    /// Every check that needs neither the data nor the model; fails on the first impossible value.
    pub fn validate(&self) -> Result<()> {
        self.data.validate()?;
        check(self.epochs >= 1, || "--epochs must be at least 1".into())?;
        check(self.batch_size >= 1, || "--batch-size must be at least 1".into())?;
        check(self.lr > 0.0 && self.lr <= MAX_LR, || format!("--lr {} must be in (0, {MAX_LR}]", self.lr))?;
        check((0.0..1.0).contains(&self.momentum), || format!("--momentum {} must be in [0, 1)", self.momentum))?;
        check((0.0..=1.0).contains(&self.dampening), || format!("--dampening {} must be in [0, 1]", self.dampening))?;
        check(!self.nesterov || (self.momentum > 0.0 && self.dampening == 0.0), || {
            "--nesterov needs --momentum > 0 and --dampening 0 (as PyTorch)".into()
        })?;
        for (name, b) in [("--beta1", self.beta1), ("--beta2", self.beta2)] {
            check((0.0..1.0).contains(&b), || format!("{name} {b} must be in [0, 1)"))?;
        }
        check(self.eps > 0.0, || format!("--eps {} must be positive", self.eps))?;
        check(self.weight_decay >= 0.0 && self.weight_decay.is_finite(), || {
            format!("--weight-decay {} must be a non-negative number", self.weight_decay)
        })?;
        check((0.0..1.0).contains(&self.label_smoothing), || {
            format!("--label-smoothing {} must be in [0, 1)", self.label_smoothing)
        })?;
        if let Some(p) = self.dropout {
            check((0.0..1.0).contains(&p), || format!("--dropout {p} must be in [0, 1)"))?;
        }
        check(self.early_stopping != Some(0), || "--early-stopping PATIENCE must be at least 1 epoch".into())?;
        if let Some(c) = self.clip_grad_norm {
            check(c > 0.0 && c.is_finite(), || format!("--clip-grad-norm {c} must be positive"))?;
        }
        check(self.freeze_all_but != Some(0), || "--freeze-all-but K needs K >= 1 trainable layers".into())?;
        check(self.workers >= 1, || "--workers must be at least 1".into())?;
        self.collective_timeout()?;
        self.bucket_bytes()?;
        check(!self.resume || self.out.is_some(), || "--resume needs --out DIR of the run to continue".into())?;
        // The schedule checks its own parameters.
        crate::train::schedule::LrSchedule::new(self.schedule_kind(), self.lr, self.warmup_epochs, self.epochs)?;
        Ok(())
    }

    pub fn schedule_kind(&self) -> ScheduleKind {
        match self.scheduler {
            SchedulerChoice::None => ScheduleKind::Constant,
            SchedulerChoice::Step => ScheduleKind::Step { step_size: self.step_size, gamma: self.gamma },
            SchedulerChoice::Cosine => ScheduleKind::Cosine,
            SchedulerChoice::Plateau => ScheduleKind::Plateau {
                mode: self.plateau_mode,
                factor: self.plateau_factor,
                patience: self.plateau_patience,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: TrainConfig,
    }

    fn parse(args: &[&str]) -> std::result::Result<TrainConfig, String> {
        let mut all = vec!["train"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).map(|c| c.config).map_err(|e| e.to_string())
    }

    fn invalid(args: &[&str]) -> String {
        let config = parse(args).expect("parses");
        config.validate().expect_err("must be rejected").to_string()
    }

    #[test]
    fn defaults_are_valid_and_impossible_values_are_one_line_errors() {
        let defaults = parse(&[]).unwrap();
        assert_eq!(defaults, TrainConfig::default());
        defaults.validate().unwrap();
        assert_eq!(defaults.model, "small_cnn");
        assert_eq!(defaults.data.dataset, DatasetChoice::Synthetic);
        for (args, needle) in [
            (&["--batch-size", "0"][..], "--batch-size"),
            (&["--lr=-0.1"][..], "--lr"),
            (&["--lr", "11"][..], "--lr"),
            (&["--epochs", "0"][..], "--epochs"),
            (&["--momentum", "1.5"][..], "--momentum"),
            (&["--nesterov", "--momentum", "0"][..], "--nesterov"),
            (&["--label-smoothing", "1"][..], "--label-smoothing"),
            (&["--val-split", "1.0"][..], "--val-split"),
            (&["--dataset", "folder"][..], "--data-dir"),
            (&["--scheduler", "step", "--step-size", "0"][..], "--step-size"),
            (&["--warmup-epochs", "3", "--epochs", "3"][..], "--warmup-epochs"),
            (&["--resume"][..], "--out"),
            (&["--freeze-all-but", "0"][..], "--freeze-all-but"),
            (&["--collective-timeout", "0"][..], "--collective-timeout"),
            (&["--collective-timeout", "nan"][..], "--collective-timeout"),
            (&["--collective-timeout=-5"][..], "--collective-timeout"),
            (&["--bucket-mb", "0"][..], "--bucket-mb"),
            (&["--bucket-mb", "inf"][..], "--bucket-mb"),
        ] {
            let msg = invalid(args);
            assert!(msg.contains(needle) && !msg.contains('\n'), "{args:?}: {msg}");
        }
        assert!(parse(&["--dataset", "imagenet"]).unwrap_err().contains("imagenet"));
        assert!(parse(&["--device", "tpu"]).unwrap_err().contains("unknown device `tpu`"));
        assert_eq!(defaults.device, DeviceRequest::Auto);
        assert_eq!(parse(&["--device", "cuda:1"]).unwrap().device, DeviceRequest::Cuda(1));
        assert!(parse(&["--input", "3,0,5"]).unwrap_err().contains("C,H,W"));
        assert!(parse(&["--color-jitter", "0.4,0.4"]).unwrap_err().contains("B,C,S,H"));
    }

    #[test]
    fn list_flags_parse() {
        assert_eq!(parse(&["--input", "3,32,32"]).unwrap().data.input, Some([3, 32, 32]));
        let jitter = parse(&["--color-jitter", "0.2,0.1,0,0.05"]).unwrap().color_jitter;
        assert_eq!(jitter, Some([0.2, 0.1, 0.0, 0.05]));
        assert!(parse(&["--color-jitter", "0.2,0.1,0,0.9"]).unwrap_err().contains("hue"));
        assert!(parse(&["--replace-classifier"]).unwrap_err().contains("--init-from"));
        assert!(parse(&["--freeze-backbone", "--freeze-all-but", "2"]).unwrap_err().contains("cannot be used with"));
        let fine_tune = parse(&["--init-from", "w.pth", "--replace-classifier", "--freeze-backbone"]).unwrap();
        assert!(fine_tune.replace_classifier && fine_tune.freeze_backbone);
    }
}
