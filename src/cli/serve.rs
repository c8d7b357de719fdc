//! `serve`: the HTTP API and the dashboard, with the relay, digests and projections kept up.

use super::args::*;
use super::env::*;
use anyhow::{anyhow, bail, Result};
use campaign_ledger::access::LiveTokens;
use campaign_ledger::domain::Reference;
use std::process::ExitCode;
use std::sync::Arc;

/// Runs `serve`.
pub(super) fn run(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Cmd::Serve {
            listen,
            auth,
            digest_every,
            create,
            max_live_clients,
            tls_cert,
            tls_key,
            witnesses,
        } => {
            let witnesses = witnesses
                .iter()
                .map(|w| campaign_ledger::bus::witnesses::WitnessTarget::parse(w))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow!(e))?;
            let tls = match (tls_cert, tls_key) {
                (Some(c), Some(k)) => {
                    Some(campaign_ledger::http::TlsConfig::load(c, k).map_err(|e| anyhow!("{e}"))?)
                }
                _ => None,
            };
            let auth = match auth {
                Some(path) => Some(
                    LiveTokens::watch(path, Reference::builtin()).map_err(|e| anyhow!("{e}"))?,
                ),
                None => None,
            };
            serve(
                cli,
                Endpoint {
                    listen: listen.clone(),
                    tls,
                    witnesses,
                },
                auth,
                None,
                *digest_every,
                *create,
                *max_live_clients as usize,
            )
        }
        _ => unreachable!("dispatched on its own subcommand"),
    }
}

/// Where the server listens, with TLS or not, and the witnesses it submits checkpoints to.
pub(super) struct Endpoint {
    pub(super) listen: String,
    pub(super) tls: Option<campaign_ledger::http::TlsConfig>,
    pub(super) witnesses: Vec<campaign_ledger::bus::witnesses::WitnessTarget>,
}

/// Runs the HTTP server until SIGTERM or Ctrl-C: the API, the dashboard, a task that keeps the
/// projections caught up, and with --nats the relay.
pub(super) fn serve(
    cli: &Cli,
    endpoint: Endpoint,
    auth: Option<LiveTokens>,
    banner: Option<DemoBanner>,
    digest_every: std::time::Duration,
    create: bool,
    max_live_clients: usize,
) -> Result<ExitCode> {
    let addr = listen_addr(&endpoint.listen, auth.is_some(), endpoint.tls.is_some())?;
    let env = cli.open_for_serve(create)?;
    warn_readable_files(cli);
    let engine = Arc::new(env.engine?);
    let store = env.store.clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut state = campaign_ledger::http::AppState::new(Arc::new(env.ledger), engine.clone())
        .with_stopping(stop_rx.clone())
        .with_live_limit(max_live_clients);
    let tokens = auth.map(Arc::new);
    if let Some(t) = &tokens {
        state = state.with_live_tokens(t.clone());
    }
    // What the background parts say of themselves, read by /readyz and /metrics.
    let health = campaign_ledger::support::health::Health::default();
    state = state.with_health(health.clone());
    let health_for_checkpoints = health.clone();
    let key_path = cli.key_path(None);
    let mut digests = None;
    if !endpoint.witnesses.is_empty() && !key_path.exists() {
        bail!(
            "--witness needs the ledger's signing key at {} (the witnesses cosign checkpoints it signs): create it with `campaign-ledger audit keygen`",
            key_path.display()
        );
    }
    let latest = std::sync::Arc::new(campaign_ledger::audit::LatestCheckpoint::default());
    if key_path.exists() {
        let key = campaign_ledger::audit::LedgerKey::load(&key_path).map_err(|e| anyhow!(e))?;
        state = state.with_signing_key(key);
        state.checkpoints = Some(latest.clone());
        if !digest_every.is_zero() {
            digests = Some(campaign_ledger::bus::DigestOptions {
                every: digest_every,
                file: cli.data_dir().join("digests.jsonl"),
                nats_url: cli.nats.clone(),
                replicas: 1,
                access_log: None,
                health: health.clone(),
                latest: None,
            });
        }
    } else if !digest_every.is_zero() {
        eprintln!(
            "note: no signing key at {}: digests are not published (create one with `campaign-ledger audit keygen`)",
            key_path.display()
        );
    }
    let relay_options = cli.nats.clone().map(|url| {
        let mut o = campaign_ledger::bus::RelayOptions::new(url);
        o.health = health.clone();
        o
    });
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
        let scheme = if endpoint.tls.is_some() {
            "https"
        } else {
            "http"
        };
        println!("listening on {scheme}://{bound}");
        if let Some(b) = &banner {
            b.print(bound);
        }
        use std::io::Write as _;
        std::io::stdout().flush()?;
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        if let Some(t) = tokens {
            tokio::spawn(follow_token_file(t, stop_rx.clone()));
        }
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        // Keep the projections caught up, so that /readyz, /metrics and the live streams
        // reflect every commit without waiting for a reader.
        let catch_up = {
            let (engine, store, stopping) = (engine.clone(), store.clone(), stop_rx.clone());
            tokio::task::spawn_blocking(move || {
                follow_projections(&engine, store.as_ref(), &health, &mut |wait| {
                    if !*stopping.borrow() {
                        std::thread::sleep(wait);
                    }
                    *stopping.borrow()
                });
            })
        };
        let digests = match (digests, state.signing.clone()) {
            (Some(o), Some(key)) => Some(tokio::spawn(campaign_ledger::bus::publish_digests(
                store.clone(),
                key,
                campaign_ledger::bus::DigestOptions {
                    access_log: state.access_log.clone(),
                    latest: state.checkpoints.clone(),
                    ..o
                },
                stopped(stop_rx.clone()),
            ))),
            _ => None,
        };
        let checkpoints = state.signing.clone().map(|key| {
            tokio::spawn(campaign_ledger::bus::publish_checkpoints(
                store.clone(),
                key,
                campaign_ledger::bus::CheckpointOptions {
                    witnesses: endpoint.witnesses.clone(),
                    access_log: state.access_log.clone(),
                    file: cli.data_dir().join("checkpoint.txt"),
                    nats_url: cli.nats.clone(),
                    health: health_for_checkpoints.clone(),
                },
                latest.clone(),
                stopped(stop_rx.clone()),
            ))
        });
        let relay = relay_options.map(|o| {
            tokio::spawn(campaign_ledger::bus::relay(
                store,
                o,
                stopped(stop_rx.clone()),
            ))
        });
        match &endpoint.tls {
            Some(tls) => {
                campaign_ledger::http::run_tls(listener, tls, state, stopped(stop_rx)).await?
            }
            None => campaign_ledger::http::run(listener, state, stopped(stop_rx)).await?,
        }
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
        if let Some(c) = checkpoints {
            let _ = c.await;
        }
        let _ = catch_up.await;
        eprintln!("server stopped");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Keeps the tokens in step with the token file: checked every second (one `stat`) and read
/// again on SIGHUP. A file that does not read or check is logged and not taken.
async fn follow_token_file(
    tokens: Arc<LiveTokens>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let Some(path) = tokens.path().map(|p| p.display().to_string()) else {
        return;
    };
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let forced = tokio::select! {
            _ = stopping.wait_for(|s| *s) => return,
            _ = tick.tick() => false,
            Some(()) = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            } => true,
        };
        let t = tokens.clone();
        let result = tokio::task::spawn_blocking(move || {
            if forced {
                t.reload().map(Some)
            } else {
                t.reload_if_changed()
            }
        })
        .await;
        match result {
            Ok(Ok(Some(n))) => {
                tracing::info!(file = %path, tokens = n, sighup = forced, "token file reloaded")
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::error!(file = %path, "token file not reloaded, the tokens in force stay: {e}")
            }
            Err(e) => tracing::error!("token file reload failed: {e}"),
        }
    }
}

