//! `ferronet compare STUDY.toml [--quick]` or `ferronet compare --models A,B,... --out DIR` with
//! any `ferronet train` flags (over the study file's, for every run): see `crate::study`.

use crate::error::{Error, Result};
use crate::study::flags::{train_command, FlagValue, Flags};
use crate::study::report::{comparison_md, write_reports};
use crate::study::runner::run_study;
use crate::study::spec::Study;
use crate::train::config::TrainConfig;
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Command, FromArgMatches};
use std::path::PathBuf;

/// compare's own flags; the train flags come beside them.
#[derive(Args, Debug, Clone)]
struct StudyArgs {
    /// A study file (TOML: models, datasets, recipes; the schema is in README.md, the studies of
    /// the seed papers in datasets/studies/).
    #[arg(value_name = "STUDY")]
    study: Option<PathBuf>,
    /// The models to compare, comma-separated, each trained with the train flags given (instead
    /// of a study file).
    #[arg(long, value_delimiter = ',', conflicts_with = "study", value_name = "A,B,...")]
    models: Vec<String>,
    /// The study file's quick scale (its [quick] table: a small subset, few epochs, a reduced
    /// input), in runs/<name>-quick unless --out says otherwise.
    #[arg(long, requires = "study")]
    quick: bool,
}

/// `ferronet compare`'s command line: its own flags, and the train flags given explicitly.
#[derive(Debug, Clone)]
pub struct CompareArgs {
    study: StudyArgs,
    train_flags: Flags,
}

impl FromArgMatches for CompareArgs {
    fn from_arg_matches(m: &ArgMatches) -> std::result::Result<Self, clap::Error> {
        let study = StudyArgs::from_arg_matches(m)?;
        // Only what was typed: a study file's values give way to these, not to train's defaults.
        let mut train_flags = Flags::new();
        for arg in train_command().get_arguments() {
            let (Some(long), id) = (arg.get_long(), arg.get_id().as_str()) else { continue };
            if m.value_source(id) != Some(ValueSource::CommandLine) {
                continue;
            }
            let value = match arg.get_action().takes_values() {
                true => FlagValue::Value(m.get_raw(id).into_iter().flatten().map(|v| v.to_string_lossy()).collect::<Vec<_>>().join(",")),
                false => FlagValue::Switch(m.get_flag(id)),
            };
            train_flags.insert(long.to_string(), value);
        }
        Ok(CompareArgs { study, train_flags })
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> std::result::Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl Args for CompareArgs {
    fn augment_args(cmd: Command) -> Command {
        TrainConfig::augment_args(StudyArgs::augment_args(cmd))
            .mut_arg("out", |a| {
                a.help("The study's directory: a run directory <dataset>/<recipe>/<model> for each run, and the comparison (default: the study file's `out`, else runs/<name>)")
            })
            // The study names the models and resumes by itself; given anyway, they are refused
            // in one line by `run`.
            .mut_arg("model", |a| a.hide(true))
            .mut_arg("resume", |a| a.hide(true))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

pub fn run(args: CompareArgs) -> Result<i32> {
    let CompareArgs { study: own, mut train_flags } = args;
    if train_flags.contains_key("model") {
        return Err(Error::config("compare takes --models A,B,... (or a study file's `models`), not --model"));
    }
    if train_flags.contains_key("resume") {
        return Err(Error::config("compare resumes by itself: run the same command again, without --resume"));
    }
    let out = match train_flags.remove("out") {
        Some(FlagValue::Value(dir)) => Some(PathBuf::from(dir)),
        _ => None,
    };
    let study = match &own.study {
        Some(path) => Study::from_file(path, own.quick, &train_flags, out)?,
        None if !own.models.is_empty() => Study::from_flags(&own.models, &train_flags, out)?,
        None => {
            return Err(Error::config(
                "compare needs a study file (e.g. datasets/studies/cifar10-architectures.toml) or --models A,B,... --out DIR with train flags",
            ))
        }
    };
    study.check_files()?;
    let results = run_study(&study)?;
    write_reports(&study, &results)?;
    if !study.runs.iter().any(|r| r.config.quiet) {
        print!("{}", comparison_md(&study, &results));
        println!("comparison.csv, comparison.md and report.html in {}", study.out.display());
    }
    Ok(0)
}
