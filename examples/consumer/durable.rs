//! The durable consumer: resumes after a crash, skips what it already processed (by
//! `ledgerposition`), verifies each event's hash (and, reading every directorate, each link).

use super::Args;
use async_nats::jetstream::{consumer::pull, consumer::AckPolicy, consumer::DeliverPolicy};
use campaign_ledger::bus::STREAM;
use campaign_ledger::envelope::cloudevents;
use campaign_ledger::store::chain_hash;
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// What was processed, kept in the state file.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct State {
    /// The last position processed.
    position: u64,
    /// Its hash (hex): the next event's `ledgerprevhash` when reading every directorate.
    hash: String,
    /// Events processed, by type.
    counts: BTreeMap<String, u64>,
    /// Messages redelivered and skipped because already processed.
    skipped: u64,
}

impl State {
    fn load(path: &Path) -> Result<State, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| format!("{} is not this consumer's state ({e})", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Replaces the file atomically (write, fsync, rename): a crash leaves the old or the new.
    fn save(&self, path: &Path) -> Result<(), String> {
        use std::io::Write as _;
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)
            .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        f.write_all(&serde_json::to_vec(self).expect("state serializes"))
            .and_then(|()| f.sync_all())
            .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))
    }

    fn processed(&self) -> u64 {
        self.counts.values().sum()
    }
}

pub(super) async fn run(args: Args) -> Result<(), String> {
    let (name, state_path) = (
        args.durable.clone().unwrap_or_default(),
        args.state.clone().unwrap_or_default(),
    );
    let mut state = State::load(&state_path)?;
    let (stream, filter) = super::open_stream(&args.url, &args.directorate).await?;
    let consumer = stream
        .get_or_create_consumer(
            &name,
            pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: filter.clone(),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::Explicit,
                ack_wait: args.ack_wait,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("cannot create the durable consumer {name:?} on {STREAM}: {e}"))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| format!("cannot read {STREAM}: {e}"))?;
    println!(
        "durable consumer {name:?} reading {filter} from {}; resuming after position {} ({} events processed so far)",
        args.url,
        state.position,
        state.processed()
    );
    let mut this_run = 0u64;
    let mut quiet = Duration::ZERO;
    let tick = Duration::from_secs(1);
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        let next = tokio::select! {
            _ = &mut stop => break,
            m = tokio::time::timeout(tick, messages.next()) => m,
        };
        let message = match next {
            Ok(Some(m)) => m.map_err(|e| format!("reading {STREAM}: {e}"))?,
            Ok(None) => break,
            Err(_) => {
                quiet += tick;
                if args.idle_exit.is_some_and(|i| quiet >= i) {
                    break;
                }
                continue;
            }
        };
        quiet = Duration::ZERO;
        let e = cloudevents::decode(&message.payload).map_err(|e| format!("{STREAM}: {e}"))?;
        if e.position <= state.position {
            // Processed before a crash that came before its acknowledgement: skip it.
            state.skipped += 1;
            state.save(&state_path)?;
            message.ack().await.map_err(|e| format!("ack: {e}"))?;
            continue;
        }
        if chain_hash(&e.prev_hash, &e.as_ref()) != e.hash {
            return Err(format!(
                "event at position {} does not match its hash: altered",
                e.position
            ));
        }
        if args.directorate == "_all" && state.position > 0 {
            let linked = hex::encode(e.prev_hash) == state.hash;
            if !linked || e.position != state.position + 1 {
                return Err(format!("the chain breaks before position {}", e.position));
            }
        }
        // The processing of the event goes here (a dashboard's counts: by type).
        *state.counts.entry(e.event_type.clone()).or_default() += 1;
        state.position = e.position;
        state.hash = hex::encode(e.hash);
        state.save(&state_path)?;
        this_run += 1;
        if args.exit_before_ack_after.is_some_and(|n| this_run >= n) {
            println!(
                "exiting before acknowledging position {} (a simulated crash)",
                e.position
            );
            std::process::exit(3);
        }
        message.ack().await.map_err(|e| format!("ack: {e}"))?;
        if args.stop_after.is_some_and(|n| this_run >= n) {
            break;
        }
    }
    println!(
        "{} events processed and verified, up to position {} ({} this run, {} redelivered and skipped):",
        state.processed(),
        state.position,
        this_run,
        state.skipped
    );
    for (t, n) in &state.counts {
        println!("  {t:<24} {n}");
    }
    Ok(())
}
