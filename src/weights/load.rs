//! Loading a state_dict into a model by name, as PyTorch's `load_state_dict(strict=False)`: every
//! parameter and running statistic whose name and shape match takes the file's values, the rest
//! keep theirs, and the report lists what did not match.

use super::NamedTensor;
use crate::error::{Error, Result};
use crate::exec::Executor;
use crate::ops::Backend;
use std::path::Path;

/// The prefix `nn.DataParallel` and DistributedDataParallel put on every key.
const DATA_PARALLEL_PREFIX: &str = "module.";
/// BatchNorm's step counter: ferronet keeps none (its momentum is fixed), so it is skipped.
const BATCHES_TRACKED: &str = "num_batches_tracked";
/// Names listed per report line before the rest are counted.
const NAMES_SHOWN: usize = 6;

#[derive(Clone, Debug, PartialEq)]
pub struct ShapeMismatch {
    pub name: String,
    pub file: Vec<usize>,
    pub model: Vec<usize>,
}

/// What a state_dict did not provide, as `load_state_dict(strict=False)` reports it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadReport {
    /// Tensors loaded.
    pub loaded: usize,
    /// Model parameters the file has no tensor for (they keep their values).
    pub missing: Vec<String>,
    /// File tensors the model has no parameter for (ignored).
    pub unexpected: Vec<String>,
    /// Names in both whose shapes differ (the model's values stay).
    pub mismatched: Vec<ShapeMismatch>,
}

fn listed(names: impl ExactSizeIterator<Item = String>) -> String {
    let total = names.len();
    let mut shown: Vec<String> = names.take(NAMES_SHOWN).collect();
    if total > NAMES_SHOWN {
        shown.push(format!("and {} more", total - NAMES_SHOWN));
    }
    shown.join(", ")
}

impl LoadReport {
    /// One line per kind of difference (none when everything matched).
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if !self.missing.is_empty() {
            lines.push(format!("missing keys (kept at their initial values): {}", listed(self.missing.iter().cloned())));
        }
        if !self.unexpected.is_empty() {
            lines.push(format!("unexpected keys (ignored): {}", listed(self.unexpected.iter().cloned())));
        }
        if !self.mismatched.is_empty() {
            let each = self.mismatched.iter().map(|m| format!("{} is {:?} in the file, {:?} in the model", m.name, m.file, m.model));
            lines.push(format!("size mismatches (kept at their initial values): {}", listed(each)));
        }
        lines
    }

    /// Whether every parameter of the model came from the file.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.mismatched.is_empty()
    }

    /// An error unless every parameter came from the file (a model that predicts or is
    /// evaluated needs all of its weights).
    pub fn require_complete(&self, path: &Path, model: &str) -> Result<()> {
        if self.is_complete() {
            return Ok(());
        }
        Err(Error::data(
            path,
            format!("does not hold every weight of {model}: {}; check --model, --classes and --input", self.lines().join("; ")),
        ))
    }
}

/// Copies every tensor of `tensors` whose name (less a `module.` prefix on all of them) and shape
/// match a parameter of the model into it. At least one must match: a file that shares no name
/// with the model is the wrong file.
pub fn load_state_dict<B: Backend<f32> + Clone>(ex: &mut Executor<f32, B>, tensors: &[NamedTensor], path: &Path) -> Result<LoadReport> {
    let strip = !tensors.is_empty() && tensors.iter().all(|t| t.name.starts_with(DATA_PARALLEL_PREFIX));
    let key = |t: &NamedTensor| -> String {
        if strip { t.name[DATA_PARALLEL_PREFIX.len()..].to_string() } else { t.name.clone() }
    };
    let mut report = LoadReport::default();
    let specs = ex.graph().params.clone();
    let backend = ex.backend().clone();
    for spec in &specs {
        match tensors.iter().find(|t| key(t) == spec.name) {
            None => report.missing.push(spec.name.clone()),
            Some(t) if t.shape != spec.shape => {
                report.mismatched.push(ShapeMismatch { name: spec.name.clone(), file: t.shape.clone(), model: spec.shape.clone() })
            }
            Some(t) => {
                ex.params_mut().set_host(&backend, &spec.name, &t.data)?;
                report.loaded += 1;
            }
        }
    }
    report.unexpected = tensors
        .iter()
        .map(key)
        .filter(|name| !name.ends_with(BATCHES_TRACKED) && !specs.iter().any(|s| &s.name == name))
        .collect();
    if report.loaded == 0 && report.mismatched.is_empty() {
        let example = tensors.first().map(|t| format!(" (its first key is {})", t.name)).unwrap_or_default();
        return Err(Error::data(
            path,
            format!(
                "shares no parameter name with {}{example}; are these weights for another model?",
                ex.graph().name
            ),
        ));
    }
    Ok(report)
}
