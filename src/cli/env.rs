//! What every subcommand opens: the store, the key store and master key, the projection engine, the
//! paths of the ledger's files, the business clock.

use super::args::*;
use anyhow::{anyhow, bail, Result};
use campaign_ledger::app::Ledger;
use campaign_ledger::domain::{Policy, Reference};
use campaign_ledger::projection::{db_path_for, load_definitions, Engine};
use campaign_ledger::store::{self, Actor, Clock, EventStore, ManualClock, SystemClock};
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};
use std::sync::Arc;

impl Cli {
    /// The NATS identity and TLS settings the flags give.
    pub fn nats_security(&self) -> campaign_ledger::nats::security::Security {
        campaign_ledger::nats::security::Security {
            creds: self.nats_creds.clone(),
            user: self.nats_user.clone(),
            password: self.nats_password.clone(),
            nkey_seed: self.nats_nkey_seed.clone(),
            tls_ca: self.nats_tls_ca.clone(),
            tls_cert: self.nats_tls_cert.clone(),
            tls_key: self.nats_tls_key.clone(),
        }
    }

    /// The key store's file.
    pub(super) fn key_store_path(&self) -> PathBuf {
        if let Some(p) = &self.key_store {
            return p.clone();
        }
        match self.store.strip_prefix("sqlite:") {
            Some(p) => Path::new(p).with_extension("keys.db"),
            None => PathBuf::from("ledger-data/nats-log.keys.db"),
        }
    }

    /// The master key file: `--master-key`, or `master.key` beside the store.
    pub(super) fn master_key_path(&self) -> PathBuf {
        self.master_key
            .clone()
            .unwrap_or_else(|| self.data_dir().join("master.key"))
    }

    /// Where the master key is read from, for messages: the environment variable when set,
    /// else the file's absolute path.
    pub(super) fn master_key_source(&self) -> String {
        match std::env::var_os("LEDGER_MASTER_KEY") {
            Some(_) => "LEDGER_MASTER_KEY".to_string(),
            None => absolute(&self.master_key_path()).display().to_string(),
        }
    }

