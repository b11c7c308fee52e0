//! Models from weights saved elsewhere (a torchvision state_dict as .pth/.pt or safetensors):
//! the `--weights` flags of eval and predict, the model they describe, and `train --init-from`.

use crate::data::{load_image, Fit, ResizeCrop};
use crate::error::{Error, Result};
use crate::exec::Executor;
use crate::models;
use crate::ops::Backend;
use crate::train::checkpoint::{CheckpointMeta, NamedTensor};
use crate::train::config::parse_chw;
use crate::train::model_setup::classifier_params;
use crate::train::session::{build_model_with_aux, load_model_tensors};
use crate::shape::Layout;
use crate::weights::{load_state_dict, read_state_dict};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The per-channel mean and std torchvision's ImageNet weights expect, in [0, 1] pixel units.
const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// --classes of --weights where a command has no dataset to take it from: ImageNet's, which
/// torchvision's weights classify.
pub const IMAGENET_CLASSES: usize = 1000;

/// How images are normalised (eval/predict --weights, train).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
pub enum NormalizeChoice {
    /// ImageNet's mean and std (what torchvision's pretrained weights expect; 3 channels).
    #[default]
    Imagenet,
    /// The dataset's own mean and std (not in predict, which has no dataset).
    Dataset,
    /// Pixel values in [0, 1] as they are.
    None,
}

impl NormalizeChoice {
    /// The per-channel mean and std for a `channels`-channel input; `dataset` holds the
    /// dataset's own, where there is a dataset.
    pub fn stats(self, channels: usize, dataset: Option<(&[f32], &[f32])>) -> Result<(Vec<f32>, Vec<f32>)> {
        match (self, dataset) {
            (NormalizeChoice::Imagenet, _) if channels != 3 => Err(Error::config(format!(
                "--normalize imagenet needs a 3-channel input, not {channels}; use --normalize dataset or none"
            ))),
            (NormalizeChoice::Imagenet, _) => Ok((IMAGENET_MEAN.to_vec(), IMAGENET_STD.to_vec())),
            (NormalizeChoice::Dataset, Some((mean, std))) => Ok((mean.to_vec(), std.to_vec())),
            (NormalizeChoice::Dataset, None) => Err(Error::config(
                "--normalize dataset needs a dataset to take mean and std from (ferronet eval --dataset); use imagenet or none",
            )),
            (NormalizeChoice::None, _) => Ok((vec![0.0; channels], vec![1.0; channels])),
        }
    }
}

/// `--resize N --center-crop S`: torchvision's evaluation preprocessing, which its pretrained
/// weights expect (`Resize(256)`, `CenterCrop(224)`), instead of stretching images to the input.
#[derive(Args, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResizeArgs {
    /// Resize images so that their shorter edge is N pixels (the longer in proportion), with
    /// antialiased bilinear filtering exactly as torchvision's transforms.Resize(N) on PIL images,
    /// then center-crop them to the model's input size.
    #[arg(long, value_name = "N")]
    pub resize: Option<usize>,
    /// Center-crop images to S x S as torchvision's transforms.CenterCrop(S) (after --resize);
    /// S must be the model's input height and width.
    #[arg(long, value_name = "S")]
    pub center_crop: Option<usize>,
}

impl ResizeArgs {
    pub fn is_set(&self) -> bool {
        self.resize.is_some() || self.center_crop.is_some()
    }

    /// The Resize-CenterCrop these flags ask for a model taking `input`; None without them.
    pub fn resize_crop(&self, [_, h, w]: [usize; 3]) -> Result<Option<ResizeCrop>> {
        if self.resize == Some(0) {
            return Err(Error::config("--resize must be at least 1 pixel"));
        }
        if let Some(side) = self.center_crop.filter(|&side| (side, side) != (h, w)) {
            return Err(Error::config(format!(
                "--center-crop {side} gives {side}x{side} images but the model's input is {h}x{w}; give --input C,{side},{side}"
            )));
        }
        Ok(self.is_set().then_some(ResizeCrop { shorter_side: self.resize, crop: (h, w) }))
    }
}

