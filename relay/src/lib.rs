//! The gaesup relay: carries state operations between devices, durably.
//!
//! # The problem
//!
//! Tabs of one browser share ops over a BroadcastChannel; other devices are
//! out of reach. The relay is where devices meet: each pushes its ops, the
//! relay applies them through the same core the tabs run (so the value it
//! acknowledges is the value every device converges to), makes them
//! durable, numbers them per stream, and sends them to every device
//! following that stream, now or when it comes back from its cursor.
//!
//! ```sh
//! relay --dev                                   # a development relay on 127.0.0.1:8787
//! relay mint-token --dev --apartment main=rw --global rw
//! relay --secret-file /etc/gaesup/secret --data /var/lib/gaesup --listen 0.0.0.0:8787
//! # several nodes behind a load balancer, sharing one Redis (AOF, appendfsync always):
//! relay --secret-file /etc/gaesup/secret --redis redis://redis.internal:6379/0 --node relay-2
//! ```
//!
//! # Guarantees
//!
//! - An ack means durable: the op, the key's new canonical state and the
//!   stream's head are committed in one SQLite transaction (WAL,
//!   `synchronous = FULL`) before the ack is sent; with `--redis`, in one
//!   Lua script on Redis (durable as Redis's `appendfsync` makes it).
//! - A resend is harmless: an op id already in the log is acknowledged as a
//!   duplicate with its first number (on Redis, checked again inside the
//!   commit script, atomically with the append).
//! - A tab (the first half of an op id) belongs to the token subject whose
//!   op of it was first admitted, in every stream, until it has had no
//!   op for 30 days (a trim of the log does not free it); another
//!   subject's op of it is refused (`tab_taken`), so a peer that read a
//!   device's op ids (they are fanned out) cannot push under its next one
//!   first. A new tab is claimed for its pusher once its op is admitted
//!   and before it is committed (on Redis for every node, atomically;
//!   SQLite records it with the commit), so an op refused when admitted
//!   leaves no owner (one whose claim or commit fails may leave its pusher
//!   the owner), and no peer can have read the id first. A subject
//!   gets at most 600 new tabs claimed an hour per node (past that its tabs
//!   are left unowned, as before owners). Tabs a store's log held before
//!   owners existed are nobody's for 30 days (anyone may push them, none
//!   may take them).
//! - Any node will do: with Redis, a stream's numbers are the same on every
//!   node, each node applies and sends on what the others commit, in log
//!   order, and answers a device as caught up only with what Redis holds.
//! - A cursor never misses anything: ops after it come from the log, or a
//!   snapshot of the canonical states when the log was trimmed past it.
//! - Every op is checked: the token's grants (apartment, buildings, read or
//!   write, global keys), then the core (declared key, lifetime, strategy,
//!   schema, types, permissions, clock window, limits).
//! - Bounded: frames, ops per push, ops per second per token subject (an
//!   op on a large key counting for more: [`limits`]), reads per second
//!   per token subject (pulls, snapshots, hellos, a socket's catch-up
//!   pages past the first and, with a shared store, pings; a long poll is woken
//!   only by its own stream and, caught up, answered from the head in
//!   memory: [`http`]), connections (sockets and waiting long polls
//!   together; a socket gets 5 s to say a valid hello), and each device's send queue,
//!   by messages and by bytes (a slow device is disconnected and
//!   resyncs); an HTTP push is read
//!   only with a valid token, and for at most 20 s; each stream's log, by
//!   ops and by bytes ([`retention`]).
//!
//! # Modules
//!
//! [`config`] (flags and environment), [`token`] (signed grants), [`db`]
//! (the embedded store), [`store`] (that or Redis, for several nodes),
//! [`retention`] (how much of the log is kept), [`hub`] (replicas,
//! numbering, commits, fan-out), [`ws`] and [`http`] (the endpoints),
//! [`queue`] (each socket's send queue), [`metrics`], [`limits`].
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
pub mod db;
pub mod http;
pub mod hub;
pub mod limits;
pub mod listen;
pub mod metrics;
pub mod queue;
pub mod retention;
pub mod store;
pub mod token;
pub mod ws;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clap::Parser;
use gaesup_protocol::{ProtocolError, code};
use tokio::sync::watch;

use crate::config::{Cli, Command, Mint, Serve};
use crate::db::Db;
use crate::hub::Hub;
use crate::limits::{Budgets, SharedBucket};
use crate::metrics::{LogCount, Metrics};
use crate::store::{RedisStore, Store};
use crate::token::{Access, Claims, Grant};

/// What every handler shares.
pub struct AppState {
    /// The hub.
    pub hub: Hub,
    /// The token secret.
    pub secret: Vec<u8>,
    /// Options.
    pub config: Serve,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The store (for metrics).
    pub store: Arc<Store>,
    /// Flips to `true` when the relay starts shutting down.
    pub shutdown: watch::Receiver<bool>,
    next_conn: AtomicU64,
    /// The log's length for `/metrics`.
    log_count: LogCount,
    /// Each token subject's rate budget, shared by its connections and
    /// its HTTP pushes.
    budgets: Budgets,
    /// Each token subject's read budget (pulls, snapshots, hellos and,
    /// with a shared store, pings), shared by its connections and its
    /// HTTP reads.
    reads: Budgets,
}

