//! Online backup and restore of a SQLite ledger: its four databases copied while a server
//! writes, then checked as an auditor would.
//!
//! The files are copied in this order, each with SQLite's online backup inside one read
//! transaction (`support::sqlite::backup`): the projections (a cache: their checkpoint is then
//! at or before the copied log's head, and the engine catches up from it, or rebuilds a state
//! whose checkpoint does not match), the log, the key store, the access log. Keys are copied
//! after the log, so every person the copied log seals has their key in the copy (a key made
//! later is one more, unused). An erasure that runs between the two copies leaves the copy with
//! the person's index entry but no key: the restored ledger refuses that ref until the erasure
//! is run again, which is what the ledger does after an interrupted erasure — a backup never
//! brings an erased person back.
//!
//! What is not copied, on purpose: the master key (it opens the key store; a backup holding
//! both would hold every person's ref) and the signing key (it signs digests in the ledger's
//! name). Both are kept apart from the log and its backups; the manifest names them.
//!
//! A backup is a directory holding the copies and `manifest.json` (`FORMAT`): the log's head,
//! the access log's head, how many people have keys and how many were erased, and each file's
//! size and SHA-256. [`check`] verifies one: the files' hashes, the log's chain and Merkle
//! tree up to the recorded head, the access log's chain, and that each person the log seals has
//! a key in the copy that opens their sealed ref (or was erased).

use super::{verify, AccessLog, VerifyError};
use crate::privacy::{open_sealed, sealed_person_id, sealed_ref_in, KeyState, KeyStore, MasterKey};
use crate::store::{EventStore, SqliteStore, StoreError, SystemClock};
use crate::support::sqlite;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The manifest's `format`.
pub const FORMAT: &str = "campaign-ledger backup 1";
/// The manifest's file name in a backup directory.
pub const MANIFEST: &str = "manifest.json";

/// A ledger's files (where to copy from, or where to restore to).
#[derive(Debug, Clone)]
pub struct LedgerFiles {
    /// The log (`ledger.db`).
    pub log: PathBuf,
    /// The projections' saved states (a cache).
    pub projections: PathBuf,
    /// The key store of person keys.
    pub keys: PathBuf,
    /// The access log of person-level reads.
    pub access_log: PathBuf,
}

/// One copied file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackedUpFile {
    /// `log`, `projections`, `keys` or `access_log`.
    pub role: String,
    /// Its name in the backup directory.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of its bytes (hex).
    pub sha256: String,
}

/// A secret the backup does not hold, and where it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptApart {
    /// What it is.
    pub what: String,
    /// Where the ledger reads it.
    pub at: String,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// When the backup was taken (UTC, RFC 3339).
    pub created_at: String,
    /// The copied log's head position.
    pub position: u64,
    /// The copied log's head hash (hex).
    pub hash: String,
    /// The copied access log's entries.
    pub access_log_size: u64,
    /// Its last entry's hash (hex).
    pub access_log_hash: String,
    /// People the copied log seals whose key is in the copy.
    pub persons_with_keys: u64,
    /// People the copied log seals whose key was destroyed (erased).
    pub persons_erased: u64,
    /// The copies.
    pub files: Vec<BackedUpFile>,
    /// Secrets not copied (keep them apart from the log and its backups).
    pub kept_apart: Vec<KeptApart>,
}

/// Why a backup, its check or a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Bad arguments or a backup directory that is not usable (the message says what to do).
    #[error("{0}")]
    Usage(String),
    /// A file could not be read, copied or written.
    #[error("{0}")]
    Io(String),
    /// The copy is not what was copied: a hash, the chain or a key does not check.
    #[error("the backup does not check: {0}")]
    Damaged(String),
    /// The log or key store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The files in copy order, with their roles and names in the backup.
fn plan(files: &LedgerFiles) -> [(&'static str, &'static str, &Path); 4] {
    let paths = [
        files.projections.as_path(),
        files.log.as_path(),
        files.keys.as_path(),
        files.access_log.as_path(),
    ];
    std::array::from_fn(|i| (FILES[i].0, FILES[i].1, paths[i]))
}

/// Each file's role and its name in a backup, in copy order.
const FILES: [(&str, &str); 4] = [
    ("projections", "ledger.projections.db"),
    ("log", "ledger.db"),
    ("keys", "ledger.keys.db"),
    ("access_log", "ledger.access.db"),
];

