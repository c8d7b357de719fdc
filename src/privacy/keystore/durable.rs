//! Making keys durable before the events sealed with them: new keys are written by a thread
//! of their own and synced with the log's group commit; a pool of fresh keys; the record of
//! which keys the log's events use (assignments), repaired after a crash.
use super::*;

impl KeyStore {
    /// From now on, new keys are written without an fsync of their own: the caller promises
    /// to call `sync_pending` before anything that uses them becomes durable (the SQLite log
    /// calls it before each group commit).
    pub fn defer_durability(&self) {
        self.deferred
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
    /// Records the assignments (ref → key) made since the last call, in one transaction
    /// without an fsync: the log calls it before each group commit, with its head before the
    /// group. Assignments need no fsync of their own: the keys they name were made durable in
    /// advance (`refill`), and the events sealed with them carry the ref, so an assignment a
    /// crash loses is found again in the log (`assignments_durable_upto`, `assign`). Every
    /// 256 groups or 2 s it fsyncs and records that every event up to `head` has its
    /// assignment on disk. An assignment another process made first for the same person (both
    /// saw them new at the same moment) fails the call: the commands using ours are refused
    /// with "retry", and a retry finds theirs.
    pub fn sync_pending(&self, head: u64) -> Result<(), StoreError> {
        // Lock order: `inner`, then `wal` (as `refill`, which runs under `inner`).
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.unsynced_groups += 1;
        let mark = inner.unsynced_groups >= 256
            || inner.last_sync.elapsed() >= std::time::Duration::from_secs(2);
        if inner.pending.is_empty() && !mark {
            return Ok(());
        }
        let pending = std::mem::take(&mut inner.pending);
        let written = (|| -> Result<Vec<[u8; 32]>, StoreError> {
            let tx = inner
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let lost = write_assignments(&tx, &pending)?;
            if mark {
                tx.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES ('assigned_upto', ?1)",
                    [head.to_string()],
                )?;
            }
            tx.commit()?;
            Ok(lost)
        })();
        let lost = match written {
            Ok(lost) => lost,
            Err(e) => {
                // Nothing of it was written: keep them for the next call.
                let mut again = pending;
                again.append(&mut inner.pending);
                inner.pending = again;
                return Err(unavailable(&self.path, e));
            }
        };
        for l in &lost {
            inner.cache.remove(l);
        }
        if mark {
            inner.unsynced_groups = 0;
            inner.last_sync = std::time::Instant::now();
            drop(inner);
            let mut wal = self.wal.lock().unwrap_or_else(|e| e.into_inner());
            self.sync_wal(&mut wal)?;
        }
        if !lost.is_empty() {
            return Err(StoreError::Unavailable(
                format!(
                    "{} new person(s) were recorded at the same moment by another process; retry",
                    lost.len()
                )
                .into(),
            ));
        }
        Ok(())
    }
    /// Writes pending assignments now (before an erasure looks a person up).
    pub(super) fn flush_assignments(&self) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut inner.pending);
        let tx = inner.conn.transaction()?;
        let lost = write_assignments(&tx, &pending)?;
        tx.commit().map_err(|e| unavailable(&self.path, e))?;
        for l in &lost {
            inner.cache.remove(l);
        }
        Ok(())
    }
    pub(super) fn sync_wal(&self, wal: &mut Option<std::fs::File>) -> Result<(), StoreError> {
        if wal.is_none() {
            let mut w = self.path.clone().into_os_string();
            w.push("-wal");
            *wal = Some(std::fs::File::open(&w).map_err(|e| unavailable(&self.path, e))?);
        }
        if let Err(e) = wal.as_ref().expect("opened").sync_data() {
            *wal = None;
            return Err(unavailable(&self.path, format!("fsync: {e}")));
        }
        Ok(())
    }
    /// Makes `n` keys in advance for this process: written in one transaction, assigned to
    /// nobody, and fsynced, so that a key is on disk before any event can be sealed with it.
    pub(super) fn refill(&self, inner: &mut Inner, n: usize) -> Result<(), StoreError> {
        let now = crate::envelope::format_recorded_at(chrono::Utc::now());
        let mut made = Vec::with_capacity(n);
        let tx = inner
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut ins = tx.prepare_cached(
                "INSERT INTO persons (lookup, person_id, wrapped_key, created_at) VALUES (NULL, ?1, ?2, ?3)",
            )?;
            for _ in 0..n {
                let (person_id, key, wrapped) = self.new_key()?;
                ins.execute(params![person_id, wrapped, now])?;
                made.push(PersonKey { person_id, key });
            }
        }
        tx.commit().map_err(|e| unavailable(&self.path, e))?;
        let mut wal = self.wal.lock().unwrap_or_else(|e| e.into_inner());
        self.sync_wal(&mut wal)?;
        inner.pool.extend(made);
        Ok(())
    }
    /// A random person_id and data key, and the key wrapped for the key store.
    pub(super) fn new_key(&self) -> Result<(String, [u8; 32], Vec<u8>), StoreError> {
        let mut id = [0u8; 16];
        let mut key = [0u8; 32];
        let mut nonce = [0u8; 12];
        for b in [&mut id[..], &mut key[..], &mut nonce[..]] {
            getrandom::getrandom(b)
                .map_err(|e| StoreError::Unavailable(format!("no random bytes: {e}").into()))?;
        }
        let person_id = hex::encode(id);
        let mut wrapped = nonce.to_vec();
        wrapped.extend(
            self.wrap
                .encrypt(
                    Nonce::from_slice(&nonce),
                    Payload {
                        msg: &key,
                        aad: person_id.as_bytes(),
                    },
                )
                .expect("AES-GCM encrypts"),
        );
        Ok((person_id, key, wrapped))
    }
    /// The log position up to which every event's assignment is known to be on disk (0 when
    /// never recorded): after a crash, the log after it is searched for keys used but not
    /// assigned (see `assign`).
    pub fn assignments_durable_upto(&self) -> Result<u64, StoreError> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let v: Option<String> = inner
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'assigned_upto'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
    }
    /// The key of a person_id made in advance and assigned to nobody (a crash lost its
    /// assignment, or it is still in some process's pool).
    pub fn unassigned(&self, person_id: &str) -> Result<Option<[u8; 32]>, StoreError> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let row: Option<Vec<u8>> = inner
            .conn
            .prepare_cached(
                "SELECT wrapped_key FROM persons WHERE person_id = ?1 AND lookup IS NULL",
            )?
            .query_row([person_id], |r| r.get(0))
            .optional()?;
        drop(inner);
        row.map(|w| self.unwrap_key(person_id, &w)).transpose()
    }
    /// Assigns a key found used in the log (its event's sealed ref opened with it) to that
    /// ref, and, with `upto`, records that the log up to there was searched. Durable on return.
    pub fn assign(&self, repairs: &[(String, String)], upto: u64) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.cache.clear();
        let tx = inner.conn.transaction()?;
        {
            let mut up = tx.prepare_cached(
                "UPDATE OR IGNORE persons SET lookup = ?1 WHERE person_id = ?2 AND lookup IS NULL",
            )?;
            for (person_ref, person_id) in repairs {
                up.execute(params![&self.lookup(person_ref)[..], person_id])?;
            }
            tx.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('assigned_upto', ?1)",
                [upto.to_string()],
            )?;
        }
        tx.commit().map_err(|e| unavailable(&self.path, e))?;
        drop(inner);
        let mut wal = self.wal.lock().unwrap_or_else(|e| e.into_inner());
        self.sync_wal(&mut wal)
    }
}

