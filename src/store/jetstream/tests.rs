//! Unit tests of the JetStream log's subjects and URLs.

use super::*;

#[test]
fn subjects_hold_any_stream_id_and_tell_them_apart() {
    assert_eq!(log_subject("person:P-1"), "ledger.v1.log.person:P-1");
    assert_eq!(log_subject("a.b c*>"), "ledger.v1.log.a%2Eb%20c%2A%3E");
    assert_eq!(log_subject(""), "ledger.v1.log.%");
    assert_ne!(log_subject("a%2E"), log_subject("a."));
    assert_eq!(log_subject("é"), "ledger.v1.log.%C3%A9");
}

#[test]
fn urls_take_several_servers_replicas_and_the_publish_mode() {
    let url = |servers: &str, replicas, batch, stream: &str| url::LogUrl {
        servers: servers.into(),
        replicas,
        batch,
        stream: stream.into(),
    };
    assert_eq!(
        parse_url("nats://127.0.0.1:4222,nats://127.0.0.1:4223?replicas=3").unwrap(),
        url(
            "nats://127.0.0.1:4222,nats://127.0.0.1:4223",
            Some(3),
            true,
            LOG_STREAM
        )
    );
    assert_eq!(
        parse_url("nats://127.0.0.1:4222").unwrap(),
        url("nats://127.0.0.1:4222", None, true, LOG_STREAM)
    );
    assert_eq!(
        parse_url("nats://127.0.0.1:4222?replicas=3&publish=each&stream=LEDGER_LOG_V2").unwrap(),
        url("nats://127.0.0.1:4222", Some(3), false, "LEDGER_LOG_V2")
    );
    assert_eq!(subject_prefix(LOG_STREAM), "ledger.v1.log");
    assert_eq!(
        subject_prefix("LEDGER_LOG_V2"),
        "ledger.v1.log-ledger_log_v2"
    );
    for bad in [
        "nats://127.0.0.1:4222?publish=sometimes",
        "nats://127.0.0.1:4222?replicas=0",
        "nats://127.0.0.1:4222?replicas=x",
        "nats://127.0.0.1:4222?stream=x.y",
        "nats://127.0.0.1:4222?nope=X",
        "nats://127.0.0.1:x",
        "nats://",
    ] {
        let e = parse_url(bad).unwrap_err().to_string();
        assert!(e.contains(bad.split('?').next().unwrap()), "{e}");
    }
}
