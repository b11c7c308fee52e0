//! The learning-rate range test of `ferronet lr-find` (Smith 2015, as fastai's `lr_find`): train
//! with a learning rate growing exponentially from a start to an end rate, one batch a step,
//! record the loss smoothed by a debiased moving average, stop when it diverges, and suggest the
//! rate where the smoothed loss falls fastest.

use crate::data::{self, Dataset, Loader};
use crate::error::{Error, Result};
use crate::exec::{Batch, Executor, Optimizer, StepOptions};
use crate::ops::Backend;
use crate::train::config::{GivenFlags, TrainConfig};
use crate::train::files::{next_run_dir, write_atomic, CreatedDirs};
use crate::train::plot::{xy_chart, Curve, XScale};
use crate::train::pretrained::init_from;
use crate::train::recipe;
use crate::train::session::{on_device, OnBackend};
use crate::train::trainer::{augmentation, fused_unless, optimizer_config, prepare_model};
use crate::weights::read_state_dict;
use serde::Serialize;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The sweep: from `start_lr` to `end_lr` over `steps` training steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrRange {
    pub start_lr: f64,
    pub end_lr: f64,
    pub steps: usize,
}

/// Weight of the past in the moving average of the loss (fastai's 0.98).
const SMOOTHING: f64 = 0.98;
/// The test stops once the smoothed loss exceeds this multiple of its minimum (fastai's 4).
const DIVERGENCE_FACTOR: f64 = 4.0;
/// The suggestion ignores the first tenth of the points (the average is still settling) and the
/// last twentieth (the loss turns up): fastai's 10 and 5 of its 100 steps.
const SKIP_START_FRACTION: f64 = 0.10;
const SKIP_END_FRACTION: f64 = 0.05;

/// One step of the test.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LrPoint {
    pub step: usize,
    pub lr: f64,
    pub loss: f64,
    pub smoothed_loss: f64,
}

/// What the test found.
#[derive(Debug)]
pub struct LrFindOutcome {
    pub points: Vec<LrPoint>,
    /// The step at which the loss diverged (NaN/inf, or the smoothed loss above 4x its minimum).
    pub diverged_at: Option<usize>,
    pub suggested_lr: Option<f64>,
    pub out_dir: PathBuf,
    pub device: String,
}

impl LrRange {
    pub fn validate(&self) -> Result<()> {
        let positive = |v: f64| v > 0.0 && v.is_finite();
        if !(positive(self.start_lr) && positive(self.end_lr) && self.start_lr < self.end_lr) {
            return Err(Error::config(format!(
                "--start-lr {} and --end-lr {} must be positive with --start-lr below --end-lr",
                self.start_lr, self.end_lr
            )));
        }
        if self.steps < 2 {
            return Err(Error::config("--steps must be at least 2"));
        }
        Ok(())
    }

    /// The rate of step `i` (0-based): start * (end / start)^(i / (steps - 1)).
    pub fn lr(&self, i: usize) -> f64 {
        self.start_lr * (self.end_lr / self.start_lr).powf(i as f64 / (self.steps - 1) as f64)
    }
}

/// The rate at which the smoothed loss falls fastest against log(lr) (fastai's steepest-descent
/// suggestion): central differences inside, one-sided at the ends, as numpy.gradient, over the
/// points left after the skipped first tenth and last twentieth, up to the smoothed loss's
/// minimum (past it the loss is diverging, and its wiggles there are no guide). None with fewer
/// than 3 such points.
pub fn steepest_descent(points: &[LrPoint]) -> Option<f64> {
    let n = points.len();
    let skip_start = (n as f64 * SKIP_START_FRACTION).round() as usize;
    let skip_end = (n as f64 * SKIP_END_FRACTION).round() as usize;
    let lowest = points.iter().enumerate().min_by(|a, b| a.1.smoothed_loss.total_cmp(&b.1.smoothed_loss))?.0;
    let kept = points.get(skip_start..n.saturating_sub(skip_end).min(lowest + 1))?;
    if kept.len() < 3 {
        return None;
    }
    let slope = |a: &LrPoint, b: &LrPoint| (b.smoothed_loss - a.smoothed_loss) / (b.lr.ln() - a.lr.ln());
    let last = kept.len() - 1;
    let gradient = (0..kept.len()).map(|i| match i {
        0 => slope(&kept[0], &kept[1]),
        i if i == last => slope(&kept[last - 1], &kept[last]),
        i => slope(&kept[i - 1], &kept[i + 1]),
    });
    let (steepest, _) = gradient.enumerate().min_by(|a, b| a.1.total_cmp(&b.1))?;
    Some(kept[steepest].lr)
}

