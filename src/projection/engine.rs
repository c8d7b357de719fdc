//! The projection engine: folds the log into every definition's state, saves each state with
//! its checkpoint in one transaction (a crash never double-counts or skips), rebuilds beside
//! the live state and swaps, and answers `as_of` / `known_at` reads.

use super::definition::Definition;
use super::error::ProjectionError;
use super::report::{self, Report};
use super::series::{PersonFinding, SeriesFold};
use super::state::{Compiled, Fields, Input, Router, Scratch, State};
use crate::store::{DataRef, EventStore, StoreError};
use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use chrono_tz::Tz;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex};

struct Live {
    state: State,
    checkpoint: u64,
    checkpoint_hash: [u8; 32],
    /// The saved checkpoint (position, hash) found not to belong to the log this state was
    /// rebuilt from (another log's projections file): that row is replaced even though its
    /// position may be further on (a save otherwise never goes backwards).
    replaces: Option<(u64, Vec<u8>)>,
}

/// Status of one projection, for `projections list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// Name.
    pub name: String,
    /// What it shows.
    pub description: String,
    /// Where the definition came from.
    pub origin: String,
    /// Last position folded in and saved.
    pub checkpoint: u64,
    /// Head of the log.
    pub head: u64,
    /// `up to date`, `behind`, `definition changed`, `never built`.
    pub status: String,
}

/// What a rebuild did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rebuilt {
    /// Name.
    pub name: String,
    /// Events replayed.
    pub events: u64,
    /// Position reached.
    pub position: u64,
    /// Whether the rebuilt state equals the live one at the same position (`None`: there was
    /// no valid live state to compare with).
    pub identical_to_live: Option<bool>,
}

/// The engine over a set of definitions and their saved states.
pub struct Engine {
    compiled: Vec<Compiled>,
    router: Router,
    tz: Tz,
    path: PathBuf,
    db: Mutex<Connection>,
    live: Mutex<Option<Vec<Live>>>,
    /// The rules findings are judged by (the default policy in the engine's time zone).
    policy: crate::domain::Policy,
    /// Reference data: partner centres' ids for names in old logs, and their display names.
    reference: crate::domain::Reference,
    /// The person series behind the `fold = "series_findings"` projections, read lazily.
    series: Mutex<SeriesFold>,
}

type StoredGroup = (Vec<String>, Vec<(i32, Vec<super::state::Cell>)>);

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredState(Vec<StoredGroup>);

