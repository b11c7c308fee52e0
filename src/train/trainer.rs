//! The training loop of `ferronet train`: epochs of shuffled (augmented) batches through the
//! executor and optimiser, a validation pass per epoch, the schedule, early stopping, outputs and
//! a checkpoint after every epoch, exact resumption (also from a Ctrl-C inside an epoch), and
//! NaN/inf handling.

use crate::data::{self, Augment, Dataset, Loader, Shard};
use crate::dist::nccl::NcclComm;
use crate::dist::{ProcessGroup, Reduction};
use crate::error::{Error, Result};
use crate::exec::{
    graph_obstacle, resolve_graph_mode, Batch, Executor, Mode, Optimizer, OptimizerConfig, OptimizerKind, OptimizerState, ResidentBatch,
    StepOptions, StepReplay, TrainTotals,
};
use crate::graph::Graph;
use crate::models::summary::summarize;
use crate::ops::Backend;
use crate::rng::Rng;
use crate::train::checkpoint::{self, CheckpointMeta, NamedTensor, PartialEpoch, FORMAT_VERSION};
use crate::train::config::{GivenFlags, OptimizerChoice, TrainConfig};
use crate::train::evaluate::{evaluate_in_group, EvalSetup};
use crate::train::files::{next_run_dir, CreatedDirs, RunLock};
use crate::train::history::EpochRecord;
use crate::train::loss_scale::LossScaler;
use crate::train::metrics::EvalMetrics;
use crate::train::model_setup::{freeze_all_but, freeze_backbone, override_dropout};
use crate::train::outputs::{class_breakdown, write_final, write_history, FinalMetrics, ModelTotals};
use crate::train::progress::EpochProgress;
use crate::train::schedule::{LrSchedule, PlateauMode, ScheduleKind};
use crate::train::pretrained::init_from;
use crate::train::recipe;
use crate::train::resume::resumed_config;
use crate::train::session::{build_model_with_aux, load_model_tensors, model_tensors, on_device, OnBackend};
use crate::weights::read_state_dict;
use crate::train::interrupt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Checkpoint names of optimiser state tensors: this prefix + the optimiser's own key.
const OPTIMIZER_PREFIX: &str = "optimizer.";
/// Mixed into the seed for the trainer's own generator, so it differs from the executor's.
const TRAINER_SEED_SALT: u64 = 0x7472_6169_6e65_7221;

/// What a finished run reports.
#[derive(Debug)]
pub struct TrainOutcome {
    pub out_dir: PathBuf,
    pub device: String,
    /// Metrics of the final model on the test set (or validation set when there is none).
    pub final_metrics: EvalMetrics,
    pub evaluated_on: &'static str,
    pub history: Vec<EpochRecord>,
    pub best_epoch: usize,
    pub best_val_top1: f64,
    pub train_seconds: f64,
    pub stopped_early: bool,
    /// Training steps run as one launch of a captured CUDA graph (`--cuda-graph`).
    pub graph_replayed_steps: usize,
}

/// The checkpoint file of a run directory.
pub fn checkpoint_path(out_dir: &Path) -> PathBuf {
    out_dir.join("checkpoint.safetensors")
}

/// Runs `ferronet train` with `config` as a whole: every value counts as chosen, so no recipe
/// fills any, and on `--resume` each that differs from the saved configuration must be one that
/// may change.
pub fn train(config: TrainConfig) -> Result<TrainOutcome> {
    train_given(config, &GivenFlags::every())
}

/// Runs `ferronet train` with `config`, of which `given` are the flags the user typed: checks
/// it, picks and locks the output directory, loads the data and trains on the `--device`
/// backend. A run that fails before writing anything leaves no directory it created behind.
pub fn train_given(config: TrainConfig, given: &GivenFlags) -> Result<TrainOutcome> {
    train_in_group(config, given, Arc::new(ProcessGroup::alone()))
}

