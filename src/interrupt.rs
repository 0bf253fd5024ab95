//! Ctrl-C (SIGINT), SIGTERM and SIGHUP: the run stops between two steps instead of dying in the middle
//! of a checkpoint or result write, keeps its last complete checkpoint and says how to resume.
//! Loading checks the same flag between files and images ([`check`]), so a signal during a
//! long load stops the process promptly with nothing written.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Installs the handler (once per process; later calls are no-ops).
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // If another handler is already installed, interrupts simply keep their default effect.
        let _ = ctrlc::set_handler(|| REQUESTED.store(true, Ordering::SeqCst));
    });
}

/// True once an interrupt has been requested.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Marks an interrupt as requested (tests, and callers that stop for their own reasons).
pub fn request() {
    REQUESTED.store(true, Ordering::SeqCst);
}

/// The error a load returns when an interrupt arrives before training has written anything.
pub fn while_loading() -> crate::RblError {
    crate::RblError::Stopped { during: "loading the data".into() }
}

/// `Err` ([`while_loading`]) once an interrupt has been requested: the check loaders make
/// between files and images.
pub fn check() -> crate::Result<()> {
    if requested() { Err(while_loading()) } else { Ok(()) }
}
