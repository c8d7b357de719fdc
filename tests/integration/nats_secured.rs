//! NATS as a real deployment runs it: TLS with client certificates (a CA made at test time),
//! an account with a relay user (user and password) that may publish and a consumer (an nkey)
//! that may only read `LEDGER_EVENTS`. The relay publishes with its identity; the NATS-fed
//! projections read with the consumer's; the consumer's identity is refused when it tries to
//! publish; a wrong password and a missing CA give clear errors that name what was refused.

use crate::support;

use std::path::Path;
use std::process::Output;
use support::nats::NatsServer;

const RELAY_PASSWORD: &str = "relay-secret-pw";

/// The server's configuration: TLS verifying client certificates, one account with JetStream,
/// a relay user and a read-only consumer.
fn config(dir: &Path, consumer_public: &str) -> String {
    let p = |f: &str| dir.join(f).display().to_string();
    format!(
        r#"
tls {{
  cert_file: "{server_cert}"
  key_file: "{server_key}"
  ca_file: "{ca}"
  verify: true
  timeout: 3
}}
accounts {{
  LEDGER {{
    jetstream: enabled
    users: [
      {{ user: relay, password: "{RELAY_PASSWORD}" }}
      {{
        nkey: {consumer_public}
        permissions: {{
          publish: {{
            allow: ["$JS.API.INFO", "$JS.API.STREAM.INFO.LEDGER_EVENTS", "$JS.API.CONSUMER.>",
                    "$JS.API.DIRECT.GET.LEDGER_EVENTS", "$JS.API.DIRECT.GET.LEDGER_EVENTS.>",
                    "$JS.API.STREAM.MSG.GET.LEDGER_EVENTS",
                    "$JS.ACK.LEDGER_EVENTS.>", "$JS.FC.>"]
          }}
          subscribe: {{ allow: ["_INBOX.>", "ledger.v1.events.>"] }}
        }}
      }}
    ]
  }}
}}
"#,
        server_cert = p("server.pem"),
        server_key = p("server-key.pem"),
        ca = p("ca.pem"),
    )
}

/// The binary with the client certificate and CA in the environment (as a service would have
/// them), in `dir`.
fn run(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = support::bin();
    c.current_dir(dir)
        .env("LEDGER_NATS_TLS_CA", dir.join("ca.pem"))
        .env("LEDGER_NATS_TLS_CERT", dir.join("client.pem"))
        .env("LEDGER_NATS_TLS_KEY", dir.join("client-key.pem"))
        .args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// The run failed with exit code 2 and its standard error says each of `says`: returns it.
fn refused(o: &Output, says: &[&str]) -> String {
    let err = support::stderr(o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    for s in says {
        assert!(err.contains(s), "{s:?} not in {err}");
    }
    err
}

#[test]
fn the_relay_publishes_with_its_identity_a_consumer_only_reads_and_refusals_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = support::pki::Pki::new();
    pki.write(d);
    let consumer = nkeys::KeyPair::new_user();
    std::fs::write(d.join("consumer.nk"), consumer.seed().unwrap() + "\n").unwrap();
    std::fs::write(d.join("nats.conf"), config(d, &consumer.public_key())).unwrap();
    let nats = NatsServer::start_with(&["-c".into(), d.join("nats.conf").display().to_string()]);
    let url = format!("tls://127.0.0.1:{}", nats.port);

    let store = support::sqlite_store_at(&d.join("ledger.db"));
    support::fill(store.as_ref(), 300);
    drop(store);
    let ledger = format!("sqlite:{}", d.join("ledger.db").display());
    let relay_as = [
        ("LEDGER_NATS_USER", "relay"),
        ("LEDGER_NATS_PASSWORD", RELAY_PASSWORD),
    ];
    // `relay --once` with the relay's identity.
    let relay = || {
        run(
            d,
            &relay_as,
            &["--store", &ledger, "--nats", &url, "relay", "--once"],
        )
    };
    let seed = d.join("consumer.nk").display().to_string();
    // `project --once` with the consumer's identity: it must read what the relay published.
    let project = || {
        let o = run(
            d,
            &[],
            &[
                "--store",
                &ledger,
                "--nats",
                &url,
                "--nats-nkey-seed",
                &seed,
                "--projections-db",
                "nats-projections.db",
                "project",
                "--once",
            ],
        );
        assert!(o.status.success(), "{}", support::stderr(&o));
    };

    // The relay publishes with its own identity, over TLS with its client certificate.
    let o = relay();
    assert!(o.status.success(), "{}", support::stderr(&o));
    let said = support::stdout(&o) + &support::stderr(&o);
    assert!(said.contains("positions 1..300"), "{said}");
    // Its password is never written out.
    assert!(!support::stderr(&o).contains(RELAY_PASSWORD));

    // The consumer's identity reads LEDGER_EVENTS: the NATS-fed projections fold it.
    project();

    // The same identity may not publish there: the relay run with it is refused, and says so.
    let more = support::sqlite_store_at(&d.join("ledger.db"));
    support::fill(more.as_ref(), 10);
    drop(more);
    let o = run(
        d,
        &[],
        &[
            "--store",
            &ledger,
            "--nats",
            &url,
            "--nats-nkey-seed",
            &seed,
            "relay",
            "--once",
            "--retry-for",
            "3s",
        ],
    );
    let err = refused(&o, &["Permissions Violation for Publish"]);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: NATS: NATS refused what the nkey in")
            && last.contains("Permissions Violation for Publish"),
        "{err}"
    );

    // Published by the relay's identity, the 10 new events are a small catch-up for the
    // consumer (read by direct gets, `$JS.API.DIRECT.GET.LEDGER_EVENTS` without a suffix):
    // its read-only permissions allow that too.
    let o = relay();
    assert!(o.status.success(), "{}", support::stderr(&o));
    project();

    // A wrong password: the error names the user refused, not the password.
    let o = run(
        d,
        &[
            ("LEDGER_NATS_USER", "relay"),
            ("LEDGER_NATS_PASSWORD", "wrong-pw"),
        ],
        &[
            "--store",
            &ledger,
            "--nats",
            &url,
            "relay",
            "--once",
            "--retry-for",
            "2s",
        ],
    );
    let err = refused(&o, &["NATS refused user \"relay\""]);
    assert!(
        err.to_lowercase().contains("authorization violation"),
        "{err}"
    );
    assert!(!err.contains("wrong-pw"), "{err}");

    // A CA file that is not there is said at once, before any connection.
    let o = run(
        d,
        &relay_as,
        &[
            "--store",
            &ledger,
            "--nats",
            &url,
            "--nats-tls-ca",
            "nope.pem",
            "relay",
            "--once",
        ],
    );
    refused(&o, &["--nats-tls-ca nope.pem: cannot read it"]);

    // Without a client certificate the server refuses the TLS handshake: said as such.
    let mut c = support::bin();
    let o = c
        .current_dir(d)
        .env("LEDGER_NATS_TLS_CA", d.join("ca.pem"))
        .envs(relay_as)
        .args([
            "--store",
            &ledger,
            "--nats",
            &url,
            "relay",
            "--once",
            "--retry-for",
            "2s",
        ])
        .output()
        .unwrap();
    refused(
        &o,
        &["error: NATS: TLS with NATS failed", "CertificateRequired"],
    );
}