/// Runs `ferronet train` as one rank of `group` (data parallelism: each rank trains on its
/// slice of every global batch of --batch-size and the gradients are averaged over the ranks
/// before each update). Rank 0 alone writes the run directory and reports; the others read a
/// resumed run's checkpoint from it.
pub fn train_in_group(mut config: TrainConfig, given: &GivenFlags, group: Arc<ProcessGroup>) -> Result<TrainOutcome> {
    // A resumed run keeps its saved configuration; a new one takes the recipe's defaults.
    let recipe_chosen = if config.resume { Vec::new() } else { recipe::apply(&mut config, given) };
    config.validate()?;
    validate_for_group(&config, &group)?;
    let leader = group.is_leader();
    let chosen_dir = config.out.clone().unwrap_or_else(|| next_run_dir(Path::new("runs")));
    // Rank 0 picks the directory; the others take its choice (they may not see its folders yet).
    let out_dir = PathBuf::from(group.broadcast_text(&chosen_dir.to_string_lossy())?);
    let ckpt = checkpoint_path(&out_dir);
    let (config, resume) = if config.resume {
        if !ckpt.exists() {
            return Err(Error::config(format!("--resume: there is no checkpoint at {}", ckpt.display())));
        }
        let (tensors, meta) = checkpoint::load(&ckpt)?;
        let resumed = resumed_config(&meta.config, &config, given, meta.epochs_done)?;
        (resumed.config, Some(ResumeFrom { tensors, meta, changes: resumed.changes }))
    } else {
        if leader && ckpt.exists() {
            return Err(Error::config(format!(
                "{} already holds a run; add --resume to continue it, or choose another --out",
                out_dir.display()
            )));
        }
        (config, None)
    };
    // Read before the data, so a bad file fails at once; a resumed run has its own weights.
    let init = match (&config.init_from, &resume) {
        (Some(path), None) => Some((path.clone(), read_state_dict(path)?)),
        _ => None,
    };
    let input = config.data.model_input()?;
    // A model that cannot take the input fails here, before any data is read.
    if let Some(classes) = config.data.dataset.classes() {
        prepare_model(&config, classes, input)?;
    }
    let options = config.data.dataset_options(input, config.seed)?;
    let created = if leader { Some(CreatedDirs::create(&out_dir)?) } else { None };
    let outcome = (|| {
        let _lock = if leader { Some(RunLock::acquire(&out_dir)?) } else { None };
        let mut dataset = data::load(&options)?;
        (dataset.mean, dataset.std) = config.normalize.stats(input[0], Some((&dataset.mean, &dataset.std)))?;
        interrupt::arm();
        let device = config.device;
        let val_is_test = dataset.test.is_some() && options.val_fraction == 0.0;
        on_device(device, TrainRun { config, input, dataset, val_is_test, out_dir: out_dir.clone(), resume, init, recipe_chosen, group })
    })();
    if let (Err(_), Some(created)) = (&outcome, created) {
        created.remove_if_empty();
    }
    outcome
}

/// What data parallelism needs of the flags: a global batch that splits evenly over the ranks.
/// The per-step decisions agree by construction: a skipped NaN/inf loss is agreed on by an
/// all-reduce (`train_step`), and fp16's overflow check reads the averaged gradients, the same
/// on every rank.
fn validate_for_group(config: &TrainConfig, group: &ProcessGroup) -> Result<()> {
    let world = group.world_size();
    if world == 1 {
        return Ok(());
    }
    if config.batch_size % world != 0 {
        return Err(Error::config(format!(
            "--batch-size {} is the global batch and must split evenly over the {world} ranks; give a multiple of {world}",
            config.batch_size
        )));
    }
    Ok(())
}

struct TrainRun {
    config: TrainConfig,
    input: [usize; 3],
    dataset: Dataset,
    /// Validation runs on the test set (its final metrics are the last validation's).
    val_is_test: bool,
    out_dir: PathBuf,
    resume: Option<ResumeFrom>,
    /// --init-from: the file and its tensors.
    init: Option<(PathBuf, Vec<NamedTensor>)>,
    /// The recipe's values for flags the user did not give, as flags (`--optimizer adam`).
    recipe_chosen: Vec<String>,
    /// The data-parallel ranks this process trains with (alone: a group of one).
    group: Arc<ProcessGroup>,
}

/// What a resumed run continues from.
struct ResumeFrom {
    tensors: Vec<NamedTensor>,
    meta: CheckpointMeta,
    /// The flags that changed from the saved configuration, as `--epochs 5 (saved: 3)`.
    changes: Vec<String>,
}

pub(crate) fn optimizer_config(c: &TrainConfig) -> OptimizerConfig {
    let kind = match c.optimizer {
        OptimizerChoice::Sgd => OptimizerKind::Sgd { momentum: c.momentum, dampening: c.dampening, nesterov: c.nesterov },
        OptimizerChoice::Adam | OptimizerChoice::Adamw => OptimizerKind::Adam {
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            decoupled: c.optimizer == OptimizerChoice::Adamw,
        },
    };
    OptimizerConfig {
        kind,
        lr: c.lr,
        weight_decay: c.weight_decay,
        decay_weights_only: c.no_decay_bn_bias,
        clip_grad_norm: c.clip_grad_norm,
    }
}

pub(crate) fn augmentation(c: &TrainConfig) -> Option<Augment> {
    let crop_padding = c.crop_padding.unwrap_or(if c.augment { 4 } else { 0 });
    let hflip = c.hflip || c.augment;
    let [brightness, contrast, saturation, hue] = c.color_jitter.unwrap_or([0.0; 4]);
    let jitter = [brightness, contrast, saturation, hue].iter().any(|&v| v > 0.0);
    (crop_padding > 0 || hflip || jitter).then_some(Augment { crop_padding, hflip, brightness, contrast, saturation, hue })
}

