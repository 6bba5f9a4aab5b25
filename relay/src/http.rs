//! The HTTP fallback (for devices whose WebSocket a proxy blocks) and the
//! operations endpoints. Same bodies as the WebSocket messages:
//!
//! | route | in | out |
//! |---|---|---|
//! | `POST /v1/push` | a push body `{"ops": […]}` | an ack message |
//! | `GET /v1/pull?stream=…&cursor=…&wait_ms=…[&after=…]` | | an ops or snapshot message, waiting up to `wait_ms` for new ops; a snapshot's next piece after the key `after` |
//! | `GET /v1/snapshot?stream=…[&after=…]` | | a snapshot message (its next piece after the key `after`) |
//! | `GET /v1/limits` | | the limits a welcome carries, for a device on HTTP alone |
//! | `GET /health` | | `{"ok": true, …}` |
//! | `GET /metrics` | | counters, Prometheus text (the log's length counted at most every 10 s) |
//!
//! The token goes in `Authorization: Bearer <token>`, never in the URL.
//! Errors are JSON error messages with a stable code and a fitting status.
//!
//! Reads cost their token subject's read budget (`--max-reads-per-second`,
//! shared with its sockets' hellos and, with a shared store, their
//! pings): one per pull or snapshot request,
//! however long a long poll waits; past it they are refused as
//! `rate_limited` (429). A long poll is woken only by a change of the head
//! of the stream it follows; one whose cursor is the head this node knows
//! is answered from that head, and one whose cursor lies among the
//! stream's recent ops (the commit that woke it) from those, without
//! asking the hub (with several nodes, after a read of the store's head,
//! and an empty last answer still asks: see [`pull`]). While it waits it
//! holds a connection: waiting polls and sockets share
//! `--max-connections`, and those of one token subject
//! `--max-connections-per-subject`, past either of which a poll about to
//! wait is refused as `too_many_connections` (503).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use gaesup_protocol::{
    Ack, AckStatus, Acks, ProtocolError, Push, ServerMessage, StreamId, Subscription, code,
};
use gaesup_state_core::decode::read_bounded;
use gaesup_state_core::{FullKey, MAX_MESSAGE_BYTES, encoded_len};
use serde::Deserialize;
use tokio::sync::watch;

use crate::AppState;
use crate::hub::{FRAME_SLACK, nothing_missed, now_ms};
use crate::metrics::Full;
use crate::token::{self, Claims};
use crate::ws::all_refused;

fn status_for(code: &str) -> StatusCode {
    match code {
        code::UNAUTHORIZED | code::TOKEN_EXPIRED => StatusCode::UNAUTHORIZED,
        code::FORBIDDEN => StatusCode::FORBIDDEN,
        code::FRAME_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
        code::RATE_LIMITED => StatusCode::TOO_MANY_REQUESTS,
        code::TOO_MANY_CONNECTIONS | code::SHUTTING_DOWN => StatusCode::SERVICE_UNAVAILABLE,
        code::STORAGE => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// An answer encoded already (shared by the polls it answers).
fn json_text(text: axum::body::Bytes) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        text,
    )
        .into_response()
}

fn json(status: StatusCode, message: &ServerMessage) -> Response {
    match message.encode() {
        Ok(text) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            text,
        )
            .into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}

