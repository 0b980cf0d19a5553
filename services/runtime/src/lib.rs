//! How the analyzer's work runs: the lanes that keep a standard tenant's
//! work from slowing a premium one ([`lanes`]), and the circuit breaker in
//! front of a dependency that may stop answering ([`breaker`]).

pub mod breaker;
pub mod lanes;

/// The guard of `mutex`, also when a panic elsewhere poisoned it: every
/// state kept behind these locks stays valid between statements, so it is
/// used as it is.
pub fn locked<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