/// The executor with its batch norm -> (add) -> activation chains fused for training, unless
/// `--no-fusion` keeps them apart.
pub(crate) fn fused_unless<B: Backend<f32>>(no_fusion: bool, ex: Executor<f32, B>) -> Executor<f32, B> {
    match no_fusion {
        true => ex,
        false => ex.fuse_batch_norm_activations().0,
    }
}

/// The model as this run trains it: built for the data, dropout overridden, layers frozen.
pub(crate) fn prepare_model(config: &TrainConfig, classes: usize, input: [usize; 3]) -> Result<Graph> {
    let mut graph = build_model_with_aux(&config.model, classes, input, config.cifar_stem, !config.no_aux)?;
    if let Some(p) = config.dropout {
        override_dropout(&mut graph, p)?;
    }
    if let Some(k) = config.freeze_all_but {
        freeze_all_but(&mut graph, k)?;
    }
    if config.freeze_backbone {
        freeze_backbone(&mut graph);
    }
    Ok(graph)
}

/// The epoch with the best validation top-1 (the first on ties), 1-based, and that accuracy.
pub fn best_epoch(history: &[EpochRecord]) -> Option<(usize, f64)> {
    history.iter().fold(None, |best, r| match best {
        Some((_, top1)) if top1 >= r.val_top1 => best,
        _ => Some((r.epoch, r.val_top1)),
    })
}

/// The state of a run between steps, everything a checkpoint holds besides the tensors.
struct RunState {
    rng: Rng,
    schedule: LrSchedule,
    history: Vec<EpochRecord>,
    epochs_done: usize,
    partial: Option<PartialEpoch>,
    /// Where the checkpoint on disk stands ("after epoch 2"), for messages; None before the first.
    checkpoint_at: Option<String>,
    /// fp16's dynamic loss scaling (checkpointed, so a resumed run continues its scale).
    loss_scaler: Option<LossScaler>,
}

/// A run's position for messages: "after epoch N" or "in epoch N after step S".
fn position(epochs_done: usize, partial: Option<&PartialEpoch>) -> String {
    match partial {
        Some(p) => format!("in epoch {} after step {}", epochs_done + 1, p.steps_done),
        None => format!("after epoch {epochs_done}"),
    }
}

impl OnBackend for TrainRun {
    type Output = TrainOutcome;

