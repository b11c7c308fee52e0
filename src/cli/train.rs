//! `ferronet train`: see `crate::train::config::TrainConfig` for the flags.

use crate::error::Result;
use crate::train::config::TrainConfig;
use crate::train::trainer::train;
use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    #[command(flatten)]
    pub config: TrainConfig,
}

pub fn run(args: TrainArgs) -> Result<i32> {
    let quiet = args.config.quiet;
    let outcome = train(args.config)?;
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
    /// The arguments `ferronet` with no subcommand trains with.
    pub fn default_run() -> Self {
        TrainArgs { config: TrainConfig::default() }
    }
}
