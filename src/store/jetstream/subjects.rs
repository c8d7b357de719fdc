//! The NATS subjects of the log: one per ledger stream, under a prefix of the JetStream stream
//! that holds the log (`LEDGER_LOG`, or a copy's).

use super::{LOG_STREAM, LOG_SUBJECT_PREFIX};

/// The subject of a ledger stream in `LEDGER_LOG`: `ledger.v1.log.<token>`, where the token is
/// the stream id with every byte outside `[A-Za-z0-9_:=-]` written `%XX` (the empty id is `%`).
pub fn log_subject(stream_id: &str) -> String {
    log_subject_in(LOG_SUBJECT_PREFIX, stream_id)
}

/// The subjects' prefix of the log kept in the JetStream stream `stream`: `ledger.v1.log` for
/// `LEDGER_LOG`, `ledger.v1.log-<name in lower case>` for another (`stream=NAME` in the URL: a
/// copy, which two streams' subjects must not overlap).
pub fn subject_prefix(stream: &str) -> String {
    if stream == LOG_STREAM {
        LOG_SUBJECT_PREFIX.to_string()
    } else {
        format!("{LOG_SUBJECT_PREFIX}-{}", stream.to_ascii_lowercase())
    }
}

/// [`log_subject`] under another prefix (see [`subject_prefix`]).
pub fn log_subject_in(prefix: &str, stream_id: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + 1 + stream_id.len());
    s.push_str(prefix);
    s.push('.');
    if stream_id.is_empty() {
        s.push('%');
    }
    for b in stream_id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'=' | b'-') {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}
