//! `ferronet train`: see `crate::train::config::TrainConfig` for the flags and
//! `crate::train::recipe` for the defaults by model and dataset.

use crate::device::DeviceRequest;
use crate::dist::{DistBackend, Launch, ProcessGroup};
use crate::error::{Error, Result};
use crate::train::config::{GivenFlags, TrainConfig};
use crate::train::recipe;
use crate::train::trainer::train_in_group;
use std::sync::Arc;
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
    let TrainArgs { mut config, given } = args;
    let launch = Launch::from_environment()?;
    if launch != Launch::Alone {
        share_the_machine(&launch, &mut config)?;
    }
    let cuda = match config.device {
        DeviceRequest::Cuda(ordinal) => Some(ordinal),
        _ => None,
    };
    let group = Arc::new(ProcessGroup::join(&launch, config.collective_timeout()?, cuda)?);
    let quiet = config.quiet || !group.is_leader();
    let outcome = match train_in_group(config, &given, group.clone()) {
        Ok(outcome) => outcome,
        // A stop every rank took together ends normally; a failure of this rank alone must end
        // the others too, which would wait for it in the next all-reduce.
        Err(Error::Interrupted) => return Err(Error::Interrupted),
        Err(e) if group.world_size() > 1 => {
            eprintln!("error: rank {} of {}: {}", group.rank(), group.world_size(), group.explain(e));
            group.abort(1)
        }
        Err(e) => return Err(e),
    };
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

/// One of several ranks on this machine takes its own GPU (`cuda` is `cuda:LOCAL_RANK`) or its
/// share of the CPU threads (unless RAYON_NUM_THREADS says otherwise), as torchrun sets
/// OMP_NUM_THREADS. torchrun's ranks are CUDA ranks (`auto` is `cuda` there) on NCCL alone.
fn share_the_machine(launch: &Launch, config: &mut TrainConfig) -> Result<()> {
    let local_rank = launch.local_rank();
    if let Launch::Torchrun { world, .. } = launch {
        if config.device == DeviceRequest::Auto {
            config.device = DeviceRequest::Cuda(0);
        }
        if config.dist_backend == DistBackend::Mpi {
            return Err(Error::config(format!(
                "--dist-backend mpi under torchrun: torchrun's ranks reduce over NCCL alone; \
                 drop the flag, or launch with `mpirun -np {world} ferronet train ...`"
            )));
        }
    }
    if config.device == DeviceRequest::Cuda(0) {
        config.device = DeviceRequest::Cuda(local_rank);
    }
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = (cores / launch.local_world()).max(1);
        // Fails only when the pool already exists, which then keeps its size.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(threads).build_global();
    }
    Ok(())
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
