//! The store contract suite, run against JetStream as the log (a real `nats-server -js` per test),
//! plus what only a shared, networked log has to prove.

use crate::support;

use campaign_ledger::store::{
    AppendResult, EventStore, ExpectedVersion, JetStreamStore, SystemClock, LOG_STREAM,
};
use std::sync::Arc;
use support::contract::{event, request, two_handles_go_on_after_the_conflict};
use support::nats::NatsServer;

fn nats() -> (Arc<dyn EventStore>, NatsServer) {
    let server = NatsServer::start();
    let store =
        JetStreamStore::open(&server.url(), Arc::new(SystemClock)).expect("the NATS log opens");
    (Arc::new(store), server)
}

crate::store_contract!(nats);

/// The same contract with `publish=each`: a group of single-event commands published one
/// message each, pipelined, rather than as one atomic batch.
mod publish_each {
    use super::*;

    fn nats_each() -> (Arc<dyn EventStore>, NatsServer) {
        let server = NatsServer::start();
        let store = JetStreamStore::open(
            &format!("{}?publish=each", server.url()),
            Arc::new(SystemClock),
        )
        .expect("the NATS log opens");
        (Arc::new(store), server)
    }

    crate::store_contract!(nats_each);
}

#[test]
fn nats_command_ids_and_the_chain_survive_a_reopen_and_a_server_restart() {
    let mut server = NatsServer::start();
    let id = uuid::Uuid::now_v7();
    let head = {
        let s = JetStreamStore::open(&server.url(), Arc::new(SystemClock)).unwrap();
        s.append(request("a", ExpectedVersion::Exact(0), id, vec![event(1)]))
            .unwrap();
        s.head().unwrap()
    };
    server.restart();
    let s = JetStreamStore::open(&server.url(), Arc::new(SystemClock)).unwrap();
    assert_eq!(s.head().unwrap(), head);
    // permanent idempotency: the dedupe window plays no part, the log itself is the record
    assert!(matches!(
        s.append(request("a", ExpectedVersion::Any, id, vec![event(2)]))
            .unwrap(),
        AppendResult::Duplicate(_)
    ));
    let AppendResult::Committed(rec) = s
        .append(request(
            "a",
            ExpectedVersion::Exact(1),
            uuid::Uuid::now_v7(),
            vec![event(3)],
        ))
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(rec.first_position, 2);
    assert_eq!(s.read_all(1, 1).unwrap()[0].prev_hash, head.hash);
}

#[test]
fn nats_two_processes_sharing_the_log_cannot_take_the_same_version() {
    let server = NatsServer::start();
    let a = JetStreamStore::open(&server.url(), Arc::new(SystemClock)).unwrap();
    let b = JetStreamStore::open(&server.url(), Arc::new(SystemClock)).unwrap();
    let id = uuid::Uuid::now_v7();
    a.append(request("s", ExpectedVersion::Exact(0), id, vec![event(1)]))
        .unwrap();
    // b has never seen stream s: its expectation is stale, the server's check catches it
    assert!(matches!(
        b.append(request(
            "s",
            ExpectedVersion::Exact(0),
            uuid::Uuid::now_v7(),
            vec![event(2)]
        )),
        Err(campaign_ledger::store::StoreError::Conflict { actual: 1, .. })
    ));
    // and b knows a's command id without having written it
    assert!(matches!(
        b.append(request("s", ExpectedVersion::Any, id, vec![event(9)])),
        Ok(AppendResult::Duplicate(_))
    ));
    two_handles_go_on_after_the_conflict(&a, &b);
    assert!(campaign_ledger::audit::verify(&b, &mut |_| {}).is_ok());
}