/// Copies the ledger's files into `to` (a new or empty directory) while it may be written,
/// writes the manifest, then checks the copy ([`check`]). Files that do not exist (no key
/// store on a ledger without people, no access log yet) are left out. `progress(role, done,
/// total)` follows the copy, in pages.
pub fn backup(
    files: &LedgerFiles,
    to: &Path,
    master: Option<&MasterKey>,
    kept_apart: Vec<KeptApart>,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<Manifest, BackupError> {
    if !files.log.exists() {
        return Err(BackupError::Usage(format!(
            "there is no ledger at {}: name it with --store sqlite:PATH",
            files.log.display()
        )));
    }
    prepare_dir(to)?;
    let mut copied = Vec::new();
    for (role, name, source) in plan(files) {
        if !source.exists() {
            continue;
        }
        let dest = to.join(name);
        sqlite::backup(source, &dest, &mut |done, total| {
            progress(role, done, total)
        })
        .map_err(|e| {
            BackupError::Io(format!(
                "cannot copy {} to {}: {e}",
                source.display(),
                dest.display()
            ))
        })?;
        copied.push(describe(role, name, &dest)?);
    }
    let facts = inspect(to, &copied, master, &mut |_| {})?;
    let manifest = Manifest {
        format: FORMAT.into(),
        created_at: crate::store::format_recorded_at(chrono::Utc::now()),
        position: facts.position,
        hash: facts.hash,
        access_log_size: facts.access.0,
        access_log_hash: facts.access.1,
        persons_with_keys: facts.persons.0,
        persons_erased: facts.persons.1,
        files: copied,
        kept_apart,
    };
    let text = serde_json::to_string_pretty(&manifest).expect("a manifest serializes") + "\n";
    write_synced(&to.join(MANIFEST), text.as_bytes())?;
    Ok(manifest)
}

/// Checks a backup directory (see the module's doc); returns its manifest. `progress` gets
/// the number of events whose chain was checked.
pub fn check(
    dir: &Path,
    master: Option<&MasterKey>,
    progress: &mut dyn FnMut(u64),
) -> Result<Manifest, BackupError> {
    let manifest = read_manifest(dir)?;
    for f in &manifest.files {
        let now = describe(&f.role, &f.name, &dir.join(&f.name))?;
        if now.sha256 != f.sha256 || now.bytes != f.bytes {
            return Err(BackupError::Damaged(format!(
                "{} is not the file the manifest describes ({} bytes, SHA-256 {}; the manifest says {} bytes, {})",
                f.name, now.bytes, now.sha256, f.bytes, f.sha256
            )));
        }
    }
    let facts = inspect(dir, &manifest.files, master, progress)?;
    if facts.position != manifest.position || facts.hash != manifest.hash {
        return Err(BackupError::Damaged(format!(
            "the log's copy ends at position {} ({}), the manifest says {} ({})",
            facts.position, facts.hash, manifest.position, manifest.hash
        )));
    }
    if facts.access != (manifest.access_log_size, manifest.access_log_hash.clone()) {
        return Err(BackupError::Damaged(format!(
            "the access log's copy ends at entry {}, the manifest says {}",
            facts.access.0, manifest.access_log_size
        )));
    }
    if facts.persons != (manifest.persons_with_keys, manifest.persons_erased) {
        return Err(BackupError::Damaged(format!(
            "the copy has keys for {} people and {} erased, the manifest says {} and {}",
            facts.persons.0, facts.persons.1, manifest.persons_with_keys, manifest.persons_erased
        )));
    }
    Ok(manifest)
}

/// What a backup's files say, checked.
struct Facts {
    position: u64,
    hash: String,
    access: (u64, String),
    persons: (u64, u64),
}

/// Verifies the copies in `dir`: the log's chain and tree, the access log's chain, the keys.
/// The checks open copies of the copies in a scratch directory: opening a SQLite file can
/// write to it (its WAL, the key store's meta), and a backup is never written to.
fn inspect(
    dir: &Path,
    files: &[BackedUpFile],
    master: Option<&MasterKey>,
    progress: &mut dyn FnMut(u64),
) -> Result<Facts, BackupError> {
    let scratch = Scratch::new()?;
    for f in files {
        std::fs::copy(dir.join(&f.name), scratch.0.join(&f.name)).map_err(|e| {
            BackupError::Io(format!(
                "cannot copy {} to {}: {e}",
                f.name,
                scratch.0.display()
            ))
        })?;
    }
    let log = open_log(&scratch.0.join("ledger.db"))?;
    let verified = verify(&log, progress).map_err(|e| match e {
        VerifyError::Store(s) => BackupError::Store(s),
        other => BackupError::Damaged(format!("the log's copy: {other}")),
    })?;
    Ok(Facts {
        position: verified.position,
        hash: verified.hash,
        access: access_head(&scratch.0)?,
        persons: check_keys(&log, &scratch.0, master)?,
    })
}

/// A directory of its own under the system's temporary directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch, BackupError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "campaign-ledger-backup-check-{}-{nanos}",
            std::process::id()
        ));
        // 0700: the copies checked there hold health data.
        crate::support::files::private_dir_all(&dir).map_err(|e| {
            BackupError::Io(format!(
                "cannot make a scratch directory {}: {e}",
                dir.display()
            ))
        })?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Brings a new ledger at `files` to the state of the backup in `from`: checks the backup,