/// Runs the range test for the model, data and optimiser of `config` (its learning rate and
/// schedule are the sweep's), with the recipe's defaults for the flags `given` lacks, writing
/// lr_find.csv and lr_find.svg into its --out directory.
pub fn lr_find(mut config: TrainConfig, given: &GivenFlags, range: LrRange) -> Result<LrFindOutcome> {
    let recipe_chosen = recipe::apply(&mut config, given);
    config.validate()?;
    range.validate()?;
    let out_dir = config.out.clone().unwrap_or_else(|| next_run_dir(Path::new("runs")));
    let init = match &config.init_from {
        Some(path) => Some((path.clone(), read_state_dict(path)?)),
        None => None,
    };
    let input = config.data.model_input()?;
    if let Some(classes) = config.data.dataset.classes() {
        prepare_model(&config, classes, input)?;
    }
    let options = config.data.dataset_options(input, config.seed)?;
    let mut dataset = data::load(&options)?;
    (dataset.mean, dataset.std) = config.normalize.stats(input[0], Some((&dataset.mean, &dataset.std)))?;
    let created = CreatedDirs::create(&out_dir)?;
    let outcome = on_device(config.device, RangeTest { config, range, input, dataset, init, out_dir: out_dir.clone(), recipe_chosen });
    if outcome.is_err() {
        created.remove_if_empty();
    }
    outcome
}

struct RangeTest {
    config: TrainConfig,
    range: LrRange,
    input: [usize; 3],
    dataset: Dataset,
    init: Option<(PathBuf, Vec<crate::weights::NamedTensor>)>,
    out_dir: PathBuf,
    /// The recipe's values for flags the user did not give, as flags.
    recipe_chosen: Vec<String>,
}

impl OnBackend for RangeTest {
    type Output = LrFindOutcome;

    fn run<B: Backend<f32> + Clone>(self, backend: B, device: String) -> Result<LrFindOutcome> {
        let RangeTest { config, range, input, dataset, init, out_dir, recipe_chosen } = self;
        let graph = prepare_model(&config, dataset.classes.len(), input)?;
        let mut ex = Executor::new(backend, graph, config.seed)?;
        if let Some((path, tensors)) = &init {
            init_from(&mut ex, path, tensors, config.replace_classifier, config.quiet)?;
        }
        let mut ex = fused_unless(config.no_fusion, ex).in_chosen_layout(config.layout);
        let mut optimizer = Optimizer::new(optimizer_config(&config))?;
        if let (false, Some(line)) = (config.quiet, recipe::announcement(&config, &recipe_chosen)) {
            eprintln!("{line}");
        }
        let step_options = StepOptions { label_smoothing: config.label_smoothing, ..StepOptions::default() };
        let train_set = Arc::new(dataset.train);
        let epoch_loader = |epoch: u64| {
            let seed = config.seed.wrapping_add(epoch);
            Loader::new(train_set.clone(), &dataset.mean, &dataset.std, config.batch_size, true, augmentation(&config), seed, config.workers)
        };
        let (mut epoch, mut loader) = (0, epoch_loader(0)?);
        let (mut points, mut diverged_at) = (Vec::with_capacity(range.steps), None);
        let (mut average, mut best) = (0.0, f64::INFINITY);
        for i in 0..range.steps {
            let batch = match loader.next() {
                Some(batch) => batch,
                None => {
                    epoch += 1;
                    loader = epoch_loader(epoch)?;
                    loader.next().ok_or_else(|| Error::config("the training set is empty"))?
                }
            };
            let lr = range.lr(i);
            optimizer.set_lr(lr)?;
            ex.train_step(Batch::HostF32(&batch.x), &batch.labels, &step_options)?;
            let loss = ex.read_train_metrics()?.last_loss;
            if !loss.is_finite() {
                diverged_at = Some(i + 1);
                break;
            }
            ex.optimizer_step(&mut optimizer)?;
            average = SMOOTHING * average + (1.0 - SMOOTHING) * loss;
            let smoothed_loss = average / (1.0 - SMOOTHING.powi(i as i32 + 1));
            best = best.min(smoothed_loss);
            points.push(LrPoint { step: i + 1, lr, loss, smoothed_loss });
            if smoothed_loss > DIVERGENCE_FACTOR * best {
                diverged_at = Some(i + 1);
                break;
            }
        }
        let suggested_lr = steepest_descent(&points);
        write_atomic(&out_dir.join("lr_find.csv"), csv(&points).as_bytes())?;
        write_atomic(&out_dir.join("lr_find.svg"), plot(&config.model, &points, suggested_lr).as_bytes())?;
        Ok(LrFindOutcome { points, diverged_at, suggested_lr, out_dir, device })
    }
}

