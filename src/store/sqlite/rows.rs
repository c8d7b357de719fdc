//! Reading the log's rows: an event, a command record, and the columns they are made of;
//! a row that does not read is the store's damage (`corrupt`).

use super::errors::sqlite_time;
use super::{Cause, CommandRecord, RecordedEvent, StoreError};
use uuid::Uuid;

pub(super) fn uuid_col(row: &rusqlite::Row, i: usize) -> rusqlite::Result<Uuid> {
    let s: String = row.get(i)?;
    Uuid::parse_str(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

pub(super) fn hash_col(row: &rusqlite::Row, i: usize) -> rusqlite::Result<[u8; 32]> {
    let v: Vec<u8> = row.get(i)?;
    v.try_into().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Blob,
            "hash is not 32 bytes".into(),
        )
    })
}

pub(super) fn event_from_row(row: &rusqlite::Row) -> rusqlite::Result<RecordedEvent> {
    Ok(RecordedEvent {
        position: row.get::<_, i64>(0)? as u64,
        event_id: uuid_col(row, 1)?,
        stream_id: row.get(2)?,
        stream_version: row.get::<_, i64>(3)? as u64,
        event_type: row.get(4)?,
        schema_version: row.get::<_, i64>(5)? as u32,
        occurred_at: row.get(6)?,
        recorded_at: row.get(7)?,
        command_id: uuid_col(row, 8)?,
        correlation_id: row.get(9)?,
        actor: row.get(10)?,
        data: row.get(11)?,
        prev_hash: hash_col(row, 12)?,
        hash: hash_col(row, 13)?,
    })
}

pub(super) fn command_from_row(row: &rusqlite::Row) -> rusqlite::Result<CommandRecord> {
    Ok(CommandRecord {
        command_id: uuid_col(row, 0)?,
        content_hash: hash_col(row, 1)?,
        stream_id: row.get(2)?,
        first_position: row.get::<_, i64>(3)? as u64,
        last_position: row.get::<_, i64>(4)? as u64,
        recorded_at: row.get(5)?,
        hash_version: row.get::<_, i64>(6)? as u32,
    })
}

pub(super) fn text<'r>(row: &'r rusqlite::Row, i: usize) -> Result<&'r str, StoreError> {
    let v = row.get_ref(i)?;
    v.as_str()
        .map_err(|e| StoreError::Corrupt(format!("column {i} is not text: {e}").into()))
}

pub(super) fn corrupt(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::FromSqlConversionFailure(..) | rusqlite::Error::InvalidColumnType(..) => {
            StoreError::Corrupt(Cause::with_source(e.to_string(), e))
        }
        other => sqlite_time(other),
    }
}
