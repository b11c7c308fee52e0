//! `--resume` with other flags: the saved configuration fixes what the run computes; flags about
//! how it runs (and `--epochs`) may change and are announced, any other given flag that differs
//! from the saved value is refused, naming it.

use crate::error::{Error, Result};
use crate::train::config::{GivenFlags, TrainConfig};
use serde_json::Value;

/// Flags (clap ids) that may differ from the saved configuration: where and how the run is
/// executed and reported (fusion included), the dataset's location, NaN/inf handling (which a NaN error suggests
/// resuming with), and the number of epochs.
const CHANGEABLE: &[&str] =
    &["epochs", "device", "workers", "quiet", "log_json", "cuda_graph", "skip_nonfinite", "no_fusion", "layout", "data_dir", "collective_timeout", "bucket_mb", "dist_backend"];
/// Flags that name the run to resume rather than configure it.
const RUN_IDENTITY: &[&str] = &["out", "resume"];

/// The configuration a resumed run continues with.
#[derive(Debug)]
pub struct Resumed {
    pub config: TrainConfig,
    /// The changed flags applied, as `--epochs 5 (saved: 3)`.
    pub changes: Vec<String>,
}

/// A flag's value in the serialised configuration (`data.` fields are flattened on the command line).
fn field<'a>(config: &'a Value, id: &str) -> Option<&'a Value> {
    config.get(id).or_else(|| config.get("data")?.get(id))
}

fn field_mut<'a>(config: &'a mut Value, id: &str) -> Option<&'a mut Value> {
    if config.get(id).is_some() {
        return config.get_mut(id);
    }
    config.get_mut("data")?.get_mut(id)
}

/// A serialised value as it is written on the command line: enum variants by their flag name
/// (`FashionMnist` is `fashion-mnist`), lists comma-separated, an unset option as `unset`.
fn shown(value: &Value, arg: &clap::Arg) -> String {
    match value {
        Value::Null => "unset".into(),
        Value::String(s) => {
            let plain = s.to_lowercase();
            let variant = arg.get_possible_values().into_iter().find(|p| p.get_name().replace('-', "") == plain);
            variant.map_or_else(|| s.clone(), |p| p.get_name().to_string())
        }
        Value::Number(n) => match n.as_f64() {
            // f32 values (colour jitter) read back as f64: print what was typed.
            Some(v) if v.fract() != 0.0 && v as f32 as f64 == v => (v as f32).to_string(),
            _ => n.to_string(),
        },
        Value::Array(items) => items.iter().map(|v| shown(v, arg)).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// `--flag value`, or `--flag=true` for a switch.
fn as_flag(arg: &clap::Arg, value: &Value) -> String {
    let long = arg.get_long().unwrap_or(arg.get_id().as_str());
    match value {
        Value::Bool(b) => format!("--{long}={b}"),
        v => format!("--{long} {}", shown(v, arg)),
    }
}

/// The configuration to resume: `saved`, with the changeable flags of `requested` that `given`
/// names applied; an error naming every other given flag that differs from `saved`.
pub fn resumed_config(saved: &TrainConfig, requested: &TrainConfig, given: &GivenFlags, epochs_done: usize) -> Result<Resumed> {
    let old = serde_json::to_value(saved).expect("configurations serialise");
    let new = serde_json::to_value(requested).expect("configurations serialise");
    let mut merged = old.clone();
    let (mut changes, mut conflicts) = (Vec::new(), Vec::new());
    for arg in TrainConfig::flags() {
        let id = arg.get_id().as_str();
        if !given.contains(id) || RUN_IDENTITY.contains(&id) {
            continue;
        }
        let (Some(was), Some(now)) = (field(&old, id), field(&new, id)) else { continue };
        if was == now {
            continue;
        }
        let change = format!("{} (saved: {})", as_flag(&arg, now), shown(was, &arg));
        if CHANGEABLE.contains(&id) {
            *field_mut(&mut merged, id).expect("the field exists in both") = now.clone();
            changes.push(change);
        } else {
            conflicts.push(change);
        }
    }
    if !conflicts.is_empty() {
        let may = CHANGEABLE.iter().map(|id| format!("--{}", id.replace('_', "-"))).collect::<Vec<_>>().join(", ");
        return Err(Error::config(format!(
            "--resume continues the saved configuration, which these flags contradict: {}; drop them, or start a new run with another --out (on resume only {may} may change)",
            conflicts.join(", ")
        )));
    }
    let mut config: TrainConfig = serde_json::from_value(merged).expect("a merged configuration deserialises");
    config.out = requested.out.clone();
    config.resume = true;
    // Whether this invocation prints progress is its own choice, not the saved run's.
    config.quiet = requested.quiet;
    if config.epochs < epochs_done {
        return Err(Error::config(format!(
            "--resume --epochs {}: the run has done {epochs_done} epochs already; give at least {epochs_done}",
            config.epochs
        )));
    }
    config.validate()?;
    Ok(Resumed { config, changes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::config::{DatasetChoice, OptimizerChoice};

    fn given(ids: &[&str]) -> GivenFlags {
        GivenFlags::from_ids(ids.iter().map(|s| s.to_string()))
    }

    fn saved() -> TrainConfig {
        TrainConfig { out: Some("runs/a".into()), epochs: 3, data: crate::train::config::DataConfig { dataset: DatasetChoice::FashionMnist, ..TrainConfig::default().data }, ..TrainConfig::default() }
    }

    #[test]
    fn changeable_flags_apply_and_others_must_match() {
        let mut asked = TrainConfig { resume: true, out: Some("moved/a".into()), epochs: 5, workers: 1, ..TrainConfig::default() };
        // Not given: their defaults differ from the saved values but do not count.
        asked.lr = 0.3;
        asked.data.dataset = DatasetChoice::Mnist;
        let r = resumed_config(&saved(), &asked, &given(&["epochs", "workers", "out", "resume"]), 2).unwrap();
        assert_eq!((r.config.epochs, r.config.workers, r.config.lr), (5, 1, saved().lr));
        assert_eq!(r.config.data.dataset, DatasetChoice::FashionMnist);
        assert_eq!(r.config.out, asked.out);
        assert_eq!(r.changes, ["--epochs 5 (saved: 3)", "--workers 1 (saved: 2)"]);

        // Given, but equal to the saved values: accepted silently.
        let same = TrainConfig { resume: true, ..saved() };
        assert!(resumed_config(&saved(), &same, &GivenFlags::every(), 3).unwrap().changes.is_empty());

        asked.optimizer = OptimizerChoice::Adamw;
        asked.augment = true;
        let err = resumed_config(&saved(), &asked, &given(&["lr", "optimizer", "dataset", "augment", "epochs"]), 2).unwrap_err().to_string();
        assert!(!err.contains('\n'), "{err}");
        for part in ["--lr 0.3 (saved: 0.05)", "--optimizer adamw (saved: sgd)", "--dataset mnist (saved: fashion-mnist)", "--augment=true (saved: false)"] {
            assert!(err.contains(part), "{part}: {err}");
        }
        assert!(!err.contains("--epochs 5"), "{err}");

        let fewer = TrainConfig { epochs: 1, ..asked.clone() };
        let err = resumed_config(&saved(), &fewer, &given(&["epochs"]), 2).unwrap_err().to_string();
        assert!(err.contains("done 2 epochs"), "{err}");
    }
}
