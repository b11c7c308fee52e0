//! Running a study: each planned run trained by `ferronet train`'s entry point in its own
//! directory, then its model timed. Run again after an interruption, a study skips what is done:
//! a finished run (metrics.json) is not trained again, an interrupted one (a checkpoint without
//! metrics.json) continues through `--resume`, and an untimed one is timed.

use crate::error::{Error, Result};
use crate::study::results::{finished_config, read_run, time_inference, RunResult, INFERENCE_FILE, METRICS_FILE};
use crate::study::spec::{PlannedRun, Study};
use crate::train::checkpoint;
use crate::train::config::TrainConfig;
use crate::train::files::write_atomic;
use crate::train::interrupt;
use crate::train::trainer::{checkpoint_path, train};

/// Where a run's directory stands.
#[derive(Debug, PartialEq, Eq)]
enum RunState {
    /// Nothing trained yet (no directory, or one without a checkpoint).
    New,
    /// A checkpoint without metrics.json: stopped before its end.
    Interrupted,
    /// metrics.json written: trained to the end.
    Finished,
}

/// Train flags that say how a run is carried out, not what it computes: a run may continue with
/// other values.
const HOW_IT_RUNS: [&str; 7] = ["device", "workers", "out", "resume", "quiet", "log_json", "cuda_graph"];

/// The flags (as `--name`) on which two configurations differ, with both values; how a run is
/// carried out does not count.
fn differences(saved: &TrainConfig, planned: &TrainConfig) -> Vec<String> {
    let fields = |c: &TrainConfig| {
        let mut top = match serde_json::to_value(c).expect("configurations serialise") {
            serde_json::Value::Object(fields) => fields,
            _ => unreachable!("a struct serialises to a JSON object"),
        };
        // The data flags are flags like the others.
        if let Some(serde_json::Value::Object(data)) = top.remove("data") {
            top.extend(data);
        }
        top.retain(|k, _| !HOW_IT_RUNS.contains(&k.as_str()));
        top
    };
    let shown = |v: Option<&serde_json::Value>| match v {
        None | Some(serde_json::Value::Null) => "unset".to_string(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let (saved, planned) = (fields(saved), fields(planned));
    planned
        .iter()
        .filter(|(k, v)| saved.get(*k) != Some(*v))
        .map(|(k, v)| format!("--{} {} there, {} in the study", k.replace('_', "-"), shown(saved.get(k)), shown(Some(v))))
        .collect()
}

/// Where `run` stands; a directory holding a run of other flags is an error naming them.
fn state_of(run: &PlannedRun) -> Result<RunState> {
    let dir = run.dir();
    let (state, saved) = if dir.join(METRICS_FILE).exists() {
        (RunState::Finished, finished_config(dir)?)
    } else if checkpoint_path(dir).exists() {
        (RunState::Interrupted, checkpoint::load(&checkpoint_path(dir))?.1.config)
    } else {
        return Ok(RunState::New);
    };
    let differ = differences(&saved, &run.config);
    match differ.is_empty() {
        true => Ok(state),
        false => Err(Error::config(format!(
            "{} holds a run of {} with other flags ({}): delete that directory to train it anew, or give the study another --out",
            dir.display(),
            run.name(),
            differ.join("; ")
        ))),
    }
}

/// Runs every run of `study` that is not done, in order, and reads them all back. Progress
/// lines go to stderr unless the runs are quiet. Ctrl-C stops the current run at its next step
/// (its checkpoint written) or the study between runs, with [`Error::Interrupted`].
pub fn run_study(study: &Study) -> Result<Vec<RunResult>> {
    interrupt::arm();
    let total = study.runs.len();
    for (i, run) in study.runs.iter().enumerate() {
        let dir = run.dir();
        let quiet = run.config.quiet;
        let say = |what: &str| {
            if !quiet {
                eprintln!("compare [{}/{total}] {}: {what}", i + 1, run.name());
            }
        };
        let context = |e: Error| e.context(format!("run {}", run.name()));
        match state_of(run)? {
            RunState::Finished => say("trained already"),
            RunState::Interrupted => {
                say(&format!("resuming {}", dir.display()));
                train(TrainConfig { resume: true, ..run.config.clone() }).map_err(context)?;
            }
            RunState::New => {
                say(&format!("training in {}", dir.display()));
                train(run.config.clone()).map_err(context)?;
            }
        }
        if !dir.join(INFERENCE_FILE).exists() {
            let timing = time_inference(dir, run.config.device).map_err(context)?;
            say(&format!("inference {:.3} ms per batch of {} on {}", timing.ms_per_batch, timing.batch, timing.device));
            let json = serde_json::to_string_pretty(&timing).expect("timings serialise");
            write_atomic(&dir.join(INFERENCE_FILE), json.as_bytes())?;
        }
        if interrupt::take_request() && i + 1 < total {
            eprintln!(
                "compare: interrupted after run {} of {total}; run the same command again to continue with run {}",
                i + 1,
                i + 2
            );
            return Err(Error::Interrupted);
        }
    }
    study.runs.iter().map(read_run).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::DeviceRequest;

    #[test]
    fn only_what_a_run_computes_must_match() {
        let saved = TrainConfig { epochs: 3, ..TrainConfig::default() };
        let same_but_how = TrainConfig { device: DeviceRequest::Cpu, workers: 7, quiet: true, resume: true, ..saved.clone() };
        assert!(differences(&saved, &same_but_how).is_empty());
        let mut other = TrainConfig { epochs: 5, lr: 0.1, ..saved.clone() };
        other.data.limit = Some(100);
        assert_eq!(
            differences(&saved, &other),
            ["--epochs 3 there, 5 in the study", "--limit unset there, 100 in the study", "--lr 0.05 there, 0.1 in the study"]
        );
    }
}
