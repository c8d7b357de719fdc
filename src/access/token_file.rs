//! The token file and a token's lifecycle: create, list, revoke, rotate.
//!
//! A token is never deleted from the file: its id is recorded in every event it caused
//! (`agent_ref`), so a revoked token stays listed with `revoked_at` and its id cannot be given
//! to another token. Rotation gives a token a new secret under the same id, role and scope; the
//! old secret may keep working for an overlap period (`previous`, each with its `valid_until`),
//! so that the clients using it can be changed one by one.
//!
//! Every change is checked as a whole against the reference data before the file is replaced
//! (atomically, mode 600): a change that would make the file unreadable is refused and the
//! file stays as it was. A running `serve` picks the change up within a second or on SIGHUP.

use chrono::{DateTime, FixedOffset, Utc};

use std::path::Path;

use super::tokens::{
    hash_token, new_token, Auth, PreviousSecret, TokenEntry, TokenFile, TokenStatus,
};
use crate::domain::Reference;

impl TokenFile {
    /// Reads a token file; `None` when there is none at `path`.
    pub fn read(path: &Path) -> Result<Option<TokenFile>, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(format!(
                    "cannot read the token file {}: {e}",
                    path.display()
                ))
            }
        };
        serde_json::from_str(&text).map(Some).map_err(|e| {
            format!(
                "{} is not a token file ({e}); expected {{\"tokens\": [{{\"id\", \"role\", \"sha256\", …}}]}}",
                path.display()
            )
        })
    }

    /// Reads an existing token file.
    fn read_existing(path: &Path) -> Result<TokenFile, String> {
        TokenFile::read(path)?.ok_or_else(|| {
            format!(
                "there is no token file {}; create one with `campaign-ledger auth token --file {} --id NAME --role ROLE`",
                path.display(),
                path.display()
            )
        })
    }

    /// Checks the whole file, then replaces it atomically (mode 600).
    fn write(&self, path: &Path, reference: &Reference) -> Result<(), String> {
        Auth::from_file(self.clone(), reference)?;
        crate::support::files::write_private(
            path,
            &(serde_json::to_string_pretty(self).map_err(|e| e.to_string())? + "\n"),
        )
        .map_err(|e| format!("cannot write the token file {}: {e}", path.display()))
    }

    fn find_mut(&mut self, id: &str, path: &Path) -> Result<&mut TokenEntry, String> {
        let known = self
            .tokens
            .iter()
            .map(|t| t.id.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        self.tokens
            .iter_mut()
            .find(|t| t.id == id)
            .ok_or_else(|| {
                format!(
                    "{} has no token {id:?}; its tokens: {known} (`campaign-ledger auth list --file {}`)",
                    path.display(),
                    path.display()
                )
            })
    }
}

