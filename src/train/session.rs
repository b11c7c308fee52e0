//! What train, eval and predict share: opening the `--device` backend and running generic code
//! on it, building the model for a dataset, and moving its parameters to and from checkpoints.

use crate::cpu::CpuBackend;
use crate::data::{DatasetKind, DatasetOptions};
use crate::device::DeviceRequest;
use crate::error::{Error, Result};
use crate::exec::Executor;
use crate::graph::Graph;
use crate::models::{self, ModelOptions};
use crate::ops::Backend;
use crate::select::{self, SelectedDevice};
use crate::train::checkpoint::NamedTensor;
use crate::train::config::{DataConfig, DatasetChoice};

/// Work that runs on whichever backend `--device` opened.
pub trait OnBackend {
    type Output;
    fn run<B: Backend<f32> + Clone>(self, backend: B, device_name: String) -> Result<Self::Output>;
}

/// Opens `device` and runs `work` on it.
pub fn on_device<W: OnBackend>(device: DeviceRequest, work: W) -> Result<W::Output> {
    match select::open(device)? {
        SelectedDevice::Cpu(cpu) => {
            let name = format!("cpu ({} threads)", cpu.threads());
            work.run::<CpuBackend>(cpu, name)
        }
        SelectedDevice::Gpu(gpu) => {
            let name = gpu.driver().name();
            work.run(gpu, name)
        }
    }
}

impl DatasetChoice {
    pub fn kind(self) -> DatasetKind {
        match self {
            DatasetChoice::Synthetic => DatasetKind::Synthetic,
            DatasetChoice::Mnist => DatasetKind::Mnist,
            DatasetChoice::FashionMnist => DatasetKind::FashionMnist,
            DatasetChoice::Cifar10 => DatasetKind::Cifar10,
            DatasetChoice::Cifar100 => DatasetKind::Cifar100,
            DatasetChoice::TinyImagenet => DatasetKind::TinyImagenet,
            DatasetChoice::Folder => DatasetKind::ImageFolder,
        }
    }

    /// The [C, H, W] of the dataset's images as stored; None for image folders (any size).
    pub fn native_input(self) -> Option<[usize; 3]> {
        match self {
            DatasetChoice::Synthetic | DatasetChoice::Mnist | DatasetChoice::FashionMnist => Some([1, 28, 28]),
            DatasetChoice::Cifar10 | DatasetChoice::Cifar100 => Some([3, 32, 32]),
            DatasetChoice::TinyImagenet => Some([3, 64, 64]),
            DatasetChoice::Folder => None,
        }
    }

    /// Whether the dataset has a separate test split (the synthetic one generates one).
    pub fn has_test_set(self) -> bool {
        self != DatasetChoice::Folder
    }

    /// The number of classes known before loading (image folders: one per sub-folder).
    pub fn classes(self) -> Option<usize> {
        match self {
            DatasetChoice::Cifar100 => Some(100),
            // The real dataset has 200; a folder in its layout may hold any number.
            DatasetChoice::TinyImagenet | DatasetChoice::Folder => None,
            _ => Some(10),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DatasetChoice::Synthetic => "synthetic",
            DatasetChoice::Mnist => "mnist",
            DatasetChoice::FashionMnist => "fashion-mnist",
            DatasetChoice::Cifar10 => "cifar10",
            DatasetChoice::Cifar100 => "cifar100",
            DatasetChoice::TinyImagenet => "tiny-imagenet",
            DatasetChoice::Folder => "folder",
        }
    }
}

impl DataConfig {
    /// The model's input: --input, else the dataset's own image size.
    pub fn model_input(&self) -> Result<[usize; 3]> {
        self.input.or(self.dataset.native_input()).ok_or_else(|| {
            Error::config("--dataset folder needs --input C,H,W: the size its images are resized to")
        })
    }

    /// The loader options for a model taking `input`: resized when --input differs from the
    /// stored size, grayscale repeated to RGB when the model takes 3 channels.
    pub fn dataset_options(&self, input: [usize; 3], seed: u64) -> Result<DatasetOptions> {
        let native = self.dataset.native_input();
        if let Some([c, _, _]) = native {
            if c == 3 && input[0] != 3 {
                return Err(Error::config(format!(
                    "{} images have 3 channels; the model input {}x{}x{} must have 3 too",
                    self.dataset.name(),
                    input[0],
                    input[1],
                    input[2]
                )));
            }
        }
        if !matches!(input[0], 1 | 3) {
            return Err(Error::config(format!("the model input must have 1 or 3 channels, not {}", input[0])));
        }
        let default_val = if self.dataset.has_test_set() { 0.0 } else { 0.2 };
        Ok(DatasetOptions {
            kind: self.dataset.kind(),
            data_dir: self.data_dir.clone(),
            val_fraction: self.val_split.unwrap_or(default_val),
            seed,
            resize: (native.map(|[_, h, w]| (h, w)) != Some((input[1], input[2]))).then_some((input[1], input[2])),
            resize_crop: self.resize.resize_crop(input)?,
            grayscale_to_rgb: self.gray_to_rgb || input[0] == 3,
            folder_channels: input[0],
            limit: self.limit,
        })
    }
}

/// Builds `model` for `classes` classes and the given input, as the checkpoint or run asks,
/// with the auxiliary classifiers of inception_v3 and googlenet.
pub fn build_model(model: &str, classes: usize, input: [usize; 3], cifar_stem: bool) -> Result<Graph> {
    build_model_with_aux(model, classes, input, cifar_stem, true)
}

/// [`build_model`] with the auxiliary classifiers only when `aux_logits` (`--no-aux` turns them off).
pub fn build_model_with_aux(model: &str, classes: usize, input: [usize; 3], cifar_stem: bool, aux_logits: bool) -> Result<Graph> {
    let mut opts = ModelOptions::new(classes, input);
    opts.cifar_stem = cifar_stem;
    opts.aux_logits = aux_logits;
    models::build(model, &opts)
}

/// Every parameter and running statistic of the model, by name.
pub fn model_tensors<B: Backend<f32>>(ex: &Executor<f32, B>) -> Result<Vec<NamedTensor>> {
    ex.graph()
        .params
        .iter()
        .map(|spec| {
            let data = ex.params().get_host(ex.backend(), &spec.name)?;
            Ok(NamedTensor { name: spec.name.clone(), shape: spec.shape.clone(), data })
        })
        .collect()
}

/// Loads every parameter of the model from `tensors` (extra tensors, e.g. optimiser state, are
/// the caller's); a missing or misshapen parameter names itself.
pub fn load_model_tensors<B: Backend<f32> + Clone>(ex: &mut Executor<f32, B>, tensors: &[NamedTensor]) -> Result<()> {
    let specs = ex.graph().params.clone();
    for spec in &specs {
        let t = tensors.iter().find(|t| t.name == spec.name).ok_or_else(|| {
            Error::config(format!("the checkpoint has no tensor {} for model {}", spec.name, ex.graph().name))
        })?;
        if t.shape != spec.shape {
            return Err(Error::shape(format!(
                "checkpoint tensor {} is {:?}, model {} needs {:?}",
                t.name,
                t.shape,
                ex.graph().name,
                spec.shape
            )));
        }
        let backend = ex.backend().clone();
        ex.params_mut().set_host(&backend, &spec.name, &t.data)?;
    }
    Ok(())
}