fn encode(s: &State) -> String {
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

fn decode(text: &str) -> Option<State> {
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
fn write_state(
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

/// The projection database path that goes with a store file: `ledger.db` → `ledger.projections.db`.
pub fn db_path_for(store_file: &Path) -> PathBuf {
    let stem = store_file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("ledger");
    store_file.with_file_name(format!("{stem}.projections.db"))
}

const BATCH: usize = 2048;
/// Positions folded between two saves during a long catch-up.
const CATCH_UP_CHUNK: u64 = 100_000;

/// An event on its way from the reader thread to the folding thread.
struct Owned {
    position: u64,
    type_id: usize,
    data: String,
    /// Always carried: the fallback when an event lacks its source's time field.
    occurred_at: String,
    /// stream id, event type, occurred_at, recorded_at: only when a definition reads them.
    envelope: Option<Box<[String; 4]>>,
}

impl Engine {
    /// Opens (creating if needed) the projection database at `path`.
    pub fn open(path: &Path, defs: Vec<Definition>, tz: Tz) -> Result<Engine, ProjectionError> {
        let dberr = |e: rusqlite::Error| ProjectionError::Db {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        // synchronous=NORMAL: each save (state + checkpoint) is still atomic in WAL mode; a
        // power cut may lose the last saves, and the engine then resumes from the checkpoint
        // that survived (its hash is checked against the log) and replays. The state is
        // derived: only the log must be durable on acknowledgement, not this file.
        let options = crate::support::sqlite::Options {
            create: true,
            synchronous: "NORMAL",
        };
        let conn =
            crate::support::sqlite::open(path, options).map_err(|e| ProjectionError::Db {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        crate::support::sqlite::retry_busy(|| {
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS projections (
                name TEXT PRIMARY KEY, definition_hash TEXT NOT NULL, checkpoint INTEGER NOT NULL,
                checkpoint_hash BLOB NOT NULL, state TEXT NOT NULL, updated_at TEXT NOT NULL);",
            )
        })
        .map_err(dberr)?;
        let compiled: Vec<Compiled> = defs.into_iter().map(Compiled::new).collect();
        let router = Router::new(&compiled);
        Ok(Engine {
            compiled,
            router,
            tz,
            path: path.to_path_buf(),
            db: Mutex::new(conn),
            live: Mutex::new(None),
            policy: crate::domain::Policy {
                time_zone: tz,
                ..crate::domain::Policy::default()
            },
            series: Mutex::new(SeriesFold::default()),
            reference: crate::domain::Reference::builtin(),
        })
    }

    fn dberr(&self, e: rusqlite::Error) -> ProjectionError {
        ProjectionError::Db {
            path: self.path.display().to_string(),
            message: e.to_string(),
        }
    }

    /// The definitions.
    pub fn definitions(&self) -> impl Iterator<Item = &Definition> {
        self.compiled.iter().map(|c| &c.def)
    }

    fn index(&self, name: &str) -> Result<usize, ProjectionError> {
        self.compiled
            .iter()
            .position(|c| c.def.name == name)
            .ok_or_else(|| ProjectionError::Unknown(name.to_string()))
    }

    fn hash_at(store: &dyn EventStore, position: u64) -> Result<Option<[u8; 32]>, StoreError> {
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
    fn checkpoint_on(
        store: &dyn EventStore,
        position: u64,
        saved_hash: &[u8],
    ) -> Result<Option<[u8; 32]>, StoreError> {
        Ok(Self::hash_at(store, position)?.filter(|h| h[..] == *saved_hash))
    }

    /// Loads saved states; a state whose definition changed, or whose checkpoint is not on this
    /// log (the store was replaced), starts again from position 0.
    fn load(&self, store: &dyn EventStore) -> Result<Vec<Live>, ProjectionError> {
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

    /// Replays events `(from, to]` into `targets` (projection index, start position, state),
    /// skipping, per projection, events at or before its own start. Reading runs on one
    /// thread, scanning and folding on another, except for a short range (up to `BATCH`
    /// positions: a follower's usual step), read and folded on the calling thread (a thread
    /// and two wake-ups cost more than the work there). With `known_at`, stops at the first
    /// event recorded after it. Returns the last position read and its hash.
    fn replay(
        &self,
        store: &dyn EventStore,
        targets: &mut [(usize, u64, &mut State)],
        from: u64,
        to: u64,
        known_at: Option<&str>,
    ) -> Result<(u64, [u8; 32]), ProjectionError> {
        let wanted: Vec<usize> = targets.iter().map(|t| t.0).collect();
        let mut last = (from, [0u8; 32]);
        if to.saturating_sub(from) <= BATCH as u64 {
            let mut batch = Vec::new();
            store.scan_data(from, to, &mut |e: DataRef<'_>| {
                self.take(e, known_at, &wanted, &mut last, &mut batch)
            })?;
            self.fold(targets, &batch, &mut Scratch::new(self.tz));
            return Ok(last);
        }
        let (tx, rx) = mpsc::sync_channel::<Vec<Owned>>(16);
        let result: Result<(), ProjectionError> = std::thread::scope(|s| {
            let reader = s.spawn(|| -> Result<(u64, [u8; 32]), StoreError> {
                let mut batch = Vec::with_capacity(BATCH);
                let mut last = (from, [0u8; 32]);
                store.scan_data(from, to, &mut |e: DataRef<'_>| {
                    if !self.take(e, known_at, &wanted, &mut last, &mut batch) {
                        return false;
                    }
                    if batch.len() == BATCH
                        && tx
                            .send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                            .is_err()
                    {
                        return false;
                    }
                    true
                })?;
                if !batch.is_empty() {
                    let _ = tx.send(batch);
                }
                drop(tx);
                Ok(last)
            });
            let mut scratch = Scratch::new(self.tz);
            for batch in rx {
                self.fold(targets, &batch, &mut scratch);
            }
            last = reader
                .join()
                .map_err(|_| StoreError::Unavailable("the reader thread panicked".into()))??;
            Ok(())
        });
        result?;
        Ok(last)
    }

    /// Adds `e` to `batch` if a wanted projection folds its type; notes its position and hash
    /// in `last`. False (stop) at the first event recorded after `known_at`.
    fn take(
        &self,
        e: DataRef<'_>,
        known_at: Option<&str>,
        wanted: &[usize],
        last: &mut (u64, [u8; 32]),
        batch: &mut Vec<Owned>,
    ) -> bool {
        if let Some(k) = known_at {
            if e.recorded_at > k {
                return false;
            }
        }
        *last = (e.position, e.hash);
        let router = &self.router;
        let Some(type_id) = router.type_id(e.event_type) else {
            return true;
        };
        if !router
            .routes(type_id)
            .iter()
            .any(|(p, _)| wanted.contains(p))
        {
            return true;
        }
        // Older schema versions are read as the current one (the upcasters).
        let data = match crate::domain::Event::upcast(e.event_type, e.schema_version, e.data) {
            Ok(Some(up)) => up,
            _ => e.data.to_string(),
        };
        let data = self.centre_as_id(e.event_type, data);
        batch.push(Owned {
            position: e.position,
            type_id,
            data,
            occurred_at: e.occurred_at.to_string(),
            envelope: router.needs_envelope.then(|| {
                Box::new([
                    e.stream_id.to_string(),
                    e.event_type.to_string(),
                    e.occurred_at.to_string(),
                    e.recorded_at.to_string(),
                ])
            }),
        });
        true
    }

    /// A ticket event of a log written before partner centres had ids names its centre: the
    /// name is read as the centre's id (the reference file's name-to-id map), so that a
    /// projection grouped by centre has one row per centre whatever the log's age.
    fn centre_as_id(&self, event_type: &str, data: String) -> String {
        const FIELD: &str = "\"partner_centre\":\"";
        if !event_type.starts_with("Ticket") {
            return data;
        }
        let Some(start) = data.find(FIELD).map(|i| i + FIELD.len()) else {
            return data;
        };
        let Some(len) = data[start..].find('"') else {
            return data;
        };
        let value = &data[start..start + len];
        if value.contains('\\') || self.reference.partner_centres.contains_key(value) {
            return data;
        }
        match self.reference.partner_centre(value) {
            Some(c) => format!("{}{}{}", &data[..start], c.id, &data[start + len..]),
            None => data,
        }
    }

    /// Folds `batch` into the `targets` it concerns.
    fn fold(
        &self,
        targets: &mut [(usize, u64, &mut State)],
        batch: &[Owned],
        scratch: &mut Scratch,
    ) {
        for o in batch {
            let fields = match Fields::parse(&o.data) {
                Ok(f) => f,
                Err(err) => {
                    tracing::error!(position = o.position, error = %err, "event data is not a JSON object; skipped");
                    continue;
                }
            };
            let env = o.envelope.as_deref();
            let input = Input {
                position: o.position,
                event_type: env.map(|e| e[1].as_str()).unwrap_or(""),
                stream_id: env.map(|e| e[0].as_str()).unwrap_or(""),
                occurred_at: &o.occurred_at,
                recorded_at: env.map(|e| e[3].as_str()).unwrap_or(""),
                fields: &fields,
            };
            for &(pi, si) in self.router.routes(o.type_id) {
                if let Some(t) = targets.iter_mut().find(|t| t.0 == pi) {
                    if o.position > t.1 {
                        self.compiled[pi].apply(t.2, si, &input, scratch);
                    }
                }
            }
        }
    }

    fn save(&self, lives: &[Live], changed: &[usize]) -> Result<(), ProjectionError> {
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

    /// Folds every event committed since the saved checkpoints; returns the head position.
    pub fn catch_up(&self, store: &dyn EventStore) -> Result<u64, ProjectionError> {
        let mut guard = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let head = store.head_position()?;
        // A log that ends before what was folded was replaced: start again from what is
        // saved (`load` tells a state that does not belong to this log, which is rebuilt).
        if guard
            .as_ref()
            .is_none_or(|lives| lives.iter().any(|l| l.checkpoint > head))
        {
            *guard = Some(self.load(store)?);
        }
        let result = self.advance(store, guard.as_mut().expect("loaded"), head);
        if result.is_err() {
            // A read or a save failed part-way: the states in memory may hold part of a chunk
            // their checkpoints do not cover. The next call starts again from what is saved.
            *guard = None;
        }
        result
    }

    /// Folds what `lives` lack up to the head, saving after each chunk.
    fn advance(
        &self,
        store: &dyn EventStore,
        lives: &mut [Live],
        head: u64,
    ) -> Result<u64, ProjectionError> {
        let behind: Vec<usize> = (0..lives.len())
            .filter(|&i| lives[i].checkpoint < head && self.compiled[i].def.fold.is_none())
            .collect();
        if behind.is_empty() {
            return Ok(head);
        }
        let mut from = behind
            .iter()
            .map(|&i| lives[i].checkpoint)
            .min()
            .unwrap_or(0);
        let span = tracing::info_span!("catch_up", from, to = head);
        let _e = span.enter();
        // In chunks, each saved with its checkpoint: a crash loses at most one chunk of work.
        while from < head {
            let to = (from + CATCH_UP_CHUNK).min(head);
            let group: Vec<usize> = behind
                .iter()
                .copied()
                .filter(|&i| lives[i].checkpoint < to)
                .collect();
            let mut states: Vec<State> = group
                .iter()
                .map(|&i| std::mem::take(&mut lives[i].state))
                .collect();
            let (pos, hash) = {
                let mut targets: Vec<(usize, u64, &mut State)> = group
                    .iter()
                    .zip(states.iter_mut())
                    .map(|(&i, s)| (i, lives[i].checkpoint, s))
                    .collect();
                self.replay(store, &mut targets, from, to, None)?
            };
            for (&i, s) in group.iter().zip(states) {
                lives[i].state = s;
                if pos > lives[i].checkpoint {
                    lives[i].checkpoint = pos;
                    lives[i].checkpoint_hash = hash;
                }
            }
            self.save(lives, &group)?;
            if pos <= from {
                break; // the log ended early (it cannot shrink; a source may lag its head)
            }
            from = pos;
        }
        Ok(from)
    }

    /// Reads a projection as of a business date and, optionally, as known at a commit time
    /// (which replays the log up to that time). A report keyed by `partner_centre` also gives
    /// each centre's name from the reference file (`partner_centre_name`).
    pub fn report(
        &self,
        store: &dyn EventStore,
        name: &str,
        as_of: Option<NaiveDate>,
        known_at: Option<DateTime<FixedOffset>>,
    ) -> Result<Report, ProjectionError> {
        let mut r = self.report_plain(store, name, as_of, known_at)?;
        if let Some(i) = r.columns.iter().position(|c| c == "partner_centre") {
            r.columns.insert(i + 1, "partner_centre_name".into());
            for row in &mut r.rows {
                let name = match row.get("partner_centre") {
                    Some(super::Val::Text(id)) => self.reference.centre_name(id).to_string(),
                    _ => String::new(),
                };
                row.0.insert(
                    i + 1,
                    ("partner_centre_name".into(), Some(super::Val::Text(name))),
                );
            }
        }
        Ok(r)
    }

    fn report_plain(
        &self,
        store: &dyn EventStore,
        name: &str,
        as_of: Option<NaiveDate>,
        known_at: Option<DateTime<FixedOffset>>,
    ) -> Result<Report, ProjectionError> {
        let i = self.index(name)?;
        let def = &self.compiled[i].def;
        if def.fold.is_some() {
            let (state, position) = self.with_series(store, known_at, |fold| {
                (fold.state(&self.policy, &def.group_by), fold.mark.position)
            })?;
            let known = known_at.map(|k| k.to_rfc3339());
            return Ok(report::build(def, &state, as_of, known, position));
        }
        let head = self.catch_up(store)?;
        match known_at {
            None => {
                let guard = self.live.lock().unwrap_or_else(|e| e.into_inner());
                let live = &guard.as_ref().expect("caught up")[i];
                Ok(report::build(
                    def,
                    &live.state,
                    as_of,
                    None,
                    live.checkpoint,
                ))
            }
            Some(k) => {
                let k_text = crate::store::format_recorded_at(k.with_timezone(&Utc));
                let mut state = State::default();
                let (pos, _) =
                    self.replay(store, &mut [(i, 0, &mut state)], 0, head, Some(&k_text))?;
                Ok(report::build(def, &state, as_of, Some(k.to_rfc3339()), pos))
            }
        }
    }

    /// Replays the whole log into a new state beside the live one, compares, and swaps it in.
    pub fn rebuild(&self, store: &dyn EventStore, name: &str) -> Result<Rebuilt, ProjectionError> {
        let i = self.index(name)?;
        if let Some(keys) = self.compiled[i]
            .def
            .fold
            .map(|_| &self.compiled[i].def.group_by)
        {
            let mut guard = self.series.lock().unwrap_or_else(|e| e.into_inner());
            let head = store.head_position()?;
            let mut fresh = SeriesFold::default();
            fresh.advance(store, head, None, &self.policy)?;
            let had = guard.mark.position > 0;
            let identical = (had && guard.mark.position == fresh.mark.position)
                .then(|| guard.state(&self.policy, keys) == fresh.state(&self.policy, keys));
            let position = fresh.mark.position;
            *guard = fresh;
            return Ok(Rebuilt {
                name: name.to_string(),
                events: position,
                position,
                identical_to_live: identical,
            });
        }
        // Was there a saved state of this very definition to compare with?
        let had_state = {
            let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
            let saved: Option<String> = db
                .query_row(
                    "SELECT definition_hash FROM projections WHERE name = ?1",
                    [name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| self.dberr(e))?;
            saved.as_deref() == Some(self.compiled[i].def.hash.as_str())
        };
        let head = self.catch_up(store)?;
        let mut state = State::default();
        let (pos, hash) = self.replay(store, &mut [(i, 0, &mut state)], 0, head, None)?;
        let mut guard = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let lives = guard.as_mut().expect("caught up");
        let identical = (had_state && lives[i].checkpoint == pos).then(|| lives[i].state == state);
        lives[i] = Live {
            state,
            checkpoint: pos,
            checkpoint_hash: hash,
            replaces: None,
        };
        // Saved in one transaction: readers see the old state or the new one, never a mix.
        let mut db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let tx = db.transaction().map_err(|e| self.dberr(e))?;
        let now = crate::store::format_recorded_at(Utc::now());
        write_state(&tx, &self.compiled[i].def, &lives[i], &now).map_err(|e| self.dberr(e))?;
        tx.commit().map_err(|e| self.dberr(e))?;
        Ok(Rebuilt {
            name: name.to_string(),
            events: pos,
            position: pos,
            identical_to_live: identical,
        })
    }

    /// The status of every projection, without changing anything.
    pub fn status(&self, store: &dyn EventStore) -> Result<Vec<Status>, ProjectionError> {
        let head = store.head_position()?;
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for c in &self.compiled {
            if c.def.fold.is_some() {
                // Kept in memory only: folding it here changes nothing on disk.
                let at = self.with_series(store, None, |f| f.mark.position)?;
                out.push(Status {
                    name: c.def.name.clone(),
                    description: c.def.description.clone(),
                    origin: c.def.origin.clone(),
                    checkpoint: at,
                    head,
                    status: if at >= head {
                        "up to date (derived in memory, not saved)".to_string()
                    } else {
                        format!("behind by {} events (catches up on next read)", head - at)
                    },
                });
                continue;
            }
            let row: Option<(String, i64, Vec<u8>)> = db
                .query_row(
                    "SELECT definition_hash, checkpoint, checkpoint_hash FROM projections WHERE name = ?1",
                    [&c.def.name],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(|e| self.dberr(e))?;
            let (checkpoint, status) = match row {
                None => (0, "never built (builds on first read)".to_string()),
                Some((h, _, _)) if h != c.def.hash => {
                    (0, "definition changed (rebuilds on next read)".to_string())
                }
                Some((_, cp, cp_hash))
                    if Self::checkpoint_on(store, cp as u64, &cp_hash)?.is_none() =>
                {
                    (
                        cp as u64,
                        "built from another log (rebuilt from this one on next read)".to_string(),
                    )
                }
                Some((_, cp, _)) if cp as u64 >= head => (cp as u64, "up to date".to_string()),
                Some((_, cp, _)) => (
                    cp as u64,
                    format!(
                        "behind by {} events (catches up on next read)",
                        head - cp as u64
                    ),
                ),
            };
            out.push(Status {
                name: c.def.name.clone(),
                description: c.def.description.clone(),
                origin: c.def.origin.clone(),
                checkpoint,
                head,
                status,
            });
        }
        Ok(out)
    }

    /// The state of a projection after catching up (for tests and comparisons).
    pub fn live_state(
        &self,
        store: &dyn EventStore,
        name: &str,
    ) -> Result<(State, u64), ProjectionError> {
        let i = self.index(name)?;
        if let Some(keys) = self.compiled[i]
            .def
            .fold
            .map(|_| &self.compiled[i].def.group_by)
        {
            return self.with_series(store, None, |fold| {
                (fold.state(&self.policy, keys), fold.mark.position)
            });
        }
        self.catch_up(store)?;
        let guard = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let l = &guard.as_ref().expect("caught up")[i];
        Ok((l.state.clone(), l.checkpoint))
    }

    /// Replays the whole log into a fresh state of one projection, without saving it.
    pub fn replay_fresh(
        &self,
        store: &dyn EventStore,
        name: &str,
    ) -> Result<(State, u64), ProjectionError> {
        let i = self.index(name)?;
        let head = store.head_position()?;
        if let Some(keys) = self.compiled[i]
            .def
            .fold
            .map(|_| &self.compiled[i].def.group_by)
        {
            let mut fresh = SeriesFold::default();
            fresh.advance(store, head, None, &self.policy)?;
            return Ok((fresh.state(&self.policy, keys), fresh.mark.position));
        }
        let mut state = State::default();
        let (pos, _) = self.replay(store, &mut [(i, 0, &mut state)], 0, head, None)?;
        Ok((state, pos))
    }

    /// Calls `f` on the person series as the log holds them now (the live fold, caught up to
    /// the head), or as known at a commit time (folded afresh up to it).
    fn with_series<T>(
        &self,
        store: &dyn EventStore,
        known_at: Option<DateTime<FixedOffset>>,
        f: impl FnOnce(&SeriesFold) -> T,
    ) -> Result<T, ProjectionError> {
        let head = store.head_position()?;
        if let Some(k) = known_at {
            let k_text = crate::store::format_recorded_at(k.with_timezone(&Utc));
            let mut fold = SeriesFold::default();
            fold.advance(store, head, Some(&k_text), &self.policy)?;
            return Ok(f(&fold));
        }
        let mut guard = self.series.lock().unwrap_or_else(|e| e.into_inner());
        // A log that no longer holds what was folded (it was replaced): fold it afresh.
        let on_log = guard.mark.position <= head
            && Self::hash_at(store, guard.mark.position)? == Some(guard.mark.hash);
        if !on_log {
            *guard = SeriesFold::default();
        }
        if let Err(e) = guard.advance(store, head, None, &self.policy) {
            *guard = SeriesFold::default();
            return Err(e);
        }
        Ok(f(&guard))
    }

    /// The open data-quality findings dated on or before `as_of`, as known now or at a commit
    /// time; with the last position read.
    pub fn findings(
        &self,
        store: &dyn EventStore,
        as_of: Option<NaiveDate>,
        known_at: Option<DateTime<FixedOffset>>,
    ) -> Result<(Vec<PersonFinding>, u64), ProjectionError> {
        self.with_series(store, known_at, |fold| {
            (fold.open(&self.policy, as_of), fold.mark.position)
        })
    }
}
