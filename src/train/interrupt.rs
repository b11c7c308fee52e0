//! Ctrl-C during training: the first press asks the loop to stop after the current step (it then
//! writes the checkpoint and exits with a message); the handler is installed once per process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

static REQUESTED: AtomicBool = AtomicBool::new(false);
static INSTALLED: OnceLock<bool> = OnceLock::new();

/// Installs the Ctrl-C handler (once) and clears any earlier request. Returns false when the
/// handler could not be installed (another one owns the signal): Ctrl-C then kills the process.
pub fn arm() -> bool {
    REQUESTED.store(false, Ordering::SeqCst);
    *INSTALLED.get_or_init(|| ctrlc::set_handler(|| REQUESTED.store(true, Ordering::SeqCst)).is_ok())
}

/// Whether Ctrl-C was pressed since [`arm`].
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Asks the running loop to stop as Ctrl-C would (tests, embedding programs).
pub fn request() {
    REQUESTED.store(true, Ordering::SeqCst)
}