    fn run<B: Backend<f32> + Clone>(self, backend: B, device: String) -> Result<TrainOutcome> {
        let TrainRun { config, input, dataset, val_is_test, out_dir, resume, init, recipe_chosen, group } = self;
        let leader = group.is_leader();
        let quiet = config.quiet || !leader;
        // Each rank's slice of every global batch.
        let local_batch = config.batch_size / group.world_size();
        let shard = Shard::training(group.rank(), group.world_size());
        let classes = dataset.classes.len();
        let graph = prepare_model(&config, classes, input)?;
        let summary = summarize(&graph, config.batch_size, !config.no_fusion)?;
        let totals = ModelTotals {
            trainable_params: summary.trainable_params,
            non_trainable_params: summary.non_trainable_params,
            total_params: summary.total_params,
            macs_per_image: summary.macs,
        };
        let mut ex = Executor::new(backend.clone(), graph, config.seed)?;
        let mut optimizer = Optimizer::new(optimizer_config(&config))?;
        if let Some((path, tensors)) = &init {
            init_from(&mut ex, path, tensors, config.replace_classifier, quiet)?;
        }
        // Synchronised batch norm is the unfused op's (its statistics come from the ranks'
        // all-reduce), so its chains stay apart.
        let sync_bn = config.sync_bn && group.world_size() > 1;
        let mut ex = fused_unless(config.no_fusion || sync_bn, ex).in_chosen_layout(config.layout);
        ex.set_chosen_precision(config.precision)?;
        let precision = ex.precision();
        let new_scaler = || precision.needs_loss_scaling().then(LossScaler::default);
        if sync_bn {
            ex.synchronise_batch_norms(group.clone());
        }
        if group.world_size() > 1 {
            // Ranks on CUDA devices (a real driver's, "cuda:N ...") sum in device memory.
            let nccl = match config.dist_backend.resolve(&device, device.starts_with("cuda:"))? {
                Reduction::Nccl => Some(NcclComm::join(&group)?),
                Reduction::Mpi => None,
            };
            ex.average_gradients_over(group.clone(), nccl, config.bucket_bytes()?);
        }
        let mut state = match resume {
            None => RunState {
                rng: Rng::new(config.seed ^ TRAINER_SEED_SALT),
                schedule: LrSchedule::new(config.schedule_kind(), config.lr, config.warmup_epochs, config.epochs)?,
                history: Vec::new(),
                epochs_done: 0,
                partial: None,
                checkpoint_at: None,
                loss_scaler: new_scaler(),
            },
            Some(ResumeFrom { tensors, meta, changes }) => {
                if !quiet {
                    let at = position(meta.epochs_done, meta.partial_epoch.as_ref());
                    let with = if changes.is_empty() { String::new() } else { format!(" with {}", changes.join(", ")) };
                    eprintln!("resuming {} {at} of {}{with}", out_dir.display(), config.epochs);
                }
                load_model_tensors(&mut ex, &tensors)?;
                let buffers = tensors
                    .into_iter()
                    .filter_map(|t| t.name.strip_prefix(OPTIMIZER_PREFIX).map(|key| (key.to_string(), t.data)))
                    .collect();
                let saved = OptimizerState { buffers, steps: meta.optimizer_steps };
                optimizer.import_state(&backend, ex.params(), &saved)?;
                ex.set_rng_state(meta.executor_rng_state);
                RunState {
                    rng: Rng::from_state(meta.rng_state),
                    schedule: meta.schedule.with_total_epochs(config.epochs),
                    history: meta.history,
                    epochs_done: meta.epochs_done,
                    checkpoint_at: Some(position(meta.epochs_done, meta.partial_epoch.as_ref())),
                    partial: meta.partial_epoch,
                    loss_scaler: meta.loss_scaler.or_else(new_scaler),
                }
            }
        };
        // fp16: the scale lives on the device, updated there from each step's overflow check.
        if let Some(scaler) = &state.loss_scaler {
            ex.start_dynamic_loss_scale(scaler.state(), scaler.growth_interval())?;
        }
        // On a GPU, a batch that cannot fit fails here naming the largest one that does, instead
        // of an allocation failure inside the first step.
        let workspace = backend.conv_workspace();
        // Every rank starts from rank 0's model (a resumed run's is the same file everywhere).
        ex.broadcast_params(&group)?;
        ex.check_batch_fits_device(local_batch, Mode::Train, workspace, optimizer.state_bytes(ex.params()))?;

        let train_set = Arc::new(dataset.train);
        let val_set = Arc::new(dataset.val);
        let saver = Saver {
            path: checkpoint_path(&out_dir),
            config: &config,
            input,
            mean: &dataset.mean,
            std: &dataset.std,
            class_names: &dataset.classes,
        };
        let setup = EvalSetup { mean: &dataset.mean, std: &dataset.std, batch_size: config.batch_size, workers: config.workers };
        let step_options = StepOptions { label_smoothing: config.label_smoothing, ..StepOptions::default() };
        let obstacle = match (config.skip_nonfinite, group.world_size() > 1) {
            (true, _) => Some("--skip-nonfinite reads each step's loss back before the update"),
            (_, true) => Some("data-parallel ranks average their gradients between backward and the update"),
            _ => graph_obstacle(ex.backend().can_capture()),
        };
        let mut replayed = ReplayedSteps {
            replay: StepReplay::new(resolve_graph_mode(config.cuda_graph, obstacle)?),
            // What keeps a run off graphs keeps it off the resident batch too: the CPU has no
            // copy stream, and --skip-nonfinite reads each step back between its halves, which
            // train_step does.
            resident_steps: obstacle.is_none(),
            resident: None,
        };
        let mut last_val: Option<EvalMetrics> = None;
        let mut stopped_early = false;
        // The most device bytes any training step of this process held (None: no step ran).
        let mut peak_memory_bytes: Option<usize> = None;
        if !quiet && state.epochs_done == 0 && state.partial.is_none() {
            if let Some(line) = recipe::announcement(&config, &recipe_chosen) {
                eprintln!("{line}");
            }
            eprintln!(
                "training {} ({} trainable parameters) on {} ({} training, {} validation images) on {device}, {} {}{}; outputs in {}",
                config.model,
                totals.trainable_params,
                dataset.name,
                train_set.len(),
                val_set.len(),
                ex.graph().layout.name(),
                ex.precision(),
                if replayed.replay.enabled() { ", replaying a CUDA graph per step" } else { "" },
                out_dir.display()
            );
        }

        while state.epochs_done < config.epochs {
            let epoch = state.epochs_done; // 0-based
            let lr = state.schedule.lr(epoch);
            optimizer.set_lr(lr)?;
            let mut part = match state.partial.take() {
                Some(p) => p,
                None => PartialEpoch { seed: state.rng.next_u64(), ..PartialEpoch::default() },
            };
            let loader = Loader::sharded(
                train_set.clone(),
                &dataset.mean,
                &dataset.std,
                local_batch,
                true,
                augmentation(&config),
                part.seed,
                config.workers,
                shard,
            )?;
            let bar = EpochProgress::new(epoch + 1, config.epochs, loader.batches(), quiet);
            let resumed_steps = part.steps_done;
            // The last good checkpoint, named by a NaN/inf loss's error (a resumed run's may hold
            // part of an epoch: name what is on disk).
            let fault = |step: usize, msg: &str| {
                let last_good = match &state.checkpoint_at {
                    None => "no checkpoint was written yet".to_string(),
                    Some(at) => format!("the last good checkpoint is {}, {at}", saver.path.display()),
                };
                Error::Numerical(format!(
                    "epoch {}, step {step}: {msg} ({last_good}; --skip-nonfinite skips such steps)",
                    epoch + 1
                ))
            };
            let mut figures = EpochFigures::start(&mut ex, &optimizer, &part, config.skip_nonfinite)?;
            let mut last_read = Instant::now();
            let mut stepped = Ok(());
            for batch in loader.skip(resumed_steps) {
                let start = Instant::now();
                let step = part.steps_done + 1;
                stepped = match replayed.takes(&batch, local_batch) {
                    true => replayed.step(&mut ex, &mut optimizer, &batch, &step_options),
                    false => train_step(&mut ex, &mut optimizer, &batch, &step_options, &mut figures, &mut part, &fault, &group),
                };
                if stepped.is_err() {
                    break;
                }
                part.steps_done = step;
                peak_memory_bytes = peak_memory_bytes.max(Some(ex.last_peak_bytes()));
                bar.step();
                // Reading waits for the queued steps: at most about once a second.
                let read_due = last_read.elapsed() >= METRICS_READ_INTERVAL;
                if read_due {
                    stepped = figures.read(&ex, &optimizer, &mut part, &fault, &mut state.loss_scaler);
                    last_read = Instant::now();
                }
                part.seconds += start.elapsed().as_secs_f64();
                if stepped.is_err() {
                    break;
                }
                if read_due {
                    let seen = part.seen.max(1) as f64;
                    bar.show(part.loss_sum / seen, part.correct as f64 / seen, part.seen as f64 / part.seconds);
                }
                interrupt::step_done();
                // Every rank stops after the same step (a Ctrl-C reaches each at its own time).
                if group.any(interrupt::take_request())? {
                    bar.finish();
                    figures.read(&ex, &optimizer, &mut part, &fault, &mut state.loss_scaler)?;
                    state.partial = Some(part);
                    if leader {
                        saver.save(&ex, &optimizer, &state)?;
                    }
                    return Err(interrupted(&format!("in epoch {} after step {step}", epoch + 1), &out_dir, leader));
                }
            }
            bar.finish();
            stepped?;
            let read_start = Instant::now();
            figures.read(&ex, &optimizer, &mut part, &fault, &mut state.loss_scaler)?;
            part.seconds += read_start.elapsed().as_secs_f64();
            if part.seen == 0 {
                return Err(Error::Numerical(format!(
                    "every step of epoch {} had a NaN/inf loss; lower --lr or check the data",
                    epoch + 1
                )));
            }

            let part = summed_over_ranks(&group, part)?;
            // Batch norm's running statistics differ between ranks: every rank evaluates its
            // slice of the set with rank 0's model, and all get the summed counts, so their
            // schedules and early stopping decide alike.
            ex.broadcast_params(&group)?;
            let val_start = Instant::now();
            let val = evaluate_in_group(&mut ex, val_set.clone(), &setup, &group)?;
            let val_seconds = val_start.elapsed().as_secs_f64();
            let loss_scale = state.loss_scaler.as_ref().map_or(1.0, LossScaler::scale);
            let record = epoch_record(epoch + 1, lr, &part, &val, val_seconds, loss_scale);
            let monitored = match config.schedule_kind() {
                ScheduleKind::Plateau { mode: PlateauMode::Max, .. } => val.top1,
                _ => val.loss,
            };
            state.schedule.end_epoch(epoch, monitored);
            if !quiet {
                eprintln!("{}", epoch_line(&record, config.epochs));
            }
            if let (true, Some(path)) = (leader, &config.log_json) {
                append_json_line(path, &record)?;
            }
            state.history.push(record);
            state.epochs_done += 1;
            last_val = Some(val);
            if leader {
                write_history(&out_dir, &state.history)?;
                saver.save(&ex, &optimizer, &state)?;
            }
            state.checkpoint_at = Some(position(state.epochs_done, None));
            if let (Some(patience), Some((best, _))) = (config.early_stopping, best_epoch(&state.history)) {
                if state.epochs_done - best >= patience && state.epochs_done < config.epochs {
                    if !quiet {
                        eprintln!("early stopping: no better validation top-1 for {patience} epochs (best: epoch {best})");
                    }
                    stopped_early = true;
                    break;
                }
            }
            if group.any(interrupt::take_request())? {
                return Err(interrupted(&format!("after epoch {}", epoch + 1), &out_dir, leader));
            }
        }

        // Final metrics on the test set; when validation already ran on it (or there is none),
        // the last validation pass is that evaluation.
        let evaluated_on = if dataset.test.is_some() { "test" } else { "validation" };
        let separate_test = dataset.test.filter(|_| !val_is_test);
        let final_metrics = match (separate_test, last_val) {
            (Some(test), _) => evaluate_in_group(&mut ex, Arc::new(test), &setup, &group)?,
            (None, Some(val)) => val,
            // A resumed run that had finished all its epochs.
            (None, None) => evaluate_in_group(&mut ex, val_set, &setup, &group)?,
        };
        let (best_epoch, best_val_top1) = best_epoch(&state.history).unwrap_or((0, 0.0));
        let train_seconds: f64 = state.history.iter().map(|r| r.epoch_seconds).sum();
        let (per_class, confusion_matrix, confusion_matrix_normalised) = class_breakdown(&final_metrics, &dataset.classes);
        let report = FinalMetrics {
            model: &config.model,
            dataset: &dataset.name,
            device: &device,
            evaluated_on,
            val_top1: final_metrics.top1,
            val_top5: final_metrics.top5,
            val_loss: final_metrics.loss,
            macro_precision: final_metrics.macro_precision,
            macro_recall: final_metrics.macro_recall,
            macro_f1: final_metrics.macro_f1,
            inference_ms_per_batch: final_metrics.inference_ms_per_batch,
            samples: final_metrics.samples,
            best_epoch,
            best_val_top1,
            epochs_run: state.epochs_done,
            train_seconds,
            stopped_early,
            peak_memory_bytes,
            per_class,
            confusion_matrix,
            confusion_matrix_normalised,
            model_summary: totals,
            config: &config,
        };
        if leader {
            write_final(&out_dir, &report, &final_metrics, &dataset.classes)?;
        }
        Ok(TrainOutcome {
            out_dir,
            device,
            final_metrics,
            evaluated_on,
            history: state.history,
            best_epoch,
            best_val_top1,
            train_seconds,
            stopped_early,
            graph_replayed_steps: replayed.replay.launches(),
        })
    }
}