/// copies each file to its place (none of which may exist), then checks the restored ledger.
pub fn restore(
    from: &Path,
    files: &LedgerFiles,
    master: Option<&MasterKey>,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<Manifest, BackupError> {
    let manifest = check(from, master, &mut |_| {})?;
    let targets = plan(files);
    for (_, _, dest) in &targets {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = dest.as_os_str().to_owned();
            p.push(suffix);
            if Path::new(&p).exists() {
                return Err(BackupError::Usage(format!(
                    "{} already exists: restore makes a new ledger and never overwrites one. Restore into an empty directory \
                     (--store sqlite:DIR/ledger.db), or move the old files away first",
                    Path::new(&p).display()
                )));
            }
        }
    }
    for (role, name, dest) in targets {
        if !manifest.files.iter().any(|f| f.name == name) {
            continue;
        }
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::support::files::private_dir_all(dir)
                .map_err(|e| BackupError::Io(format!("cannot create {}: {e}", dir.display())))?;
        }
        copy_synced(&from.join(name), dest, &mut |done, total| {
            progress(role, done, total)
        })
        .map_err(|e| {
            BackupError::Io(format!("cannot restore {name} to {}: {e}", dest.display()))
        })?;
    }
    let log = open_log(&files.log)?;
    let head = log.head()?;
    if head.position != manifest.position || hex::encode(head.hash) != manifest.hash {
        return Err(BackupError::Damaged(format!(
            "the restored log ends at {}, the backup's at {}",
            head.position, manifest.position
        )));
    }
    Ok(manifest)
}

/// The manifest of a backup directory.
pub fn read_manifest(dir: &Path) -> Result<Manifest, BackupError> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        BackupError::Usage(format!(
            "{} cannot be read ({e}): --from must name a directory written by `campaign-ledger backup`",
            path.display()
        ))
    })?;
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| {
        BackupError::Damaged(format!("{} is not a backup manifest: {e}", path.display()))
    })?;
    if manifest.format != FORMAT {
        return Err(BackupError::Usage(format!(
            "{} is a {:?} manifest; this build reads {FORMAT:?}",
            path.display(),
            manifest.format
        )));
    }
    if !manifest.files.iter().any(|f| f.role == "log") {
        return Err(BackupError::Damaged(format!(
            "{} lists no log",
            path.display()
        )));
    }
    for f in &manifest.files {
        if !FILES.iter().any(|(_, name)| *name == f.name) {
            return Err(BackupError::Damaged(format!(
                "{} lists a file {:?} that no backup holds",
                path.display(),
                f.name
            )));
        }
    }
    Ok(manifest)
}

/// A new directory, or an empty one.
fn prepare_dir(to: &Path) -> Result<(), BackupError> {
    match std::fs::read_dir(to) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BackupError::Usage(format!(
                    "{} is not empty: a backup goes into a new or empty directory (name one per backup, for example with the date)",
                    to.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::support::files::private_dir_all(to)
                .map_err(|e| BackupError::Io(format!("cannot create {}: {e}", to.display())))
        }
        Err(e) => Err(BackupError::Io(format!("cannot use {}: {e}", to.display()))),
    }
}