/// Writes assignments (ref lookup → a key made in advance); returns the lookups another
/// process assigned first (to a key of its own), whose assignment here did not take.
pub(super) fn write_assignments(
    tx: &rusqlite::Transaction<'_>,
    pending: &[([u8; 32], String)],
) -> Result<Vec<[u8; 32]>, StoreError> {
    let mut assign = tx
        .prepare_cached("UPDATE persons SET lookup = ?1 WHERE person_id = ?2 AND lookup IS NULL")?;
    let mut lost = Vec::new();
    for (lookup, person_id) in pending {
        match assign.execute(params![&lookup[..], person_id]) {
            Ok(1) => {}
            Ok(_) => lost.push(*lookup),
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                lost.push(*lookup)
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(lost)
}

/// The key writer: each batch of new keys in one transaction, then one fsync of the WAL,
/// then every caller is answered with the key its person has (its own, or one committed
/// first by another thread or process).
pub(super) fn write_keys(
    mut conn: Connection,
    wal: PathBuf,
    jobs: std::sync::mpsc::Receiver<NewKey>,
) {
    let mut file: Option<std::fs::File> = None;
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < 512 {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let now = crate::envelope::format_recorded_at(chrono::Utc::now());
        let committed = (|| -> Result<Vec<(String, Vec<u8>)>, StoreError> {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut out = Vec::with_capacity(batch.len());
            {
                let mut ins = tx.prepare_cached(
                    "INSERT OR IGNORE INTO persons (lookup, person_id, wrapped_key, created_at) VALUES (?1, ?2, ?3, ?4)",
                )?;
                let mut get = tx.prepare_cached(
                    "SELECT person_id, wrapped_key FROM persons WHERE lookup = ?1",
                )?;
                for k in &batch {
                    ins.execute(params![&k.lookup[..], k.person_id, k.wrapped, now])?;
                    out.push(get.query_row([&k.lookup[..]], |r| Ok((r.get(0)?, r.get(1)?)))?);
                }
            }
            tx.commit()?;
            if file.is_none() {
                file =
                    Some(std::fs::File::open(&wal).map_err(|e| {
                        StoreError::Unavailable(format!("key store WAL: {e}").into())
                    })?);
            }
            file.as_ref()
                .expect("opened")
                .sync_data()
                .map_err(|e| StoreError::Unavailable(format!("key store fsync: {e}").into()))?;
            Ok(out)
        })();
        match committed {
            Ok(out) => {
                for (k, r) in batch.into_iter().zip(out) {
                    let _ = k.reply.send(Ok(r));
                }
            }
            Err(e) => {
                file = None;
                let msg = e.to_string();
                for k in batch {
                    let _ = k
                        .reply
                        .send(Err(StoreError::Unavailable(msg.clone().into())));
                }
            }
        }
    }
}