fn csv(points: &[LrPoint]) -> String {
    let mut text = String::from("step,lr,loss,smoothed_loss\n");
    for p in points {
        let _ = writeln!(text, "{},{},{},{}", p.step, p.lr, p.loss, p.smoothed_loss);
    }
    text
}

fn plot(model: &str, points: &[LrPoint], suggested_lr: Option<f64>) -> String {
    let curve = Curve { label: "smoothed loss", color: "#1f77b4", points: points.iter().map(|p| (p.lr, p.smoothed_loss)).collect() };
    let label = suggested_lr.map(|lr| format!("suggested {lr:.2e}"));
    let marker = suggested_lr.zip(label.as_deref());
    xy_chart(&format!("Learning-rate range test ({model})"), XScale::Log10, "learning rate", "training loss", &[curve], marker)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(losses: &[f64]) -> Vec<LrPoint> {
        let range = LrRange { start_lr: 1e-5, end_lr: 1.0, steps: losses.len() };
        losses.iter().enumerate().map(|(i, &l)| LrPoint { step: i + 1, lr: range.lr(i), loss: l, smoothed_loss: l }).collect()
    }

    #[test]
    fn the_rate_grows_exponentially_from_start_to_end() {
        let range = LrRange { start_lr: 1e-6, end_lr: 1.0, steps: 7 };
        let rates: Vec<f64> = (0..7).map(|i| range.lr(i)).collect();
        for (got, want) in rates.iter().zip([1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]) {
            assert!((got / want - 1.0).abs() < 1e-12, "{rates:?}");
        }
        assert!(LrRange { start_lr: 1.0, end_lr: 0.1, steps: 10 }.validate().unwrap_err().to_string().contains("--start-lr"));
        assert!(LrRange { start_lr: 1e-6, end_lr: 1.0, steps: 1 }.validate().is_err());
    }

    #[test]
    fn the_suggestion_is_where_the_smoothed_loss_falls_fastest() {
        // Flat, a steep fall around point 12, flat, then divergence (left out at the end).
        let mut losses = vec![2.0; 10];
        losses.extend([1.95, 1.8, 1.2, 0.6, 0.5, 0.45, 0.42, 0.4, 0.4, 5.0]);
        let p = points(&losses);
        // Index 12 (loss 1.2) has the largest central difference: (0.6 - 1.8) over two steps.
        assert_eq!(steepest_descent(&p), Some(p[12].lr));
        assert_eq!(steepest_descent(&p[..3]), None, "too few points");
        // A fall after the minimum (a diverging loss dropping back) does not count.
        let mut diverging = losses.clone();
        diverging.extend([3.0, 0.5, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0]);
        let p = points(&diverging);
        assert_eq!(steepest_descent(&p), Some(p[12].lr));
        assert!(csv(&p).starts_with("step,lr,loss,smoothed_loss\n1,"));
    }
}
