//! The store contract: every backend must pass these. A backend's test file calls
//! `store_contract!(factory)` where `factory()` returns a fresh, empty store.

use campaign_ledger::store::{
    chain_hash, subscribe, Actor, AppendRequest, AppendResult, CommandMeta, EventStore,
    ExpectedVersion, NewEvent, StoreError, GENESIS_HASH,
};
use chrono::DateTime;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

pub fn event(n: u64) -> NewEvent {
    NewEvent {
        event_type: "TestHappened".into(),
        schema_version: 1,
        occurred_at: DateTime::parse_from_rfc3339("2021-12-17T10:00:00+01:00").unwrap(),
        data: format!("{{\"n\":{n}}}"),
    }
}

pub fn request(
    stream: &str,
    expected: ExpectedVersion,
    command: Uuid,
    events: Vec<NewEvent>,
) -> AppendRequest {
    AppendRequest {
        stream_id: stream.into(),
        expected,
        command: CommandMeta {
            command_id: command,
            content_hash: [7; 32],
            correlation_id: Some("contract".into()),
            actor: Actor {
                role: "test".into(),
                directorate: Some("lyon".into()),
                agent_ref: None,
            },
        },
        events,
        person: None,
    }
}

fn committed(r: Result<AppendResult, StoreError>) -> campaign_ledger::store::CommandRecord {
    match r {
        Ok(AppendResult::Committed(rec)) => rec,
        other => panic!("expected a commit, got {other:?}"),
    }
}

