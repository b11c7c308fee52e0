use crate::error::{Error, Result};
use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct SummaryArgs {}

pub fn run(_args: SummaryArgs) -> Result<i32> {
    Err(Error::config("`ferronet summary` is not built yet"))
}

pub fn list_models() -> Result<i32> {
    Err(Error::config("`ferronet models` is not built yet"))
}
