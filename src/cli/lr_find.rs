//! `ferronet lr-find`: the learning-rate range test (`crate::train::lr_find`) for a training
//! configuration given with `ferronet train`'s flags and defaults.

use crate::error::{Error, Result};
use crate::train::config::{GivenFlags, TrainConfig};
use crate::train::lr_find::{lr_find, LrRange};
use crate::train::recipe;
use clap::{ArgMatches, Args, Command, FromArgMatches};

/// Train flags the range test has no use for: it sets the learning rate itself, step by step,
/// for one sweep that is neither a run to resume nor one with epochs.
const UNUSED_TRAIN_FLAGS: &[&str] = &[
    "epochs",
    "lr",
    "scheduler",
    "step_size",
    "gamma",
    "plateau_mode",
    "plateau_factor",
    "plateau_patience",
    "warmup_epochs",
    "early_stopping",
    "resume",
    "log_json",
    "skip_nonfinite",
    "cuda_graph",
];

/// The sweep's own flags.
#[derive(Args, Debug, Clone)]
pub struct RangeArgs {
    /// Learning rate of the first step.
    #[arg(long, default_value_t = 1e-7)]
    pub start_lr: f64,
    /// Learning rate of the last step (the rate grows by the same factor every step).
    #[arg(long, default_value_t = 10.0)]
    pub end_lr: f64,
    /// Training steps (batches) of the sweep; it stops sooner when the loss diverges.
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
}

#[derive(Debug, Clone)]
pub struct LrFindArgs {
    pub config: TrainConfig,
    pub given: GivenFlags,
    pub range: LrRange,
}

impl FromArgMatches for LrFindArgs {
    fn from_arg_matches(matches: &ArgMatches) -> std::result::Result<Self, clap::Error> {
        let range = RangeArgs::from_arg_matches(matches)?;
        Ok(LrFindArgs {
            config: TrainConfig::from_arg_matches(matches)?,
            given: GivenFlags::from_matches(matches),
            range: LrRange { start_lr: range.start_lr, end_lr: range.end_lr, steps: range.steps },
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> std::result::Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for LrFindArgs {
    fn augment_args(cmd: Command) -> Command {
        let cmd = RangeArgs::augment_args(TrainConfig::augment_args(cmd));
        let cmd = UNUSED_TRAIN_FLAGS.iter().fold(cmd, |cmd, id| cmd.mut_arg(*id, |arg| arg.hide(true)));
        let out = "Directory for lr_find.csv and lr_find.svg (default: runs/<next free number>).";
        cmd.mut_arg("out", |arg| arg.help(out)).after_help(recipe::help_table())
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

pub fn run(args: LrFindArgs) -> Result<i32> {
    let LrFindArgs { config, given, range } = args;
    let unused: Vec<String> =
        UNUSED_TRAIN_FLAGS.iter().filter(|id| given.contains(id)).map(|id| format!("--{}", id.replace('_', "-"))).collect();
    if !unused.is_empty() {
        return Err(Error::config(format!(
            "lr-find does not take {}: it trains one sweep of --steps batches from --start-lr to --end-lr",
            unused.join(", ")
        )));
    }
    let quiet = config.quiet;
    let found = lr_find(config, &given, range)?;
    if let (false, Some(step)) = (quiet, found.diverged_at) {
        eprintln!("stopped at step {step} of {}: the loss diverged", range.steps);
    }
    match found.suggested_lr {
        Some(lr) => println!("suggested learning rate: {lr:.2e} (steepest fall of the smoothed loss)"),
        None => println!("no suggestion: too few steps before the loss diverged; lower --start-lr or raise --steps"),
    }
    println!("lr_find.csv and lr_find.svg in {} ({} steps on {})", found.out_dir.display(), found.points.len(), found.device);
    Ok(0)
}