/// Two handles on one log (two processes), after `b` was refused a stale version of stream
/// `s` that `a` wrote: `b` appends at the right version, `a` on another stream, and the log
/// is one gapless chain.
pub fn two_handles_go_on_after_the_conflict(a: &dyn EventStore, b: &dyn EventStore) {
    b.append(request(
        "s",
        ExpectedVersion::Exact(1),
        uuid::Uuid::now_v7(),
        vec![event(2)],
    ))
    .unwrap();
    a.append(request(
        "t",
        ExpectedVersion::Exact(0),
        uuid::Uuid::now_v7(),
        vec![event(3)],
    ))
    .unwrap();
    let all = a.read_all(0, 10).unwrap();
    assert_eq!(
        all.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(all[2].prev_hash, all[1].hash);
    assert!(campaign_ledger::audit::verify(a, &mut |_| {}).is_ok());
}

pub fn appends_get_gapless_positions_and_stream_versions(s: Arc<dyn EventStore>) {
    let a = committed(s.append(request(
        "a",
        ExpectedVersion::Exact(0),
        Uuid::now_v7(),
        vec![event(1), event(2)],
    )));
    assert_eq!((a.first_position, a.last_position), (1, 2));
    let b = committed(s.append(request(
        "b",
        ExpectedVersion::Exact(0),
        Uuid::now_v7(),
        vec![event(3)],
    )));
    assert_eq!((b.first_position, b.last_position), (3, 3));
    let c = committed(s.append(request(
        "a",
        ExpectedVersion::Exact(2),
        Uuid::now_v7(),
        vec![event(4)],
    )));
    assert_eq!(c.first_position, 4);
    let all = s.read_all(0, 100).unwrap();
    assert_eq!(
        all.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    let a_events = s.read_stream("a").unwrap();
    assert_eq!(
        a_events
            .iter()
            .map(|e| (e.stream_version, e.position))
            .collect::<Vec<_>>(),
        vec![(1, 1), (2, 2), (3, 4)]
    );
    assert_eq!(s.head().unwrap().position, 4);
    assert!(s.read_stream("nothing").unwrap().is_empty());
}

pub fn a_stale_expected_version_is_a_conflict_and_appends_nothing(s: Arc<dyn EventStore>) {
    committed(s.append(request(
        "a",
        ExpectedVersion::Exact(0),
        Uuid::now_v7(),
        vec![event(1)],
    )));
    match s.append(request(
        "a",
        ExpectedVersion::Exact(0),
        Uuid::now_v7(),
        vec![event(2), event(3)],
    )) {
        Err(StoreError::Conflict {
            stream,
            expected,
            actual,
        }) => {
            assert_eq!((stream.as_str(), expected, actual), ("a", 0, 1));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    match s.append(request(
        "a",
        ExpectedVersion::Exact(5),
        Uuid::now_v7(),
        vec![event(2)],
    )) {
        Err(StoreError::Conflict { actual: 1, .. }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(s.head().unwrap().position, 1);
    committed(s.append(request(
        "a",
        ExpectedVersion::Any,
        Uuid::now_v7(),
        vec![event(4)],
    )));
    assert_eq!(s.read_stream("a").unwrap().len(), 2);
}

pub fn a_command_id_is_recorded_once_forever(s: Arc<dyn EventStore>) {
    let id = Uuid::now_v7();
    let first = committed(s.append(request("a", ExpectedVersion::Exact(0), id, vec![event(1)])));
    for stream in ["a", "b"] {
        match s.append(request(stream, ExpectedVersion::Any, id, vec![event(2)])) {
            Ok(AppendResult::Duplicate(rec)) => assert_eq!(rec, first),
            other => panic!("expected a duplicate, got {other:?}"),
        }
    }
    assert_eq!(s.head().unwrap().position, 1);
    assert_eq!(s.command(id).unwrap(), Some(first));
    assert_eq!(s.command(Uuid::now_v7()).unwrap(), None);
}

pub fn an_empty_append_is_refused(s: Arc<dyn EventStore>) {
    assert!(matches!(
        s.append(request(
            "a",
            ExpectedVersion::Exact(0),
            Uuid::now_v7(),
            vec![]
        )),
        Err(StoreError::Invalid(_))
    ));
}

pub fn the_chain_links_every_event_and_commit_times_never_go_back(s: Arc<dyn EventStore>) {
    for i in 0..20 {
        committed(s.append(request(
            &format!("s{}", i % 3),
            ExpectedVersion::Any,
            Uuid::now_v7(),
            vec![event(i)],
        )));
    }
    let all = s.read_all(0, 100).unwrap();
    let mut prev = GENESIS_HASH;
    let mut last_time = String::new();
    for e in &all {
        assert_eq!(e.prev_hash, prev, "position {}", e.position);
        assert_eq!(
            chain_hash(&prev, &e.as_ref()),
            e.hash,
            "position {}",
            e.position
        );
        assert!(e.recorded_at >= last_time);
        assert_eq!(e.correlation_id.as_deref(), Some("contract"));
        assert!(e.actor.contains("\"role\":\"test\""));
        last_time = e.recorded_at.clone();
        prev = e.hash;
    }
    assert_eq!(s.head().unwrap().hash, prev);
}

pub fn read_all_pages_and_scan_agree(s: Arc<dyn EventStore>) {
    for i in 0..25 {
        committed(s.append(request(
            "p",
            ExpectedVersion::Exact(i),
            Uuid::now_v7(),
            vec![event(i)],
        )));
    }
    let page = s.read_all(10, 5).unwrap();
    assert_eq!(
        page.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![11, 12, 13, 14, 15]
    );
    let mut scanned = Vec::new();
    let n = s
        .scan(3, 9, &mut |e| {
            scanned.push((e.position, e.hash, e.data.to_string()));
            true
        })
        .unwrap();
    assert_eq!(n, 6);
    let read: Vec<_> = s
        .read_all(3, 6)
        .unwrap()
        .into_iter()
        .map(|e| (e.position, e.hash, e.data))
        .collect();
    assert_eq!(scanned, read);
}

pub fn concurrent_writers_on_one_stream_never_share_a_version(s: Arc<dyn EventStore>) {
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut won = 0;
                for _ in 0..25 {
                    loop {
                        let v = s.read_stream("hot").unwrap().len() as u64;
                        match s.append(request(
                            "hot",
                            ExpectedVersion::Exact(v),
                            Uuid::now_v7(),
                            vec![event(v)],
                        )) {
                            Ok(AppendResult::Committed(_)) => {
                                won += 1;
                                break;
                            }
                            Err(StoreError::Conflict { .. }) => continue,
                            other => panic!("{other:?}"),
                        }
                    }
                }
                won
            })
        })
        .collect();
    let won: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(won, 200);
    let versions: Vec<u64> = s
        .read_stream("hot")
        .unwrap()
        .iter()
        .map(|e| e.stream_version)
        .collect();
    assert_eq!(versions, (1..=200).collect::<Vec<_>>());
}

pub fn concurrent_writers_on_many_streams_keep_positions_gapless(s: Arc<dyn EventStore>) {
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..30u64 {
                    committed(s.append(request(
                        &format!("w{t}"),
                        ExpectedVersion::Exact(i * 2),
                        Uuid::now_v7(),
                        vec![event(i), event(i)],
                    )));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let all = s.read_all(0, 10_000).unwrap();
    assert_eq!(all.len(), 16 * 30 * 2);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.position, i as u64 + 1);
    }
    // the two events of one append are adjacent
    for pair in all.chunks(2) {
        assert_eq!(pair[0].command_id, pair[1].command_id);
    }
}

pub fn a_subscription_catches_up_then_follows_live_without_gap_or_duplicate(
    s: Arc<dyn EventStore>,
) {
    for i in 0..50 {
        committed(s.append(request(
            "s",
            ExpectedVersion::Exact(i),
            Uuid::now_v7(),
            vec![event(i)],
        )));
    }
    let mut sub = subscribe(s.clone(), 10);
    let writer = {
        let s = s.clone();
        std::thread::spawn(move || {
            for i in 50..300 {
                committed(s.append(request(
                    "s",
                    ExpectedVersion::Exact(i),
                    Uuid::now_v7(),
                    vec![event(i)],
                )));
            }
        })
    };
    let mut seen = Vec::new();
    while seen.len() < 290 {
        match sub.next_timeout(Duration::from_secs(10)).unwrap() {
            Some(e) => seen.push(e.position),
            None => panic!("subscription stalled at {:?}", seen.last()),
        }
    }
    writer.join().unwrap();
    assert_eq!(seen, (11..=300).collect::<Vec<_>>());
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 290);
    assert!(sub
        .next_timeout(Duration::from_millis(100))
        .unwrap()
        .is_none());
}

