use crate::error::{Error, Result};
use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {}

pub fn run(_args: BenchArgs) -> Result<i32> {
    Err(Error::config("`ferronet bench` is not built yet"))
}
