//! Progress display: a live bar on a terminal, plain lines in logs and pipes.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Reports training progress within an epoch.
pub struct Progress {
    bar: Option<ProgressBar>,
    total: usize,
    quiet: bool,
    /// Plain lines: the last quarter of the epoch a line was printed for (steps may arrive a
    /// window at a time, so a quarter's exact step can be skipped).
    printed: std::cell::Cell<usize>,
}

impl Progress {
    /// Progress for one epoch of `total` steps; a bar if stderr is a terminal.
    pub fn new(epoch: usize, epochs: usize, total: usize, quiet: bool) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(format!("{epoch}/{epochs}"));
            bar
        });
        Progress { bar, total, quiet, printed: std::cell::Cell::new(0) }
    }

    /// After step `step` (1-based) with running loss, accuracy (%) and throughput.
    pub fn step(&self, step: usize, loss: f64, acc: f64, images_per_second: f64) {
        let msg = format!("loss {loss:.4} acc {acc:.2}% {images_per_second:.0} img/s");
        match &self.bar {
            Some(bar) => {
                bar.set_position(step as u64);
                bar.set_message(msg);
            }
            None if !self.quiet => {
                let every = (self.total / 4).max(1);
                let quarter = step / every;
                if quarter > self.printed.get() && step != self.total {
                    self.printed.set(quarter);
                    crate::note!("  step {step}/{} {msg}", self.total);
                }
            }
            None => {}
        }
    }

    /// Ends the epoch's display.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
