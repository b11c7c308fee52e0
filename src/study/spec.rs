//! What a study runs: models x datasets x recipes, each combination one `ferronet train` run with
//! its own directory `<out>/<dataset>/<recipe>/<model>`. A study comes from a study file (TOML,
//! the schema below and in README.md) or from `ferronet compare --models ...` and train flags.
//!
//! ```toml
//! name = "cifar10-architectures"        # optional: default the file's name
//! description = "..."                   # optional: shown in the report
//! out = "runs/cifar10-architectures"    # optional: default runs/<name>; -quick added with --quick
//! models = ["resnet18", { model = "alexnet", label = "alexnet-ft", init-from = "alexnet.pth" }]
//! [train]                               # train flags of every run
//! epochs = 30
//! [[datasets]]                          # optional: one entry per dataset (label: default its name)
//! dataset = "cifar10"
//! [[recipes]]                           # optional: one entry per recipe, each with a label
//! label = "sgd"
//! optimizer = "sgd"
//! [quick]                               # train flags over everything with --quick
//! limit = 1000
//! ```
//!
//! A run's flags are, each layer replacing the one before: `[train]`, its dataset entry, its
//! recipe entry, its model entry, `[quick]` (with --quick), then the flags given to compare.

use crate::error::{Error, Result};
use crate::study::flags::{train_config, train_flags, FlagValue, Flags, STUDY_OWNED};
use crate::train::config::TrainConfig;
use crate::train::session::build_model;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A study ready to run: its runs in order (datasets, then recipes, then models).
#[derive(Debug)]
pub struct Study {
    pub name: String,
    pub description: Option<String>,
    /// A study file's scale, "full" or "quick" (its `[quick]` table applied); None for --models.
    pub scale: Option<&'static str>,
    pub out: PathBuf,
    pub runs: Vec<PlannedRun>,
}

/// One run of a study: its labels on the three axes and its training configuration, whose
/// `out` is the run's directory.
#[derive(Clone, Debug)]
pub struct PlannedRun {
    pub model: String,
    pub dataset: String,
    pub recipe: String,
    pub config: TrainConfig,
}

impl PlannedRun {
    pub fn dir(&self) -> &Path {
        self.config.out.as_deref().expect("a planned run has its directory")
    }

    /// "resnet18 (cifar10, sgd)", for messages.
    pub fn name(&self) -> String {
        format!("{} ({}, {})", self.model, self.dataset, self.recipe)
    }
}

/// The study file as written; the tables of train flags are read by [`Axis`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StudyFile {
    name: Option<String>,
    description: Option<String>,
    out: Option<PathBuf>,
    models: Vec<toml::Value>,
    #[serde(default)]
    train: toml::Table,
    #[serde(default)]
    datasets: Vec<toml::Table>,
    #[serde(default)]
    recipes: Vec<toml::Table>,
    #[serde(default)]
    quick: toml::Table,
}

/// One entry of an axis: its label (None: named after its dataset) and its flags.
struct Entry {
    label: Option<String>,
    flags: Flags,
}

/// The line and column (1-based) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.chars().rev().take_while(|&c| c != '\n').count() + 1;
    (line, column)
}

/// Reads the flags of one table; `label` is taken out by the caller, `model` is allowed only in
/// model entries.
fn table_flags(table: &toml::Table, origin: &str, known: &BTreeMap<String, bool>, model_allowed: bool) -> Result<Flags> {
    let mut flags = Flags::new();
    for (key, value) in table.iter().filter(|(k, _)| k.as_str() != "label") {
        let name = key.replace('_', "-");
        let bad = |problem: String| Error::config(format!("{origin}: `{key}` {problem}"));
        if STUDY_OWNED.contains(&name.as_str()) {
            return Err(bad("is the study's own: each run's directory is <out>/<dataset>/<recipe>/<model>, and the study resumes by itself; set `out` at the top of the file or --out".into()));
        }
        if name == "model" && !model_allowed {
            return Err(bad("belongs in `models`, the study's list of models".into()));
        }
        let takes_value = *known.get(&name).ok_or_else(|| bad("is not a flag of `ferronet train` (`ferronet train --help` lists them)".into()))?;
        let scalar = |v: &toml::Value| match v {
            toml::Value::String(s) => Some(s.clone()),
            toml::Value::Integer(i) => Some(i.to_string()),
            toml::Value::Float(f) => Some(f.to_string()),
            _ => None,
        };
        let flag = match value {
            toml::Value::Boolean(b) if !takes_value => FlagValue::Switch(*b),
            toml::Value::Boolean(_) => return Err(bad("takes a value, not true or false".into())),
            _ if !takes_value => return Err(bad("is a switch: true or false".into())),
            toml::Value::Array(items) => {
                let parts: Option<Vec<String>> = items.iter().map(scalar).collect();
                FlagValue::Value(parts.ok_or_else(|| bad("must be a list of numbers or strings".into()))?.join(","))
            }
            other => FlagValue::Value(scalar(other).ok_or_else(|| bad("must be a number, a string or a list".into()))?),
        };
        flags.insert(name, flag);
    }
    Ok(flags)
}

