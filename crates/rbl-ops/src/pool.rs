//! Where the training step runs: on a thread of the pool the kernels fork on.
//!
//! Every kernel here splits its work with rayon. Called from a thread outside the pool, each of
//! the ~250 parallel passes of a ResNet-32 step is injected into the pool from outside: the
//! caller sleeps on a lock, a worker is woken, and the caller is woken again at the end, while
//! the caller's own core does nothing. Run from inside the pool, a pass forks from the worker
//! that reaches it, which takes a share of the work itself.

/// Runs `f` on a worker thread of rayon's global pool (the kernels' pool) and returns its
/// result; a caller already on a worker runs it in place. Results do not change: every kernel
/// splits its work into tasks whose number does not depend on where it starts.
pub fn on_kernel_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

#[cfg(test)]
mod tests {
    #[test]
    fn runs_on_a_worker_and_returns_the_result() {
        assert_eq!(rayon::current_thread_index(), None);
        let (on_worker, value) = super::on_kernel_pool(|| (rayon::current_thread_index().is_some(), 42));
        assert!(on_worker);
        assert_eq!(value, 42);
    }
}
