//! A downstream consumer of the ledger's events on NATS JetStream.
//!
//! Reads `LEDGER_EVENTS` for one directorate (subject `ledger.v1.events.<directorate>.>`),
//! recomputes each event's hash from the CloudEvent alone (SHA-256 of its prev_hash and its
//! envelope bytes, as `campaign-ledger audit verify` does), and prints a running count: every
//! 500 events, and whenever it has caught up with the stream. Ctrl-C (or `--idle-exit`,
//! `--stop-after`) ends it with a summary by event type.
//! A filtered reader cannot check the links between consecutive events (it does not see them
//! all); without a filter (`_all`) it checks those too.
//!
//!
//! With `--durable NAME --state FILE` it is the consumer a downstream system runs: a durable
//! JetStream consumer (the server remembers what was acknowledged), which resumes after a crash
//! where it stopped. Each event is processed, then the state file (last position and hash,
//! counts) is replaced atomically, then the message is acknowledged: a crash between the two
//! redelivers a message already processed, which is recognised by its `ledgerposition` (not
//! above the state's) and skipped. `--exit-before-ack-after N` simulates that crash.
//!
//! ```sh
//! cargo run --example consumer -- lyon                      # LEDGER_NATS or nats://127.0.0.1:4222
//! cargo run --example consumer -- lyon --durable lyon-dashboard --state lyon.json --idle-exit 2
//! cargo run --example consumer -- _all --nats nats://127.0.0.1:4222 --stop-after 1000
//! cargo run --example consumer -- paris --idle-exit 2       # stop after 2 s without news
//! ```

mod durable;

use async_nats::jetstream::{self, consumer::pull::OrderedConfig, consumer::DeliverPolicy};
use campaign_ledger::bus::STREAM;
use campaign_ledger::envelope::cloudevents;
use campaign_ledger::store::chain_hash;
use futures_util::StreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const USAGE: &str =
    "usage: consumer [DIRECTORATE|_all] [--nats URL] [--stop-after N] [--idle-exit SECONDS]
                [--durable NAME --state FILE [--ack-wait SECONDS] [--exit-before-ack-after N]]";

