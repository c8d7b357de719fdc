//! A downstream consumer of the ledger's events on NATS JetStream.
//!
//! Reads `LEDGER_EVENTS` for one directorate (subject `ledger.v1.events.<directorate>.>`),
//! recomputes each event's hash from the CloudEvent alone (SHA-256 of its prev_hash and its
//! envelope bytes, as `campaign-ledger audit verify` does), and prints a running count.
//! A filtered reader cannot check the links between consecutive events (it does not see them
//! all); without a filter (`_all`) it checks those too.
//!
//! ```sh
//! cargo run --example consumer -- lyon                      # LEDGER_NATS or nats://127.0.0.1:4222
//! cargo run --example consumer -- _all --nats nats://127.0.0.1:4222 --stop-after 1000
//! ```

use async_nats::jetstream::{self, consumer::pull::OrderedConfig, consumer::DeliverPolicy};
use campaign_ledger::bus::{cloudevents, STREAM};
use campaign_ledger::store::chain_hash;
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let directorate = args.first().cloned().unwrap_or_else(|| "_all".into());
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let url = flag("--nats")
        .or_else(|| std::env::var("LEDGER_NATS").ok())
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let stop_after: Option<u64> = flag("--stop-after").and_then(|n| n.parse().ok());
    let idle = Duration::from_secs(
        flag("--idle-exit")
            .and_then(|n| n.parse().ok())
            .unwrap_or(u64::MAX / 4),
    );

    let client = async_nats::connect(&url).await?;
    let js = jetstream::new(client);
    let stream = js.get_stream(STREAM).await?;
    let filter = if directorate == "_all" {
        format!("{}.>", cloudevents::SUBJECT_PREFIX)
    } else {
        format!("{}.{directorate}.>", cloudevents::SUBJECT_PREFIX)
    };
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: filter.clone(),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    println!("reading {filter} from {url}");

    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let (mut seen, mut last_position, mut last_hash) = (0u64, 0u64, None::<[u8; 32]>);
    loop {
        let next = match tokio::time::timeout(idle, messages.next()).await {
            Ok(Some(m)) => m?,
            Ok(None) | Err(_) => break,
        };
        let e = cloudevents::decode(&next.payload)?;
        if chain_hash(&e.prev_hash, &e.as_ref()) != e.hash {
            return Err(format!(
                "event at position {} does not match its hash: altered",
                e.position
            )
            .into());
        }
        if e.position <= last_position {
            return Err(format!(
                "position {} after {last_position}: out of order",
                e.position
            )
            .into());
        }
        if directorate == "_all" {
            if let Some(h) = last_hash {
                if e.prev_hash != h || e.position != last_position + 1 {
                    return Err(format!("the chain breaks before position {}", e.position).into());
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
