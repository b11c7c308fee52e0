//! Cooperative launches: every block runs on one host thread, interleaved one round of quanta at
//! a time, so blocks that wait for each other (cooperative groups' grid barrier spins on a
//! global counter) all make progress, as when they are all resident on a GPU; deterministic for
//! a given block order. A grid whose blocks can only wait for each other forever is reported.

use super::counters::LaunchStats;
use super::exec::{Launch, Worker};
use crate::error::Result;
use std::collections::VecDeque;

/// Rounds over which a grid deadlock is looked for: blocks spinning in loops of up to this many
/// quanta (a loop's length need not divide the quantum) are recognised.
const DEADLOCK_WINDOW: usize = 8;

/// Runs every block of `order` co-resident. The first fault stops the launch. Returns the
/// summed counters (or the fault) and the printf output in block order.
pub fn run(lp: &Launch, order: &[u32]) -> (Result<LaunchStats>, String) {
    let mut blocks: Vec<Worker> = order
        .iter()
        .map(|&b| {
            let mut w = Worker::new(lp);
            w.begin_block(b);
            w
        })
        .collect();
    let mut running: Vec<usize> = (0..blocks.len()).collect();
    let mut watch = DeadlockWatch::new(blocks.len());
    let mut failure = None;
    while !running.is_empty() && failure.is_none() {
        running.retain(|&i| {
            if failure.is_some() {
                return true;
            }
            let outcome = match blocks[i].step_block() {
                Ok(false) => return true,
                Ok(true) => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(e) = blocks[i].finish_block(outcome) {
                failure = Some(e);
            }
            false
        });
        if failure.is_none() && watch.stuck(&blocks, &running) {
            failure = running.first().map(|&i| blocks[i].grid_deadlock());
        }
    }
    let mut stats = LaunchStats::default();
    let mut printed = String::new();
    for w in &blocks {
        stats.merge(&w.stats);
        printed.push_str(&w.printf_output);
    }
    (failure.map_or(Ok(stats), Err), printed)
}

/// Recognises a grid that can never finish: over the last rounds no block wrote global memory
/// (the only way blocks affect each other), and every unfinished block is back in a state it was
/// in during those rounds. Each block then repeats its cycle forever, still writing nothing, so
/// nothing any block waits for can happen. Blocks whose spin loops count (backoff) never repeat
/// a state and are left to the per-block runaway watchdog.
struct DeadlockWatch {
    /// Each block's state fingerprints at the end of the last rounds, oldest first.
    states: Vec<VecDeque<u64>>,
    /// Global memory written by all blocks at the end of the last rounds, oldest first.
    writes: VecDeque<u64>,
}

impl DeadlockWatch {
    fn new(blocks: usize) -> Self {
        DeadlockWatch { states: vec![VecDeque::new(); blocks], writes: VecDeque::new() }
    }

    /// Records the end of a round; true when the running blocks are deadlocked.
    fn stuck(&mut self, blocks: &[Worker], running: &[usize]) -> bool {
        let written: u64 = blocks.iter().map(Worker::global_writes).sum();
        let quiet = self.writes.len() == DEADLOCK_WINDOW && self.writes.front() == Some(&written);
        remember(&mut self.writes, written);
        let mut repeating = !running.is_empty();
        for &i in running {
            let state = blocks[i].fingerprint();
            repeating &= self.states[i].contains(&state);
            remember(&mut self.states[i], state);
        }
        quiet && repeating
    }
}

/// Appends `v`, keeping the last [`DEADLOCK_WINDOW`] values.
fn remember(recent: &mut VecDeque<u64>, v: u64) {
    if recent.len() == DEADLOCK_WINDOW {
        recent.pop_front();
    }
    recent.push_back(v);
}
