//! The tokens a running server checks, kept in step with the token file: reloaded when the
//! file changes (its size, modification time or inode: an editor's save or `auth`'s atomic
//! replace) and on demand (SIGHUP). A file that no longer reads or checks is not taken: the
//! tokens in force stay, and the reason is returned for the log.

use super::tokens::Auth;
use crate::domain::Reference;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

/// What identifies one version of the file, cheaply (one `stat`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
    changed: i64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        len: m.len(),
        modified: m.modified().ok(),
        inode: m.ino(),
        changed: m.ctime_nsec() + m.ctime() * 1_000_000_000,
    })
}

/// The tokens in force, and where they come from.
#[derive(Debug)]
pub struct LiveTokens {
    source: Option<(PathBuf, Reference)>,
    current: RwLock<Arc<Auth>>,
    seen: Mutex<Option<Stamp>>,
}

impl LiveTokens {
    /// Tokens that never change (tests, benchmarks, embedding).
    pub fn fixed(auth: Auth) -> LiveTokens {
        LiveTokens {
            source: None,
            current: RwLock::new(Arc::new(auth)),
            seen: Mutex::new(None),
        }
    }

    /// Loads the token file, to be followed by [`LiveTokens::reload_if_changed`] and
    /// [`LiveTokens::reload`].
    pub fn watch(path: &Path, reference: Reference) -> Result<LiveTokens, String> {
        let seen = stamp(path);
        let auth = Auth::load(path, &reference)?;
        Ok(LiveTokens {
            source: Some((path.to_path_buf(), reference)),
            current: RwLock::new(Arc::new(auth)),
            seen: Mutex::new(seen),
        })
    }

    /// The file followed, if any.
    pub fn path(&self) -> Option<&Path> {
        self.source.as_ref().map(|(p, _)| p.as_path())
    }

    /// The tokens in force now.
    pub fn current(&self) -> Arc<Auth> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Reads the file again whatever its stamp. `Ok(n)`: now in force, `n` tokens listed;
    /// `Err`: why not (the tokens in force stay).
    pub fn reload(&self) -> Result<usize, String> {
        let Some((path, reference)) = &self.source else {
            return Ok(self.current().len());
        };
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        // The stamp is taken before reading: a change made while reading is seen next time.
        *seen = stamp(path);
        let auth = Auth::load(path, reference)?;
        let n = auth.len();
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(auth);
        Ok(n)
    }

    /// Reloads when the file changed since it was last read: `Ok(None)` when it did not.
    pub fn reload_if_changed(&self) -> Result<Option<usize>, String> {
        let Some((path, _)) = &self.source else {
            return Ok(None);
        };
        let now = stamp(path);
        if *self.seen.lock().unwrap_or_else(|e| e.into_inner()) == now {
            return Ok(None);
        }
        self.reload().map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{add_token, revoke_token, Role, TokenEntry};
    use chrono::Utc;

    #[test]
    fn a_change_to_the_file_is_taken_and_a_broken_file_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let r = Reference::builtin();
        let entry = |id: &str| TokenEntry {
            id: id.into(),
            role: Role::Auditor,
            directorates: vec![],
            partner_centres: vec![],
            sha256: String::new(),
            expires_at: None,
            revoked_at: None,
            previous: vec![],
        };
        let t = add_token(&path, entry("a"), &r).unwrap();
        let live = LiveTokens::watch(&path, r.clone()).unwrap();
        let bearer = format!("Bearer {t}");
        assert!(live.current().check(Some(&bearer), Utc::now()).is_ok());
        assert_eq!(live.reload_if_changed(), Ok(None));
        revoke_token(&path, "a", Utc::now(), &r).unwrap();
        assert_eq!(live.reload_if_changed(), Ok(Some(1)));
        assert!(live.current().check(Some(&bearer), Utc::now()).is_err());
        // A file broken by hand is not taken: the tokens in force stay.
        let t2 = add_token(&path, entry("b"), &r).unwrap();
        assert_eq!(live.reload_if_changed(), Ok(Some(2)));
        std::fs::write(&path, "{\"tokens\": [").unwrap();
        let err = live.reload_if_changed().unwrap_err();
        assert!(err.contains("not a token file"), "{err}");
        assert!(live
            .current()
            .check(Some(&format!("Bearer {t2}")), Utc::now())
            .is_ok());
        // Not retried until it changes again.
        assert_eq!(live.reload_if_changed(), Ok(None));
    }
}