/// How often at most the trainer reads the epoch's figures from the device during an epoch, for
/// the progress bar (and so it notices a bad label or a NaN loss early): a read waits for the
/// queued steps. It also reads them before a checkpoint and at the end of the epoch.
const METRICS_READ_INTERVAL: Duration = Duration::from_secs(1);

/// The epoch's figures accumulating on the device, and the host's view of them.
struct EpochFigures {
    skip_nonfinite: bool,
    /// Steps skipped in this stretch that the device counted as trained, their loss here being
    /// finite: the optimiser found a NaN/inf gradient norm, or another rank's loss was NaN/inf.
    host_counted_skips: usize,
    /// Skipped steps the device had counted at the last read.
    device_skips: usize,
    /// The optimiser's count of updates it skipped for a NaN/inf gradient norm, at the last look.
    optimizer_skips: u64,
    /// fp16's loss scaling owns the optimiser's non-finite count (its skips are overflows):
    /// the device's count of overflow skips before this epoch, when it scales.
    overflow_skips_before: Option<usize>,
}

impl EpochFigures {
    /// Starts the device's accumulation from what `part` holds (zero, or a resumed epoch's).
    fn start<B: Backend<f32>>(
        ex: &mut Executor<f32, B>,
        optimizer: &Optimizer<f32, B>,
        part: &PartialEpoch,
        skip_nonfinite: bool,
    ) -> Result<Self> {
        ex.start_train_metrics(&TrainTotals {
            loss_sum: part.loss_sum,
            correct: part.correct,
            seen: part.seen,
            skipped_steps: part.skipped_steps,
            steps: part.steps_done,
            ..TrainTotals::default()
        })?;
        // The optimiser counts over the whole run; new skips are those past this count.
        let optimizer_skips = optimizer.nonfinite_grad_steps(ex.backend())?;
        // A resumed epoch's overflows are in the device's count already.
        let overflow_skips_before = ex.read_loss_scale()?.map(|s| s.overflow_skips.saturating_sub(part.overflow_skips));
        Ok(EpochFigures { skip_nonfinite, host_counted_skips: 0, device_skips: part.skipped_steps, optimizer_skips, overflow_skips_before })
    }

