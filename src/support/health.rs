//! What the server's background parts say of themselves (the relay, the digest publisher, the
//! projection follower): running, failing and why, or stopped and why; and how many errors
//! each met. `/readyz` and `/metrics` read it; the parts write it as things happen, so that no
//! failure waits for the shutdown to be seen.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Where one part stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Started, not yet working (the relay connecting, the projections' first catch-up).
    Starting,
    /// Working.
    Running,
    /// Failing and retrying: why, the last time.
    Failing(String),
    /// Stopped for good: why (a retry cannot help; an operator must act).
    Stopped(String),
}

/// One part's state and its error count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Where it stands.
    pub state: State,
    /// Errors met since the start.
    pub errors: u64,
    /// When it last finished its work (for the digests: the log's head signed).
    pub last_done: Option<std::time::SystemTime>,
}

/// The server's parts, by name.
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<Mutex<BTreeMap<&'static str, Part>>>);

impl Health {
    fn set(&self, name: &'static str, state: State, error: bool) {
        self.set_done(name, state, error, false);
    }

    fn set_done(&self, name: &'static str, state: State, error: bool, done: bool) {
        let mut parts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let part = parts.entry(name).or_insert(Part {
            state: State::Starting,
            errors: 0,
            last_done: None,
        });
        part.state = state;
        if error {
            part.errors += 1;
        }
        if done {
            part.last_done = Some(std::time::SystemTime::now());
        }
    }

    /// `name` is configured and starting.
    pub fn starting(&self, name: &'static str) {
        self.set(name, State::Starting, false);
    }

    /// `name` works.
    pub fn running(&self, name: &'static str) {
        self.set(name, State::Running, false);
    }

    /// `name` works and has just finished its work (the digests: the head is signed).
    pub fn done(&self, name: &'static str) {
        self.set_done(name, State::Running, false, true);
    }

    /// `name` failed and retries (one more error).
    pub fn failing(&self, name: &'static str, why: impl std::fmt::Display) {
        self.set(name, State::Failing(why.to_string()), true);
    }

    /// `name` stopped for good (one more error).
    pub fn stopped(&self, name: &'static str, why: impl std::fmt::Display) {
        self.set(name, State::Stopped(why.to_string()), true);
    }

    /// Every part, by name.
    pub fn parts(&self) -> BTreeMap<&'static str, Part> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Why the server is not ready: each part that is not running, with its reason.
    pub fn not_ready(&self) -> Vec<String> {
        self.parts()
            .into_iter()
            .filter_map(|(name, p)| match p.state {
                State::Running => None,
                State::Starting => Some(format!("{name}: starting")),
                State::Failing(why) => Some(format!("{name}: failing, retrying: {why}")),
                State::Stopped(why) => Some(format!("{name}: stopped: {why}")),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_is_ready_only_while_running_and_counts_its_errors() {
        let h = Health::default();
        assert!(h.not_ready().is_empty(), "nothing configured: ready");
        h.starting("relay");
        assert_eq!(h.not_ready(), ["relay: starting"]);
        h.running("relay");
        assert!(h.not_ready().is_empty());
        h.failing("relay", "connection refused");
        h.failing("relay", "connection refused");
        assert_eq!(
            h.not_ready(),
            ["relay: failing, retrying: connection refused"]
        );
        h.running("relay");
        h.stopped("digests", "no key");
        assert_eq!(h.not_ready(), ["digests: stopped: no key"]);
        assert_eq!(h.parts()["relay"].errors, 2);
        assert_eq!(h.parts()["relay"].state, State::Running);
    }
}