/// The store keeps the log's Merkle tree in step with the log, under concurrent appends:
/// every prefix's root is the root of its events, and every inclusion and consistency proof
/// made from the store's nodes verifies.
pub fn the_merkle_tree_proves_every_event_and_every_prefix(s: Arc<dyn EventStore>) {
    use campaign_ledger::audit::tree::{prove_consistency, prove_inclusion, root_at, verify_tree};
    use campaign_ledger::envelope::merkle::{verify_consistency, verify_inclusion, MemoryTree};
    assert!(s.keeps_tree());
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut v = 0;
                for i in 0..8u64 {
                    let n = 1 + (t + i) % 3;
                    committed(s.append(request(
                        &format!("m{t}"),
                        ExpectedVersion::Exact(v),
                        Uuid::now_v7(),
                        (0..n).map(|k| event(i * 10 + k)).collect(),
                    )));
                    v += n;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let all = s.read_all(0, 10_000).unwrap();
    let n = all.len() as u64;
    assert_eq!(s.tree_size().unwrap(), n);
    let hex32 = |h: &str| -> [u8; 32] { hex::decode(h).unwrap().try_into().unwrap() };
    let mut tree = MemoryTree::default();
    let mut roots = vec![[0u8; 32]];
    for e in &all {
        tree.push(&e.hash);
        roots.push(tree.root());
        assert_eq!(
            root_at(s.as_ref(), e.position).unwrap(),
            tree.root(),
            "size {}",
            e.position
        );
    }
    for m in [1, 2, 7, n / 2, n - 1, n] {
        for position in (1..=m).step_by(3).chain([m]) {
            let p = prove_inclusion(s.as_ref(), position, m).unwrap();
            let path: Vec<[u8; 32]> = p.audit_path.iter().map(|h| hex32(h)).collect();
            assert_eq!(hex32(&p.root_hash), roots[m as usize]);
            assert!(
                verify_inclusion(
                    position - 1,
                    m,
                    &hex32(&p.leaf_hash),
                    &path,
                    &roots[m as usize]
                ),
                "event {position} in the tree of {m}"
            );
        }
        for first in [1, m / 2, m].into_iter().filter(|f| *f >= 1) {
            let c = prove_consistency(s.as_ref(), first, m).unwrap();
            let path: Vec<[u8; 32]> = c.consistency_path.iter().map(|h| hex32(h)).collect();
            assert!(
                verify_consistency(first, m, &roots[first as usize], &roots[m as usize], &path),
                "{first} → {m}"
            );
        }
    }
    // Sizes and positions outside the log are refused, saying why.
    let says = |e: campaign_ledger::audit::tree::ProofError, what: &str| {
        assert!(e.to_string().contains(what), "{e}");
    };
    says(
        prove_inclusion(s.as_ref(), 1, n + 1).unwrap_err(),
        "beyond the log's head",
    );
    says(prove_inclusion(s.as_ref(), 1, 0).unwrap_err(), "at least 1");
    says(
        prove_inclusion(s.as_ref(), 5, 4).unwrap_err(),
        "outside the tree",
    );
    says(
        prove_consistency(s.as_ref(), 5, 4).unwrap_err(),
        "larger than second",
    );
    verify_tree(s.as_ref(), n).unwrap();
}

/// Generates one `#[test]` per contract case for a backend.
#[macro_export]
macro_rules! store_contract {
    ($factory:expr) => {
        $crate::store_contract!(@cases $factory;
            appends_get_gapless_positions_and_stream_versions,
            a_stale_expected_version_is_a_conflict_and_appends_nothing,
            a_command_id_is_recorded_once_forever,
            an_empty_append_is_refused,
            the_chain_links_every_event_and_commit_times_never_go_back,
            read_all_pages_and_scan_agree,
            concurrent_writers_on_one_stream_never_share_a_version,
            concurrent_writers_on_many_streams_keep_positions_gapless,
            a_subscription_catches_up_then_follows_live_without_gap_or_duplicate,
            the_merkle_tree_proves_every_event_and_every_prefix
        );
    };
    (@cases $factory:expr; $($case:ident),+) => {
        $(
            #[test]
            fn $case() {
                let (store, _guard) = $factory();
                $crate::support::contract::$case(store);
            }
        )+
    };
}