/// What `demo --serve` prints once the server listens.
pub(super) struct DemoBanner {
    pub(super) tokens: Vec<(campaign_ledger::access::Role, String, String)>,
    pub(super) tokens_file: std::path::PathBuf,
    pub(super) as_of: chrono::NaiveDate,
}

/// The address to listen on: never one other machines reach without a token file.
fn listen_addr(listen: &str, with_auth: bool, tls: bool) -> Result<std::net::SocketAddr> {
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
    if !addr.ip().is_loopback() && !with_auth {
        bail!(
            "refusing to listen on {addr} without --auth: every request would have full rights. \
             Give a token file (`campaign-ledger auth token --file tokens.json --id NAME --role ROLE` creates one), \
             or listen on 127.0.0.1:PORT"
        );
    }
    if !addr.ip().is_loopback() && !tls {
        eprintln!(
            "note: {addr} serves plain HTTP; put a TLS-terminating proxy in front (or give --tls-cert and --tls-key) so that tokens do not cross the network in clear"
        );
    }
    Ok(addr)
}

impl DemoBanner {
    /// What `demo --serve` prints once the server listens: the dashboard's URL and the tokens.
    fn print(&self, bound: std::net::SocketAddr) {
        let auditor = self
            .tokens
            .iter()
            .find(|(r, _, _)| *r == campaign_ledger::access::Role::Auditor)
            .map(|(_, _, t)| t.as_str())
            .unwrap_or("");
        println!(
            "dashboard: http://{bound}/dashboard/?as_of={}#token={auditor}",
            self.as_of
        );
        println!(
            "tokens (one per role, new at every start; also in {}):",
            self.tokens_file.display()
        );
        for (role, scope, token) in &self.tokens {
            println!("  {:<10} {:<52} {token}", role.as_str(), scope);
        }
        println!("API: http://{bound}/v1/openapi.json · stop with Ctrl-C");
    }
}

/// Warns about each of the ledger's files that others than its owner may read: the ledger
/// creates them 0600, so such a file was copied in or changed by hand.
fn warn_readable_files(cli: &Cli) {
    let mut files = vec![
        cli.key_store_path(),
        cli.access_log_path(),
        cli.master_key_path(),
        cli.key_path(None),
        cli.data_dir().join("digests.jsonl"),
    ];
    if let Some(p) = cli.store.strip_prefix("sqlite:") {
        let p = std::path::Path::new(p);
        files.push(p.to_path_buf());
        files.push(campaign_ledger::projection::db_path_for(p));
    }
    for (path, mode) in campaign_ledger::support::files::readable_by_others(&files) {
        eprintln!(
            "warning: {} has mode {mode:04o}: others can read or write it, and it holds health data or keys; \
             `chmod 600 {}` (the ledger creates its files 0600)",
            path.display(),
            path.display()
        );
    }
}
