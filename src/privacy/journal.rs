//! The erasure journal: one line per erasure (the person's pseudonym, when, and the ledger's
//! id), appended and synced before the person's key is destroyed, and kept apart from the
//! backups (`<store>.erasures.jsonl` by default, `--erasure-journal` on another volume in
//! production). A backup taken before an erasure still holds the person's key; `restore`
//! re-applies the journal before the restored ledger opens, so an erased person stays erased.
//! It holds no ref and no key: pseudonyms and times only.

use crate::store::StoreError;
use serde::{Deserialize, Serialize};
use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};

/// One erasure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// The ledger's id: the hash of its first event (hex).
    pub ledger: String,
    /// The erased person's pseudonym.
    pub person_id: String,
    /// When they were erased (UTC, RFC 3339).
    pub erased_at: String,
}

/// The erasure journal of a ledger.
#[derive(Debug, Clone)]
pub struct ErasureJournal {
    path: PathBuf,
}

fn unavailable(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("erasure journal {}: {e}", path.display()).into())
}

impl ErasureJournal {
    /// The journal at `path`, created empty (0600) when missing.
    pub fn open(path: &Path) -> Result<ErasureJournal, StoreError> {
        crate::support::files::ensure_private_file(path).map_err(|e| unavailable(path, e))?;
        Ok(ErasureJournal {
            path: path.to_path_buf(),
        })
    }

    /// The journal at `path`, which must exist (a restore reads it).
    pub fn existing(path: &Path) -> Option<ErasureJournal> {
        path.is_file().then(|| ErasureJournal {
            path: path.to_path_buf(),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends an erasure, durably (the line is on disk when this returns).
    pub fn record(&self, entry: &JournalEntry) -> Result<(), StoreError> {
        let mut f = crate::support::files::private_options()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| unavailable(&self.path, e))?;
        let line = serde_json::to_string(entry).expect("entries serialize") + "\n";
        f.write_all(line.as_bytes())
            .and_then(|_| f.sync_data())
            .map_err(|e| unavailable(&self.path, e))
    }

    /// Every erasure, in the order recorded.
    pub fn entries(&self) -> Result<Vec<JournalEntry>, StoreError> {
        let f = std::fs::File::open(&self.path).map_err(|e| unavailable(&self.path, e))?;
        let mut out = Vec::new();
        for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
            let line = line.map_err(|e| unavailable(&self.path, e))?;
            if line.trim().is_empty() {
                continue;
            }
            let entry: JournalEntry = serde_json::from_str(&line).map_err(|e| {
                StoreError::Corrupt(
                    format!(
                        "erasure journal {}: line {} is not an erasure ({e}); restore it from its copy",
                        self.path.display(),
                        i + 1
                    )
                    .into(),
                )
            })?;
            out.push(entry);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erasures_are_appended_and_read_back_in_order_and_a_damaged_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j/erasures.jsonl");
        let j = ErasureJournal::open(&path).unwrap();
        assert!(j.entries().unwrap().is_empty());
        let e = |p: &str| JournalEntry {
            ledger: "aa".into(),
            person_id: p.into(),
            erased_at: "2021-12-01T10:00:00.000000Z".into(),
        };
        j.record(&e("01")).unwrap();
        j.record(&e("02")).unwrap();
        assert_eq!(j.entries().unwrap(), vec![e("01"), e("02")]);
        std::fs::write(&path, "{\"ledger\":\"aa\"}\n").unwrap();
        let err = j.entries().unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        assert!(ErasureJournal::existing(&dir.path().join("none")).is_none());
    }
}
