//! A position other tasks read while one task moves it (the relay's progress, shown in
//! `/metrics` and used by the readiness check).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The last position the stream is known to hold, readable while the relay runs.
#[derive(Debug, Clone, Default)]
pub struct Progress(pub Arc<AtomicU64>);

impl Progress {
    /// The position.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    /// Moves it to `position`.
    pub fn set(&self, position: u64) {
        self.0.store(position, Ordering::Relaxed);
    }
}

impl PartialEq for Progress {
    /// Reports compare by their figures, not by who watches them.
    fn eq(&self, _: &Progress) -> bool {
        true
    }
}
impl Eq for Progress {}