fn table_label(table: &toml::Table, origin: &str) -> Result<Option<String>> {
    match table.get("label") {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Error::config(format!("{origin}: `label` must be a string"))),
    }
}

/// A label names a directory: letters, digits, `.`, `_`, `+` and `-`, starting with a letter or
/// digit.
fn check_label(label: &str, axis: &str) -> Result<()> {
    let ok = label.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && label.chars().all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c));
    match ok {
        true => Ok(()),
        false => Err(Error::config(format!(
            "the {axis} label `{label}` names a directory: use letters, digits, `.`, `_`, `+` and `-`, starting with a letter or digit"
        ))),
    }
}

/// Where the study's runs go unless --out says: the file's `out`, else runs/<name>; at the quick
/// scale, that directory's name with `-quick`, so the two scales never mix.
fn default_out(file_out: Option<PathBuf>, name: &str, quick: bool) -> PathBuf {
    let out = file_out.unwrap_or_else(|| Path::new("runs").join(name));
    match (quick, out.file_name()) {
        (true, Some(last)) => out.with_file_name(format!("{}-quick", last.to_string_lossy())),
        _ => out,
    }
}

impl Study {
    /// The study of a study file at the full scale or, with `quick`, at its `[quick]` scale;
    /// `command_line` (flags given to compare) applies over everything, `out` replaces the file's.
    pub fn from_file(path: &Path, quick: bool, command_line: &Flags, out: Option<PathBuf>) -> Result<Study> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let file: StudyFile = toml::from_str(&text).map_err(|e| {
            let at = e.span().map(|s| line_column(&text, s.start)).map(|(l, c)| format!(" (line {l}, column {c})")).unwrap_or_default();
            Error::data(path, format!("not a study file{at}: {}", e.message().trim().replace('\n', " ")))
        })?;
        let shown = path.display();
        if file.models.is_empty() {
            return Err(Error::data(path, "`models` is empty: list the models to compare, e.g. models = [\"resnet18\", \"mobilenet_v2\"]"));
        }
        if quick && file.quick.is_empty() {
            return Err(Error::config(format!("{shown} has no [quick] table for --quick: add one with the flags of the quick scale")));
        }
        let known = train_flags();
        let shared = table_flags(&file.train, &format!("{shown} [train]"), &known, false)?;
        let quick_flags = table_flags(&file.quick, &format!("{shown} [quick]"), &known, false)?;
        let models = file
            .models
            .iter()
            .enumerate()
            .map(|(i, value)| {
                let origin = format!("{shown} models entry {}", i + 1);
                match value {
                    toml::Value::String(name) => {
                        Ok(Entry { label: Some(name.clone()), flags: Flags::from([("model".into(), FlagValue::Value(name.clone()))]) })
                    }
                    toml::Value::Table(table) => {
                        let Some(toml::Value::String(model)) = table.get("model") else {
                            return Err(Error::config(format!("{origin}: a model table needs `model = \"NAME\"`")));
                        };
                        let label = table_label(table, &origin)?.unwrap_or_else(|| model.clone());
                        Ok(Entry { label: Some(label), flags: table_flags(table, &origin, &known, true)? })
                    }
                    _ => Err(Error::config(format!("{origin}: a model is a name or a table {{ model = \"NAME\", ... }}"))),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let datasets = match file.datasets.is_empty() {
            true => vec![Entry { label: None, flags: Flags::new() }],
            false => file
                .datasets
                .iter()
                .enumerate()
                .map(|(i, table)| {
                    let origin = format!("{shown} datasets entry {}", i + 1);
                    if !table.contains_key("dataset") {
                        return Err(Error::config(format!("{origin}: a dataset entry needs `dataset = \"NAME\"`")));
                    }
                    Ok(Entry { label: table_label(table, &origin)?, flags: table_flags(table, &origin, &known, false)? })
                })
                .collect::<Result<Vec<_>>>()?,
        };
        let recipes = match file.recipes.is_empty() {
            true => vec![Entry { label: Some("default".into()), flags: Flags::new() }],
            false => file
                .recipes
                .iter()
                .enumerate()
                .map(|(i, table)| {
                    let origin = format!("{shown} recipes entry {}", i + 1);
                    let label = table_label(table, &origin)?
                        .ok_or_else(|| Error::config(format!("{origin}: a recipe needs `label = \"NAME\"`, the name of its runs")))?;
                    Ok(Entry { label: Some(label), flags: table_flags(table, &origin, &known, false)? })
                })
                .collect::<Result<Vec<_>>>()?,
        };
        let name = match file.name {
            Some(name) => name,
            None => path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "study".into()),
        };
        check_label(&name, "study")?;
        let out = out.unwrap_or_else(|| default_out(file.out, &name, quick));
        let over: Vec<&Flags> = [quick.then_some(&quick_flags), Some(command_line)].into_iter().flatten().collect();
        let runs = plan(&shown.to_string(), &shared, &datasets, &recipes, &models, &over, &out)?;
        let scale = Some(if quick { "quick" } else { "full" });
        Ok(Study { name, description: file.description, scale, out, runs })
    }

    /// The study of `ferronet compare --models A,B,... --out DIR` with train flags: one run per
    /// model on one dataset with one recipe.
    pub fn from_flags(models: &[String], command_line: &Flags, out: Option<PathBuf>) -> Result<Study> {
        let out = out.ok_or_else(|| Error::config("compare --models needs --out DIR, the study's directory (run the same command again to resume it)"))?;
        let name = out.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "study".into());
        let models = models
            .iter()
            .map(|m| Entry { label: Some(m.clone()), flags: Flags::from([("model".into(), FlagValue::Value(m.clone()))]) })
            .collect::<Vec<_>>();
        let one_dataset = [Entry { label: None, flags: Flags::new() }];
        let one_recipe = [Entry { label: Some("default".into()), flags: Flags::new() }];
        let runs = plan("compare", command_line, &one_dataset, &one_recipe, &models, &[], &out)?;
        Ok(Study { name, description: None, scale: None, out, runs })
    }
}