/// `--weights FILE --model NAME ...`: a zoo model with weights from a state_dict file, the
/// alternative to `--checkpoint` in eval and predict (the default: none given).
#[derive(Args, Debug, Clone, Default)]
pub struct WeightsArgs {
    /// A PyTorch state_dict instead of --checkpoint: the .pth/.pt file of torch.save(model.state_dict(), FILE)
    /// (e.g. torchvision's) or a safetensors file; needs --model. Keys match ferronet's torchvision-style
    /// parameter names (a `module.` prefix is dropped); only tensors are read from a .pth, nothing in it runs.
    #[arg(long, value_name = "FILE", conflicts_with = "checkpoint", requires = "model")]
    pub weights: Option<PathBuf>,
    /// With --weights: the model of the zoo the weights are for (`ferronet models`).
    #[arg(long, requires = "weights")]
    pub model: Option<String>,
    /// With --weights: the classes of the model's classifier (default: predict 1000, as ImageNet;
    /// eval the dataset's). Without class names, predict names classes by their index.
    #[arg(long, requires = "weights")]
    pub classes: Option<usize>,
    /// With --weights: the model's input C,H,W, images are resized to it (default: the model's usual one).
    #[arg(long, value_parser = parse_chw, requires = "weights")]
    pub input: Option<[usize; 3]>,
    /// With --weights: the CIFAR stem (resnet, mobilenet_v2, shufflenet).
    #[arg(long, requires = "weights")]
    pub cifar_stem: bool,
    /// With --weights: normalise images with ImageNet's mean and std (torchvision's weights), with
    /// the evaluated dataset's (eval only), or not at all (pixels in [0, 1]).
    #[arg(long, value_enum, default_value = "imagenet", requires = "weights")]
    pub normalize: NormalizeChoice,
}

impl WeightsArgs {
    /// The model's input: --input, else the --model's usual one.
    pub fn model_input(&self) -> Result<[usize; 3]> {
        match self.input {
            Some(input) => Ok(input),
            None => models::default_input(self.model_name()?),
        }
    }

    fn model_name(&self) -> Result<&str> {
        self.model.as_deref().ok_or_else(|| Error::config("--weights needs --model NAME, the model they are for"))
    }
}

/// Where a model's values come from.
enum Weights {
    /// A ferronet checkpoint: every parameter by name.
    Checkpoint(Vec<NamedTensor>),
    /// A state_dict file, every parameter of the model required.
    StateDict { path: PathBuf, tensors: Vec<NamedTensor> },
}

/// A model ready to rebuild on a device, with what eval and predict need to feed it.
pub struct RunnableModel {
    pub model: String,
    pub class_names: Vec<String>,
    /// The model's input [C, H, W].
    pub input: [usize; 3],
    /// Per-channel normalisation in [0, 1] pixel units.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// How the checkpoint's run fitted images to the input (none for --weights).
    resize: ResizeArgs,
    /// Built with the auxiliary classifiers of inception_v3 and googlenet (evaluation never
    /// runs them; --no-aux builds the model without, as for inputs below 299x299).
    pub aux_logits: bool,
    cifar_stem: bool,
    seed: u64,
    weights: Weights,
}

impl RunnableModel {
    /// The model a ferronet checkpoint holds.
    pub fn from_checkpoint(meta: &CheckpointMeta, tensors: Vec<NamedTensor>) -> Self {
        RunnableModel {
            model: meta.model.clone(),
            class_names: meta.class_names.clone(),
            input: meta.input,
            mean: meta.mean.clone(),
            std: meta.std.clone(),
            resize: meta.config.data.resize,
            aux_logits: !meta.config.no_aux,
            cifar_stem: meta.config.cifar_stem,
            seed: meta.config.seed,
            weights: Weights::Checkpoint(tensors),
        }
    }

    /// The model `--weights` describes, its classes named by index; None without --weights.
    /// `dataset_stats` are the evaluated dataset's mean and std, where there is one.
    pub fn from_weights(args: &WeightsArgs, classes: usize, dataset_stats: Option<(&[f32], &[f32])>) -> Result<Option<Self>> {
        let Some(path) = &args.weights else { return Ok(None) };
        let model = args.model_name()?.to_string();
        let input = args.model_input()?;
        // The file is read before any device opens, so a bad file fails at once.
        let tensors = read_state_dict(path)?;
        let (mean, std) = args.normalize.stats(input[0], dataset_stats)?;
        Ok(Some(RunnableModel {
            model,
            class_names: (0..classes).map(|c| c.to_string()).collect(),
            input,
            mean,
            std,
            resize: ResizeArgs::default(),
            aux_logits: true,
            cifar_stem: args.cifar_stem,
            // Every parameter comes from the file: the seed only draws the values it replaces.
            seed: 0,
            weights: Weights::StateDict { path: path.clone(), tensors },
        }))
    }

    /// The image at `path` as the model's input pixels (CHW u8): fitted as `resize` says when it
    /// is set, else as the checkpoint's run fitted its images (stretched to the input without one).
    pub fn load_image(&self, path: &Path, resize: &ResizeArgs) -> Result<Vec<u8>> {
        let resize = if resize.is_set() { resize } else { &self.resize };
        let [c, h, w] = self.input;
        let fit = resize.resize_crop(self.input)?.map_or(Fit::Stretch(h, w), Fit::ResizeCrop);
        load_image(path, c, &fit)
    }

