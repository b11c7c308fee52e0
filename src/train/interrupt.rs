//! Stopping a training run between steps: Ctrl-C (the first press asks the loop to stop after
//! the current step; it then writes the checkpoint and exits with a message), or a program
//! embedding the trainer asking for the same after a number of steps.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

static REQUESTED: AtomicBool = AtomicBool::new(false);
/// Steps left before a stop is requested; 0 = no countdown.
static COUNTDOWN: AtomicU64 = AtomicU64::new(0);
static INSTALLED: OnceLock<bool> = OnceLock::new();

/// Installs the Ctrl-C handler once per process. Returns false when it could not be installed
/// (another handler owns the signal): Ctrl-C then ends the process as usual.
pub fn arm() -> bool {
    *INSTALLED.get_or_init(|| ctrlc::set_handler(request).is_ok())
}

/// Asks the running loop to stop after its current step, as Ctrl-C does.
pub fn request() {
    REQUESTED.store(true, Ordering::SeqCst)
}

/// Asks for a stop after `steps` more training steps (1 = after the next one).
pub fn request_after(steps: u64) {
    COUNTDOWN.store(steps, Ordering::SeqCst)
}

/// Called by the loop after each step: counts down a [`request_after`].
pub fn step_done() {
    let before = COUNTDOWN.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).unwrap_or(0);
    if before == 1 {
        request();
    }
}

/// Consumes a pending stop request: true once per request.
pub fn take_request() -> bool {
    REQUESTED.swap(false, Ordering::SeqCst)
}