/// Every run of the axes, with its flags merged and parsed, its labels checked (unique on each
/// axis) and its model built once for its input, so a study that cannot run fails before the
/// first run starts.
/// `over` are the layers applied over the entries' flags, in order.
fn plan(study: &str, shared: &Flags, datasets: &[Entry], recipes: &[Entry], models: &[Entry], over: &[&Flags], out: &Path) -> Result<Vec<PlannedRun>> {
    let mut runs = Vec::new();
    let mut seen = BTreeSet::new();
    for dataset in datasets {
        for recipe in recipes {
            for model in models {
                let mut flags = shared.clone();
                for layer in [&dataset.flags, &recipe.flags, &model.flags].into_iter().chain(over.iter().copied()) {
                    flags.extend(layer.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                let model_label = model.label.clone().expect("model entries have labels");
                let recipe_label = recipe.label.clone().expect("recipe entries have labels");
                let origin = format!("{study}, run of {model_label} with recipe {recipe_label}");
                let mut config = train_config(&flags, &origin)?;
                let dataset_label = dataset.label.clone().unwrap_or_else(|| config.data.dataset.name().to_string());
                for (label, axis) in [(&model_label, "model"), (&dataset_label, "dataset"), (&recipe_label, "recipe")] {
                    check_label(label, axis)?;
                }
                let dir = out.join(&dataset_label).join(&recipe_label).join(&model_label);
                if !seen.insert(dir.clone()) {
                    return Err(Error::config(format!(
                        "{study}: two runs are both {model_label} on {dataset_label} with recipe {recipe_label}; give the entries different labels"
                    )));
                }
                check_runnable(&config).map_err(|e| e.context(&origin))?;
                config.out = Some(dir);
                runs.push(PlannedRun { model: model_label, dataset: dataset_label, recipe: recipe_label, config });
            }
        }
    }
    Ok(runs)
}

/// What can be checked of a run's flags alone: the model takes the input.
fn check_runnable(config: &TrainConfig) -> Result<()> {
    let input = config.data.model_input()?;
    // The class count does not change whether a model takes an input.
    build_model(&config.model, config.data.dataset.classes().unwrap_or(10), input, config.cifar_stem).map(drop)
}

impl Study {
    /// Every run's data directory and --init-from file exist, so that a missing one fails the
    /// study before its first run rather than after hours of the others.
    pub fn check_files(&self) -> Result<()> {
        for run in &self.runs {
            let data = &run.config.data;
            if let Some(dir) = data.data_dir.clone().or_else(|| data.dataset.kind().default_dir()).filter(|d| !d.is_dir()) {
                return Err(Error::config(format!(
                    "run {}: the {} data directory {} does not exist (datasets/README.md says where the files go)",
                    run.name(),
                    data.dataset.name(),
                    dir.display()
                )));
            }
            if let Some(path) = run.config.init_from.as_ref().filter(|p| !p.is_file()) {
                return Err(Error::config(format!("run {}: --init-from {} does not exist", run.name(), path.display())));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_study_plans_at_both_scales() {
        let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/studies");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        assert!(files.len() >= 5, "the five studies' files: {files:?}");
        for file in &files {
            let full = Study::from_file(file, false, &Flags::new(), None).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let quick = Study::from_file(file, true, &Flags::new(), None).unwrap_or_else(|e| panic!("{} --quick: {e}", file.display()));
            assert_eq!(full.runs.len(), quick.runs.len());
            assert_eq!(quick.out, Path::new("runs").join(format!("{}-quick", full.name)));
            for (f, q) in full.runs.iter().zip(&quick.runs) {
                assert!(q.config.data.limit.is_some() && q.config.epochs <= 2, "{}: a quick run is small", q.name());
                assert!(q.config.epochs <= f.config.epochs && f.config.data.limit.is_none());
            }
        }
    }

    #[test]
    fn line_and_column_of_an_offset() {
        assert_eq!(line_column("ab\ncd\nef", 4), (2, 2));
        assert_eq!(line_column("ab", 0), (1, 1));
    }
}
