//! `ferronet train`: see `crate::train::config::TrainConfig` for the flags and
//! `crate::train::recipe` for the defaults by model and dataset.

use crate::error::Result;
use crate::train::config::{GivenFlags, TrainConfig};
use crate::train::recipe;
use crate::train::trainer::train_given;
use clap::{ArgMatches, Args, Command, FromArgMatches};

/// The train flags and which of them the user typed (recipes fill the others, `--resume`
/// checks them against the saved run).
#[derive(Debug, Clone)]
pub struct TrainArgs {
    pub config: TrainConfig,
    pub given: GivenFlags,
}

impl FromArgMatches for TrainArgs {
    fn from_arg_matches(matches: &ArgMatches) -> std::result::Result<Self, clap::Error> {
        Ok(TrainArgs { config: TrainConfig::from_arg_matches(matches)?, given: GivenFlags::from_matches(matches) })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> std::result::Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for TrainArgs {
    fn augment_args(cmd: Command) -> Command {
        TrainConfig::augment_args(cmd).after_help(recipe::help_table())
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

pub fn run(args: TrainArgs) -> Result<i32> {
    let TrainArgs { config, given } = args;
    let quiet = config.quiet;
    let outcome = train_given(config, &given)?;
    let m = &outcome.final_metrics;
    if !quiet {
        println!(
            "{} set: top-1 {:.2}%, top-5 {:.2}%, loss {:.4}, macro F1 {:.4}; best epoch {} (validation top-1 {:.2}%){}; trained {:.1} s on {}",
            outcome.evaluated_on,
            m.top1 * 100.0,
            m.top5 * 100.0,
            m.loss,
            m.macro_f1,
            outcome.best_epoch,
            outcome.best_val_top1 * 100.0,
            if outcome.stopped_early { ", stopped early" } else { "" },
            outcome.train_seconds,
            outcome.device
        );
        println!("outputs in {}", outcome.out_dir.display());
    }
    Ok(0)
}

impl TrainArgs {
    /// The arguments `ferronet` with no subcommand trains with: those of `ferronet train`.
    pub fn default_run() -> Self {
        let matches = Self::augment_args(Command::new("train")).get_matches_from(["train"]);
        Self::from_arg_matches(&matches).expect("the defaults of every flag parse")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::config::{DatasetChoice, OptimizerChoice, SchedulerChoice};

    fn parse(args: &[&str]) -> TrainArgs {
        let matches = TrainArgs::augment_args(Command::new("train")).try_get_matches_from(args).unwrap();
        TrainArgs::from_arg_matches(&matches).unwrap()
    }

    #[test]
    fn typed_flags_are_told_from_defaults_and_the_recipe_fills_the_rest() {
        let mut args = parse(&["train", "--dataset", "fashion-mnist", "--epochs", "3", "--quiet", "--augment"]);
        for id in ["dataset", "epochs", "quiet", "augment"] {
            assert!(args.given.contains(id), "{id}");
        }
        for id in ["lr", "optimizer", "model", "batch_size", "DataConfig", "TrainConfig"] {
            assert!(!args.given.contains(id), "{id}");
        }
        recipe::apply(&mut args.config, &args.given);
        let c = &args.config;
        assert_eq!((c.data.dataset, c.optimizer, c.lr, c.scheduler), (DatasetChoice::FashionMnist, OptimizerChoice::Adam, 0.002, SchedulerChoice::Cosine));
        assert!(c.augment, "a given switch stays on");
        assert!(!parse(&["train", "--dataset", "cifar10", "--augment=false"]).config.augment);
        // With no subcommand, ferronet trains as `ferronet train` does.
        let default = TrainArgs::default_run();
        assert_eq!((default.config, default.given), (TrainConfig::default(), GivenFlags::from_ids([])));
    }
}
