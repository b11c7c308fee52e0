//! Repeated timing and its summary: warm-up runs first, then the median of the timed runs (robust
//! to the odd slow run on a shared machine).

use crate::error::{Error, Result};
use serde::Serialize;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Timing {
    pub median_s: f64,
    pub min_s: f64,
    pub max_s: f64,
    pub reps: usize,
}

impl Timing {
    /// The summary of per-run seconds (at least one).
    pub fn from_samples(samples: &[f64]) -> Result<Timing> {
        if samples.is_empty() {
            return Err(Error::config("a timing needs at least one repetition"));
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let mid = sorted.len() / 2;
        let median_s = if sorted.len() % 2 == 1 { sorted[mid] } else { 0.5 * (sorted[mid - 1] + sorted[mid]) };
        Ok(Timing { median_s, min_s: sorted[0], max_s: sorted[sorted.len() - 1], reps: sorted.len() })
    }
}

/// Host wall-clock timing of `run` (which must finish its work before returning): `warmup`
/// untimed runs, then `reps` timed ones.
pub fn time_host(warmup: usize, reps: usize, mut run: impl FnMut() -> Result<()>) -> Result<Timing> {
    for _ in 0..warmup {
        run()?;
    }
    let mut samples = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = Instant::now();
        run()?;
        samples.push(start.elapsed().as_secs_f64());
    }
    Timing::from_samples(&samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_ignores_one_outlier() {
        let t = Timing::from_samples(&[3.0, 1.0, 100.0, 2.0, 2.5]).unwrap();
        assert_eq!((t.median_s, t.min_s, t.max_s, t.reps), (2.5, 1.0, 100.0, 5));
        assert_eq!(Timing::from_samples(&[1.0, 2.0]).unwrap().median_s, 1.5);
        assert!(Timing::from_samples(&[]).is_err());
    }

    #[test]
    fn host_timing_runs_warmup_and_reps() {
        let mut calls = 0;
        let t = time_host(2, 3, || {
            calls += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!((calls, t.reps), (5, 3));
    }
}
