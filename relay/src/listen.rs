//! The HTTP server loop: accepts TCP connections and serves the router on
//! each, as `axum::serve` does, with what it cannot be told: a bound on
//! how long a connection may take to send a request's headers, which also
//! bounds how long it may sit idle between requests.
//!
//! Without it a peer that sends its headers a byte at a time, or opens
//! connections and sends nothing, holds each for as long as it likes, and
//! enough of them use up the process's file descriptors before a single
//! request reaches a handler (where the relay's own bounds on connections
//! are counted).

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Serves `app` on `listener` until `shutdown` resolves, then stops
/// accepting, lets each connection finish the request it is serving
/// (sockets already upgraded are the relay's to close), and returns once
/// every connection has ended.
pub async fn serve_http(
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    // Connections watch `stopping` to shut down gracefully; each holds a
    // clone of `ended`, whose sender learns when the last is gone.
    let (stop, stopping) = watch::channel(());
    let (ended_tx, ended) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // Out of file descriptors, most often: wait for some to
                    // close rather than spin.
                    tracing::warn!(%err, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        tokio::spawn(connection(
            stream,
            app.clone(),
            header_timeout,
            stopping.clone(),
            ended.clone(),
        ));
    }
    drop(listener);
    drop(ended);
    drop(stopping);
    let _ = stop.send(());
    ended_tx.closed().await;
}

/// Serves one connection (its upgrade to a WebSocket included).
async fn connection(
    stream: TcpStream,
    app: Router,
    header_timeout: Duration,
    mut stopping: watch::Receiver<()>,
    ended: watch::Receiver<()>,
) {
    // Frames are small and each is sent as soon as it is ready (an ack, an
    // op for a subscriber): with Nagle's algorithm a frame written while the
    // previous one waits for its TCP ACK stays in the kernel until that ACK
    // comes, which the peer may delay by up to 40 ms. A device answering a
    // change at once then waited ~25 ms per hop on loopback.
    if let Err(err) = stream.set_nodelay(true) {
        tracing::warn!(%err, "cannot set TCP_NODELAY on a connection");
    }
    let service = TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let mut asked = false;
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(err) = served {
                    tracing::debug!(%err, "connection ended");
                }
                break;
            }
            _ = stopping.changed(), if !asked => {
                asked = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
    drop(ended);
}
