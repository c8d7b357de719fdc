//! What an adversary holding part of the data would look for: a person's ref, its SHA-256, and
//! the SHA-256 of a command's canonical JSON (the version-1 content hash, from which the ref
//! came back by trying every candidate of a small space). `find` says which of them a set of
//! bytes holds, as text (hex, either case) or raw.

use campaign_ledger::domain::CommandEnvelope;
use sha2::{Digest, Sha256};
use std::path::Path;

/// The needles, each with a name for the failure message.
pub struct Needles(Vec<(String, Vec<u8>)>);

impl Needles {
    /// The needles of `refs` and of the commands (JSON lines) that name them.
    pub fn new(refs: &[&str], commands: &[String]) -> Needles {
        let mut all = Vec::new();
        let mut hashed = |name: String, h: [u8; 32]| {
            all.push((format!("{name} (hex)"), hex::encode(h).into_bytes()));
            all.push((format!("{name} (HEX)"), hex::encode_upper(h).into_bytes()));
            all.push((format!("{name} (raw)"), h.to_vec()));
        };
        for r in refs {
            hashed(format!("SHA-256 of the ref {r}"), Sha256::digest(r).into());
        }
        for c in commands {
            let e = CommandEnvelope::parse(c).unwrap();
            hashed(
                format!("SHA-256 of the canonical JSON of command {}", e.command_id),
                Sha256::digest(e.content_bytes()).into(),
            );
        }
        for r in refs {
            all.push((format!("the ref {r}"), r.as_bytes().to_vec()));
        }
        Needles(all)
    }

    /// The names of the needles found in `bytes`.
    pub fn find(&self, bytes: &[u8]) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(_, n)| bytes.windows(n.len()).any(|w| w == n.as_slice()))
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// Panics naming each needle found in `bytes` (`what` says where they were).
    pub fn assert_absent(&self, what: &str, bytes: &[u8]) {
        let found = self.find(bytes);
        assert!(found.is_empty(), "{what} holds {found:?}");
    }

    /// `assert_absent` for every file under `dir` (recursively), skipping the names `skip`.
    pub fn assert_absent_in_dir(&self, dir: &Path, skip: &[&str]) -> usize {
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if skip.contains(&name.as_str()) {
                continue;
            }
            if path.is_dir() {
                seen += self.assert_absent_in_dir(&path, skip);
            } else if let Ok(bytes) = std::fs::read(&path) {
                self.assert_absent(&path.display().to_string(), &bytes);
                seen += 1;
            }
        }
        seen
    }
}