fn describe(role: &str, name: &str, path: &Path) -> Result<BackedUpFile, BackupError> {
    let read_error =
        |e: std::io::Error| BackupError::Damaged(format!("{name} cannot be read: {e}"));
    let mut file = std::fs::File::open(path).map_err(read_error)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(read_error)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok(BackedUpFile {
        role: role.into(),
        name: name.into(),
        bytes,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// Copies a file (the backup's files are whole SQLite files, written back from their WAL),
/// then makes it durable. `progress` in bytes.
fn copy_synced(from: &Path, to: &Path, progress: &mut dyn FnMut(u64, u64)) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut src = std::fs::File::open(from)?;
    let total = src.metadata()?.len();
    let mut dst = crate::support::files::private_options()
        .write(true)
        .create_new(true)
        .open(to)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        dst.write_all(&buf[..n])?;
        done += n as u64;
        progress(done, total);
    }
    dst.sync_all()
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    use std::io::Write as _;
    let mut f = crate::support::files::private_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| BackupError::Io(format!("cannot write {}: {e}", path.display())))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| BackupError::Io(format!("cannot write {}: {e}", path.display())))
}

fn open_log(path: &Path) -> Result<SqliteStore, BackupError> {
    Ok(SqliteStore::open(path, Arc::new(SystemClock))?)
}

/// The access log's head in `dir` (0 and zeros when it has none), its chain checked.
fn access_head(dir: &Path) -> Result<(u64, String), BackupError> {
    let path = dir.join("ledger.access.db");
    if !path.exists() {
        return Ok((0, hex::encode([0u8; 32])));
    }
    let log = AccessLog::open(&path)?;
    match log.verify()? {
        Ok(head) => Ok((head.size, head.hash)),
        Err(b) => Err(BackupError::Damaged(format!(
            "the access log's chain breaks at entry {}: {}",
            b.id, b.reason
        ))),
    }
}

/// People the log in `dir` seals: how many have a key in the key store there that opens their
/// sealed ref, and how many were erased. A person without a key, or whose key does not open
/// their ref, is an error.
fn check_keys(
    log: &dyn EventStore,
    dir: &Path,
    master: Option<&MasterKey>,
) -> Result<(u64, u64), BackupError> {
    let path = dir.join("ledger.keys.db");
    // Whether the log seals anyone at all (the scan stops at the first who is).
    let mut sealed = false;
    log.scan_data(0, log.head_position()?, &mut |e| {
        sealed = sealed_ref_in(e.data).and_then(sealed_person_id).is_some();
        !sealed
    })?;
    if !sealed {
        return Ok((0, 0));
    }
    if !path.exists() {
        return Err(BackupError::Damaged(
            "the log seals person refs but the backup holds no key store".into(),
        ));
    }
    let Some(master) = master else {
        return Err(BackupError::Usage(
            "the key store's check needs the master key (LEDGER_MASTER_KEY or --master-key)".into(),
        ));
    };
    let keys = KeyStore::open(&path, master, false)?;
    let mut seen = std::collections::HashSet::new();
    let (mut with_keys, mut erased) = (0u64, 0u64);
    let mut failed: Option<BackupError> = None;
    log.scan_data(0, log.head_position()?, &mut |e| {
        let Some(value) = sealed_ref_in(e.data) else {
            return true;
        };
        let Some(id) = sealed_person_id(value) else {
            return true;
        };
        if !seen.insert(id.to_string()) {
            return true;
        }
        let problem = match keys.state(id) {
            Ok(KeyState::Present(k)) if open_sealed(&k, value).is_some() => {
                with_keys += 1;
                None
            }
            Ok(KeyState::Present(_)) => Some(BackupError::Damaged(format!(
                "the key of person {id} does not open their ref at position {}",
                e.position
            ))),
            Ok(KeyState::Erased(_)) => {
                erased += 1;
                None
            }
            Ok(KeyState::Unknown) => Some(BackupError::Damaged(format!(
                "the key store holds no key for person {id}, sealed at position {}",
                e.position
            ))),
            Err(err) => Some(err.into()),
        };
        match problem {
            Some(p) => {
                failed = Some(p);
                false
            }
            None => true,
        }
    })?;
    match failed {
        Some(e) => Err(e),
        None => Ok((with_keys, erased)),
    }
}