/// A time as the file keeps it: whole seconds, UTC.
impl Auth {
    /// Reads and checks a token file.
    pub fn load(path: &Path, reference: &Reference) -> Result<Auth, String> {
        let file = TokenFile::read(path)?
            .ok_or_else(|| {
                format!(
                    "cannot read the token file {}: there is none; create it with `campaign-ledger auth token --file {} --id NAME --role ROLE`",
                    path.display(),
                    path.display()
                )
            })?;
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(path)
                .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?
                .permissions()
                .mode();
            if mode & 0o002 != 0 {
                return Err(format!(
                    "{} can be written by any user of this machine, who could add a token: chmod o-w it (or 600)",
                    path.display()
                ));
            }
        }
        if file.tokens.is_empty() {
            return Err(format!(
                "{} holds no token, so nobody could use the API; add one with `campaign-ledger auth token --file {}`",
                path.display(),
                path.display()
            ));
        }
        Auth::from_file(file, reference).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// A time as the file keeps it: whole seconds, UTC.
fn now_fixed(now: DateTime<Utc>) -> DateTime<FixedOffset> {
    use chrono::SubsecRound as _;
    now.trunc_subsecs(0).fixed_offset()
}

/// Adds a token to a token file (created when missing) and returns the token in clear, the
/// only time it is ever shown.
pub fn add_token(
    path: &Path,
    mut entry: TokenEntry,
    reference: &Reference,
) -> Result<String, String> {
    let mut file = TokenFile::read(path)?.unwrap_or_default();
    if let Some(at) = entry.expires_at {
        if at <= Utc::now() {
            return Err(format!(
                "--expires-at {} is in the past: the token would never work",
                at.to_rfc3339()
            ));
        }
    }
    if let Some(old) = file.tokens.iter().find(|t| t.id == entry.id) {
        return Err(format!(
            "{} already has a token {:?} ({}); ids are never reused, since events record them: choose another id, or `campaign-ledger auth rotate {}` for a new secret",
            path.display(),
            entry.id,
            old.status(Utc::now()).as_str(),
            entry.id
        ));
    }
    let token = new_token()?;
    entry.sha256 = hash_token(&token);
    file.tokens.push(entry);
    file.write(path, reference)?;
    Ok(token)
}

/// Revokes a token: refused from now on, by a running server within seconds. Its entry stays
/// (its id is in the events it caused). Returns the revocation time.
pub fn revoke_token(
    path: &Path,
    id: &str,
    now: DateTime<Utc>,
    reference: &Reference,
) -> Result<DateTime<FixedOffset>, String> {
    let mut file = TokenFile::read_existing(path)?;
    let entry = file.find_mut(id, path)?;
    if let Some(at) = entry.revoked_at {
        return Err(format!(
            "token {id:?} was already revoked at {}",
            at.to_rfc3339()
        ));
    }
    let at = now_fixed(now);
    entry.revoked_at = Some(at);
    file.write(path, reference)?;
    Ok(at)
}

/// Gives a token a new secret (same id, role, scope and expiry) and returns it in clear, the
/// only time it is shown. The old secret keeps working for `overlap` (none: refused at once,
/// as "replaced").
pub fn rotate_token(
    path: &Path,
    id: &str,
    overlap: std::time::Duration,
    now: DateTime<Utc>,
    reference: &Reference,
) -> Result<String, String> {
    let mut file = TokenFile::read_existing(path)?;
    let entry = file.find_mut(id, path)?;
    match entry.status(now) {
        TokenStatus::Active => {}
        status => {
            return Err(format!(
                "token {id:?} is {}: a new secret would not work; create a new token with another id (`campaign-ledger auth token`)",
                status.as_str()
            ))
        }
    }
    let overlap = chrono::Duration::from_std(overlap)
        .ok()
        .filter(|d| *d <= chrono::Duration::days(366))
        .ok_or("--overlap is at most a year: the old secret must stop working at some point")?;
    let token = new_token()?;
    let old = std::mem::replace(&mut entry.sha256, hash_token(&token));
    // A replaced secret stays listed (refused once its overlap ends, with a reason that says
    // so) for 30 days after it stopped working.
    entry
        .previous
        .retain(|p| p.valid_until > now - chrono::Duration::days(30));
    entry.previous.push(PreviousSecret {
        sha256: old,
        valid_until: now_fixed(now + overlap),
    });
    file.write(path, reference)?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Role;

    fn agent(id: &str) -> TokenEntry {
        TokenEntry {
            id: id.into(),
            role: Role::Agent,
            directorates: vec!["lyon".into()],
            partner_centres: vec![],
            sha256: String::new(),
            expires_at: None,
            revoked_at: None,
            previous: vec![],
        }
    }

    fn bearer(t: &str) -> String {
        format!("Bearer {t}")
    }

    #[test]
    fn revoked_tokens_are_refused_and_their_id_stays_taken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let r = Reference::builtin();
        let t = add_token(&path, agent("a"), &r).unwrap();
        let now = Utc::now();
        revoke_token(&path, "a", now, &r).unwrap();
        let auth = Auth::load(&path, &r).unwrap();
        let err = auth.check(Some(&bearer(&t)), now).unwrap_err();
        assert_eq!(err.code(), "revoked_token", "{err}");
        assert!(err.to_string().contains("revoked"), "{err}");
        let again = revoke_token(&path, "a", now, &r).unwrap_err();
        assert!(again.contains("already revoked"), "{again}");
        let reuse = add_token(&path, agent("a"), &r).unwrap_err();
        assert!(reuse.contains("never reused"), "{reuse}");
        let rotate = rotate_token(&path, "a", Default::default(), now, &r).unwrap_err();
        assert!(rotate.contains("is revoked"), "{rotate}");
        let unknown = revoke_token(&path, "b", now, &r).unwrap_err();
        assert!(
            unknown.contains("no token \"b\"") && unknown.contains("a"),
            "{unknown}"
        );
    }

    #[test]
    fn a_rotated_secret_works_only_during_its_overlap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let r = Reference::builtin();
        let old = add_token(&path, agent("a"), &r).unwrap();
        let now = Utc::now();
        let new = rotate_token(&path, "a", std::time::Duration::from_secs(3600), now, &r).unwrap();
        assert_ne!(old, new);
        let auth = Auth::load(&path, &r).unwrap();
        for t in [&old, &new] {
            let p = auth.check(Some(&bearer(t)), now).unwrap();
            assert_eq!((p.token_id.as_str(), p.role), ("a", Role::Agent));
        }
        let later = now + chrono::Duration::hours(2);
        assert!(auth.check(Some(&bearer(&new)), later).is_ok());
        let err = auth.check(Some(&bearer(&old)), later).unwrap_err();
        assert_eq!(err.code(), "rotated_token", "{err}");
        // Without an overlap the old secret is refused at once.
        let newer = rotate_token(&path, "a", Default::default(), now, &r).unwrap();
        let auth = Auth::load(&path, &r).unwrap();
        assert!(auth.check(Some(&bearer(&newer)), now).is_ok());
        assert!(auth.check(Some(&bearer(&new)), now).is_err());
        // The first overlap still runs.
        assert!(auth.check(Some(&bearer(&old)), now).is_ok());
        let file = TokenFile::read(&path).unwrap().unwrap();
        assert_eq!(file.tokens[0].overlapping(now).count(), 1);
        assert!(rotate_token(
            &path,
            "a",
            std::time::Duration::from_secs(400 * 86400),
            now,
            &r
        )
        .unwrap_err()
        .contains("at most a year"));
    }

    #[test]
    fn fresh_tokens_differ_and_only_their_hash_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let t1 = add_token(
            &path,
            TokenEntry {
                role: Role::Auditor,
                directorates: vec![],
                ..agent("a")
            },
            &Reference::builtin(),
        )
        .unwrap();
        let t2 = add_token(
            &path,
            TokenEntry {
                role: Role::Admin,
                directorates: vec![],
                ..agent("b")
            },
            &Reference::builtin(),
        )
        .unwrap();
        assert_ne!(t1, t2);
        assert!(t1.starts_with("clt_") && t1.len() == 68);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&t1) && text.contains(&hash_token(&t1)));
        let auth = Auth::load(&path, &Reference::builtin()).unwrap();
        assert_eq!(auth.len(), 2);
        assert_eq!(
            auth.check(Some(&format!("Bearer {t2}")), Utc::now())
                .unwrap()
                .role,
            Role::Admin
        );
    }
}