/// `acks` as one answer that fits a frame. An applied op's ack carries its
/// key's whole value, so the acks of one push (small patches of a large
/// merged value) can add up past a frame, which would not encode: acks
/// that no longer fit lose their value and say only where the op landed,
/// as the ack of a resend would (a device takes both as confirmed).
fn fitting(mut acks: Vec<Ack>) -> Vec<Ack> {
    let budget = MAX_MESSAGE_BYTES - FRAME_SLACK;
    let valueless = |ack: &Ack| match &ack.status {
        AckStatus::Applied { stream, seq, .. } => Some(Ack {
            op: ack.op,
            status: AckStatus::Duplicate {
                stream: stream.clone(),
                seq: *seq,
            },
        }),
        _ => None,
    };
    let len = |ack: &Ack| encoded_len(ack, budget).saturating_add(1);
    // What the answer takes with no value at all, then each value in
    // order while it still fits.
    let mut total: usize = acks
        .iter()
        .map(|ack| valueless(ack).as_ref().map_or_else(|| len(ack), len))
        .sum();
    for ack in &mut acks {
        let Some(bare) = valueless(ack) else { continue };
        let extra = len(ack).saturating_sub(len(&bare));
        if total.saturating_add(extra) <= budget {
            total += extra;
        } else {
            *ack = bare;
        }
    }
    acks
}

/// A JSON error message with the status that fits its code.
pub fn error_response(status: StatusCode, error: &ProtocolError) -> Response {
    json(status, &ServerMessage::Error(error.body()))
}

/// `error` as an answer (its status from its code), counted as a refusal.
pub(crate) fn refuse(app: &AppState, error: &ProtocolError) -> Response {
    app.metrics.refused(error.code);
    error_response(status_for(error.code), error)
}

fn claims(app: &AppState, headers: &HeaderMap) -> Result<Arc<Claims>, ProtocolError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(|| ProtocolError::new(code::UNAUTHORIZED, "no Authorization: Bearer token"))?;
    token::verify(&app.secret, token, now_ms() / 1000)
        .map(Arc::new)
        .map_err(|err| ProtocolError::new(err.code(), err.to_string()))
}

/// Why a push's body was not read.
enum BodyError {
    /// More than the frame limit (by its `Content-Length`, or as it came).
    TooLarge(String),
    /// It did not arrive whole in time.
    Late,
    /// The connection failed midway, or the body's framing did.
    Broken,
}

/// The body of a push, read only after its token was accepted: at most
/// `limit` bytes, arriving whole within `within`.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    within: Duration,
) -> Result<Vec<u8>, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    // A body declared up to twice the limit is read to its end (and
    // dropped) before it is refused, so the client, still sending it,
    // reads the refusal rather than a connection closed under it; one
    // larger is refused at once.
    let drain = limit.saturating_mul(2);
    if let Some(declared) = declared
        && declared > u64::try_from(drain).unwrap_or(u64::MAX)
    {
        return Err(BodyError::TooLarge(format!(
            "{declared} bytes, over {limit}"
        )));
    }
    let read = async {
        let mut stream = body.into_data_stream();
        let mut read = Vec::new();
        let mut seen = 0usize;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| BodyError::Broken)?;
            seen = seen.saturating_add(chunk.len());
            // Past the limit, a body of no declared length (whose end
            // may never come) is refused at once.
            if seen > drain || (seen > limit && declared.is_none()) {
                break;
            }
            if seen <= limit {
                read.extend_from_slice(&chunk);
            }
        }
        if seen > limit {
            return Err(BodyError::TooLarge(format!("over {limit} bytes")));
        }
        Ok(read)
    };
    tokio::time::timeout(within, read)
        .await
        .unwrap_or(Err(BodyError::Late))
}

