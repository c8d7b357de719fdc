//! The command-line interface: clap commands wiring the layers. No business logic here.

use crate::app::{submit_lines, Ledger, LineOutcome, SubmitSummary};
use crate::audit;
use crate::domain::{Policy, Reference};
use crate::projection::{db_path_for, load_definitions, Engine, Report};
use crate::scenario;
use crate::store::{self, Actor, Clock, EventStore, ManualClock, SystemClock};
use anyhow::{anyhow, bail, Context as _, Result};
use chrono::{DateTime, Duration, FixedOffset, NaiveDate, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

mod findings;

/// An event-sourced, hash-chained ledger for a vaccination campaign.
#[derive(Parser, Debug)]
#[command(name = "campaign-ledger", version, about, long_about = None)]
pub struct Cli {
    /// Where the log lives: sqlite:PATH (the embedded default).
    #[arg(
        long,
        global = true,
        env = "LEDGER_STORE",
        default_value = "sqlite:./ledger-data/ledger.db"
    )]
    pub store: String,
    /// A directory of projection definitions (*.toml) added to the shipped ones; a file there
    /// replaces a shipped definition of the same name. Default: ./projections when it exists.
    #[arg(long, global = true, env = "LEDGER_PROJECTIONS")]
    pub projections: Option<PathBuf>,
    /// NATS server URL(s), comma-separated (for example nats://127.0.0.1:4222): where `relay`
    /// publishes and where `project`, `report` and `projections` read with --nats.
    #[arg(long, global = true, env = "LEDGER_NATS")]
    pub nats: Option<String>,
    /// The projection database of the NATS-fed projections (default
    /// ./ledger-data/nats-projections.db).
    #[arg(long, global = true, env = "LEDGER_PROJECTIONS_DB")]
    pub projections_db: Option<PathBuf>,
    /// The key store: one data key per person, each wrapped by the master key (default: the
    /// store file with .keys.db, or ledger-data/nats-log.keys.db for a NATS log). Keep it
    /// apart from copies of the log: destroying a key erases a person everywhere.
    #[arg(long, global = true, env = "LEDGER_KEY_STORE")]
    pub key_store: Option<PathBuf>,
    /// The master key file (64 hex digits; default master.key beside the store, created
    /// once with mode 0600). The environment variable LEDGER_MASTER_KEY, when set, gives the
    /// key itself instead.
    #[arg(long, global = true, env = "LEDGER_MASTER_KEY_FILE")]
    pub master_key: Option<PathBuf>,
    /// The command to run.
    #[command(subcommand)]
    pub command: Cmd,
}

impl Cli {
    /// The key store's file.
    fn key_store_path(&self) -> PathBuf {
        if let Some(p) = &self.key_store {
            return p.clone();
        }
        match self.store.strip_prefix("sqlite:") {
            Some(p) => Path::new(p).with_extension("keys.db"),
            None => PathBuf::from("ledger-data/nats-log.keys.db"),
        }
    }

