//! Model-comparison studies (`ferronet compare`): models x datasets x recipes, each combination
//! one `ferronet train` run in its own directory, resumed where it stopped, and the comparison
//! of the runs as comparison.csv, comparison.md and a self-contained report.html.

pub mod flags;
pub mod report;
pub mod results;
pub mod runner;
pub mod spec;
