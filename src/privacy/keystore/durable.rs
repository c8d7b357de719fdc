//! Making keys durable before the events sealed with them: new keys with their lookups are
//! written by a thread of their own (group commit); a pool of keys made in advance for logs
//! that keep the person index; and the assignments an older build recorded here after the
//! log's group commit, repaired after a crash and then handed over to the log's person index.
use super::*;

impl KeyStore {
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
    ///
    /// Their pseudonyms rise in the order they are handed out: 6 bytes of the time in
    /// milliseconds, 2 of the key's rank in the batch, then 8 random bytes. A new person's
    /// stream (`person/<person_id>`) and index entries then land at the end of the log's
    /// stream index rather than on a random page of it (a random id cost every group one
    /// written page per new person). The time says no more than the stream's first event does.
    pub(super) fn refill(&self, inner: &mut Inner, n: usize) -> Result<(), StoreError> {
        let now = chrono::Utc::now();
        let millis = (now.timestamp_millis().max(0) as u64).to_be_bytes();
        let now = crate::envelope::format_recorded_at(now);
        let mut made = Vec::with_capacity(n);
        let tx = inner
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut ins = tx.prepare_cached(
                "INSERT INTO persons (lookup, person_id, wrapped_key, created_at) VALUES (NULL, ?1, ?2, ?3)",
            )?;
            for rank in 0..n {
                let mut prefix = [0u8; 8];
                prefix[..6].copy_from_slice(&millis[2..]);
                prefix[6..].copy_from_slice(&(rank as u16).to_be_bytes());
                let (person_id, key, wrapped) = self.new_key(Some(prefix))?;
                ins.execute(params![person_id, wrapped, now])?;
                made.push(PersonKey { person_id, key });
            }
        }
        tx.commit().map_err(|e| write_error(&self.path, e))?;
        let mut wal = self.wal.lock().unwrap_or_else(|e| e.into_inner());
        self.sync_wal(&mut wal)?;
        // Handed out from the end: the lowest first.
        made.reverse();
        inner.pool.extend(made);
        Ok(())
    }
    /// A person_id (random, or random after `prefix`) and a random data key, and the key
    /// wrapped for the key store.
    pub(super) fn new_key(
        &self,
        prefix: Option<[u8; 8]>,
    ) -> Result<(String, [u8; 32], Vec<u8>), StoreError> {
        let mut id = [0u8; 16];
        let mut key = [0u8; 32];
        let mut nonce = [0u8; 12];
        let random = if prefix.is_some() { 8 } else { 0 };
        for b in [&mut id[random..], &mut key[..], &mut nonce[..]] {
            getrandom::getrandom(b)
                .map_err(|e| StoreError::Unavailable(format!("no random bytes: {e}").into()))?;
        }
        if let Some(p) = prefix {
            id[..8].copy_from_slice(&p);
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
    /// Whether this store's assignments (lookup → key) were handed over to the log's person
    /// index; from then on the log records every new person.
    pub fn persons_in_log(&self) -> Result<bool, StoreError> {
        Ok(self.meta("persons_in_log")?.as_deref() == Some("1"))
    }
    /// Records that the log's person index holds every assignment made here. Durable.
    pub fn set_persons_in_log(&self) -> Result<(), StoreError> {
        {
            let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            inner.conn.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('persons_in_log', '1')",
                [],
            )?;
        }
        let mut wal = self.wal.lock().unwrap_or_else(|e| e.into_inner());
        self.sync_wal(&mut wal)
    }
    /// Every assignment recorded here: (lookup, person_id).
    pub fn assignments(&self) -> Result<Vec<([u8; 32], String)>, StoreError> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut st = inner
            .conn
            .prepare("SELECT lookup, person_id FROM persons WHERE lookup IS NOT NULL")?;
        let rows = st.query_map([], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (lookup, id) = row?;
            let lookup: [u8; 32] = lookup.try_into().map_err(|_| {
                StoreError::Corrupt(
                    format!(
                        "key store {}: the lookup of {id} is not 32 bytes",
                        self.path.display()
                    )
                    .into(),
                )
            })?;
            out.push((lookup, id));
        }
        Ok(out)
    }
    /// The log position up to which the log was searched for keys its events use but this
    /// store has not assigned (0 when never recorded): a log that does not keep the person
    /// index (NATS) is searched after it when it opens (see `assign`), and so is, once, the
    /// log of an older build whose assignments were made durable lazily.
    pub fn assignments_durable_upto(&self) -> Result<u64, StoreError> {
        Ok(self
            .meta("assigned_upto")?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }
    /// The key of a person_id that no lookup here leads to: made in advance (its entry is in
    /// the log's person index, or it is still in some process's pool), or an assignment an
    /// older build's crash lost.
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
        self.forget_all();
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
        tx.commit().map_err(|e| write_error(&self.path, e))?;
        drop(inner);
        let mut wal = self.wal.lock().unwrap_or_else(|e| e.into_inner());
        self.sync_wal(&mut wal)
    }
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
