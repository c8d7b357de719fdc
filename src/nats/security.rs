//! How this process proves who it is to NATS and checks who NATS is: a credentials file (JWT
//! and nkey seed, NATS accounts in operator mode), a user and password, or an nkey seed; a CA to
//! trust for TLS and a client certificate and key (mutual TLS). One identity per process, set
//! once by the command line ([`set`]) before any connection; every NATS connection of the
//! process (relay, digests, NATS-fed projections, the JetStream log) uses it
//! ([`connect_options`]).
//!
//! Files are checked when set (they exist and read), so a typo is said at once rather than as a
//! TLS or authentication failure later. A connection that NATS refuses says which identity was
//! refused ([`refusal`]) — never a password or a seed.

use super::NatsError;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The identity and TLS settings of this process's NATS connections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Security {
    /// A credentials file (`.creds`: user JWT and nkey seed).
    pub creds: Option<PathBuf>,
    /// A user name (with `password`).
    pub user: Option<String>,
    /// Its password.
    pub password: Option<String>,
    /// A file holding an nkey seed (`SU…`).
    pub nkey_seed: Option<PathBuf>,
    /// CA certificates (PEM) to trust: TLS is then required.
    pub tls_ca: Option<PathBuf>,
    /// A client certificate (PEM), with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    pub tls_key: Option<PathBuf>,
}

static SECURITY: OnceLock<Security> = OnceLock::new();

/// Sets this process's NATS identity, after checking it; only the first call counts.
pub fn set(security: Security) -> Result<(), NatsError> {
    security.check()?;
    let _ = SECURITY.set(security);
    Ok(())
}

/// This process's NATS identity (none set: anonymous, TLS only if the URL says `tls://`).
pub fn current() -> &'static Security {
    SECURITY.get_or_init(Security::default)
}

/// Connection options carrying this process's identity and TLS settings.
pub fn connect_options() -> Result<async_nats::ConnectOptions, NatsError> {
    current().options()
}

fn bad(message: String) -> NatsError {
    NatsError::Settings(message)
}

fn readable(flag: &str, path: &PathBuf) -> Result<String, NatsError> {
    std::fs::read_to_string(path)
        .map_err(|e| bad(format!("{flag} {}: cannot read it ({e})", path.display())))
}

impl Security {
    /// Whether nothing is set.
    pub fn is_anonymous(&self) -> bool {
        *self == Security::default()
    }