struct Args {
    directorate: String,
    url: String,
    stop_after: Option<u64>,
    idle_exit: Option<Duration>,
    durable: Option<String>,
    state: Option<std::path::PathBuf>,
    ack_wait: Duration,
    exit_before_ack_after: Option<u64>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut directorate = None;
    let mut url = std::env::var("LEDGER_NATS").ok();
    let (mut stop_after, mut idle_exit) = (None, None);
    let (mut durable, mut state, mut exit_before_ack_after) = (None, None, None);
    let mut ack_wait = Duration::from_secs(30);
    while let Some(a) = args.next() {
        let mut value = |flag: &str| {
            args.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        let number = |flag: &str, v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag} takes a whole number, not {v:?}\n{USAGE}"))
        };
        match a.as_str() {
            "--nats" => url = Some(value("--nats")?),
            "--stop-after" => stop_after = Some(number("--stop-after", value("--stop-after")?)?),
            "--idle-exit" => {
                idle_exit = Some(Duration::from_secs(number(
                    "--idle-exit",
                    value("--idle-exit")?,
                )?))
            }
            "--durable" => durable = Some(value("--durable")?),
            "--state" => state = Some(std::path::PathBuf::from(value("--state")?)),
            "--ack-wait" => {
                ack_wait = Duration::from_secs(number("--ack-wait", value("--ack-wait")?)?.max(1))
            }
            "--exit-before-ack-after" => {
                exit_before_ack_after = Some(number(
                    "--exit-before-ack-after",
                    value("--exit-before-ack-after")?,
                )?)
            }
            "-h" | "--help" => return Err(USAGE.into()),
            flag if flag.starts_with('-') => return Err(format!("unknown flag {flag}\n{USAGE}")),
            d if directorate.is_none() => directorate = Some(d.to_string()),
            extra => {
                return Err(format!(
                    "one directorate at a time ({extra:?} is a second)\n{USAGE}"
                ))
            }
        }
    }
    if durable.is_some() != state.is_some() {
        return Err(format!(
            "--durable and --state go together: the server remembers what was acknowledged, the state file what was processed\n{USAGE}"
        ));
    }
    Ok(Args {
        directorate: directorate.unwrap_or_else(|| "_all".into()),
        url: url.unwrap_or_else(|| "nats://127.0.0.1:4222".into()),
        stop_after,
        idle_exit,
        durable,
        state,
        ack_wait,
        exit_before_ack_after,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let result = match parse_args() {
        Ok(args) => run(args).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

/// The stream `LEDGER_EVENTS` at `url`, and the subject filter of `directorate` (`_all`: all).
async fn open_stream(
    url: &str,
    directorate: &str,
) -> Result<(jetstream::stream::Stream, String), String> {
    let client = async_nats::connect(url).await.map_err(|e| {
        format!("cannot reach NATS at {url} ({e}): start nats-server -js there, or give --nats URL")
    })?;
    let js = jetstream::new(client);
    let stream = js.get_stream(STREAM).await.map_err(|e| {
        format!("no stream {STREAM} at {url} ({e}): run `campaign-ledger relay --nats {url}` first")
    })?;
    let prefix = cloudevents::SUBJECT_PREFIX;
    let filter = if directorate == "_all" {
        format!("{prefix}.>")
    } else {
        format!("{prefix}.{directorate}.>")
    };
    Ok((stream, filter))
}

async fn run(args: Args) -> Result<(), String> {
    if args.durable.is_some() {
        return durable::run(args).await;
    }
    let Args {
        directorate,
        url,
        stop_after,
        idle_exit,
        ..
    } = args;
    let (stream, filter) = open_stream(&url, &directorate).await?;
    let prefix = cloudevents::SUBJECT_PREFIX;
    if directorate != "_all" {
        // Say so when the stream holds nothing for that directorate: a typo reads nothing.
        let mut subjects = stream
            .info_with_subjects(format!("{prefix}.*.*"))
            .await
            .map_err(|e| format!("cannot read {STREAM}'s subjects: {e}"))?;
        let mut known = BTreeSet::new();
        while let Some(s) = subjects.next().await {
            let (subject, _) = s.map_err(|e| format!("cannot read {STREAM}'s subjects: {e}"))?;
            if let Some(d) = subject.split('.').nth(3) {
                known.insert(d.to_string());
            }
        }
        if !known.contains(&directorate) {
            eprintln!(
                "warning: {STREAM} holds no event of directorate {directorate:?} so far; directorates with events: {}. Waiting for some.",
                known.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
    }
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: filter.clone(),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("cannot read {STREAM}: {e}"))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| format!("cannot read {STREAM}: {e}"))?;
    println!("reading {filter} from {url}");

    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let (mut seen, mut last_position, mut last_hash) = (0u64, 0u64, None::<[u8; 32]>);
    let mut reported = None;
    let mut quiet = Duration::ZERO;
    let tick = Duration::from_secs(1);
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        let next = tokio::select! {
            _ = &mut stop => break,
            m = tokio::time::timeout(tick, messages.next()) => m,
        };
        let next = match next {
            Ok(Some(m)) => m.map_err(|e| format!("reading {STREAM}: {e}"))?,
            Ok(None) => break,
            Err(_) => {
                // A second without news: caught up.
                if reported != Some(seen) {
                    println!("{seen} events verified, up to position {last_position}; caught up, waiting for more (Ctrl-C to stop)");
                    reported = Some(seen);
                }
                quiet += tick;
                if idle_exit.is_some_and(|i| quiet >= i) {
                    break;
                }
                continue;
            }
        };
        quiet = Duration::ZERO;
        let e = cloudevents::decode(&next.payload).map_err(|e| {
            format!(
                "stream sequence {}: {e}",
                next.info().map(|i| i.stream_sequence).unwrap_or(0)
            )
        })?;
        if chain_hash(&e.prev_hash, &e.as_ref()) != e.hash {
            return Err(format!(
                "event at position {} does not match its hash: altered",
                e.position
            ));
        }
        if e.position <= last_position {
            return Err(format!(
                "position {} after {last_position}: out of order",
                e.position
            ));
        }
        if directorate == "_all" {
            if let Some(h) = last_hash {
                if e.prev_hash != h || e.position != last_position + 1 {
                    return Err(format!("the chain breaks before position {}", e.position));
                }
            }
        }
        last_position = e.position;
        last_hash = Some(e.hash);
        seen += 1;
        *counts.entry(e.event_type.clone()).or_default() += 1;
        if seen % 500 == 0 {
            println!("{seen} events verified (position {last_position})");
        }
        if stop_after.is_some_and(|n| seen >= n) {
            break;
        }
    }
    println!("{seen} events verified, up to position {last_position}:");
    for (t, n) in counts {
        println!("  {t:<24} {n}");
    }
    Ok(())
}
