//! Live endpoints (server-sent events) as async streams: no thread per client.
//!
//! - **One notification of new positions.** A single thread per server waits on the log
//!   (`wait_beyond`) and publishes its head on a `watch` channel; every live client's task
//!   awaits that channel, then reads what is new on a blocking thread for the time of one read.
//! - **A limit on live clients** (`serve --max-live-clients`, default `DEFAULT_MAX_LIVE`):
//!   one more is answered 503 `too_many_live_clients` with `Retry-After` (`LiveHub`).
//! - **A client that does not read** holds at most `capacity` events waiting in its channel;
//!   when one has waited [`SLOW_CLIENT`] to be taken, its stream ends (the client reconnects with
//!   `Last-Event-ID`). It never slows the others: each client has its own task and buffer.
//! - **Shutdown** ends every live stream at once (`stopping`).

use super::error::ApiError;
use super::live_hub::{RETRY_AFTER_SECS, SLOW_CLIENT};
use super::state::AppState;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};

/// A place for one more live client, or the 503 that says to come back.
pub(super) fn admit(state: &AppState) -> Result<OwnedSemaphorePermit, Box<Response>> {
    state.live.permits.clone().try_acquire_owned().map_err(|_| {
        let mut r = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_live_clients",
            format!(
                "this server already follows {} live clients (its limit, serve --max-live-clients); retry in {RETRY_AFTER_SECS} s",
                state.live.limit
            ),
        )
        .into_response();
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_str(&RETRY_AFTER_SECS.to_string()).expect("digits"),
        );
        Box::new(r)
    })
}

/// The log's head as it moves: one thread per server waits on the log for every live client.
pub(super) fn head_watch(state: &AppState) -> watch::Receiver<u64> {
    state
        .live
        .head
        .get_or_init(|| {
            let reader = state.reader();
            let stopping = state.stopping.clone();
            let start = reader.head().map(|h| h.position).unwrap_or(0);
            let (tx, rx) = watch::channel(start);
            let spawned = std::thread::Builder::new()
                .name("live-head".into())
                .spawn(move || {
                    let mut at = start;
                    let mut failing = false;
                    while !*stopping.borrow() {
                        match reader.wait_beyond(at, Duration::from_secs(1)) {
                            Ok(head) => {
                                if failing {
                                    tracing::info!("live streams: the log answers again");
                                    failing = false;
                                }
                                if head != at {
                                    at = head;
                                    tx.send_replace(head);
                                }
                            }
                            Err(e) => {
                                if !failing {
                                    tracing::warn!(error = %e, "live streams: the log cannot be read; retrying every second");
                                    failing = true;
                                }
                                std::thread::sleep(Duration::from_secs(1));
                            }
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "live streams: cannot start the thread that follows the log; live clients see no news");
            }
            rx
        })
        .clone()
}

/// An SSE response whose events come from `produce`, an async task sending into a channel of
/// `capacity`. The task is given a `Feed` to send through; it stops when the client goes, the
/// server stops, or a client leaves an event untaken for [`SLOW_CLIENT`]. `permit` is the
/// client's place under the limit, released when the stream ends.
pub(super) fn feed<F, Fut>(
    state: &AppState,
    permit: OwnedSemaphorePermit,
    capacity: usize,
    produce: F,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    F: FnOnce(Feed) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(capacity);
    let mut stopping = state.stopping.clone();
    let work = produce(Feed { tx });
    tokio::spawn(async move {
        let stop = async {
            // A state nobody can stop (its sender gone: tests, embedding) never stops.
            if stopping.wait_for(|s| *s).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = work => {}
            _ = stop => {}
        }
    });
    let stream = futures_util::stream::unfold((rx, permit), |(mut rx, permit)| async move {
        rx.recv().await.map(|e| (Ok(e), (rx, permit)))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// Where a live producer sends its events.
pub(super) struct Feed {
    tx: mpsc::Sender<Event>,
}

impl Feed {
    /// Sends one event; `false` when the stream is over (the client went, or did not take an
    /// event for [`SLOW_CLIENT`]).
    pub(super) async fn send(&self, event: Event) -> bool {
        match tokio::time::timeout(SLOW_CLIENT, self.tx.send(event)).await {
            Ok(sent) => sent.is_ok(),
            Err(_) => {
                tracing::info!(
                    "a live client took no event for {}s; its stream ends (it may reconnect with Last-Event-ID)",
                    SLOW_CLIENT.as_secs()
                );
                false
            }
        }
    }

    /// Waits for the head to move beyond `at` (or the client to go: `false`).
    pub(super) async fn beyond(&self, head: &mut watch::Receiver<u64>, at: u64) -> bool {
        tokio::select! {
            moved = head.wait_for(|h| *h > at) => moved.is_ok(),
            _ = self.tx.closed() => false,
        }
    }
}

/// The SSE `error` event a live stream ends with when it cannot go on.
pub(super) fn error_event(message: &str) -> Event {
    Event::default().event("error").data(message)
}
