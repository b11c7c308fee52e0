//! The per-epoch progress bar: steps done, running loss and accuracy (as last read from the
//! device), images/s and ETA; hidden
//! with `--quiet` or when stderr is not a terminal (indicatif draws nothing there).

use indicatif::{ProgressBar, ProgressStyle};

pub struct EpochProgress {
    bar: ProgressBar,
}

impl EpochProgress {
    pub fn new(epoch: usize, epochs: usize, steps: usize, quiet: bool) -> Self {
        let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(steps as u64) };
        let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
            .expect("the progress template is valid")
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(format!("epoch {epoch}/{epochs}"));
        EpochProgress { bar }
    }

    /// After each step.
    pub fn step(&self) {
        self.bar.inc(1);
    }

    /// When the trainer has read the epoch's figures from the device (about once a second):
    /// running mean loss and accuracy of the epoch, and throughput.
    pub fn show(&self, loss: f64, accuracy: f64, images_per_second: f64) {
        self.bar.set_message(format!("loss {loss:.4} acc {:.2}% {images_per_second:.0} img/s", accuracy * 100.0));
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
