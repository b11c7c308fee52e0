use crate::error::{Error, Result};
use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct EvalArgs {}

pub fn run(_args: EvalArgs) -> Result<i32> {
    Err(Error::config("`ferronet eval` is not built yet"))
}
