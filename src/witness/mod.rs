//! `campaign-ledger witness`: a witness an auditor's organisation runs, apart from the ledger,
//! speaking C2SP `tlog-witness`. It is configured with the logs it watches (their verifier
//! keys, each named by the log's origin) and keeps, per origin, the last checkpoint it
//! cosigned. `POST /add-checkpoint` takes a signed checkpoint with a consistency proof from
//! that one; the witness checks the log's signature, checks the proof from the size and root
//! it holds — in one step with recording the new checkpoint, under a lock and one SQLite
//! transaction, so that no two requests can both pass against the same old size — and
//! answers with its cosignature (`tlog-cosignature`: Ed25519, type 0x04, timestamped).
//!
//! It refuses, with the spec's status codes: an unknown origin (404); no valid signature of
//! the log's trusted key, or a bad one (403); `old` above the checkpoint's size or a body that
//! does not parse (400); `old` other than the size it holds (409, its size in
//! `text/x.tlog.size`); a proof that does not hold, a proof where none is due, the same size
//! with another root, or an empty tree with a root other than the empty one (422). A
//! checkpoint validly signed by the log that contradicts what the witness holds — the same
//! size with another root (a fork), a smaller size (a rollback), a proof that fails — is kept
//! as evidence beside the checkpoint it contradicts (`witness evidence` prints them), and never
//! cosigned.

pub mod server;

use crate::audit::KeySet;
use crate::envelope::merkle::{empty_root, verify_consistency};
use crate::envelope::note::{cosign, Checkpoint, Note, TYPE_ED25519};
use crate::envelope::witness::AddCheckpoint;
use ed25519_dalek::SigningKey;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;

/// A refusal: the status, the body, and the content type of the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// The answer's body.
    pub body: String,
    /// Its content type.
    pub content_type: &'static str,
}

fn refuse(status: u16, why: impl Into<String>) -> Refusal {
    Refusal {
        status,
        body: why.into() + "\n",
        content_type: "text/plain; charset=utf-8",
    }
}

/// One piece of evidence: a validly signed checkpoint that contradicts the one the witness
/// cosigned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Evidence {
    /// The log's origin.
    pub origin: String,
    /// When it was received (UTC seconds).
    pub at: u64,
    /// `fork` (same size, another root), `rollback` (a smaller tree), or `bad_proof`.
    pub kind: String,
    /// The checkpoint the witness had cosigned (signed note, with its cosignature).
    pub held: String,
    /// The contradicting checkpoint, as received (signed note).
    pub received: String,
}

/// A witness: its key and name, the logs it watches, its state.
pub struct Witness {
    name: String,
    key: SigningKey,
    logs: KeySet,
    db: Mutex<Connection>,
}

impl Witness {
    /// Opens (creating) the witness's state at `state`.
    pub fn open(
        name: &str,
        key: SigningKey,
        logs: KeySet,
        state: &Path,
    ) -> Result<Witness, String> {
        crate::envelope::note::check_name(name).map_err(|e| e.to_string())?;
        if logs.0.iter().all(|k| k.key.sig_type != TYPE_ED25519) {
            return Err("the logs file names no log key (one verifier key a line, as `audit public-key` prints it)".into());
        }
        let conn = crate::support::sqlite::open(
            state,
            crate::support::sqlite::Options {
                create: true,
                synchronous: "FULL",
            },
        )
        .map_err(|e| format!("{}: {e}", state.display()))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS latest (
                 origin TEXT PRIMARY KEY, size INTEGER NOT NULL, root BLOB NOT NULL, note TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS evidence (
                 id INTEGER PRIMARY KEY, origin TEXT NOT NULL, at INTEGER NOT NULL, kind TEXT NOT NULL,
                 held TEXT NOT NULL, received TEXT NOT NULL
             );",
        )
        .map_err(|e| format!("{}: {e}", state.display()))?;
        Ok(Witness {
            name: name.to_string(),
            key,
            logs,
            db: Mutex::new(conn),
        })
    }

    /// The witness's verifier key (type 0x04), as verifiers trust it.
    pub fn verifier(&self) -> crate::envelope::note::VerifierKey {
        crate::envelope::note::VerifierKey::new(
            &self.name,
            crate::envelope::note::TYPE_COSIGNATURE,
            self.key.verifying_key(),
        )
    }

