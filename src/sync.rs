//! Locking shared state that outlives a panicking holder.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, taking the data as the panicking holder left it: every guarded value here is a
/// cache or a record that stays consistent between statements, so a poisoned lock is no reason
/// to stop serving.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
