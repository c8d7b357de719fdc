//! Server-sent events fed by a blocking task: the one loop both live endpoints use (the log's
//! events, a projection's snapshots). It ends when the client goes, when the server stops, or
//! when the producer says so.

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use std::convert::Infallible;

/// What a live producer does next.
pub(super) enum Next {
    /// Send this event.
    Send(Event),
    /// Nothing new this time (the loop checks the client is still there, then asks again).
    Idle,
    /// Stop, after sending this last event if any (an error the client should see).
    End(Option<Event>),
}

/// An SSE response fed by `step`, run on a blocking thread until the client goes away, the
/// server stops (`stopping` turns true) or `step` ends it; at most `capacity` events wait for
/// a slow client.
pub(super) fn blocking_feed(
    stopping: tokio::sync::watch::Receiver<bool>,
    capacity: usize,
    mut step: impl FnMut() -> Next + Send + 'static,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(capacity);
    tokio::task::spawn_blocking(move || loop {
        if *stopping.borrow() {
            return;
        }
        match step() {
            Next::Send(event) => {
                if tx.blocking_send(event).is_err() {
                    return; // the client went away
                }
            }
            Next::Idle => {
                if tx.is_closed() {
                    return;
                }
            }
            Next::End(last) => {
                if let Some(event) = last {
                    let _ = tx.blocking_send(event);
                }
                return;
            }
        }
    });
    let stream =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
        );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15)))
}
