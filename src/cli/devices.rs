use crate::error::{Error, Result};
use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct DevicesArgs {}

pub fn run(_args: DevicesArgs) -> Result<i32> {
    Err(Error::config("`ferronet devices` is not built yet"))
}
