//! Ctrl-C (SIGINT), SIGTERM and SIGHUP: the run stops between two steps instead of dying in the middle
//! of a checkpoint or result write, keeps its last complete checkpoint and says how to resume.

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