    /// The master key: LEDGER_MASTER_KEY, or the key file (created when missing, if the key
    /// store is new too: `create`).
    fn master_key(&self, create: bool) -> Result<crate::privacy::MasterKey> {
        if let Ok(hex) = std::env::var("LEDGER_MASTER_KEY") {
            return crate::privacy::MasterKey::from_hex(&hex)
                .map_err(|e| anyhow!("LEDGER_MASTER_KEY is not usable: {e}"));
        }
        let path = self
            .master_key
            .clone()
            .unwrap_or_else(|| self.data_dir().join("master.key"));
        match std::fs::read_to_string(&path) {
            Ok(text) => crate::privacy::MasterKey::from_hex(&text)
                .map_err(|e| anyhow!("{} is not a master key: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => bail!(
                "the master key file {} is missing, and the key store {} was made with it: restore the file, \
                 or give the key with LEDGER_MASTER_KEY or --master-key",
                path.display(),
                self.key_store_path().display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = crate::privacy::MasterKey::generate().map_err(|e| anyhow!(e))?;
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                // Written whole under a name of its own, then linked into place: the link fails
                // if another process made the key first, and that key is used instead.
                let linked = store::create_private(&path, &(key.to_hex() + "\n"));
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

    /// The access log of person-level reads (beside the key store).
    fn access_log_path(&self) -> PathBuf {
        let keys = self.key_store_path();
        let name = keys
            .file_name()
            .map(|n| n.to_string_lossy().replace(".keys.db", ".access.db"));
        match name {
            Some(n) if n.ends_with(".access.db") => keys.with_file_name(n),
            _ => keys.with_extension("access.db"),
        }
    }

    /// Whether this command records or reveals person-level data (and so needs the key
    /// store and the master key). Reports, audits and exports do not.
    fn needs_keys(&self) -> bool {
        matches!(
            self.command,
            Cmd::Demo { .. } | Cmd::Submit { .. } | Cmd::Serve { .. } | Cmd::ErasePerson { .. }
        )
    }
}

/// A token's role, as `auth token --role` takes it (the access layer's `Role`).
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
pub enum RoleArg {
    /// Sends commands for its directorates (not site authorisations).
    Agent,
    /// Reports ticket redemptions (`RedeemTicket`) for its partner centres.
    Partner,
    /// Reads everything of its directorates (business dates only, small counts suppressed).
    Supervisor,
    /// Reads everything, at any `as_of` and `known_at`, and the audit endpoints; never writes.
    Auditor,
    /// Authorises sites and rebuilds projections.
    Admin,
}

impl From<RoleArg> for crate::access::Role {
    fn from(r: RoleArg) -> Self {
        use crate::access::Role;
        match r {
            RoleArg::Agent => Role::Agent,
            RoleArg::Partner => Role::Partner,
            RoleArg::Supervisor => Role::Supervisor,
            RoleArg::Auditor => Role::Auditor,
            RoleArg::Admin => Role::Admin,
        }
    }
}

/// Output format of a report.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
pub enum ReportFormat {
    /// A table for people.
    Table,
    /// JSON for programs.
    Json,
    /// CSV for spreadsheets.
    Csv,
}

/// Output format of a command run.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
pub enum SubmitFormat {
    /// One line per command for people.
    Table,
    /// One JSON object per command.
    Json,
}

/// Where commit times come from.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
pub enum ClockChoice {
    /// The machine's clock (normal use).
    System,
    /// Each command is recorded at its own business time (never going backwards): for loading
    /// a historical or simulated campaign, so that --known-at reads make sense for it.
    Business,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Load the synthetic OFII 2021 scenario into the store (once: running it again loads
    /// nothing twice) and print the report as of 17 December 2021.
    Demo {
        /// Then serve the API and the dashboard, with one fresh token per role (written to
        /// demo-tokens.json beside the store); stops on SIGTERM or Ctrl-C.
        #[arg(long)]
        serve: bool,
        /// Address and port for --serve (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:8080", requires = "serve")]
        listen: String,
    },
    /// Run a file of commands (JSON lines; `-` for standard input), one outcome per line.
    Submit {
        /// The command file.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: SubmitFormat,
        /// Where commit times come from.
        #[arg(long, value_enum, default_value = "system")]
        clock: ClockChoice,
    },
    /// Print a projection (read model).
    Report {
        /// Projection name (see `projections list`).
        name: String,
        /// Events up to the end of this day (YYYY-MM-DD, campaign time zone Europe/Paris).
        #[arg(long, value_parser = parse_date)]
        as_of: Option<NaiveDate>,
        /// Only what the ledger had recorded by this instant (RFC 3339, e.g. 2021-12-17T18:00:00+01:00).
        #[arg(long, value_parser = parse_instant)]
        known_at: Option<DateTime<FixedOffset>>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: ReportFormat,
    },
    /// List the open data-quality findings: people whose recorded series no longer holds after
    /// a correction (a second dose with no first…), with the entries involved and what to do.
    /// Persons appear by pseudonym only.
    Findings {
        /// Only this directorate's findings (its id, for example lyon).
        #[arg(long)]
        directorate: Option<String>,
        /// Findings dated up to the end of this day (YYYY-MM-DD, campaign time zone).
        #[arg(long, value_parser = parse_date)]
        as_of: Option<NaiveDate>,
        /// Only what the ledger had recorded by this instant (RFC 3339).
        #[arg(long, value_parser = parse_instant)]
        known_at: Option<DateTime<FixedOffset>>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: ReportFormat,
    },
    /// Write a generated scenario as JSON lines to standard output.
    Scenario {
        /// Which scenario.
        #[arg(value_enum)]
        name: ScenarioName,
    },
    /// Write the log, or part of it, as JSON lines: one CloudEvent per event with its
    /// position, recorded_at, prev_hash, hash and command hash. Byte-identical for the same
    /// log from any backend; `audit verify --export` checks it without the database.
    Export {
        /// First position (default 1).
        #[arg(long)]
        from: Option<u64>,
        /// Last position (default: the head).
        #[arg(long)]
        to: Option<u64>,
        /// Only events recorded at or after this instant (RFC 3339, for example
        /// 2021-12-01T00:00:00+01:00).
        #[arg(long, value_parser = parse_instant)]
        since: Option<DateTime<FixedOffset>>,
        /// Write to this file (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Rebuild the store named by --store from an export (`-` for standard input), verifying
    /// the chain before anything is written: the hashes after import are identical. The store
    /// must be empty or hold a prefix of the same log (an interrupted import goes on).
    Import {
        /// The export file.
        file: PathBuf,
    },
    /// Tamper evidence.
    Audit {
        /// The ledger's Ed25519 signing key (default: signing.key beside the store file).
        #[arg(long, env = "LEDGER_SIGNING_KEY", global = true)]
        key: Option<PathBuf>,
        /// What to do.
        #[command(subcommand)]
        action: AuditCmd,
    },
    /// Publish every committed event, in order and exactly once, to the NATS JetStream stream
    /// LEDGER_EVENTS (CloudEvents JSON); resumes where the stream ends; follows new commits
    /// until SIGTERM or Ctrl-C.
    Relay {
        /// Stream replicas: 1 for one server, 3 for a production cluster.
        #[arg(long, default_value_t = 1)]
        replicas: usize,
        /// Stop once the stream holds the whole log instead of following new commits.
        #[arg(long)]
        once: bool,
        /// With --once: how long NATS may stay unreachable (without progress) before the run
        /// ends with an error, exit code 2 (90s, 5m…). A following relay retries for ever.
        #[arg(long, default_value = "30s", value_parser = parse_every)]
        retry_for: std::time::Duration,
    },
    /// Serve the HTTP API and the dashboard; with --nats also runs the relay. Stops
    /// gracefully on SIGTERM or Ctrl-C (commands in flight finish first).
    Serve {
        /// Address and port to listen on (port 0: any free port). Without --auth, loopback
        /// only.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// The token file (hashes and roles; `campaign-ledger auth token` writes it). Without
        /// it every request has full rights, so only loopback addresses are accepted.
        #[arg(long, env = "LEDGER_AUTH")]
        auth: Option<PathBuf>,
        /// How often to publish a signed digest of the head when the log moved (to
        /// digests.jsonl beside the store and, with --nats, on ledger.v1.digests): 90s, 15m,
        /// 1h…; 0 turns it off. Needs the signing key (`audit keygen`).
        #[arg(long, default_value = "1h", value_parser = parse_every)]
        digest_every: std::time::Duration,
    },
    /// Tokens for the HTTP API.
    Auth {
        /// What to do.
        #[command(subcommand)]
        action: AuthCmd,
    },
    /// Erase a person (crypto-shredding): record PersonErased (who, when, by pseudonym) and
    /// destroy their key. The log, its hash chain and every count stay as they are; their
    /// ref no longer leads to their history and reads of their events say "erased".
    ErasePerson {
        /// The person's ref, as commands gave it.
        person_ref: String,
    },
    /// Print the OpenAPI 3.1 document of the HTTP API (as committed in schemas/openapi.json).
    Openapi,
    /// The JSON Schemas of every command and every event version, generated from the code:
    /// lists them, or with --write DIR writes DIR/commands/*.schema.json and
    /// DIR/events/*.schema.json (removing files of those folders the code no longer makes).
    Schemas {
        /// The directory to write them to (the repository keeps them in schemas/).
        #[arg(long)]
        write: Option<PathBuf>,
    },
    /// A NATS-fed projection worker: folds LEDGER_EVENTS (published by the relay) into every
    /// projection, each saved with its stream position in one transaction, in the
    /// --projections-db file; follows new events until SIGTERM or Ctrl-C. Needs --nats.
    Project {
        /// Stop once caught up instead of following.
        #[arg(long)]
        once: bool,
    },
    /// Projections (read models).
    Projections {
        /// What to do.
        #[command(subcommand)]
        action: ProjectionsCmd,
    },
}

/// Known scenarios.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
pub enum ScenarioName {
    /// The OFII's COVID-19 campaign of 2021 (synthetic people, published national totals).
    #[value(name = "ofii-2021")]
    Ofii2021,
}

/// Audit subcommands.
#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Recompute the hash chain: exit 0 if intact, 1 naming the first bad position.
    Verify {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: SubmitFormat,
        /// Also prove that the log extends the log this digest (from `audit digest`) was taken
        /// from: nothing before it changed, nothing removed, nothing reordered.
        #[arg(long)]
        digest: Option<PathBuf>,
        /// The public key (hex) the digest must be signed with (default: the ledger's own key,
        /// when its key file is here).
        #[arg(long)]
        public_key: Option<String>,
        /// Verify this export (from `campaign-ledger export`) instead of the store: no
        /// database needed. With --digest, the digest's position must be inside the export.
        #[arg(long)]
        export: Option<PathBuf>,
    },
    /// Print the head of the log (position, hash, time) as JSON, signed with the ledger's key,
    /// for an auditor to keep.
    Digest,
    /// Create the ledger's Ed25519 signing key (once) and print its public key.
    Keygen,
    /// Print the ledger's public key (hex), for auditors to trust.
    PublicKey,
    /// Print the log of person-level reads made over HTTP (who read whose events, when).
    AccessLog {
        /// Only the reads of this person (their person_id, as events show it).
        #[arg(long)]
        person: Option<String>,
        /// Output format: one line per read (table) or one JSON object per read (json).
        #[arg(long, value_enum, default_value = "table")]
        format: SubmitFormat,
    },
}

/// Token subcommands.
#[derive(Subcommand, Debug)]
pub enum AuthCmd {
    /// Create a token: print it once, store only its hash (and role, scope) in the file.
    Token {
        /// The token file (created when missing).
        #[arg(long)]
        file: PathBuf,
        /// A name for the token, recorded in every event it causes.
        #[arg(long)]
        id: String,
        /// Its role.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// A directorate id it acts for or reads (agent, supervisor); repeat for several.
        #[arg(long = "directorate")]
        directorates: Vec<String>,
        /// A partner-centre id it reports for (partner); repeat for several.
        #[arg(long = "partner-centre")]
        partner_centres: Vec<String>,
        /// When it stops working (RFC 3339, for example 2022-06-30T00:00:00+02:00).
        #[arg(long)]
        expires_at: Option<String>,
    },
}

/// Projection subcommands.
#[derive(Subcommand, Debug)]
pub enum ProjectionsCmd {
    /// List the projections and how far each has folded the log.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: SubmitFormat,
    },
    /// Replay the whole log into NAME beside the live state, compare, and swap it in.
    Rebuild {
        /// Projection name.
        name: String,
    },
}

fn parse_every(s: &str) -> Result<std::time::Duration, String> {
    let bad =
        || format!("{s:?} is not a duration; write for example 90s, 15m or 1h (0 turns it off)");
    let (n, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(bad()),
    };
    Ok(std::time::Duration::from_secs(secs))
}

fn parse_date(s: &str) -> Result<NaiveDate, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not a date; write YYYY-MM-DD, for example 2021-12-17"))
}

fn parse_instant(s: &str) -> Result<DateTime<FixedOffset>, String> {
    DateTime::parse_from_rfc3339(s).map_err(|_| {
        format!("{s:?} is not an RFC 3339 time with an offset; write for example 2021-12-17T18:00:00+01:00")
    })
}

/// A clock that shows the business time of the command being run, never going backwards.
struct BusinessClock(ManualClock);

impl Clock for BusinessClock {
    fn now(&self) -> DateTime<Utc> {
        self.0.now()
    }
}

struct Env {
    store: Arc<dyn EventStore>,
    /// The projection engine, or why its definitions could not be loaded: only the commands
    /// that read projections fail on a broken definition file.
    engine: Result<Engine>,
    ledger: Ledger,
    business: Option<Arc<BusinessClock>>,
}

impl Env {
    fn engine(&self) -> Result<&Engine> {
        self.engine.as_ref().map_err(|e| anyhow!("{e:#}"))
    }
}

impl Cli {
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
    fn data_dir(&self) -> PathBuf {
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
    fn key_path(&self, key: Option<&Path>) -> PathBuf {
        key.map_or_else(|| self.data_dir().join("signing.key"), Path::to_path_buf)
    }

    /// The NATS-fed projections' file (--projections-db).
    fn nats_projections_path(&self) -> PathBuf {
        self.projections_db
            .clone()
            .unwrap_or_else(|| PathBuf::from("ledger-data/nats-projections.db"))
    }

    /// What reports read: the ledger and its projections, or with --nats the stream the relay
    /// feeds and the NATS-fed projections (--projections-db).
    fn read_side(&self) -> Result<(Arc<dyn EventStore>, Engine)> {
        let Some(url) = &self.nats else {
            let env = self.open(false, false)?;
            let engine = env.engine?;
            return Ok((env.store, engine));
        };
        let source = crate::bus::JetStreamSource::connect(url).map_err(|e| anyhow!("{e}"))?;
        let db = self.nats_projections_path();
        let defs =
            load_definitions(self.projection_dir().as_deref()).map_err(|e| anyhow!("{e}"))?;
        let engine =
            Engine::open(&db, defs, Policy::default().time_zone).map_err(|e| anyhow!("{e}"))?;
        Ok((Arc::new(source), engine))
    }

    fn projection_dir(&self) -> Option<PathBuf> {
        match &self.projections {
            Some(p) => Some(p.clone()),
            None => Some(PathBuf::from("projections")).filter(|p| p.is_dir()),
        }
    }

    /// Opens the store, its projections and the command handler. Only commands that write
    /// (`demo`, `submit`) may create a new store; the others refuse a store that is not there.
    fn open(&self, business_clock: bool, create: bool) -> Result<Env> {
        if let Some(p) = self.store.strip_prefix("sqlite:") {
            if !create && !p.is_empty() && !Path::new(p).exists() {
                bail!(
                    "there is no ledger at {p}; run `campaign-ledger demo` or `campaign-ledger submit FILE` first, or name another with --store sqlite:PATH"
                );
            }
        }
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
            let keys = crate::privacy::KeyStore::open(&path, &master, empty)
                .map_err(|e| anyhow!("{e}"))?;
            ledger = ledger.with_keys(Arc::new(keys));
            ledger.recover_keys().map_err(|e| anyhow!("{e}"))?;
        }
        Ok(Env {
            store,
            engine,
            ledger,
            business,
        })
    }
}

fn actor() -> Actor {
    Actor {
        role: "cli".into(),
        directorate: None,
        agent_ref: Some(std::env::var("USER").unwrap_or_else(|_| "cli".into())),
    }
}

/// Whether the log holds a person ref sealed with a key store's key (it stops at the first).
fn holds_sealed_refs(store: &dyn EventStore) -> Result<bool> {
    let mut found = false;
    store
        .scan_data(0, u64::MAX, &mut |e| {
            found = crate::privacy::sealed_ref_in(e.data).is_some();
            !found
        })
        .map_err(|e| anyhow!("{e}"))?;
    Ok(found)
}

/// Says where the chain breaks (exit code 1).
fn print_broken(format: SubmitFormat, position: u64, reason: &str) -> ExitCode {
    match format {
        SubmitFormat::Json => println!(
            "{}",
            serde_json::json!({"ok": false, "position": position, "reason": reason})
        ),
        SubmitFormat::Table => println!("BROKEN at position {position}: {reason}"),
    }
    ExitCode::from(1)
}

/// `audit verify --export FILE`: the export alone, and the digest if one is given.
fn verify_export_file(
    file: &Path,
    digest: Option<&audit::SignedDigest>,
    format: SubmitFormat,
) -> Result<ExitCode> {
    let f = std::fs::File::open(file)
        .with_context(|| format!("cannot read the export {}; check the path", file.display()))?;
    let result = audit::verify_export(&mut std::io::BufReader::with_capacity(1 << 20, f), digest);
    match result {
        Ok(v) => {
            match format {
                SubmitFormat::Json => println!(
                    "{}",
                    serde_json::json!({"ok": true, "events": v.events, "first": v.first, "last": v.last,
                        "anchor": v.anchor, "hash": v.hash, "from_start": v.from_start,
                        "digest_position": digest.map(|d| d.position)})
                ),
                SubmitFormat::Table => {
                    if let Some(d) = digest {
                        println!(
                            "ok: the export holds the log the digest was taken from (position {}, {}, signed by {})",
                            d.position,
                            d.signed_at,
                            d.public_key.as_deref().unwrap_or("")
                        );
                    }
                    if v.from_start {
                        println!(
                            "ok: export of positions 1..{}, chain intact; head {} {}",
                            v.last, v.last, v.hash
                        );
                    } else {
                        println!(
                            "ok: export of positions {}..{} ({} events), chain intact from the hash before it ({}); head {} {}",
                            v.first, v.last, v.events, v.anchor, v.last, v.hash
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(audit::VerifyError::Broken { position, reason }) => {
            Ok(print_broken(format, position, &reason))
        }
        Err(e) => Err(anyhow!("{}: {e}", file.display())),
    }
}

fn progress(len: Option<u64>, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (pb, template) = match len {
        Some(n) => (
            ProgressBar::new(n),
            "{spinner} {msg} [{bar:30}] {pos}/{len} (eta {eta})",
        ),
        None => (ProgressBar::new_spinner(), "{spinner} {msg} {pos}"),
    };
    pb.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

fn run_lines(
    env: &Env,
    lines: impl Iterator<Item = (usize, Vec<u8>)>,
    total: Option<u64>,
    mut emit: impl FnMut(&LineOutcome),
) -> Result<SubmitSummary> {
    let pb = progress(total, "commands");
    let business = env.business.clone();
    let summary = submit_lines(
        &env.ledger,
        lines,
        &actor(),
        |cmd| {
            if let (Some(b), Some(t)) = (&business, cmd.command.business_time()) {
                let t = t.with_timezone(&Utc) + Duration::minutes(5);
                if t > b.0.now() {
                    b.0.set(t);
                }
            }
        },
        |o| {
            // Print with the bar hidden, so that the two never mix on a terminal.
            pb.suspend(|| emit(o));
            pb.set_position(o.line as u64);
        },
    )
    .map_err(|e| anyhow!("{e}; the commands before this one are stored, the rest were not run"))?;
    pb.finish_and_clear();
    Ok(summary)
}

fn count_lines(path: &Path) -> Option<u64> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let read = f.read(&mut buf).ok()?;
        if read == 0 {
            return Some(n);
        }
        n += buf[..read].iter().filter(|b| **b == b'\n').count() as u64;
    }
}

fn print_summary(s: &SubmitSummary) {
    eprintln!(
        "{} accepted, {} duplicate, {} rejected, {} invalid",
        s.accepted, s.duplicate, s.rejected, s.invalid
    );
}

fn thousands(n: i64) -> String {
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn print_report(r: &Report, format: ReportFormat) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        ReportFormat::Json => writeln!(out, "{}", serde_json::to_string(r)?)?,
        ReportFormat::Csv => write!(out, "{}", r.to_csv())?,
        ReportFormat::Table => {
            let as_of = r
                .as_of
                .map(|d| d.to_string())
                .unwrap_or_else(|| "everything recorded".into());
            writeln!(
                out,
                "{} as of {as_of}{}",
                r.projection,
                r.known_at
                    .as_ref()
                    .map(|k| format!(", known at {k}"))
                    .unwrap_or_default()
            )?;
            write!(out, "{}", r.to_table())?;
        }
    }
    Ok(())
}

/// Runs the CLI; returns the process exit code.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match &cli.command {
        Cmd::Scenario {
            name: ScenarioName::Ofii2021,
        } => {
            let s = scenario::ofii_2021(&Reference::builtin()).map_err(|e| anyhow!(e))?;
            std::io::stdout()
                .lock()
                .write_all(s.to_jsonl().as_bytes())?;
            eprintln!(
                "{} commands written; synthetic data (no real person).",
                s.commands.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Demo { serve, listen } => {
            let code = demo(&cli)?;
            if !*serve {
                return Ok(code);
            }
            demo_serve(&cli, listen)
        }
        Cmd::Openapi => {
            print!("{}", crate::http::openapi::document_text());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Schemas { write } => {
            use crate::domain::schema::{document_text, documents};
            let docs = documents();
            let Some(dir) = write else {
                for (path, _) in &docs {
                    println!("{path}");
                }
                return Ok(ExitCode::SUCCESS);
            };
            for sub in ["commands", "events"] {
                let d = dir.join(sub);
                std::fs::create_dir_all(&d)
                    .with_context(|| format!("cannot create {}", d.display()))?;
                for entry in std::fs::read_dir(&d)? {
                    let entry = entry?;
                    let name = format!("{sub}/{}", entry.file_name().to_string_lossy());
                    if !docs.iter().any(|(p, _)| *p == name) {
                        std::fs::remove_file(entry.path())?;
                        eprintln!("removed {}", entry.path().display());
                    }
                }
            }
            for (path, doc) in &docs {
                let file = dir.join(path);
                std::fs::write(&file, document_text(doc))
                    .with_context(|| format!("cannot write {}", file.display()))?;
            }
            eprintln!("{} schemas written under {}", docs.len(), dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Auth {
            action:
                AuthCmd::Token {
                    file,
                    id,
                    role,
                    directorates,
                    partner_centres,
                    expires_at,
                },
        } => {
            let expires_at = expires_at
                .as_deref()
                .map(|s| {
                    DateTime::parse_from_rfc3339(s).map_err(|_| {
                        anyhow!("--expires-at {s:?} is not a time with an offset; write it as 2022-06-30T00:00:00+02:00")
                    })
                })
                .transpose()?;
            let entry = crate::access::TokenEntry {
                id: id.clone(),
                role: crate::access::Role::from(*role),
                directorates: directorates.clone(),
                partner_centres: partner_centres.clone(),
                sha256: String::new(),
                expires_at,
            };
            let token = crate::access::add_token(file, entry, &Reference::builtin())
                .map_err(|e| anyhow!("{e}"))?;
            eprintln!(
                "token {id:?} ({}) added to {}; it is shown only now:",
                crate::access::Role::from(*role).as_str(),
                file.display()
            );
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Submit {
            file,
            format,
            clock,
        } => {
            let reader: Box<dyn BufRead> = if file.as_os_str() == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                let f = std::fs::File::open(file).with_context(|| {
                    format!(
                        "cannot read the command file {}; check the path",
                        file.display()
                    )
                })?;
                if f.metadata().map(|m| m.is_dir()).unwrap_or(false) {
                    bail!(
                        "{} is a directory; give a file of JSON lines (or - for standard input)",
                        file.display()
                    );
                }
                Box::new(std::io::BufReader::new(f))
            };
            let env = cli.open(*clock == ClockChoice::Business, true)?;
            let mut read_error = None;
            let lines = reader.split(b'\n').enumerate().map_while(|(i, l)| match l {
                Ok(mut bytes) => {
                    if bytes.last() == Some(&b'\r') {
                        bytes.pop();
                    }
                    Some((i + 1, bytes))
                }
                Err(e) => {
                    read_error = Some(e);
                    None
                }
            });
            let format = *format;
            let mut out = std::io::stdout().lock();
            // On a terminal, count the lines first so that the progress bar has a length.
            let total = (std::io::stderr().is_terminal() && file.as_os_str() != "-")
                .then(|| count_lines(file))
                .flatten();
            let summary = run_lines(&env, lines, total, |o| {
                let _ = match format {
                    SubmitFormat::Json => {
                        writeln!(out, "{}", serde_json::to_string(o).unwrap_or_default())
                    }
                    SubmitFormat::Table => writeln!(
                        out,
                        "line {:<6} {:<9} {:<36}{}",
                        o.line,
                        o.outcome,
                        o.command_id
                            .map(|c| c.to_string())
                            .unwrap_or_else(|| "-".into()),
                        o.error
                            .as_ref()
                            .map(|e| format!("  {}: {}", e.code, e.message))
                            .unwrap_or_default()
                    ),
                };
                let _ = out.flush();
            })?;
            if let Some(e) = read_error {
                bail!(
                    "reading {} failed after some lines: {e}; the lines before were run",
                    file.display()
                );
            }
            match env.engine() {
                Ok(engine) => {
                    engine
                        .catch_up(env.store.as_ref())
                        .map_err(|e| anyhow!("{e}"))?;
                }
                Err(e) => eprintln!(
                    "warning: the commands are stored, but the projections were not updated: {e}"
                ),
            }
            print_summary(&summary);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Report {
            name,
            as_of,
            known_at,
            format,
        } => {
            let (store, engine) = cli.read_side()?;
            let r = engine
                .report(store.as_ref(), name, *as_of, *known_at)
                .map_err(|e| anyhow!("{e}"))?;
            if cli.nats.is_some() {
                // On standard error: the report itself is the same whichever side folded it.
                eprintln!(
                    "NATS-fed: folded from {} into {}",
                    store.describe(),
                    cli.nats_projections_path().display()
                );
            }
            print_report(&r, *format)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Findings {
            directorate,
            as_of,
            known_at,
            format,
        } => findings::run(&cli, directorate.as_deref(), *as_of, *known_at, *format),
        Cmd::Audit {
            key,
            action:
                AuditCmd::Verify {
                    format,
                    digest,
                    public_key,
                    export,
                },
        } => {
            // The digest first: a document that is not a valid signed digest is a usage error.
            let digest = match digest {
                None => None,
                Some(path) => {
                    let text = std::fs::read_to_string(path).with_context(|| {
                        format!("cannot read the digest {}; check the path", path.display())
                    })?;
                    let d: audit::SignedDigest = serde_json::from_str(&text).map_err(|e| {
                        let several = text.trim().lines().count() > 1 && text.trim_start().starts_with('{')
                            && text.trim().lines().all(|l| l.trim_start().starts_with('{'));
                        anyhow!(
                            "{} is not a digest from `audit digest` ({e}){}",
                            path.display(),
                            if several {
                                "; it looks like several digests, one per line (digests.jsonl): put the one to check in a file of its own"
                            } else {
                                ""
                            }
                        )
                    })?;
                    // Only a key the auditor trusts proves anything: a digest's own key does not.
                    let key_file = cli.key_path(key.as_deref());
                    let trusted = match public_key {
                        Some(k) if k.trim().len() == 64 && hex::decode(k.trim()).is_ok() => {
                            k.trim().to_string()
                        }
                        Some(k) => bail!(
                            "--public-key {k:?} is not a public key: give the 64 hex digits `campaign-ledger audit public-key` prints"
                        ),
                        None if key_file.exists() => audit::LedgerKey::load(&key_file)
                            .map_err(|e| anyhow!(e))?
                            .public_hex(),
                        None => bail!(
                            "no trusted public key to check the digest's signature against: give --public-key HEX \
                             (the ledger's public key, from `campaign-ledger audit public-key`); the key named inside \
                             the digest proves nothing by itself"
                        ),
                    };
                    d.check_signature(Some(&trusted))
                        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
                    Some(d)
                }
            };
            if let Some(file) = export {
                return verify_export_file(file, digest.as_ref(), *format);
            }
            let env = cli.open(false, false)?;
            let head = env.store.head().map_err(|e| anyhow!("{e}"))?;
            let pb = progress(Some(head.position), "verifying");
            let result = match &digest {
                None => audit::verify(env.store.as_ref(), &mut |n| pb.set_position(n)),
                Some(d) => audit::verify_extends(env.store.as_ref(), d),
            };
            pb.finish_and_clear();
            if let (Ok(_), Some(d)) = (&result, &digest) {
                if *format == SubmitFormat::Table {
                    println!(
                        "ok: the log extends the digest taken at position {} ({}), signed by {}",
                        d.position,
                        d.signed_at,
                        d.public_key.as_deref().unwrap_or("")
                    );
                }
            }
            match result {
                Ok(v) => {
                    match format {
                        SubmitFormat::Json => println!(
                            "{}",
                            serde_json::json!({"ok": true, "events": v.events, "position": v.position, "hash": v.hash})
                        ),
                        SubmitFormat::Table => println!(
                            "ok: {} events, chain intact; head {} {}",
                            v.events, v.position, v.hash
                        ),
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(audit::VerifyError::Broken { position, reason }) => {
                    Ok(print_broken(*format, position, &reason))
                }
                Err(e) => Err(anyhow!("{e}")),
            }
        }
        Cmd::ErasePerson { person_ref } => {
            crate::domain::check_person_ref(person_ref)
                .map_err(|e| anyhow!("{e} Give the ref exactly as the commands gave it."))?;
            let env = cli.open(false, false)?;
            let actor = Actor {
                role: "admin".into(),
                directorate: None,
                agent_ref: Some(format!(
                    "cli:{}",
                    std::env::var("USER").unwrap_or_else(|_| "unknown".into())
                )),
            };
            match env
                .ledger
                .erase_person(person_ref, &actor)
                .map_err(|e| anyhow!("{e}"))?
            {
                Some(e) => {
                    println!(
                        "erased: person {} (PersonErased at position {}); their key is destroyed",
                        e.person_id, e.position
                    );
                    Ok(ExitCode::SUCCESS)
                }
                None => bail!(
                    "the key store {} holds no key for {person_ref:?}: never recorded, or erased already",
                    cli.key_store_path().display()
                ),
            }
        }
        Cmd::Export {
            from,
            to,
            since,
            output,
        } => {
            if let (Some(f), Some(t)) = (from, to) {
                if t < f {
                    bail!("--to {t} is before --from {f}: give a range whose end is at or after its start");
                }
            }
            let env = cli.open(false, false)?;
            let options = audit::ExportOptions {
                from: *from,
                to: *to,
                since: since.map(|t| store::format_recorded_at(t.with_timezone(&Utc))),
            };
            let written = match output {
                Some(path) => {
                    let file = std::fs::File::create(path).with_context(|| {
                        format!("cannot create {}; check the path", path.display())
                    })?;
                    let mut out = std::io::BufWriter::new(file);
                    let w = audit::export(env.store.as_ref(), &options, &mut out)
                        .map_err(|e| anyhow!("{e}"))?;
                    out.into_inner()
                        .map_err(|e| anyhow!("cannot write {}: {e}", path.display()))?
                        .sync_all()?;
                    w
                }
                None => {
                    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                    audit::export(env.store.as_ref(), &options, &mut out)
                        .map_err(|e| anyhow!("{e}"))?
                }
            };
            match (written.first, written.last) {
                (Some(f), Some(l)) => {
                    eprintln!("exported {} events, positions {f}..{l}", written.events)
                }
                _ => eprintln!("exported nothing: no event in that range"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Import { file } => {
            let pb = progress(None, "importing");
            let result = if file.as_os_str() == "-" {
                let env = cli.open(false, true)?;
                audit::import(&mut std::io::stdin().lock(), env.store.as_ref(), &mut |n| {
                    pb.set_position(n)
                })
            } else {
                let open = || {
                    std::fs::File::open(file)
                        .map(|f| std::io::BufReader::with_capacity(1 << 20, f))
                        .with_context(|| {
                            format!("cannot read the export {}; check the path", file.display())
                        })
                };
                // A file is verified whole before anything is written: a broken export
                // imports nothing. (From standard input, batches before a break are kept.)
                let checked = audit::verify_export(&mut open()?, None);
                if let Ok(v) = &checked {
                    let new_file = cli
                        .store
                        .strip_prefix("sqlite:")
                        .is_some_and(|p| !Path::new(p).exists());
                    if v.first > 1 && new_file {
                        bail!(
                            "the export starts at position {}, and the store {} does not exist yet: import a whole export (from position 1) first",
                            v.first,
                            cli.store
                        );
                    }
                }
                if let Err(e) = checked {
                    pb.finish_and_clear();
                    return match e {
                        audit::VerifyError::Broken { position, reason } => {
                            println!("BROKEN at position {position}: {reason}");
                            eprintln!("the export does not verify: nothing was imported");
                            Ok(ExitCode::from(1))
                        }
                        e => Err(anyhow!("{}: {e}", file.display())),
                    };
                }
                let env = cli.open(false, true)?;
                audit::import(&mut open()?, env.store.as_ref(), &mut |n| {
                    pb.set_position(n)
                })
            };
            pb.finish_and_clear();
            match result {
                Ok(i) => {
                    println!(
                        "imported {} events ({} already there); head {} {}",
                        i.imported, i.skipped, i.position, i.hash
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(audit::VerifyError::Broken { position, reason }) => {
                    println!("BROKEN at position {position}: {reason}");
                    eprintln!("the export does not verify: nothing from position {position} on was imported");
                    Ok(ExitCode::from(1))
                }
                Err(e) => Err(anyhow!("{e}")),
            }
        }
        Cmd::Audit {
            key,
            action: AuditCmd::Digest,
        } => {
            let path = cli.key_path(key.as_deref());
            let signer = if path.exists() {
                Some(audit::LedgerKey::load(&path).map_err(|e| anyhow!(e))?)
            } else {
                None
            };
            let env = cli.open(false, false)?;
            let d = audit::digest(env.store.as_ref()).map_err(|e| anyhow!("{e}"))?;
            let d = match &signer {
                Some(k) => k.sign(d),
                None => {
                    eprintln!(
                        "note: not signed: there is no signing key at {} (create one with `campaign-ledger audit keygen`)",
                        path.display()
                    );
                    audit::SignedDigest::unsigned(d)
                }
            };
            println!("{}", serde_json::to_string_pretty(&d)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Audit {
            action: AuditCmd::AccessLog { person, format },
            ..
        } => {
            let path = cli.access_log_path();
            if !path.exists() {
                bail!(
                    "there is no access log at {} (the server writes it on the first person-level read)",
                    path.display()
                );
            }
            let log = crate::audit::AccessLog::open(&path).map_err(|e| anyhow!("{e}"))?;
            let mut after = 0;
            loop {
                let page = log
                    .entries(after, 1000, person.as_deref())
                    .map_err(|e| anyhow!("{e}"))?;
                let Some(last) = page.last() else { break };
                after = last.id;
                for e in &page {
                    match format {
                        SubmitFormat::Json => println!("{}", serde_json::to_string(e)?),
                        SubmitFormat::Table => println!(
                            "{:>6}  {}  {} ({})  {}  {} events of {} ({} shown in clear)",
                            e.id,
                            e.at,
                            e.caller,
                            e.role,
                            e.route,
                            e.events,
                            e.persons.join(","),
                            e.revealed
                        ),
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Audit {
            key,
            action: AuditCmd::Keygen,
        } => {
            let path = cli.key_path(key.as_deref());
            let k = audit::LedgerKey::generate(&path).map_err(|e| anyhow!(e))?;
            eprintln!(
                "signing key written to {} (keep it secret and backed up); its public key:",
                path.display()
            );
            println!("{}", k.public_hex());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Audit {
            key,
            action: AuditCmd::PublicKey,
        } => {
            let k =
                audit::LedgerKey::load(&cli.key_path(key.as_deref())).map_err(|e| anyhow!(e))?;
            println!("{}", k.public_hex());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Relay {
            replicas,
            once,
            retry_for,
        } => {
            let Some(nats) = &cli.nats else {
                bail!("relay needs --nats URL (or LEDGER_NATS), for example --nats nats://127.0.0.1:4222");
            };
            let env = cli.open(false, false)?;
            let mut options = crate::bus::RelayOptions::new(nats.clone());
            options.replicas = *replicas;
            options.follow = !*once;
            options.give_up_after = once.then_some(*retry_for);
            eprintln!(
                "relaying {} to {nats}, stream {}: {}",
                env.store.describe(),
                crate::bus::STREAM,
                if *once {
                    "until the stream holds the whole log"
                } else {
                    "following new commits; Ctrl-C or SIGTERM stops"
                }
            );
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            // The signal handlers are installed now, by a task of their own: a SIGTERM that
            // comes while the relay is busy publishing still stops it cleanly.
            let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
            runtime.spawn(async move {
                shutdown_signal().await;
                let _ = stop_tx.send(true);
            });
            let report = runtime
                .block_on(crate::bus::relay(env.store.clone(), options, async move {
                    let _ = stop_rx.wait_for(|s| *s).await;
                }))
                .map_err(|e| anyhow!("{e}"))?;
            eprintln!(
                "relay stopped: {} events published by this run; the stream holds positions 1..{}",
                report.published, report.position
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Serve {
            listen,
            auth,
            digest_every,
        } => {
            let auth = match auth {
                Some(path) => Some(
                    crate::access::Auth::load(path, &Reference::builtin())
                        .map_err(|e| anyhow!("{e}"))?,
                ),
                None => None,
            };
            serve(&cli, listen, auth, None, *digest_every)
        }
        Cmd::Project { once } => {
            if cli.nats.is_none() {
                bail!("project needs --nats URL (or LEDGER_NATS): it folds the events the relay published there");
            }
            let (source, engine) = cli.read_side()?;
            if *once {
                let pos = engine
                    .catch_up(source.as_ref())
                    .map_err(|e| anyhow!("{e}"))?;
                eprintln!("projections folded up to position {pos}");
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!(
                "folding {} into {} and following it; Ctrl-C or SIGTERM stops",
                source.describe(),
                cli.nats_projections_path().display()
            );
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
            std::thread::spawn(move || {
                runtime.block_on(shutdown_signal());
                let _ = stop_tx.send(());
            });
            let pos = follow_projections(&engine, source.as_ref(), &mut |wait| {
                stop_rx.recv_timeout(wait).is_ok()
            });
            eprintln!("projections folded up to position {pos}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Projections {
            action: ProjectionsCmd::List { format },
        } => {
            let (store, engine) = cli.read_side()?;
            let list = engine.status(store.as_ref()).map_err(|e| anyhow!("{e}"))?;
            match format {
                SubmitFormat::Json => println!("{}", serde_json::to_string(&list)?),
                SubmitFormat::Table => {
                    for s in list {
                        println!(
                            "{:<24} {:>9}/{:<9} {:<40} {}",
                            s.name, s.checkpoint, s.head, s.status, s.origin
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Projections {
            action: ProjectionsCmd::Rebuild { name },
        } => {
            let (store, engine) = cli.read_side()?;
            let r = engine
                .rebuild(store.as_ref(), name)
                .map_err(|e| anyhow!("{e}"))?;
            let cmp = match r.identical_to_live {
                Some(true) => "identical to the live state",
                Some(false) => "DIFFERENT from the live state (the rebuilt one is now live)",
                None => "no earlier state to compare with",
            };
            println!("rebuilt {} from {} events: {cmp}", r.name, r.events);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Keeps `engine` caught up with `store` until `stop` says so, waiting for new events after
/// each catch-up (`project` following, and `serve`). A failure (the log or NATS unreachable
/// for a while) is logged once and retried every second until it passes, as the relay does;
/// a log refused as damaged or altered, every 30 s.
/// `stop(d)` waits up to `d` for a stop request and says whether one came. Returns the last
/// position folded.
fn follow_projections(
    engine: &Engine,
    store: &dyn EventStore,
    stop: &mut dyn FnMut(std::time::Duration) -> bool,
) -> u64 {
    let (mut at, mut failing) = (0, false);
    loop {
        match engine.catch_up(store) {
            Ok(p) => {
                at = p;
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
                    crate::projection::ProjectionError::Store(store::StoreError::Corrupt(_))
                );
                if !std::mem::replace(&mut failing, true) {
                    if damaged {
                        tracing::error!(error = %e, "projection catch-up refused the log; retrying every 30 s");
                    } else {
                        tracing::warn!(error = %e, "projection catch-up failed; retrying every second");
                    }
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

/// What `demo --serve` prints once the server listens.
struct DemoBanner {
    tokens: Vec<(crate::access::Role, String, String)>,
    tokens_file: PathBuf,
    as_of: chrono::NaiveDate,
}

/// `demo --serve`: fresh tokens, one per role (agents and supervisors scoped to Lyon, the
/// partner to Lyon's partner centres), then the server.
fn demo_serve(cli: &Cli, listen: &str) -> Result<ExitCode> {
    use crate::access::Role;
    use crate::access::{hash_token, new_token, TokenEntry, TokenFile};
    use crate::store::write_private;
    let reference = Reference::builtin();
    let s = scenario::ofii_2021(&reference).map_err(|e| anyhow!(e))?;
    let dir = cli.data_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut centres: Vec<String> = s
        .commands
        .iter()
        .filter_map(|c| match &c.command {
            crate::domain::Command::IssueTicket(t) if t.directorate == "lyon" => {
                Some(t.partner_centre.clone())
            }
            _ => None,
        })
        .collect();
    centres.sort();
    centres.dedup();
    let mut file = TokenFile::default();
    let mut clear = serde_json::Map::new();
    let mut printed = Vec::new();
    for role in [
        Role::Agent,
        Role::Partner,
        Role::Supervisor,
        Role::Auditor,
        Role::Admin,
    ] {
        let token = new_token().map_err(|e| anyhow!(e))?;
        let (directorates, partner_centres, scope) = match role {
            Role::Agent | Role::Supervisor => (vec!["lyon".to_string()], vec![], "lyon".into()),
            Role::Partner => (vec![], centres.clone(), centres.join(", ")),
            _ => (vec![], vec![], "all".into()),
        };
        file.tokens.push(TokenEntry {
            id: format!("demo-{}", role.as_str()),
            role,
            directorates,
            partner_centres,
            sha256: hash_token(&token),
            expires_at: None,
        });
        clear.insert(role.as_str().into(), token.clone().into());
        printed.push((role, scope, token));
    }
    let auth_file = dir.join("demo-auth.json");
    let tokens_file = dir.join("demo-tokens.json");
    write_private(&auth_file, &(serde_json::to_string_pretty(&file)? + "\n"))
        .map_err(|e| anyhow!(e))?;
    write_private(
        &tokens_file,
        &(serde_json::to_string_pretty(&clear)? + "\n"),
    )
    .map_err(|e| anyhow!(e))?;
    let auth =
        crate::access::Auth::from_file(file, &Reference::builtin()).map_err(|e| anyhow!(e))?;
    // The demo signs its digests: a key of its own, made once.
    let key_path = cli.key_path(None);
    if !key_path.exists() {
        let key = crate::audit::LedgerKey::generate(&key_path).map_err(|e| anyhow!(e))?;
        println!(
            "signing key created at {} (public key {})",
            key_path.display(),
            key.public_hex()
        );
    }
    println!();
    serve(
        cli,
        listen,
        Some(auth),
        Some(DemoBanner {
            tokens: printed,
            tokens_file,
            as_of: s.as_of,
        }),
        std::time::Duration::from_secs(3600),
    )
}

/// Runs the HTTP server until SIGTERM or Ctrl-C: the API, the dashboard, a task that keeps the
/// projections caught up, and with --nats the relay.
fn serve(
    cli: &Cli,
    listen: &str,
    auth: Option<crate::access::Auth>,
    banner: Option<DemoBanner>,
    digest_every: std::time::Duration,
) -> Result<ExitCode> {
    let addr: std::net::SocketAddr = match listen.parse() {
        Ok(a) => a,
        // A name (localhost:8080): its first address.
        Err(_) => std::net::ToSocketAddrs::to_socket_addrs(listen)
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| {
                anyhow!("--listen {listen:?} is not ADDR:PORT; write for example 127.0.0.1:8080 (port 0 picks a free port)")
            })?,
    };
    if !addr.ip().is_loopback() && auth.is_none() {
        bail!(
            "refusing to listen on {addr} without --auth: every request would have full rights. \
             Give a token file (`campaign-ledger auth token --file tokens.json --id NAME --role ROLE` creates one), \
             or listen on 127.0.0.1:PORT"
        );
    }
    if !addr.ip().is_loopback() {
        eprintln!(
            "note: {addr} serves plain HTTP; put a TLS-terminating proxy in front so that tokens do not cross the network in clear"
        );
    }
    let env = cli.open(false, true)?;
    let engine = Arc::new(env.engine?);
    let store = env.store.clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut state = crate::http::AppState::new(Arc::new(env.ledger), engine.clone())
        .with_stopping(stop_rx.clone());
    if let Some(a) = auth {
        state = state.with_auth(a);
    }
    let key_path = cli.key_path(None);
    let mut digests = None;
    if key_path.exists() {
        let key = crate::audit::LedgerKey::load(&key_path).map_err(|e| anyhow!(e))?;
        state = state.with_signing_key(key);
        if !digest_every.is_zero() {
            digests = Some(crate::bus::DigestOptions {
                every: digest_every,
                file: cli.data_dir().join("digests.jsonl"),
                nats_url: cli.nats.clone(),
                replicas: 1,
            });
        }
    } else if !digest_every.is_zero() {
        eprintln!(
            "note: no signing key at {}: digests are not published (create one with `campaign-ledger audit keygen`)",
            key_path.display()
        );
    }
    state = state.with_access_log(
        crate::audit::AccessLog::open(&cli.access_log_path()).map_err(|e| anyhow!("{e}"))?,
    );
    let relay_options = cli.nats.clone().map(crate::bus::RelayOptions::new);
    if let Some(o) = &relay_options {
        state = state.with_relay(o.progress.clone());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow!("cannot listen on {addr}: {e}"))?;
        let bound = listener.local_addr()?;
        println!("listening on http://{bound}");
        if let Some(b) = &banner {
            let auditor = b
                .tokens
                .iter()
                .find(|(r, _, _)| *r == crate::access::Role::Auditor)
                .map(|(_, _, t)| t.as_str())
                .unwrap_or("");
            println!(
                "dashboard: http://{bound}/dashboard/?as_of={}#token={auditor}",
                b.as_of
            );
            println!(
                "tokens (one per role, new at every start; also in {}):",
                b.tokens_file.display()
            );
            for (role, scope, token) in &b.tokens {
                println!("  {:<10} {:<52} {token}", role.as_str(), scope);
            }
            println!("API: http://{bound}/v1/openapi.json · stop with Ctrl-C");
        }
        use std::io::Write as _;
        std::io::stdout().flush()?;
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        // Keep the projections caught up, so that /readyz, /metrics and the live streams
        // reflect every commit without waiting for a reader.
        let catch_up = {
            let (engine, store, stopping) = (engine.clone(), store.clone(), stop_rx.clone());
            tokio::task::spawn_blocking(move || {
                follow_projections(&engine, store.as_ref(), &mut |wait| {
                    if !*stopping.borrow() {
                        std::thread::sleep(wait);
                    }
                    *stopping.borrow()
                });
            })
        };
        let digests = match (digests, state.signing.clone()) {
            (Some(o), Some(key)) => Some(tokio::spawn(crate::bus::publish_digests(
                store.clone(),
                key,
                o,
                stopped(stop_rx.clone()),
            ))),
            _ => None,
        };
        let relay = relay_options
            .map(|o| tokio::spawn(crate::bus::relay(store, o, stopped(stop_rx.clone()))));
        crate::http::run(listener, state, stopped(stop_rx)).await?;
        if let Some(r) = relay {
            match r.await {
                Ok(Ok(report)) => eprintln!(
                    "relay stopped: {} events published; the stream holds positions 1..{}",
                    report.published, report.position
                ),
                Ok(Err(e)) => eprintln!("relay stopped: {e}"),
                Err(e) => eprintln!("relay stopped: {e}"),
            }
        }
        if let Some(d) = digests {
            let _ = d.await;
        }
        let _ = catch_up.await;
        eprintln!("server stopped");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn demo(cli: &Cli) -> Result<ExitCode> {
    let reference = Reference::builtin();
    let s = scenario::ofii_2021(&reference).map_err(|e| anyhow!(e))?;
    let env = cli.open(true, true)?;
    println!("campaign-ledger demo — {}", s.title);
    println!("store: {}", env.store.describe());
    let text = s.to_jsonl();
    let lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.as_bytes().to_vec()));
    let mut examples: std::collections::BTreeMap<String, String> = Default::default();
    let summary = run_lines(&env, lines, Some(text.lines().count() as u64), |o| {
        if let Some(e) = &o.error {
            examples
                .entry(e.code.clone())
                .or_insert_with(|| e.message.clone());
        }
    })?;
    println!(
        "scenario: {} commands — {} accepted now, {} already in the store, {} rejected by the rules, {} invalid",
        s.commands.len(),
        summary.accepted,
        summary.duplicate,
        summary.rejected,
        summary.invalid
    );
    if summary.accepted == 0 && summary.duplicate > 0 {
        println!("(the scenario was loaded before: nothing was appended twice)");
    }
    let mut others = 0u64;
    env.store
        .scan(0, u64::MAX, &mut |e| {
            others += (e.correlation_id != Some(scenario::CORRELATION)) as u64;
            true
        })
        .map_err(|e| anyhow!("{e}"))?;
    if others > 0 {
        println!(
            "note: this store also holds {others} events that are not from the scenario; the figures below include them."
        );
    }
    for (code, n) in &summary.by_code {
        println!(
            "  rejected {n} × {code}: {}",
            examples.get(code).map(String::as_str).unwrap_or("")
        );
    }
    let r = env
        .engine()?
        .report(
            env.store.as_ref(),
            "doses_by_directorate",
            Some(s.as_of),
            None,
        )
        .map_err(|e| anyhow!("{e}"))?;
    println!();
    print_report(&r, ReportFormat::Table)?;
    let known_at = crate::domain::Policy::default().end_of_day(s.as_of) - Duration::hours(6);
    let k = env
        .engine()?
        .report(
            env.store.as_ref(),
            "doses_by_directorate",
            Some(s.as_of),
            Some(known_at),
        )
        .map_err(|e| anyhow!("{e}"))?;
    let t = r.totals.int("total");
    let kt = k.totals.int("total");
    println!();
    // The evening view only means something if the scenario was recorded on its own clock
    // (by demo or `submit --clock business`), not loaded today with the system clock.
    let on_business_clock = env
        .store
        .command(s.commands[0].command_id)
        .map_err(|e| anyhow!("{e}"))?
        .is_some_and(|rec| rec.recorded_at.starts_with("2021"));
    if on_business_clock {
        println!(
            "What the ledger knew at {}: {} doses ({} entered later from paper records, net of corrections).",
            known_at.format("%Y-%m-%d %H:%M %:z"),
            thousands(kt),
            thousands(t - kt)
        );
    } else {
        println!(
            "This store received the scenario on the system clock (submit without --clock business), so --known-at 2021 dates see none of it."
        );
    }
    let tickets = env
        .engine()?
        .report(
            env.store.as_ref(),
            "tickets_by_directorate",
            Some(s.as_of),
            None,
        )
        .map_err(|e| anyhow!("{e}"))?;
    println!(
        "Tickets (Lyon, Marseille) as of {}: {} issued, {} redeemed at partner centres, {} expired, {} outstanding.",
        s.as_of,
        thousands(tickets.totals.int("issued")),
        thousands(tickets.totals.int("redeemed")),
        thousands(tickets.totals.int("expired")),
        thousands(tickets.totals.int("outstanding"))
    );
    if let Some(nats) = &cli.nats {
        // With --nats, downstream systems get the whole log too.
        let mut options = crate::bus::RelayOptions::new(nats.clone());
        options.follow = false;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let report = runtime
            .block_on(crate::bus::relay(
                env.store.clone(),
                options,
                std::future::pending(),
            ))
            .map_err(|e| anyhow!("{e}"))?;
        println!(
            "Relayed to {nats} (JetStream stream {}): {} events published now, positions 1..{} in the stream.",
            crate::bus::STREAM,
            report.published,
            report.position
        );
    }
    println!();
    println!(
        "National line, {}: {} doses administered by the OFII in its directorates, {} of them first injections.",
        s.as_of.format("%-d %B %Y"),
        thousands(t),
        thousands(r.totals.int("first"))
    );
    Ok(ExitCode::SUCCESS)
}

/// Logs to standard error, filtered by `RUST_LOG` (default: warnings).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// With `LEDGER_REPORT_RSS=1`, writes the process's peak resident memory to standard error
/// (the benchmarks read it).
pub fn report_peak_rss() {
    if std::env::var_os("LEDGER_REPORT_RSS").is_some() {
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            if let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:")) {
                eprintln!("peak RSS {}", line.trim_start_matches("VmHWM:").trim());
            }
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
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