    /// The master key: LEDGER_MASTER_KEY, or the key file (created when missing, if the key
    /// store is new too: `create`).
    pub(super) fn master_key(&self, create: bool) -> Result<campaign_ledger::privacy::MasterKey> {
        if let Ok(hex) = std::env::var("LEDGER_MASTER_KEY") {
            return campaign_ledger::privacy::MasterKey::from_hex(&hex)
                .map_err(|e| anyhow!("LEDGER_MASTER_KEY is not usable: {e}"));
        }
        let path = self.master_key_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => campaign_ledger::privacy::MasterKey::from_hex(&text)
                .map_err(|e| anyhow!("{} is not a master key: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => bail!(
                "the master key file {} is missing, and the key store {} was made with it: restore the file, \
                 or give the key with LEDGER_MASTER_KEY or --master-key",
                path.display(),
                self.key_store_path().display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = campaign_ledger::privacy::MasterKey::generate().map_err(|e| anyhow!(e))?;
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    campaign_ledger::support::files::private_dir_all(dir)?;
                }
                // Written whole under a name of its own, then linked into place: the link fails
                // if another process made the key first, and that key is used instead.
                let linked = campaign_ledger::support::files::create_private(&path, &(key.to_hex() + "\n"));
                match linked {
                    Ok(true) => {
                        eprintln!(
                            "note: master key created at {} (mode 0600): it opens the key store of person keys; back it up apart from the log",
                            path.display()
                        );
                        Ok(key)
                    }
                    Ok(false) => self.master_key(false),
                    Err(e) => Err(anyhow!(
                        "cannot write the master key {}: {e}",
                        path.display()
                    )),
                }
            }
            Err(e) => Err(anyhow!(
                "cannot read the master key {}: {e}",
                path.display()
            )),
        }
    }

    /// The erasure journal: `--erasure-journal`, or `<store>.erasures.jsonl` beside a SQLite
    /// store (`ledger-data/nats-log.erasures.jsonl` for a NATS log).
    pub(super) fn erasure_journal_path(&self) -> PathBuf {
        if let Some(p) = &self.erasure_journal {
            return p.clone();
        }
        match self.store.strip_prefix("sqlite:") {
            Some(p) => Path::new(p).with_extension("erasures.jsonl"),
            None => PathBuf::from("ledger-data/nats-log.erasures.jsonl"),
        }
    }

    /// The access log of person-level reads (beside the key store).
    pub(super) fn access_log_path(&self) -> PathBuf {
        let keys = self.key_store_path();
        let name = keys
            .file_name()
            .map(|n| n.to_string_lossy().replace(".keys.db", ".access.db"));
        match name {
            Some(n) if n.ends_with(".access.db") => keys.with_file_name(n),
            _ => keys.with_extension("access.db"),
        }
    }

    /// `--clock business` records commands at their business time (never going back along the
    /// log): it is for loading history into a ledger that has signed no checkpoint yet. After
    /// one, it would record new events as if before it (verifiers refuse an event recorded more
    /// than 5 s before a witnessed checkpoint it follows), so it is refused.
    pub(super) fn refuse_business_clock_after_checkpoint(&self) -> Result<()> {
        let dir = self.data_dir();
        let signed = dir.join("checkpoint.txt").exists()
            || std::fs::metadata(dir.join("digests.jsonl")).is_ok_and(|m| m.len() > 0);
        if signed {
            bail!(
                "this ledger has signed checkpoints (see {}): --clock business would record these commands as if before them, which auditors' verifiers refuse as backdated. It is for loading history into a ledger that has none yet; record these commands at today's time (without --clock business): their business dates stay theirs",
                dir.join("checkpoint.txt").display()
            );
        }
        Ok(())
    }

    /// Through what this command takes commands, as the access log names it.
    pub(super) fn channel(&self) -> &'static str {
        match self.command {
            Cmd::Serve { .. } => "POST /v1/commands",
            Cmd::Submit { .. } => "submit",
            Cmd::Demo { .. } => "demo",
            _ => "command line",
        }
    }

    /// Whether this command records or reveals person-level data (and so needs the key
    /// store and the master key). Reports, audits and exports do not.
    pub(super) fn needs_keys(&self) -> bool {
        matches!(
            self.command,
            Cmd::Demo { .. }
                | Cmd::Submit { .. }
                | Cmd::Serve { .. }
                | Cmd::ErasePerson { .. }
                | Cmd::Audit {
                    action: AuditCmd::Prove {
                        person: Some(_),
                        ..
                    },
                    ..
                }
        )
    }
}

/// A clock that shows the business time of the command being run, never going backwards.
pub(super) struct BusinessClock(pub(super) ManualClock);

impl Clock for BusinessClock {
    fn now(&self) -> DateTime<Utc> {
        self.0.now()
    }
}

pub(super) struct Env {
    pub(super) store: Arc<dyn EventStore>,
    /// The projection engine, or why its definitions could not be loaded: only the commands
    /// that read projections fail on a broken definition file.
    pub(super) engine: Result<Engine>,
    pub(super) ledger: Ledger,
    pub(super) business: Option<Arc<BusinessClock>>,
}

impl Env {
    pub(super) fn engine(&self) -> Result<&Engine> {
        self.engine.as_ref().map_err(|e| anyhow!("{e:#}"))
    }
}