    /// Reads the device's figures into `part` (one small download). Without --skip-nonfinite a
    /// step with a NaN/inf loss since the start is the error naming it; an out-of-range label
    /// is the error naming it. Returns whether the device counted a new skipped step.
    /// With gradient clipping, a NaN/inf gradient norm (which the device skips) is the error too,
    /// named at the step of the read since the device does not record which step it was.
    /// With fp16's loss scaling, `scaler` becomes the device's and the epoch's overflow skips
    /// are counted (one more small download).
    fn read<B: Backend<f32>>(
        &mut self,
        ex: &Executor<f32, B>,
        optimizer: &Optimizer<f32, B>,
        part: &mut PartialEpoch,
        fault: &dyn Fn(usize, &str) -> Error,
        scaler: &mut Option<LossScaler>,
    ) -> Result<()> {
        self.read_skips(ex, part, fault)?;
        if let (Some(before), Some(host), Some(device)) = (self.overflow_skips_before, scaler.as_mut(), ex.read_loss_scale()?) {
            *host = LossScaler::from_state(device, host.growth_interval());
            part.overflow_skips = device.overflow_skips - before;
        }
        if !self.skip_nonfinite && self.overflow_skips_before.is_none() && optimizer.nonfinite_grad_steps(ex.backend())? > 0 {
            return Err(fault(part.steps_done, "the gradient norm was NaN or inf at this step or before it; lower the learning rate"));
        }
        Ok(())
    }

