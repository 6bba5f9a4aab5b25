//! The HTTP server loop: accepts TCP connections and serves the router on
//! each, as `axum::serve` does, with what it cannot be told: a bound on
//! how long a connection may take to send a request's headers, which also
//! bounds how long it may sit idle once an answer is written to it (the
//! timer starts when the answer is queued, so an answer that takes
//! longer than that to download is cut), and on how long a shutdown waits
//! for connections still busy.
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
use tokio::task::JoinSet;

/// Serves `app` on `listener` until `shutdown` resolves, then stops
/// accepting and lets each connection finish the request it is serving
/// (sockets already upgraded are the relay's to close), for at most
/// `header_timeout`: a connection still busy then (a handler still
/// waiting for a push body that trickles in, say) is dropped.
pub async fn serve_http(
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    // Connections watch `stopping` to shut down gracefully.
    let (stop, stopping) = watch::channel(());
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // The peer gave up while queued: nothing to wait for.
                Err(err) if is_connection_error(&err) => continue,
                Err(err) => {
                    // Out of file descriptors, most often: wait for some to
                    // close rather than spin (as axum::serve does).
                    tracing::warn!(%err, "cannot accept a connection");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        () = &mut shutdown => break,
                    }
                }
            },
            // Finished connections are reaped as they end.
            Some(_) = connections.join_next() => continue,
            () = &mut shutdown => break,
        };
        connections.spawn(connection(
            stream,
            app.clone(),
            header_timeout,
            stopping.clone(),
        ));
    }
    drop(listener);
    let _ = stop.send(());
    let ended = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(header_timeout, ended).await.is_err() {
        tracing::warn!(
            busy = connections.len(),
            "connections still busy at shutdown are dropped"
        );
        connections.abort_all();
    }
}

/// Errors of one queued connection (the peer reset it before it was
/// accepted), not of the listener.
fn is_connection_error(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Serves one connection (its upgrade to a WebSocket included).
async fn connection(
    stream: TcpStream,
    app: Router,
    header_timeout: Duration,
    mut stopping: watch::Receiver<()>,
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
}
