//! Server-sent events fed by a blocking task.

/// Events for an SSE stream, fed by a blocking task; the stream ends when the client goes.
pub(super) fn sse_from(
    rx: tokio::sync::mpsc::Receiver<axum::response::sse::Event>,
) -> axum::response::Sse<
    impl futures_util::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
> {
    let stream =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
        );
    axum::response::Sse::new(stream).keep_alive(
        axum::response::sse::KeepAlive::new().interval(std::time::Duration::from_secs(15)),
    )
}