/// `POST /v1/push`. The token is checked before the body is read: a
/// request without a valid one costs the relay its headers only.
pub async fn push(State(app): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let claims = match claims(&app, &headers) {
        Ok(claims) => claims,
        Err(error) => return refuse(&app, &error),
    };
    let within = Duration::from_millis(app.config.body_within_ms);
    let body = match read_body(&headers, body, app.config.max_frame_bytes, within).await {
        Ok(body) => body,
        Err(BodyError::TooLarge(message)) => {
            return refuse(&app, &ProtocolError::new(code::FRAME_TOO_LARGE, message));
        }
        Err(BodyError::Late) => {
            let error = ProtocolError::new(
                code::MALFORMED,
                format!("the body did not arrive within {} ms", within.as_millis()),
            );
            app.metrics.refused(error.code);
            return error_response(StatusCode::REQUEST_TIMEOUT, &error);
        }
        Err(BodyError::Broken) => {
            return refuse(
                &app,
                &ProtocolError::new(code::MALFORMED, "the body could not be read"),
            );
        }
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return refuse(
            &app,
            &ProtocolError::new(code::MALFORMED, "the body is not UTF-8"),
        );
    };
    let push: Push = match read_bounded(text, app.config.max_frame_bytes, "push") {
        Ok(push) => push,
        Err(err) => return refuse(&app, &ProtocolError::new(code::MALFORMED, err.to_string())),
    };
    if let Some(err) = push.ops.iter().find_map(|op| op.validate().err()) {
        return refuse(&app, &ProtocolError::new(code::MALFORMED, err.to_string()));
    }
    if push.ops.len() > app.config.max_ops_per_push {
        return refuse(
            &app,
            &ProtocolError::new(
                code::TOO_MANY_OPS,
                format!("at most {} ops per push", app.config.max_ops_per_push),
            ),
        );
    }
    app.metrics.pushed();
    // An op's worth per op (a push of nothing still costs a turn: it is
    // work for the hub); the hub draws what ops on large keys cost more.
    let Some(bucket) = app.take_http(&claims.sub, push.ops.len().max(1)) else {
        let error = ProtocolError::new(code::RATE_LIMITED, "too many ops per second; resend later");
        app.metrics.refused(code::RATE_LIMITED);
        let acks = all_refused(&push.ops, &error);
        return json(
            StatusCode::TOO_MANY_REQUESTS,
            &ServerMessage::Ack(Acks { acks }),
        );
    };
    match app.hub.push(claims, push.ops, None, bucket).await {
        Ok(acks) => json(
            StatusCode::OK,
            &ServerMessage::Ack(Acks {
                acks: fitting(acks),
            }),
        ),
        Err(error) => refuse(&app, &error),
    }
}

/// Query of `GET /v1/pull`.
#[derive(Debug, Deserialize)]
pub struct PullQuery {
    stream: String,
    #[serde(default)]
    cursor: Option<u64>,
    #[serde(default)]
    wait_ms: Option<u64>,
    /// The last key of the snapshot piece the device has: the answer is
    /// the next piece, if it still takes a snapshot.
    #[serde(default)]
    after: Option<String>,
}

/// The `after` key of a query: the last key of a snapshot piece.
fn after_key(after: Option<&str>) -> Result<Option<FullKey>, ProtocolError> {
    after
        .map(|key| {
            key.parse::<FullKey>()
                .map_err(|err| ProtocolError::new(code::MALFORMED, format!("after: {err}")))
        })
        .transpose()
}

/// The token's claims and the stream a read names.
fn claims_and_stream(
    app: &AppState,
    headers: &HeaderMap,
    stream: &str,
) -> Result<(Arc<Claims>, StreamId), ProtocolError> {
    let claims = claims(app, headers)?;
    let stream = stream
        .parse()
        .map_err(|err| ProtocolError::new(code::MALFORMED, err))?;
    Ok((claims, stream))
}