impl Cli {
    /// The log filter when `RUST_LOG` is not set: a server logs at info (one access line per
    /// request, token-file reloads, the relay's outages and recoveries); every other command,
    /// `demo --serve` included (its terminal shows the banner), only warnings.
    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            Cmd::Serve { .. } | Cmd::Relay { .. } | Cmd::Project { .. } => {
                "warn,campaign_ledger=info,tower_http=info"
            }
            _ => "warn",
        }
    }

    /// Whether this run only prints (a report, a scenario, outcomes) and talks to no network
    /// peer: it may then die quietly of SIGPIPE when its reader goes away (`report … | head`),
    /// as Unix tools do. A process holding sockets (relay, serve, project, anything with
    /// NATS) must not: a write to a peer that vanished (a NATS server killed) would kill it
    /// without a word instead of returning an error it can retry.
    pub fn dies_on_sigpipe(&self) -> bool {
        self.nats.is_none()
            && !self.store.starts_with("nats://")
            && matches!(
                self.command,
                Cmd::Report { .. }
                    | Cmd::Findings { .. }
                    | Cmd::Scenario { .. }
                    | Cmd::Submit { .. }
                    | Cmd::Audit { .. }
                    | Cmd::Export { .. }
                    | Cmd::Projections { .. }
                    | Cmd::Openapi
                    | Cmd::Schemas { .. }
            )
    }

    /// The directory of the ledger's own files (signing key, demo tokens): the store file's
    /// directory, or `ledger-data` for a store that is not a file.
    pub(super) fn data_dir(&self) -> PathBuf {
        match self.store.strip_prefix("sqlite:") {
            Some(p) => Path::new(p)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf(),
            None => PathBuf::from("ledger-data"),
        }
    }

    /// The signing key's file: `--key`, or `signing.key` beside the store file.
    pub(super) fn key_path(&self, key: Option<&Path>) -> PathBuf {
        key.map_or_else(|| self.data_dir().join("signing.key"), Path::to_path_buf)
    }

    /// The NATS-fed projections' file (--projections-db).
    pub(super) fn nats_projections_path(&self) -> PathBuf {
        self.projections_db
            .clone()
            .unwrap_or_else(|| PathBuf::from("ledger-data/nats-projections.db"))
    }

    /// What reports read: the ledger and its projections, or with --nats the stream the relay
    /// feeds and the NATS-fed projections (--projections-db).
    pub(super) fn read_side(&self) -> Result<(Arc<dyn EventStore>, Engine)> {
        let Some(url) = &self.nats else {
            let env = self.open(false, false)?;
            let engine = env.engine?;
            return Ok((env.store, engine));
        };
        let source =
            campaign_ledger::bus::JetStreamSource::connect(url).map_err(|e| anyhow!("{e}"))?;
        let db = self.nats_projections_path();
        let defs =
            load_definitions(self.projection_dir().as_deref()).map_err(|e| anyhow!("{e}"))?;
        let engine =
            Engine::open(&db, defs, Policy::default().time_zone).map_err(|e| anyhow!("{e}"))?;
        Ok((Arc::new(source), engine))
    }

    pub(super) fn projection_dir(&self) -> Option<PathBuf> {
        match &self.projections {
            Some(p) => Some(p.clone()),
            None => Some(PathBuf::from("projections")).filter(|p| p.is_dir()),
        }
    }

    /// Opens the store, its projections and the command handler. Only commands that write
    /// (`demo`, `submit`) may create a new store; the others refuse a store that is not there.
    pub(super) fn open(&self, business_clock: bool, create: bool) -> Result<Env> {
        let sqlite = self.store.strip_prefix("sqlite:").filter(|p| !p.is_empty());
        let missing = sqlite.is_some_and(|p| !Path::new(p).exists());
        if let Some(p) = sqlite.filter(|_| missing && !create) {
            bail!(
                "there is no ledger at {p} (looked for {}); run this in the directory that holds it or name it with --store sqlite:PATH. \
                 `campaign-ledger demo`, `submit FILE` or `import` create one",
                absolute(Path::new(p)).display()
            );
        }
        let env = self.open_store(business_clock)?;
        if missing {
            self.say_created(sqlite.map(Path::new));
        }
        Ok(env)
    }

    /// `serve`'s open: never a new ledger unless `create` (`serve --create`), so that a server
    /// started in the wrong directory, or with a mistyped --store, says so instead of serving
    /// a new empty ledger (and making a new master key).
    pub(super) fn open_for_serve(&self, create: bool) -> Result<Env> {
        if create {
            return self.open(false, true);
        }
        if let Some(p) = self.store.strip_prefix("sqlite:").filter(|p| !p.is_empty()) {
            if !Path::new(p).exists() {
                bail!(
                    "there is no ledger at {p} (looked for {}): serve runs an existing ledger. Start it in the directory that holds \
                     the ledger or name it with --store sqlite:PATH; to start a new, empty ledger there, add --create",
                    absolute(Path::new(p)).display()
                );
            }
            return self.open(false, false);
        }
        let env = self.open(false, false)?;
        if env.store.head_position().map_err(|e| anyhow!("{e}"))? == 0 {
            bail!(
                "the log {} holds no event: serve runs an existing ledger. Check --store (the servers, and that LEDGER_LOG is this ledger's); \
                 to start a new, empty ledger there, add --create",
                env.store.describe()
            );
        }
        Ok(env)
    }

    /// Says on standard error that a new ledger was made, and where its keys are.
    fn say_created(&self, path: Option<&Path>) {
        let Some(path) = path else { return };
        let keys = if self.needs_keys() {
            format!(
                "; person keys in {}, opened by the master key ({}): keep the master key apart from the log and back both up",
                absolute(&self.key_store_path()).display(),
                self.master_key_source()
            )
        } else {
            String::new()
        };
        eprintln!(
            "note: created a new ledger at {}{keys}",
            absolute(path).display()
        );
    }

    /// Opens the store, its projections and the command handler (the store may be created).
    fn open_store(&self, business_clock: bool) -> Result<Env> {
        let business = business_clock
            .then(|| Arc::new(BusinessClock(ManualClock::new(DateTime::<Utc>::MIN_UTC))));
        let clock: Arc<dyn Clock> = match &business {
            Some(b) => b.clone(),
            None => Arc::new(SystemClock),
        };
        let store = store::open(&self.store, clock.clone()).map_err(|e| match e {
            store::StoreError::Unavailable(m) if self.store.starts_with("nats://") => anyhow!(
                "the store {} cannot be opened ({m})",
                self.store
            ),
            store::StoreError::Unavailable(m) => anyhow!(
                "the store {} cannot be opened ({m}); --store must name a campaign-ledger SQLite file (created by demo or submit)",
                self.store
            ),
            other => anyhow!("{other}"),
        })?;
        // A ledger of an older build: its content hashes become version 2 before anything reads
        // or exports them.
        campaign_ledger::app::migrate_content_hashes(store.as_ref()).map_err(|e| anyhow!("{e}"))?;
        let policy = Policy::default();
        let db = match self.store.strip_prefix("sqlite:") {
            Some(p) => db_path_for(Path::new(p)),
            // Projections of a JetStream log live in their own local file (the engine checks
            // each checkpoint's hash against the log, so a file from another log is rebuilt).
            None => PathBuf::from("ledger-data/nats-log-projections.db"),
        };
        let engine = load_definitions(self.projection_dir().as_deref())
            .map_err(|e| anyhow!("{e}"))
            .and_then(|defs| Engine::open(&db, defs, policy.time_zone).map_err(|e| anyhow!("{e}")));
        let mut ledger = Ledger::new(store.clone(), policy, Reference::builtin(), clock);
        if self.needs_keys() {
            let path = self.key_store_path();
            let empty = store.head_position().map_err(|e| anyhow!("{e}"))? == 0;
            if !path.exists() && !empty && holds_sealed_refs(store.as_ref())? {
                bail!(
                    "there is no key store at {}, but the log {} holds person refs sealed with the keys of one: \
                     give its path with --key-store (or LEDGER_KEY_STORE) and its master key. \
                     A new key store would not know these people and would record them again as new",
                    path.display(),
                    store.describe()
                );
            }
            let master = self.master_key(!path.exists())?;
            let keys = campaign_ledger::privacy::KeyStore::open(&path, &master, empty)
                .map_err(|e| anyhow!("{e}"))?;
            ledger = ledger
                .with_keys(Arc::new(keys))
                .map_err(|e| anyhow!("{e}"))?;
            // Refusals about known people are disclosures: logged with the reads.
            let log = campaign_ledger::audit::AccessLog::open(&self.access_log_path())
                .map_err(|e| anyhow!("{e}"))?;
            ledger = ledger.with_access_log(Arc::new(log), self.channel());
            let journal =
                campaign_ledger::privacy::ErasureJournal::open(&self.erasure_journal_path())
                    .map_err(|e| anyhow!("{e}"))?;
            ledger = ledger.with_erasure_journal(journal);
        }
        Ok(Env {
            store,
            engine,
            ledger,
            business,
        })
    }
}

