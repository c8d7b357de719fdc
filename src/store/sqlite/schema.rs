//! The log's tables: events (append-only: triggers refuse updates and deletes), the permanent
//! command table (its content hash with its version), and `meta`. The Merkle tree's and the
//! person index's tables are their modules'.

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS events (
    position       INTEGER PRIMARY KEY,
    event_id       TEXT NOT NULL,
    stream_id      TEXT NOT NULL,
    stream_version INTEGER NOT NULL,
    event_type     TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    occurred_at    TEXT NOT NULL,
    recorded_at    TEXT NOT NULL,
    command_id     TEXT NOT NULL,
    correlation_id TEXT,
    actor          TEXT NOT NULL,
    data           TEXT NOT NULL,
    prev_hash      BLOB NOT NULL,
    hash           BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS events_stream ON events(stream_id, stream_version);
CREATE TABLE IF NOT EXISTS commands (
    command_id     TEXT PRIMARY KEY,
    content_hash   BLOB NOT NULL,
    stream_id      TEXT NOT NULL,
    first_position INTEGER NOT NULL,
    last_position  INTEGER NOT NULL,
    recorded_at    TEXT NOT NULL,
    hash_version   INTEGER NOT NULL DEFAULT 1
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS events_append_only_u BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_append_only_d BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS commands_append_only_u BEFORE UPDATE ON commands
    BEGIN SELECT RAISE(ABORT, 'the command table is append-only'); END;
CREATE TRIGGER IF NOT EXISTS commands_append_only_d BEFORE DELETE ON commands
    BEGIN SELECT RAISE(ABORT, 'the command table is append-only'); END;
INSERT OR IGNORE INTO meta(key, value) VALUES ('format', 'campaign-ledger/1');
"#;