#[test]
fn nats_a_multi_event_append_is_one_atomic_batch() {
    let server = NatsServer::start();
    let s = JetStreamStore::open(&server.url(), Arc::new(SystemClock)).unwrap();
    let AppendResult::Committed(rec) = s
        .append(request(
            "multi",
            ExpectedVersion::Exact(0),
            uuid::Uuid::now_v7(),
            (1..=5).map(event).collect(),
        ))
        .unwrap()
    else {
        panic!()
    };
    assert_eq!((rec.first_position, rec.last_position), (1, 5));
    let events = s.read_stream("multi").unwrap();
    assert_eq!(
        events.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    // over the limit of one batch: refused whole, nothing stored
    let err = s
        .append(request(
            "big",
            ExpectedVersion::Exact(0),
            uuid::Uuid::now_v7(),
            (1..=1001).map(event).collect(),
        ))
        .unwrap_err();
    assert!(err.to_string().contains("1000"), "{err}");
    assert_eq!(s.head().unwrap().position, 5);
}

#[test]
fn nats_a_log_not_written_by_the_ledger_is_refused_by_name() {
    let server = NatsServer::start();
    drop(JetStreamStore::open(&server.url(), Arc::new(SystemClock)).unwrap());
    // someone else publishes into the log's subjects
    support::nats::rt().block_on(async {
        let c = async_nats::connect(server.url()).await.unwrap();
        let js = async_nats::jetstream::new(c);
        js.publish("ledger.v1.log.x", "not an event".into())
            .await
            .unwrap()
            .await
            .unwrap();
    });
    let err = JetStreamStore::open(&server.url(), Arc::new(SystemClock))
        .err()
        .expect("refused");
    assert!(err.to_string().contains(LOG_STREAM), "{err}");
}

#[test]
fn nats_two_processes_appending_multi_event_commands_at_once_never_interleave_them() {
    let server = NatsServer::start();
    let stores: Vec<Arc<JetStreamStore>> = (0..2)
        .map(|_| Arc::new(JetStreamStore::open(&server.url(), Arc::new(SystemClock)).unwrap()))
        .collect();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let s = stores[t % 2].clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    let r = s
                        .append(request(
                            &format!("t{t}-{i}"),
                            ExpectedVersion::Exact(0),
                            uuid::Uuid::now_v7(),
                            (1..=3).map(event).collect(),
                        ))
                        .unwrap();
                    assert!(matches!(r, AppendResult::Committed(_)));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // A fresh handle rebuilds its index from the log, refusing a command split in two.
    let fresh = JetStreamStore::open(&server.url(), Arc::new(SystemClock)).unwrap();
    assert_eq!(fresh.head().unwrap().position, 8 * 25 * 3);
    let all = fresh.read_all(0, 1000).unwrap();
    for chunk in all.chunks(3) {
        assert!(chunk.iter().all(|e| e.command_id == chunk[0].command_id));
        assert_eq!(
            chunk.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
    }
    assert!(campaign_ledger::audit::verify(&fresh, &mut |_| {}).is_ok());
}

#[test]
fn nats_a_long_log_is_refused_at_the_first_message_it_cannot_index() {
    // Opening reads a long log (more than 64 messages) through a consumer, indexing on a
    // thread of its own: a bad message there is refused by sequence, whichever side finds it,
    // and the first bad one is named when there are several.
    for (bad, says) in [
        (
            vec![false],
            "position 101 has no Ledger-Command-Hash header",
        ),
        (vec![true], "sequence 101: not a ledger CloudEvent"),
        (vec![true, false], "sequence 101: not a ledger CloudEvent"),
    ] {
        let server = NatsServer::start();
        {
            let s = JetStreamStore::open(&server.url(), Arc::new(SystemClock)).unwrap();
            s.append(request(
                "a",
                ExpectedVersion::Exact(0),
                uuid::Uuid::now_v7(),
                (1..=100).map(event).collect(),
            ))
            .unwrap();
        }
        support::nats::rt().block_on(async {
            let c = async_nats::connect(server.url()).await.unwrap();
            let js = async_nats::jetstream::new(c);
            for &headers in &bad {
                let ack = if headers {
                    let mut h = async_nats::HeaderMap::new();
                    h.insert("Ledger-Command-Hash", "00".repeat(32).as_str());
                    js.publish_with_headers("ledger.v1.log.a", h, "not an event".into())
                        .await
                } else {
                    js.publish("ledger.v1.log.a", "not an event".into()).await
                };
                ack.unwrap().await.unwrap();
            }
        });
        let err = JetStreamStore::open(&server.url(), Arc::new(SystemClock))
            .err()
            .expect("refused");
        let err = err.to_string();
        assert!(
            err.contains(LOG_STREAM) && err.contains(says),
            "{bad:?}: {err}"
        );
    }
}