    /// Handles an `add-checkpoint` body at time `now` (seconds): the cosignature lines, or the
    /// refusal (see the module's doc). The check against the checkpoint held and the record of
    /// the new one (or of the evidence) are one transaction.
    pub fn add_checkpoint(&self, body: &str, now: u64) -> Result<String, Refusal> {
        let (req, note, cp) = self.signed_by_a_log(body)?;
        let mut db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let tx = db
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| refuse(500, e.to_string()))?;
        let held: Option<(u64, Vec<u8>, String)> = tx
            .query_row(
                "SELECT size, root, note FROM latest WHERE origin = ?1",
                [&cp.origin],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| refuse(500, e.to_string()))?;
        let (size, root, held_note) = match held {
            Some((s, r, n)) => (s, <[u8; 32]>::try_from(r.as_slice()).unwrap_or([0; 32]), n),
            None => (0, empty_root(), String::new()),
        };
        if let Err((evidence, refusal)) = judge(size, &root, &req, &cp) {
            if let Some(kind) = evidence {
                tx.execute(
                    "INSERT INTO evidence (origin, at, kind, held, received) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![cp.origin, now as i64, kind, held_note, req.checkpoint],
                )
                .map_err(|e| refuse(500, e.to_string()))?;
                tx.commit().map_err(|e| refuse(500, e.to_string()))?;
            }
            return Err(refusal);
        }
        let cosig = cosign(&note.text, &self.name, &self.key, now);
        let mut kept = note.clone();
        kept.add([cosig.clone()]);
        tx.execute(
            "INSERT INTO latest (origin, size, root, note) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT(origin) DO UPDATE SET size = excluded.size, root = excluded.root, note = excluded.note",
            params![cp.origin, cp.size as i64, &cp.root[..], kept.to_text()],
        )
        .map_err(|e| refuse(500, e.to_string()))?;
        // Recorded before the answer leaves.
        tx.commit().map_err(|e| refuse(500, e.to_string()))?;
        Ok(cosig.line())
    }

    /// The request, its note and checkpoint, when a key of a log this witness watches signed
    /// it (400 unreadable, 404 unknown log, 403 no valid signature of its key).
    fn signed_by_a_log(&self, body: &str) -> Result<(AddCheckpoint, Note, Checkpoint), Refusal> {
        let req = AddCheckpoint::parse(body).map_err(|e| refuse(400, e.to_string()))?;
        let note = Note::parse(&req.checkpoint).map_err(|e| refuse(400, e.to_string()))?;
        let cp = Checkpoint::parse(&note.text).map_err(|e| refuse(400, e.to_string()))?;
        let keys: Vec<_> = self
            .logs
            .0
            .iter()
            .filter(|k| k.key.sig_type == TYPE_ED25519 && k.key.name == cp.origin)
            .collect();
        if keys.is_empty() {
            return Err(refuse(404, format!("unknown log {:?}", cp.origin)));
        }
        let mut signed = false;
        for k in &keys {
            for s in note.signatures.iter().filter(|s| k.key.signed(s)) {
                if k.key.verify(&note.text, s).is_none() {
                    return Err(refuse(403, "a signature of the log's key does not verify"));
                }
                signed = true;
            }
        }
        if !signed {
            return Err(refuse(403, "no signature of the log's key"));
        }
        Ok((req, note, cp))
    }

    /// The last checkpoint cosigned for an origin (with the log's signatures and the
    /// witness's cosignature).
    pub fn latest(&self, origin_hash: &str) -> Option<String> {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let mut st = db.prepare("SELECT origin, note FROM latest").ok()?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .ok()?;
        let found = rows.flatten().find_map(|(o, n)| {
            use sha2::Digest as _;
            (hex::encode(sha2::Sha256::digest(o.as_bytes())) == origin_hash).then_some(n)
        });
        found
    }

    /// The evidence kept, oldest first.
    pub fn evidence(&self) -> Result<Vec<Evidence>, String> {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        evidence_in(&db)
    }
}

/// The evidence kept in a witness's state file (which must exist), oldest first.
pub fn read_evidence(state: &Path) -> Result<Vec<Evidence>, String> {
    let conn = crate::support::sqlite::open(
        state,
        crate::support::sqlite::Options {
            create: false,
            synchronous: "FULL",
        },
    )
    .map_err(|e| format!("the witness state {}: {e}", state.display()))?;
    evidence_in(&conn)
}

fn evidence_in(db: &Connection) -> Result<Vec<Evidence>, String> {
    {
        let mut st = db
            .prepare("SELECT origin, at, kind, held, received FROM evidence ORDER BY id")
            .map_err(|e| e.to_string())?;
        let rows = st
            .query_map([], |r| {
                Ok(Evidence {
                    origin: r.get(0)?,
                    at: r.get::<_, i64>(1)? as u64,
                    kind: r.get(2)?,
                    held: r.get(3)?,
                    received: r.get(4)?,
                })
            })
            .map_err(|e| e.to_string())?;
        rows.collect::<Result<_, _>>().map_err(|e| e.to_string())
    }
}

/// Whether a checkpoint signed by its log may be cosigned, given the tree of `size` with `root`
/// held for it: `Ok`, or the refusal with the kind of evidence to keep (a fork or a rollback
/// shown, a proof that fails), per tlog-witness.
fn judge(
    size: u64,
    root: &[u8; 32],
    req: &AddCheckpoint,
    cp: &Checkpoint,
) -> Result<(), (Option<&'static str>, Refusal)> {
    let contradiction = if size > 0 && cp.size == size && cp.root != *root {
        Some("fork")
    } else if cp.size < size {
        Some("rollback")
    } else {
        None
    };
    if req.old > cp.size {
        return Err((
            contradiction,
            refuse(400, "old is larger than the checkpoint's size"),
        ));
    }
    if req.old != size {
        return Err((
            contradiction,
            Refusal {
                status: 409,
                body: format!("{size}\n"),
                content_type: crate::envelope::witness::SIZE_CONTENT_TYPE,
            },
        ));
    }
    if cp.size == 0 && cp.root != empty_root() {
        return Err((
            None,
            refuse(422, "an empty tree's root is the hash of nothing"),
        ));
    }
    if req.old == 0 && !req.proof.is_empty() {
        return Err((
            None,
            refuse(422, "no consistency proof is due from an empty tree"),
        ));
    }
    let holds = if req.old == 0 {
        true
    } else if req.old == cp.size {
        req.proof.is_empty() && cp.root == *root
    } else {
        verify_consistency(req.old, cp.size, root, &cp.root, &req.proof)
    };
    if !holds {
        return Err((
            Some(contradiction.unwrap_or("bad_proof")),
            refuse(
                422,
                "the consistency proof does not prove that this tree extends the one cosigned",
            ),
        ));
    }
    Ok(())
}