/// `GET /v1/pull`: what the device lacks after its cursor, waiting for new
/// ops when there are none yet (long poll).
///
/// A poll waits on the head of its one stream (see
/// [`Heads`](crate::hub::Heads)): commits to other streams do not wake it.
/// While the head this node knows is the poll's cursor, the answer is
/// "nothing new" from that head, without a request to the hub (nor a read
/// of the store). A poll whose cursor lies among the stream's recent ops
/// (kept while polls come for it: the commit that woke this one, most
/// often) is answered from them as the token may read them
/// ([`Heads::answer`](crate::hub::Heads::answer): one answer built for
/// all the polls whose token reads all of it),
/// without the hub either: a commit wakes every poll on its stream at
/// once, and each asking the hub in turn would hold up every other
/// stream. With a shared store this node's head may lag what other nodes
/// committed (its reader brings those): such an answer says the store's
/// head, read first, and a pull that does not wait with nothing there, or
/// the empty last answer of a long poll, is asked of the hub, which
/// answers with what the store holds.
pub async fn pull(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<PullQuery>,
) -> Response {
    let (claims, stream) = match claims_and_stream(&app, &headers, &query.stream) {
        Ok(found) => found,
        Err(error) => return refuse(&app, &error),
    };
    let after = match after_key(query.after.as_deref()) {
        Ok(after) => after,
        Err(error) => return refuse(&app, &error),
    };
    if let Err(error) = app.take_read(&claims.sub) {
        return refuse(&app, &error);
    }
    let cursor = query.cursor.unwrap_or(0);
    // A piece of a snapshot, or a stream the token may not read: the
    // hub's to answer.
    let cacheable = after.is_none() && claims.can_read(&stream);
    let subscription = Subscription {
        stream,
        cursor: query.cursor,
        after,
    };
    let wait = Duration::from_millis(query.wait_ms.unwrap_or(0).min(app.config.max_wait_ms));
    let deadline = tokio::time::Instant::now() + wait;
    let mut shutdown = app.shutdown.clone();
    let mut head = app.hub.heads.watch(&subscription.stream);
    // Counted against `--max-connections` from its first wait to its end.
    let mut held = None;
    loop {
        // A stream dropped from memory ends its watch: watch it again once
        // the hub holds it (asked below meanwhile).
        if head
            .as_ref()
            .is_some_and(|head| head.has_changed().is_err())
        {
            head = app.hub.heads.watch(&subscription.stream);
        }
        let last = tokio::time::Instant::now() >= deadline;
        // Marked seen before anything is asked: a commit from now on wakes
        // the wait below.
        let known = head.as_mut().map(|head| *head.borrow_and_update());
        // What the recent ops hold past the cursor (the commit that woke
        // this poll, most often), if they hold all of it: every poll a
        // commit wakes is answered so, not one hub request after another
        // (each a read of the store).
        if cacheable
            && known.is_some_and(|known| known != cursor)
            && let Some(answer) = answered(&app, &subscription.stream, cursor, &claims).await
        {
            app.metrics.read_cached();
            if answer.built {
                app.metrics.answer_built();
            }
            return json_text(answer.text);
        }
        let answer = if cacheable && known == Some(cursor) && !(last && app.hub.shared()) {
            app.metrics.read_cached();
            nothing_missed(subscription.stream.clone(), cursor)
        } else {
            app.metrics.read_from_hub();
            match app
                .hub
                .pull(Arc::clone(&claims), subscription.clone(), 512)
                .await
            {
                Ok(answer) => answer,
                Err(error) => return refuse(&app, &error),
            }
        };
        let empty = matches!(&answer, ServerMessage::Ops(body) if body.ops.is_empty()
            && body.head == cursor);
        if !empty || last {
            return json(StatusCode::OK, &answer);
        }
        if head.is_none() {
            // The hub holds the stream now: look at its head once more
            // (a commit may have come since it answered) before waiting.
            head = app.hub.heads.watch(&subscription.stream);
            if head.is_some() {
                continue;
            }
        }
        if held.is_none() {
            // A waiting poll holds a connection as a socket does: bounded
            // with them, or a subject's read budget (a poll a read, each
            // held for `--max-wait-ms`) would let it hold a hundred
            // thousand.
            // And with the subject's other connections, or one token
            // could fill the node and shut every other subject out.
            match app.metrics.hold_poll(
                app.config.max_connections,
                &claims.sub,
                app.config.subject_share(),
            ) {
                Ok(slot) => held = Some(slot),
                Err(Full::Node) => return refuse(&app, &node_full()),
                Err(Full::Subject) => return refuse(&app, &app.subject_full()),
            }
        }
        tokio::select! {
            () = moved(head.as_mut(), cursor) => {}
            () = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.changed() => return json(StatusCode::OK, &answer),
        }
    }
}

