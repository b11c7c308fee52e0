//! Independent, slow jobs of one test (a recompile and its simulator runs, a ptxas assembly)
//! shared out among the host's cores: libtest runs a test on one thread, and a test of this kind
//! is most of its binary's time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// `job(&mut state, item)` for every item, on as many threads as the host has cores, each thread
/// taking the next item in turn and starting from its own `state()` (for what cannot be shared
/// between threads); the results in the items' order.
pub fn map_on_all_cores<T: Sync, S, R: Send>(items: &[T], state: impl Fn() -> S + Sync, job: impl Fn(&mut S, &T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let done = Mutex::new(Vec::with_capacity(items.len()));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(items.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut own = state();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(index) else { break };
                    let result = job(&mut own, item);
                    done.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push((index, result));
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
    done.sort_by_key(|&(index, _)| index);
    done.into_iter().map(|(_, result)| result).collect()
}
