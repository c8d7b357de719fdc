//! What the engine saves: each projection's state with its checkpoint (position and hash) in
//! one transaction, loaded back only when the checkpoint is on this log.
use super::*;

pub(super) type StoredGroup = (Vec<String>, Vec<(i32, Vec<crate::projection::state::Cell>)>);

#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct StoredState(Vec<StoredGroup>);

pub(super) fn encode(s: &State) -> String {
    let v = StoredState(
        s.groups
            .iter()
            .map(|(k, days)| {
                (
                    k.clone(),
                    days.iter().map(|(d, c)| (*d, c.clone())).collect(),
                )
            })
            .collect(),
    );
    serde_json::to_string(&v).expect("state serializes")
}

pub(super) fn decode(text: &str) -> Option<State> {
    let v: StoredState = serde_json::from_str(text).ok()?;
    Some(State {
        groups: v
            .0
            .into_iter()
            .map(|(k, days)| (k, days.into_iter().collect()))
            .collect(),
    })
}

/// Saves one projection's state with its checkpoint (inside the caller's transaction).
pub(super) fn write_state(
    tx: &rusqlite::Transaction<'_>,
    def: &Definition,
    live: &Live,
    now: &str,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO projections (name, definition_hash, checkpoint, checkpoint_hash, state, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![def.name, def.hash, live.checkpoint as i64, &live.checkpoint_hash[..], encode(&live.state), now],
    )?;
    Ok(())
}

impl Engine {
    pub(super) fn hash_at(
        store: &dyn EventStore,
        position: u64,
    ) -> Result<Option<[u8; 32]>, StoreError> {
        if position == 0 {
            return Ok(Some(crate::store::GENESIS_HASH));
        }
        let mut h = None;
        store.scan(position - 1, position, &mut |e| {
            h = Some(e.hash);
            false
        })?;
        Ok(h)
    }
    /// The log's hash at a saved checkpoint if it is the one saved with it (None: the log
    /// lacks that position or holds another event there: the state was built from another
    /// log).
    pub(super) fn checkpoint_on(
        store: &dyn EventStore,
        position: u64,
        saved_hash: &[u8],
    ) -> Result<Option<[u8; 32]>, StoreError> {
        Ok(Self::hash_at(store, position)?.filter(|h| h[..] == *saved_hash))
    }
    /// Loads saved states; a state whose definition changed, or whose checkpoint is not on this
    /// log (the store was replaced), starts again from position 0.
    pub(super) fn load(&self, store: &dyn EventStore) -> Result<Vec<Live>, ProjectionError> {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for c in &self.compiled {
            let row: Option<(String, i64, Vec<u8>, String)> = db
                .query_row(
                    "SELECT definition_hash, checkpoint, checkpoint_hash, state FROM projections WHERE name = ?1",
                    [&c.def.name],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()
                .map_err(|e| self.dberr(e))?;
            let fresh = Live {
                state: State::default(),
                checkpoint: 0,
                checkpoint_hash: crate::store::GENESIS_HASH,
                replaces: None,
            };
            let live = match row {
                Some((hash, cp, cp_hash, text)) if hash == c.def.hash => {
                    let cp = cp as u64;
                    match (decode(&text), Self::checkpoint_on(store, cp, &cp_hash)?) {
                        (Some(state), Some(h)) => Live {
                            state,
                            checkpoint: cp,
                            checkpoint_hash: h,
                            replaces: None,
                        },
                        _ => {
                            tracing::warn!(projection = %c.def.name, checkpoint = cp, "saved state does not belong to this log; rebuilding, and replacing it");
                            Live {
                                replaces: Some((cp, cp_hash)),
                                ..fresh
                            }
                        }
                    }
                }
                Some(_) => {
                    tracing::info!(projection = %c.def.name, "definition changed; rebuilding from position 1");
                    fresh
                }
                None => fresh,
            };
            out.push(live);
        }
        Ok(out)
    }
    pub(super) fn save(&self, lives: &[Live], changed: &[usize]) -> Result<(), ProjectionError> {
        let mut db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let tx = db
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.dberr(e))?;
        let now = crate::store::format_recorded_at(Utc::now());
        for &i in changed {
            let (c, l) = (&self.compiled[i], &lives[i]);
            let saved: Option<(String, i64, Vec<u8>)> = tx
                .query_row(
                    "SELECT definition_hash, checkpoint, checkpoint_hash FROM projections WHERE name = ?1",
                    [&c.def.name],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(|e| self.dberr(e))?;
            if let Some((h, cp, cp_hash)) = saved {
                let foreign = l.replaces.as_ref() == Some(&(cp as u64, cp_hash));
                if h == c.def.hash && cp as u64 >= l.checkpoint && l.checkpoint > 0 && !foreign {
                    continue; // another process saved as far or further
                }
            }
            write_state(&tx, &c.def, l, &now).map_err(|e| self.dberr(e))?;
        }
        tx.commit().map_err(|e| self.dberr(e))
    }
}