    fn read_skips<B: Backend<f32>>(
        &mut self,
        ex: &Executor<f32, B>,
        part: &mut PartialEpoch,
        fault: &dyn Fn(usize, &str) -> Error,
    ) -> Result<bool> {
        let totals = ex.read_train_metrics()?;
        if let (false, Some(bad)) = (self.skip_nonfinite, totals.first_nonfinite) {
            return Err(fault(bad.step, &nonfinite_loss(bad.loss)));
        }
        part.loss_sum = totals.loss_sum;
        part.correct = totals.correct;
        part.seen = totals.seen;
        part.skipped_steps = totals.skipped_steps + self.host_counted_skips;
        let new_skip = totals.skipped_steps > self.device_skips;
        self.device_skips = totals.skipped_steps;
        Ok(new_skip)
    }
}

/// An epoch's training figures summed over the ranks (each rank counted its own slice).
fn summed_over_ranks(group: &ProcessGroup, mut part: PartialEpoch) -> Result<PartialEpoch> {
    let mut sums = [part.loss_sum, part.correct as f64, part.seen as f64];
    group.all_reduce_sum(&mut sums)?;
    part.loss_sum = sums[0];
    [part.correct, part.seen] = [sums[1], sums[2]].map(|v| v as usize);
    Ok(part)
}

/// What a NaN/inf loss is called in errors.
fn nonfinite_loss(loss: f64) -> String {
    format!("the loss is {loss}; lower the learning rate or check the input data")
}

/// Training steps on a resident batch refilled through the device's copy stream, so the next
/// batch's upload overlaps the step before; they may replay a CUDA graph.
struct ReplayedSteps<B: Backend<f32>> {
    replay: StepReplay,
    /// Whether full-size batches go through here (GPU devices; graphs on or off).
    resident_steps: bool,
    resident: Option<ResidentBatch<f32, B>>,
}

impl<B: Backend<f32>> ReplayedSteps<B> {
    /// Whether `batch` goes through here: a full-size batch on a run with resident steps (the
    /// partial last batch of an epoch is queued from the host).
    fn takes(&self, batch: &data::Batch, batch_size: usize) -> bool {
        self.resident_steps && batch.n == batch_size
    }

    /// Copies `batch` into the resident buffers the graph reads, then runs the step.
    fn step(&mut self, ex: &mut Executor<f32, B>, optimizer: &mut Optimizer<f32, B>, batch: &data::Batch, options: &StepOptions) -> Result<()> {
        let resident = match &mut self.resident {
            Some(resident) => resident,
            empty => empty.insert(ex.resident_batch(batch.n)?),
        };
        ex.fill_resident_batch(resident, &batch.x, &batch.labels)?;
        ex.queue_step_seed(resident, options.dropout_seed)?;
        let resident = &*resident;
        self.replay.step(ex, optimizer, |ex, optimizer| {
            ex.train_step_resident(resident, options)?;
            ex.optimizer_step(optimizer)
        })
    }
}

/// One optimisation step on `batch`; its loss and hits add up on the device. A NaN/inf loss (or
/// clipped gradient norm) is skipped with --skip-nonfinite, which therefore reads the step's
/// figures back around each update (small downloads each step); without it, both are found by
/// the next read of the figures. In a data-parallel run the step averages its gradients over
/// the ranks (`Executor::average_gradients_over`).
fn train_step<B: Backend<f32>>(
    ex: &mut Executor<f32, B>,
    optimizer: &mut Optimizer<f32, B>,
    batch: &data::Batch,
    options: &StepOptions,
    figures: &mut EpochFigures,
    part: &mut PartialEpoch,
    fault: &dyn Fn(usize, &str) -> Error,
    group: &ProcessGroup,
) -> Result<()> {
    ex.train_step(Batch::HostF32(&batch.x), &batch.labels, options)?;
    if figures.skip_nonfinite {
        let skipped_here = figures.read_skips(ex, part, fault)?;
        if group.any(skipped_here)? {
            // Another rank's NaN/inf loss: this rank's device counted the step as trained.
            if !skipped_here {
                figures.host_counted_skips += 1;
                part.skipped_steps += 1;
            }
            ex.discard_gradients();
            return Ok(());
        }
    }
    // fp16: the device skips the update if a gradient overflowed, and its scale follows.
    ex.optimizer_step(optimizer)?;
    if figures.overflow_skips_before.is_some() {
        return Ok(());
    }
    // The device skips an update whose clipped gradient norm is NaN/inf; count it as skipped.
    if figures.skip_nonfinite {
        let device_norm_skips = optimizer.nonfinite_grad_steps(ex.backend())?;
        if device_norm_skips > figures.optimizer_skips {
            figures.optimizer_skips = device_norm_skips;
            figures.host_counted_skips += 1;
            part.skipped_steps += 1;
        }
    }
    Ok(())
}