impl Cli {
    /// Records in the access log, before anything is printed, that the user of this command
    /// line was shown person-level data (`route`: the subcommand; `disclosed`: its kind).
    pub(super) fn disclose(
        &self,
        route: &str,
        persons: Vec<String>,
        events: u64,
        revealed: u64,
        disclosed: &str,
    ) -> Result<()> {
        if persons.is_empty() {
            return Ok(());
        }
        let log = campaign_ledger::audit::AccessLog::open(&self.access_log_path())
            .map_err(|e| anyhow!("{e}"))?;
        let a = actor();
        log.record(&campaign_ledger::audit::Disclosure {
            caller: a.agent_ref.unwrap_or_else(|| "-".into()),
            role: a.role,
            route: route.to_string(),
            persons,
            events,
            revealed,
            disclosed: disclosed.to_string(),
        })
        .map_err(|e| anyhow!("{e}"))
    }
}

/// `path` from the filesystem's root, for messages (as given when it cannot be resolved).
pub(super) fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

pub(super) fn actor() -> Actor {
    Actor {
        role: "cli".into(),
        directorate: None,
        agent_ref: Some(std::env::var("USER").unwrap_or_else(|_| "cli".into())),
    }
}

/// Whether the log holds a person ref sealed with a key store's key (it stops at the first).
pub(super) fn holds_sealed_refs(store: &dyn EventStore) -> Result<bool> {
    let mut found = false;
    store
        .scan_data(0, u64::MAX, &mut |e| {
            found = campaign_ledger::privacy::sealed_ref_in(e.data).is_some();
            !found
        })
        .map_err(|e| anyhow!("{e}"))?;
    Ok(found)
}

