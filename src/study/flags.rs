//! A study speaks in `ferronet train` flags: each table of a study file, and the command line of
//! `ferronet compare`, is a set of flags by their long names. Layers of flags are merged (a later
//! layer's flag replaces an earlier one's) and the result is parsed by train's own flag parser,
//! so a run accepts exactly what `ferronet train` accepts, with its defaults and its checks.

use crate::error::{Error, Result};
use crate::train::config::{GivenFlags, TrainConfig};
use crate::train::recipe;
use clap::{Args, Command, FromArgMatches};
use std::collections::BTreeMap;

/// A flag's value: a switch (`--augment`) or a value (`--lr 0.1`; lists such as `--input` as
/// their comma-separated text).
#[derive(Clone, Debug, PartialEq)]
pub enum FlagValue {
    Switch(bool),
    Value(String),
}

/// Flags by long name without the dashes (`batch-size`).
pub type Flags = BTreeMap<String, FlagValue>;

/// The flags a study sets for itself, never for one of its runs: each run's directory and
/// resumption are the study's.
pub const STUDY_OWNED: [&str; 2] = ["out", "resume"];

/// The clap command of `ferronet train`'s flags.
pub fn train_command() -> Command {
    TrainConfig::augment_args(Command::new("train").no_binary_name(true))
}

/// Every train flag by long name, and whether it takes a value (false: a switch).
pub fn train_flags() -> BTreeMap<String, bool> {
    train_command()
        .get_arguments()
        .filter_map(|a| a.get_long().map(|long| (long.to_string(), a.get_action().takes_values())))
        .collect()
}

/// The text after clap's "error: " on the first line of its message.
fn clap_message(e: &clap::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

/// The configuration `flags` describe (train's defaults for the rest), checked as `ferronet
/// train` checks its flags; `origin` names where the flags come from in the error.
pub fn train_config(flags: &Flags, origin: &str) -> Result<TrainConfig> {
    let args = flags.iter().filter_map(|(name, value)| match value {
        FlagValue::Switch(true) => Some(format!("--{name}")),
        FlagValue::Switch(false) => None,
        // `=` keeps a value starting with a dash (a negative number) a value.
        FlagValue::Value(v) => Some(format!("--{name}={v}")),
    });
    let to_error = |e: clap::Error| Error::config(format!("{origin}: {}", clap_message(&e)));
    let matches = train_command().try_get_matches_from(args).map_err(to_error)?;
    let mut parsed = TrainConfig::from_arg_matches(&matches).map_err(to_error)?;
    // The flags the study leaves out get train's defaults for the model and dataset, as a
    // `ferronet train` typed with the same flags would.
    recipe::apply(&mut parsed, &GivenFlags::from_matches(&matches));
    parsed.validate().map_err(|e| e.context(origin))?;
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(pairs: &[(&str, FlagValue)]) -> Flags {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn flags_parse_as_train_parses_them() {
        use FlagValue::{Switch, Value};
        let config = train_config(
            &flags(&[
                ("model", Value("resnet18".into())),
                ("lr", Value("0.2".into())),
                ("input", Value("3,32,32".into())),
                ("augment", Switch(true)),
                ("hflip", Switch(false)),
            ]),
            "recipe a",
        )
        .unwrap();
        assert_eq!((config.model.as_str(), config.lr, config.data.input), ("resnet18", 0.2, Some([3, 32, 32])));
        assert!(config.augment && !config.hflip);
        assert_eq!(config.epochs, TrainConfig::default().epochs, "unset flags keep train's defaults");
        let err = train_config(&flags(&[("lr", Value("fast".into()))]), "recipe a").unwrap_err().to_string();
        assert!(err.contains("recipe a: invalid value 'fast' for '--lr") && !err.contains('\n'), "{err}");
        let err = train_config(&flags(&[("lr", Value("-1".into()))]), "recipe b").unwrap_err().to_string();
        assert!(err.contains("recipe b") && err.contains("--lr -1 must be in"), "{err}");
        let known = train_flags();
        assert_eq!((known["augment"], known["batch-size"], known["data-dir"]), (false, true, true));
    }
}