impl AppState {
    fn next_conn(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Takes `n` ops from the rate budget of token subject `sub`; its
    /// bucket (for the hub to draw more from) if there was enough.
    fn take_http(&self, sub: &str, n: usize) -> Option<SharedBucket> {
        let bucket = self.budgets.of(sub);
        bucket.take(n).then_some(bucket)
    }

    /// Takes one read from the read budget of token subject `sub`; the
    /// refusal (nothing taken) if it is spent.
    fn take_read(&self, sub: &str) -> Result<(), ProtocolError> {
        if self.reads.of(sub).take(1) {
            Ok(())
        } else {
            Err(self.reads_refused())
        }
    }

    /// The refusal of a connection past what one token subject may hold
    /// on this node.
    fn subject_full(&self) -> ProtocolError {
        ProtocolError::new(
            code::TOO_MANY_CONNECTIONS,
            format!(
                "this token's subject holds {} connections on this node (sockets and waiting long polls); close some, or try another node",
                self.config.subject_share()
            ),
        )
    }

    /// What a catch-up waiting for a read sleeps between tries: the time
    /// the budget takes to refill one, and at least 50 ms (many sockets
    /// of one subject waiting would otherwise wake a thousand times a
    /// second each).
    fn read_refill(&self) -> std::time::Duration {
        let one = 1.0 / f64::from(self.config.max_reads_per_second.max(1));
        std::time::Duration::from_secs_f64(one.max(0.05))
    }

    /// The refusal of a read past the budget.
    fn reads_refused(&self) -> ProtocolError {
        ProtocolError::new(
            code::RATE_LIMITED,
            format!(
                "more than {} reads per second (pulls, snapshots, hellos, pings); ask again later",
                self.config.max_reads_per_second
            ),
        )
    }
}

/// The routes, with CORS for the HTTP fallback (a site on another origin
/// calls it; tokens are bearer tokens, never cookies, so any origin may).
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.max_frame_bytes;
    Router::new()
        .route("/v1/ws", get(ws::upgrade))
        .route("/v1/push", post(http::push).options(preflight))
        .route("/v1/pull", get(http::pull).options(preflight))
        .route("/v1/snapshot", get(http::snapshot).options(preflight))
        .route("/v1/limits", get(http::limits).options(preflight))
        .route("/health", get(http::health))
        .route("/metrics", get(http::metrics))
        // A push reads its own body (after its token, under this limit,
        // answering with a code); this bounds any extractor that buffers.
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn(cors))
        .with_state(state)
}

async fn preflight() -> Response {
    axum::http::StatusCode::NO_CONTENT.into_response()
}

async fn cors(request: axum::extract::Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_str(&format!(
            "{}, {}, {}",
            Method::GET,
            Method::POST,
            Method::OPTIONS
        ))
        .unwrap_or(HeaderValue::from_static("GET, POST, OPTIONS")),
    );
    response
}

/// Runs the relay until SIGINT or SIGTERM, then shuts down gracefully:
/// stops accepting, tells devices, finishes the commit in flight.
pub async fn serve(config: Serve, secret: Vec<u8>) -> Result<(), String> {
    let store = Arc::new(match &config.redis {
        Some(url) => Store::Redis(Box::new(
            RedisStore::connect(url)
                .await
                .map_err(|err| format!("cannot use Redis at {url}: {err}"))?
                .with_claim_delay(std::time::Duration::from_millis(config.claim_delay_ms)),
        )),
        None => Store::Sqlite(Db::open(&config.data).map_err(|err| err.to_string())?),
    });
    let declarations = gaesup_keys::declarations().map_err(|err| err.to_string())?;
    let metrics = Arc::new(Metrics::default());
    let (hub, hub_task) = Hub::start(
        Arc::clone(&store),
        declarations,
        Arc::clone(&metrics),
        config.retention(),
    )
    .await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|err| format!("cannot listen on {}: {err}", config.listen))?;
    let address: SocketAddr = listener.local_addr().map_err(|err| err.to_string())?;
    let (stop, shutdown) = watch::channel(false);
    let reader = store.shared().then(|| {
        let delay = std::time::Duration::from_millis(config.follow_delay_ms);
        tokio::spawn(follow(
            Arc::clone(&store),
            hub.clone(),
            delay,
            shutdown.clone(),
        ))
    });
    let state = Arc::new(AppState {
        hub,
        secret,
        config: config.clone(),
        metrics,
        store,
        shutdown,
        next_conn: AtomicU64::new(1),
        log_count: LogCount::new(metrics::LOG_COUNT_EVERY),
        budgets: Budgets::new(config.max_ops_per_second),
        reads: Budgets::new(config.max_reads_per_second),
    });
    // The first line of output: tests and scripts read the port from it.
    println!("relay listening on http://{address}");
    match &config.redis {
        Some(redis) => tracing::info!(%address, %redis, node = %config.node, "relay up"),
        None => {
            tracing::info!(%address, data = %config.data.display(), node = %config.node, "relay up");
        }
    }
    let app = router(Arc::clone(&state));
    let graceful = async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
    };
    let header_timeout = std::time::Duration::from_millis(config.header_timeout_ms);
    listen::serve_http(listener, app, header_timeout, graceful).await;
    // No more requests (sockets end on the shutdown they were told of, and
    // each holds the hub until then, as the reader does): the hub drains
    // what is queued (committing it) once the last is gone, and stops.
    if let Some(reader) = reader {
        let _ = reader.await;
    }
    drop(state);
    let _ = hub_task.await;
    tracing::info!("relay stopped");
    Ok(())
}