    /// Checks that the settings go together and their files read.
    pub fn check(&self) -> Result<(), NatsError> {
        let identities = [
            self.creds.is_some(),
            self.user.is_some() || self.password.is_some(),
            self.nkey_seed.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if identities > 1 {
            return Err(bad(
                "--nats-creds, --nats-user/--nats-password and --nats-nkey-seed are three ways to say who this process is: give one"
                    .into(),
            ));
        }
        if self.user.is_some() != self.password.is_some() {
            return Err(bad(
                "--nats-user and --nats-password go together (the password may come from LEDGER_NATS_PASSWORD)".into(),
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(bad(
                "--nats-tls-cert and --nats-tls-key go together: the client certificate and its key"
                    .into(),
            ));
        }
        if let Some(p) = &self.creds {
            let text = readable("--nats-creds", p)?;
            if !text.contains("BEGIN NATS USER JWT") || !text.contains("BEGIN USER NKEY SEED") {
                return Err(bad(format!(
                    "--nats-creds {}: not a NATS credentials file (it holds a user JWT and an nkey seed, as the operator of the NATS accounts issues it)",
                    p.display()
                )));
            }
        }
        if let Some(p) = &self.nkey_seed {
            let seed = readable("--nats-nkey-seed", p)?;
            if !seed.trim().starts_with("SU") {
                return Err(bad(format!(
                    "--nats-nkey-seed {}: not a user nkey seed (one line starting with SU: the user nkey seed the NATS server's operator gave)",
                    p.display()
                )));
            }
        }
        for (flag, path) in [
            ("--nats-tls-ca", &self.tls_ca),
            ("--nats-tls-cert", &self.tls_cert),
            ("--nats-tls-key", &self.tls_key),
        ] {
            if let Some(p) = path {
                let pem = readable(flag, p)?;
                if !pem.contains("-----BEGIN ") {
                    return Err(bad(format!("{flag} {}: not a PEM file", p.display())));
                }
            }
        }
        Ok(())
    }

    /// Connection options with these settings.
    pub fn options(&self) -> Result<async_nats::ConnectOptions, NatsError> {
        let mut o = async_nats::ConnectOptions::new();
        if let Some(p) = &self.creds {
            o = o.credentials(&readable("--nats-creds", p)?).map_err(|e| {
                bad(format!(
                    "--nats-creds {}: not a NATS credentials file ({e})",
                    p.display()
                ))
            })?;
        }
        if let (Some(u), Some(pw)) = (&self.user, &self.password) {
            o = o.user_and_password(u.clone(), pw.clone());
        }
        if let Some(p) = &self.nkey_seed {
            o = o.nkey(readable("--nats-nkey-seed", p)?.trim().to_string());
        }
        if let Some(ca) = &self.tls_ca {
            o = o.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let (Some(c), Some(k)) = (&self.tls_cert, &self.tls_key) {
            o = o
                .add_client_certificate(c.clone(), k.clone())
                .require_tls(true);
        }
        Ok(o)
    }

    /// Who this process is to NATS, for messages: never a secret.
    pub fn identity(&self) -> String {
        if let Some(p) = &self.creds {
            format!("the credentials in {}", p.display())
        } else if let Some(u) = &self.user {
            format!("user {u:?}")
        } else if let Some(p) = &self.nkey_seed {
            format!("the nkey in {}", p.display())
        } else if self.tls_cert.is_some() {
            "the client certificate".into()
        } else {
            "no credentials (anonymous)".into()
        }
    }
}

/// What to tell the operator when NATS refused a connection or a publish: which identity, what
/// was refused, what to do. `None` for errors that are not refusals (the server unreachable).
pub fn refusal(error: &str) -> Option<String> {
    let lower = error.to_ascii_lowercase();
    let who = current().identity();
    if lower.contains("authorization violation") || lower.contains("authentication") {
        Some(format!(
            "NATS refused {who}: {error}. Check --nats-creds, --nats-user/--nats-password (LEDGER_NATS_PASSWORD) or --nats-nkey-seed against the server's accounts"
        ))
    } else if lower.contains("permissions violation") {
        Some(format!(
            "NATS refused what {who} asked: {error}. This identity lacks the permission; give the process an identity the server's accounts allow it (the relay publishes to ledger.v1.events.> and $JS.API.>; a consumer only reads)"
        ))
    } else if lower.contains("certificate") || lower.contains("tls") {
        Some(format!(
            "TLS with NATS failed for {who}: {error}. Check --nats-tls-ca (the CA that signed the server's certificate), the server name in --nats, and --nats-tls-cert/--nats-tls-key"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_do_not_go_together_or_do_not_read_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.pem");
        let not_pem = dir.path().join("x.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        for (s, says) in [
            (
                Security {
                    user: Some("a".into()),
                    ..Default::default()
                },
                "go together",
            ),
            (
                Security {
                    user: Some("a".into()),
                    password: Some("b".into()),
                    nkey_seed: Some(missing.clone()),
                    ..Default::default()
                },
                "give one",
            ),
            (
                Security {
                    tls_ca: Some(missing.clone()),
                    ..Default::default()
                },
                "cannot read it",
            ),
            (
                Security {
                    tls_ca: Some(not_pem.clone()),
                    ..Default::default()
                },
                "not a PEM file",
            ),
            (
                Security {
                    creds: Some(not_pem.clone()),
                    ..Default::default()
                },
                "not a NATS credentials file",
            ),
            (
                Security {
                    tls_cert: Some(not_pem.clone()),
                    ..Default::default()
                },
                "go together",
            ),
        ] {
            let e = s.check().unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
        assert!(Security::default().check().is_ok());
        assert!(refusal("authorization violation").is_some());
        assert!(refusal("connection refused").is_none());
    }
}