/// Keeps `engine` caught up with `store` until `stop` says so, waiting for new events after
/// each catch-up (`project` following, and `serve`). A failure (the log or NATS unreachable
/// for a while) is logged once and retried every second until it passes, as the relay does;
/// a log refused as damaged or altered, every 30 s.
/// `stop(d)` waits up to `d` for a stop request and says whether one came. Returns the last
/// position folded.
pub(super) fn follow_projections(
    engine: &Engine,
    store: &dyn EventStore,
    health: &campaign_ledger::support::health::Health,
    stop: &mut dyn FnMut(std::time::Duration) -> bool,
) -> u64 {
    let (mut at, mut failing) = (0, false);
    health.starting("projections");
    loop {
        match engine.catch_up(store) {
            Ok(p) => {
                at = p;
                health.running("projections");
                if std::mem::replace(&mut failing, false) {
                    tracing::warn!(position = p, "projection catch-up works again");
                }
                tracing::debug!(position = p, "projections caught up");
            }
            Err(e) => {
                // A damaged or altered log does not mend by itself: said as an error, and
                // tried again only every 30 s (each try reads again from the last save).
                let damaged = matches!(
                    e,
                    campaign_ledger::projection::ProjectionError::Store(
                        store::StoreError::Corrupt(_)
                    )
                );
                if !std::mem::replace(&mut failing, true) {
                    if damaged {
                        tracing::error!(error = %e, "projection catch-up refused the log; retrying every 30 s");
                    } else {
                        tracing::warn!(error = %e, "projection catch-up failed; retrying every second");
                    }
                }
                if damaged {
                    health.stopped(
                        "projections",
                        format!("the log was refused ({e}); retried every 30 s"),
                    );
                } else {
                    health.failing("projections", &e);
                }
                let pause = if damaged { 30 } else { 1 };
                if stop(std::time::Duration::from_secs(pause)) {
                    return at;
                }
                continue;
            }
        }
        if stop(std::time::Duration::ZERO) {
            return at;
        }
        if store
            .wait_beyond(at, std::time::Duration::from_millis(500))
            .is_err()
            && stop(std::time::Duration::from_millis(500))
        {
            return at;
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub(super) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
