use crate::error::{Error, Result};
use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct TrainArgs {}

pub fn run(_args: TrainArgs) -> Result<i32> {
    Err(Error::config("`ferronet train` is not built yet"))
}

impl TrainArgs {
    /// The arguments `ferronet` with no subcommand trains with.
    pub fn default_run() -> Self {
        TrainArgs {}
    }
}
