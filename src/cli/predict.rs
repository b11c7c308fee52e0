use crate::error::{Error, Result};
use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct PredictArgs {}

pub fn run(_args: PredictArgs) -> Result<i32> {
    Err(Error::config("`ferronet predict` is not built yet"))
}
