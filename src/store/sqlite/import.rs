//! `import` on SQLite: an export's events appended as they are, after the chain and every
//! stream's versions were checked against what the store holds.

use super::*;

impl SqliteStore {
    /// Appends an export's events as they are (`EventStore::import`).
    pub(super) fn import_events(&self, events: &[ImportedEvent]) -> Result<Head, StoreError> {
        // A connection of its own, in one immediate transaction: the writer thread waits
        // for it and, at its next commit, sees the head moved and reloads it.
        let mut conn = open_conn(&self.path, false)?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sqlite_time)?;
        let (position, hash, recorded_at) = tx
            .query_row(
                "SELECT position, hash, recorded_at FROM events ORDER BY position DESC LIMIT 1",
                [],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)? as u64,
                        hash_col(r, 1)?,
                        r.get::<_, String>(2)?,
                    ))
                },
            )
            .optional()
            .map_err(corrupt)?
            .unwrap_or((0, GENESIS_HASH, String::new()));
        crate::store::check_import(
            Head { position, hash },
            &recorded_at,
            events,
            &mut |stream| {
                tx.prepare_cached(
                    "SELECT COALESCE(MAX(stream_version), 0) FROM events WHERE stream_id = ?1",
                )?
                .query_row([stream], |r| r.get::<_, i64>(0))
                .map(|v| v as u64)
                .map_err(StoreError::from)
            },
            &mut |id| {
                tx.prepare_cached("SELECT 1 FROM commands WHERE command_id = ?1")?
                    .query_row([id.to_string()], |_| Ok(()))
                    .optional()
                    .map(|f| f.is_some())
                    .map_err(StoreError::from)
            },
        )?;
        {
            let mut ins = tx.prepare_cached(&format!(
                "INSERT INTO events ({EVENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
            ))?;
            let mut cmd = tx.prepare_cached(
                "INSERT INTO commands (command_id, content_hash, stream_id, first_position, last_position, recorded_at, hash_version) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for (i, ie) in events.iter().enumerate() {
                let e = &ie.event;
                ins.execute(params![
                    e.position as i64,
                    e.event_id.to_string(),
                    e.stream_id,
                    e.stream_version as i64,
                    e.event_type,
                    e.schema_version as i64,
                    e.occurred_at,
                    e.recorded_at,
                    e.command_id.to_string(),
                    e.correlation_id,
                    e.actor,
                    e.data,
                    &e.prev_hash[..],
                    &e.hash[..],
                ])?;
                let first = i == 0 || events[i - 1].event.command_id != e.command_id;
                if first {
                    let last = events[i..]
                        .iter()
                        .take_while(|x| x.event.command_id == e.command_id)
                        .last()
                        .map_or(e.position, |x| x.event.position);
                    cmd.execute(params![
                        e.command_id.to_string(),
                        &ie.content_hash[..],
                        e.stream_id,
                        e.position as i64,
                        last as i64,
                        e.recorded_at,
                        ie.hash_version,
                    ])?;
                }
            }
        }
        if let Some(last) = events.last() {
            tree::extend(&tx, position, last.event.position)?;
        }
        // synchronous=FULL on this connection: the commit is on disk when it returns.
        tx.commit().map_err(sqlite_time)?;
        let head = match events.last() {
            Some(e) => Head {
                position: e.event.position,
                hash: e.event.hash,
            },
            None => Head { position, hash },
        };
        self.notify
            .durable
            .fetch_max(head.position, std::sync::atomic::Ordering::SeqCst);
        *self.notify.head.lock().unwrap_or_else(|e| e.into_inner()) = head.position;
        self.notify.changed.notify_all();
        Ok(head)
    }
}