/// A JWT signed by `issuer` (NATS's `ed25519-nkey`), with `claims` (iss, sub, nats…).
fn jwt(issuer: &nkeys::KeyPair, mut claims: serde_json::Value) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    claims["iss"] = issuer.public_key().into();
    claims["iat"] = 1_700_000_000u64.into();
    claims["jti"] = uuid::Uuid::now_v7()
        .simple()
        .to_string()
        .to_uppercase()
        .into();
    let head = b64.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = b64.encode(claims.to_string());
    let signed = format!("{head}.{body}");
    let signature = b64.encode(issuer.sign(signed.as_bytes()).unwrap());
    format!("{signed}.{signature}")
}

#[test]
fn a_credentials_file_of_nats_accounts_in_operator_mode_is_used_and_a_bad_one_is_named() {
    // Operator mode: an operator, an account with JetStream, a user whose creds file holds its
    // JWT and seed (what the operator of the NATS accounts issues).
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let system = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    let operator_jwt = jwt(
        &operator,
        serde_json::json!({"sub": operator.public_key(), "name": "ledger-ops",
            "nats": {"type": "operator", "version": 2}}),
    );
    let account_jwt = jwt(
        &operator,
        serde_json::json!({"sub": account.public_key(), "name": "LEDGER",
            "nats": {"type": "account", "version": 2, "limits": {
                "subs": -1, "conn": -1, "leaf": -1, "imports": -1, "exports": -1, "data": -1,
                "payload": -1, "wildcards": true,
                "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}}}),
    );
    let system_jwt = jwt(
        &operator,
        serde_json::json!({"sub": system.public_key(), "name": "SYS",
            "nats": {"type": "account", "version": 2}}),
    );
    let user_jwt = jwt(
        &account,
        serde_json::json!({"sub": user.public_key(), "name": "relay",
            "nats": {"type": "user", "version": 2, "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1}}),
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("nats.conf"),
        format!(
            "operator: {operator_jwt}\nsystem_account: {sys}\nresolver: MEMORY\nresolver_preload: {{\n  {acc}: {account_jwt}\n  {sys}: {system_jwt}\n}}\n",
            acc = account.public_key(),
            sys = system.public_key()
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("relay.creds"),
        format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
            user.seed().unwrap()
        ),
    )
    .unwrap();
    let nats = NatsServer::start_with(&["-c".into(), d.join("nats.conf").display().to_string()]);
    let store = support::sqlite_store_at(&d.join("ledger.db"));
    support::fill(store.as_ref(), 20);
    drop(store);
    let ledger = format!("sqlite:{}", d.join("ledger.db").display());
    let o = support::run(
        d,
        &[
            "--store",
            &ledger,
            "--nats",
            &nats.url(),
            "--nats-creds",
            "relay.creds",
            "relay",
            "--once",
        ],
    );
    let said = support::stdout(&o) + &support::stderr(&o);
    assert!(o.status.success(), "{said}");
    assert!(said.contains("positions 1..20"), "{said}");
    // Without credentials the server refuses, and the error says who was refused.
    let o = support::run(
        d,
        &[
            "--store",
            &ledger,
            "--nats",
            &nats.url(),
            "relay",
            "--once",
            "--retry-for",
            "2s",
        ],
    );
    refused(&o, &["NATS refused no credentials (anonymous)"]);
    // A file that is not a credentials file is named at once.
    std::fs::write(d.join("bad.creds"), "hello\n").unwrap();
    let o = support::run(
        d,
        &[
            "--store",
            &ledger,
            "--nats",
            &nats.url(),
            "--nats-creds",
            "bad.creds",
            "relay",
            "--once",
        ],
    );
    refused(&o, &["--nats-creds bad.creds: not a NATS credentials file"]);
}
