//! Locking shared state that a panic cannot leave half-updated.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, ignoring poison: every critical section in this crate
/// leaves its data consistent at each step, so a panic elsewhere does not
/// make it unusable.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}
