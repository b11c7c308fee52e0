use crate::error::{Error, Result};
use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct GradcheckArgs {}

pub fn run(_args: GradcheckArgs) -> Result<i32> {
    Err(Error::config("`ferronet gradcheck` is not built yet"))
}