/// Brings what other nodes commit to the shared store into this node's
/// hub, until the relay shuts down.
async fn follow(
    store: Arc<Store>,
    hub: Hub,
    delay: std::time::Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let Store::Redis(redis) = &*store else {
        return;
    };
    let read = redis.read_forever(|stream, ops| {
        let hub = hub.clone();
        async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            match stream.parse() {
                Ok(id) => hub.remote(id, ops).await,
                Err(err) => {
                    tracing::error!(%stream, error = %err, "a stream name in Redis does not parse");
                    true
                }
            }
        }
    });
    tokio::select! {
        () = read => {}
        _ = shutdown.wait_for(|stop| *stop) => {}
    }
}

async fn wait_for_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

fn parse_access(text: &str) -> Result<Access, String> {
    match text {
        "r" => Ok(Access::R),
        "rw" => Ok(Access::Rw),
        other => Err(format!("access is r or rw, not {other:?}")),
    }
}

/// Builds and signs a token from `mint-token`'s options.
pub fn mint(options: &Mint) -> Result<String, String> {
    let secret = config::secret(options.secret_file.as_ref(), options.dev)?;
    if options.subject == config::SHARED_SUBJECT {
        tracing::warn!(
            "the token's subject is {:?}, as every token minted without --subject: devices \
             holding such tokens can take each other's op ids, and share one rate budget \
             (give each person a subject)",
            config::SHARED_SUBJECT
        );
    }
    let mut apartments = BTreeMap::new();
    for grant in &options.apartments {
        let (apartment, rest) = grant
            .split_once('=')
            .ok_or_else(|| format!("a grant is <apartment>=r|rw[:buildings], not {grant:?}"))?;
        let (access, buildings) = match rest.split_once(':') {
            Some((access, buildings)) => (
                access,
                Some(
                    buildings
                        .split(',')
                        .map(|b| b.parse().map_err(|err| format!("{err}")))
                        .collect::<Result<Vec<_>, String>>()?,
                ),
            ),
            None => (rest, None),
        };
        apartments.insert(
            apartment.parse().map_err(|err| format!("{err}"))?,
            Grant {
                access: parse_access(access)?,
                buildings,
            },
        );
    }
    let claims = Claims {
        sub: options.subject.clone(),
        exp: (hub::now_ms() / 1000)
            .checked_add(options.ttl)
            .ok_or_else(|| {
                format!(
                    "--ttl {} is too long: the token's expiry would pass the largest time it can \
                     hold",
                    options.ttl
                )
            })?,
        apartments,
        global: options.global.as_deref().map(parse_access).transpose()?,
    };
    Ok(token::mint(&secret, &claims))
}

/// The `relay` command.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("RELAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Some(Command::MintToken(options)) => mint(&options).map(|token| println!("{token}")),
        Some(Command::Serve(serve)) => run(serve),
        None => run(cli.serve),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("relay: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(options: Serve) -> Result<(), String> {
    let secret = config::secret(options.secret_file.as_ref(), options.dev)?;
    if options.dev {
        tracing::warn!(
            "development mode: tokens are signed with a public secret; never deploy this"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| err.to_string())?;
    runtime.block_on(serve(options, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(ttl: u64) -> Mint {
        Mint {
            secret_file: None,
            dev: true,
            subject: "alice".to_owned(),
            ttl,
            apartments: vec!["main=rw".to_owned()],
            global: None,
        }
    }

    /// Found by a review: the expiry was `now + ttl`, which overflowed
    /// (a panic in a debug build, a token already expired in a release
    /// one) for a `--ttl` near `u64::MAX`.
    #[test]
    fn a_ttl_past_the_largest_expiry_is_refused_not_wrapped() {
        let err = mint(&options(u64::MAX)).unwrap_err();
        assert!(
            err.contains("--ttl 18446744073709551615 is too long"),
            "{err}"
        );
        assert!(mint(&options(3600)).is_ok());
    }
}