fn epoch_record(epoch: usize, lr: f64, part: &PartialEpoch, val: &EvalMetrics, val_seconds: f64, loss_scale: f64) -> EpochRecord {
    EpochRecord {
        epoch,
        lr,
        train_loss: part.loss_sum / part.seen as f64,
        train_acc: part.correct as f64 / part.seen as f64,
        val_loss: val.loss,
        val_top1: val.top1,
        val_top5: val.top5,
        val_macro_precision: val.macro_precision,
        val_macro_recall: val.macro_recall,
        val_macro_f1: val.macro_f1,
        skipped_steps: part.skipped_steps,
        overflow_skips: part.overflow_skips,
        loss_scale,
        epoch_seconds: part.seconds + val_seconds,
        train_images_per_second: part.seen as f64 / part.seconds,
        inference_ms_per_batch: val.inference_ms_per_batch,
    }
}

/// The line printed after each epoch.
fn epoch_line(r: &EpochRecord, epochs: usize) -> String {
    format!(
        "epoch {}/{epochs}: train loss {:.4} acc {:.2}% | val loss {:.4} top-1 {:.2}% top-5 {:.2}% | lr {:.4} | {:.1} s, {:.0} img/s",
        r.epoch,
        r.train_loss,
        r.train_acc * 100.0,
        r.val_loss,
        r.val_top1 * 100.0,
        r.val_top5 * 100.0,
        r.lr,
        r.epoch_seconds,
        r.train_images_per_second
    )
}

/// Says where the run stopped and how to continue it; the caller has written the checkpoint.
fn interrupted(when: &str, out_dir: &Path, leader: bool) -> Error {
    if !leader {
        return Error::Interrupted;
    }
    eprintln!(
        "interrupted {when}; checkpoint written to {}; continue with `ferronet train --resume --out {}`",
        checkpoint_path(out_dir).display(),
        out_dir.display()
    );
    Error::Interrupted
}

fn append_json_line(path: &Path, record: &EpochRecord) -> Result<()> {
    let line = serde_json::to_string(record).expect("epoch records serialise");
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| Error::io(path, e))?;
    writeln!(f, "{line}").map_err(|e| Error::io(path, e))
}

/// Writes checkpoints of one run: the model, the optimiser state and the run state.
struct Saver<'a> {
    path: PathBuf,
    config: &'a TrainConfig,
    input: [usize; 3],
    mean: &'a [f32],
    std: &'a [f32],
    class_names: &'a [String],
}

impl Saver<'_> {
    fn save<B: Backend<f32>>(&self, ex: &Executor<f32, B>, optimizer: &Optimizer<f32, B>, state: &RunState) -> Result<()> {
        let mut tensors = model_tensors(ex)?;
        let opt = optimizer.export_state(ex.backend(), ex.params())?;
        for (key, data) in opt.buffers {
            tensors.push(NamedTensor { name: format!("{OPTIMIZER_PREFIX}{key}"), shape: vec![data.len()], data });
        }
        let meta = CheckpointMeta {
            format_version: FORMAT_VERSION,
            model: self.config.model.clone(),
            class_names: self.class_names.to_vec(),
            input: self.input,
            mean: self.mean.to_vec(),
            std: self.std.to_vec(),
            config: self.config.clone(),
            epochs_done: state.epochs_done,
            rng_state: state.rng.state(),
            executor_rng_state: ex.rng_state(),
            optimizer_steps: opt.steps,
            schedule: state.schedule.clone(),
            history: state.history.clone(),
            partial_epoch: state.partial.clone(),
            loss_scaler: state.loss_scaler.clone(),
        };
        checkpoint::save(&self.path, &tensors, &meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_epoch_is_the_first_highest_top1() {
        let r = |epoch, val_top1| EpochRecord {
            epoch,
            lr: 0.1,
            train_loss: 1.0,
            train_acc: 0.5,
            val_loss: 1.0,
            val_top1,
            val_top5: 1.0,
            val_macro_precision: 0.5,
            val_macro_recall: 0.5,
            val_macro_f1: 0.5,
            skipped_steps: 0,
            overflow_skips: 0,
            loss_scale: 1.0,
            epoch_seconds: 1.0,
            train_images_per_second: 1.0,
            inference_ms_per_batch: 1.0,
        };
        assert_eq!(best_epoch(&[]), None);
        assert_eq!(best_epoch(&[r(1, 0.5), r(2, 0.7), r(3, 0.7), r(4, 0.6)]), Some((2, 0.7)));
    }
}