    /// The model on `backend` with its weights.
    pub fn restore<B: Backend<f32> + Clone>(&self, backend: B) -> Result<Executor<f32, B>> {
        let graph = build_model_with_aux(&self.model, self.class_names.len(), self.input, self.cifar_stem, self.aux_logits)?;
        let mut ex = Executor::new(backend, graph, self.seed)?;
        match &self.weights {
            Weights::Checkpoint(tensors) => load_model_tensors(&mut ex, tensors)?,
            Weights::StateDict { path, tensors } => {
                let report = load_state_dict(&mut ex, tensors, path)?;
                report.require_complete(path, &self.model)?;
                for line in report.lines() {
                    eprintln!("{}: {line}", path.display());
                }
            }
        }
        Ok(ex)
    }

    /// The model for evaluation: [`restore`](Self::restore), then every batch norm that reads a
    /// convolution folded into it unless `fold_batch_norms` is off (`--no-fusion`).
    /// The restored model for evaluation, its batch norms folded when asked, in `layout` (the
    /// device's default without one).
    pub fn restore_for_inference<B: Backend<f32> + Clone>(&self, backend: B, fold_batch_norms: bool, layout: Option<Layout>) -> Result<Executor<f32, B>> {
        let ex = self.restore(backend)?;
        let ex = if fold_batch_norms { ex.fold_batch_norms()?.0 } else { ex };
        Ok(ex.in_chosen_layout(layout))
    }
}

/// `train --init-from FILE`: the model starts from the file's values; what the file does not
/// provide (a classifier for another number of classes) keeps its initialisation, as does the
/// classifier with `replace_classifier`; the differences are printed unless `quiet`.
pub fn init_from<B: Backend<f32> + Clone>(
    ex: &mut Executor<f32, B>,
    path: &Path,
    tensors: &[NamedTensor],
    replace_classifier: bool,
    quiet: bool,
) -> Result<()> {
    let backend = ex.backend().clone();
    let classifier: Vec<String> = match replace_classifier {
        true => classifier_params(ex.graph()).into_iter().map(|id| ex.graph().params[id].name.clone()).collect(),
        false => Vec::new(),
    };
    let initial = classifier.iter().map(|name| ex.params().get_host(&backend, name)).collect::<Result<Vec<_>>>()?;
    let report = load_state_dict(ex, tensors, path)?;
    for (name, values) in classifier.iter().zip(&initial) {
        ex.params_mut().set_host(&backend, name, values)?;
    }
    if !quiet {
        let shown = path.display();
        eprintln!("--init-from {shown}: {} of {} parameters and statistics loaded", report.loaded, ex.graph().params.len());
        for line in report.lines() {
            eprintln!("--init-from {shown}: {line}");
        }
        if replace_classifier {
            eprintln!("--replace-classifier: {} keep their initialisation", classifier.join(", "));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_flags_crop_to_the_model_input() {
        let flags = |resize, center_crop| ResizeArgs { resize, center_crop };
        assert_eq!(flags(None, None).resize_crop([3, 224, 224]).unwrap(), None);
        let torchvision = ResizeCrop { shorter_side: Some(256), crop: (224, 224) };
        assert_eq!(flags(Some(256), Some(224)).resize_crop([3, 224, 224]).unwrap(), Some(torchvision));
        assert_eq!(flags(Some(256), None).resize_crop([3, 224, 224]).unwrap(), Some(torchvision));
        let err = flags(Some(256), Some(200)).resize_crop([3, 224, 224]).unwrap_err().to_string();
        assert!(err.contains("--center-crop 200 gives 200x200 images but the model's input is 224x224"), "{err}");
        assert!(flags(Some(0), None).resize_crop([3, 8, 8]).unwrap_err().to_string().contains("--resize must be at least 1"));
    }

    #[test]
    fn normalisation_statistics() {
        let own: (&[f32], &[f32]) = (&[0.5], &[0.25]);
        assert_eq!(NormalizeChoice::Dataset.stats(1, Some(own)).unwrap(), (vec![0.5], vec![0.25]));
        assert_eq!(NormalizeChoice::None.stats(3, None).unwrap(), (vec![0.0; 3], vec![1.0; 3]));
        assert_eq!(NormalizeChoice::Imagenet.stats(3, Some(own)).unwrap().0, IMAGENET_MEAN.to_vec());
        let err = NormalizeChoice::Imagenet.stats(1, Some(own)).unwrap_err().to_string();
        assert!(err.contains("3-channel input, not 1"), "{err}");
        assert!(NormalizeChoice::Dataset.stats(3, None).unwrap_err().to_string().contains("needs a dataset"));
    }
}