/// The answer to a poll from `cursor` on `stream` from the stream's recent
/// ops (see [`Heads::answer`](crate::hub::Heads::answer)); `None` if they
/// do not hold all it lacks, and the hub is asked.
///
/// With a shared store, another node may have committed past this node's
/// head: the store's head is read first (outside the hub, before anything
/// is copied), and the answer says it, as a page cut short (the device is
/// not caught up, and asks again). A store behind this node (it lost ops)
/// is the hub's to sort out.
async fn answered(
    app: &AppState,
    stream: &StreamId,
    cursor: u64,
    claims: &Claims,
) -> Option<crate::hub::Answer> {
    let store_head = if app.hub.shared() {
        // Not read for a poll the recent ops would not answer anyway.
        let covered = app.hub.heads.covers(stream, cursor)?;
        let stored = app.store.head(&stream.to_string()).await.ok()?;
        if stored < covered {
            return None;
        }
        Some(stored)
    } else {
        None
    };
    app.hub
        .heads
        .answer(stream, cursor, store_head, |key| claims.can_read_key(key))
}

/// Returns once the watched `head` is other than `cursor`, or its watch
/// ends (the stream was dropped from memory: the hub is asked again);
/// never without a watch.
async fn moved(head: Option<&mut watch::Receiver<u64>>, cursor: u64) {
    let Some(head) = head else {
        return std::future::pending().await;
    };
    while head.changed().await.is_ok() {
        if *head.borrow_and_update() != cursor {
            return;
        }
    }
}

/// The refusal of a socket or a long poll past `--max-connections`.
pub(crate) fn node_full() -> ProtocolError {
    ProtocolError::new(code::TOO_MANY_CONNECTIONS, "this node is full; try another")
}

/// Query of `GET /v1/snapshot`.
#[derive(Debug, Deserialize)]
pub struct SnapshotQuery {
    stream: String,
    /// As for [`PullQuery`]: the next piece after this key.
    #[serde(default)]
    after: Option<String>,
}

/// `GET /v1/snapshot`: the stream's canonical states.
pub async fn snapshot(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<SnapshotQuery>,
) -> Response {
    let (claims, stream) = match claims_and_stream(&app, &headers, &query.stream) {
        Ok(found) => found,
        Err(error) => return refuse(&app, &error),
    };
    let after = match after_key(query.after.as_deref()) {
        Ok(after) => after,
        Err(error) => return refuse(&app, &error),
    };
    if let Err(error) = app.take_read(&claims.sub) {
        return refuse(&app, &error);
    }
    app.metrics.read_from_hub();
    // A cursor past any head always answers with a snapshot.
    let subscription = Subscription {
        stream,
        cursor: Some(u64::MAX),
        after,
    };
    match app.hub.pull(claims, subscription, 0).await {
        Ok(answer) => json(StatusCode::OK, &answer),
        Err(error) => refuse(&app, &error),
    }
}

/// `GET /v1/limits`: what this node accepts (frame size, ops per push and
/// per second), as a welcome says it over a socket; a device that reaches
/// the relay over HTTP alone asks for it before it pushes. Not secret: no
/// token needed.
pub async fn limits(State(app): State<Arc<AppState>>) -> Response {
    (StatusCode::OK, axum::Json(app.config.limits())).into_response()
}

/// `GET /health`.
pub async fn health(State(app): State<Arc<AppState>>) -> Response {
    let body = serde_json::json!({
        "ok": true,
        "node": app.config.node,
        "connections": app.metrics.open_connections(),
        "polls": app.metrics.polls_held(),
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// `GET /metrics` (the log's length as last counted: see
/// [`LogCount`](crate::metrics::LogCount)).
pub async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    let log = app
        .log_count
        .get(|| async { app.store.log_len().await.ok() })
        .await;
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        app.metrics.render(log),
    )
        .into_response()
}
