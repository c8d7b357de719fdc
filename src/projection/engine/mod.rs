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

mod replay;
mod saved;

use saved::write_state;

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

    /// The campaign time zone business dates are read in.
    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    fn dberr(&self, e: rusqlite::Error) -> ProjectionError {
        if crate::support::sqlite::disk_refused(&e) {
            let why = format!(
                "projection database {}: {}",
                self.path.display(),
                crate::support::sqlite::DISK_REFUSED
            );
            return ProjectionError::Store(crate::store::StoreError::Unavailable(
                crate::store::Cause::with_source(why, e),
            ));
        }
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
