//! The WebSocket endpoint, `/v1/ws`.
//!
//! A device says hello (token, subscriptions with cursors), then pushes ops
//! and receives acks, the ops it missed, live ops, and snapshots when it is
//! behind the log. Heartbeats go both ways: the relay pings every
//! `heartbeat_ms` and closes a socket silent for three of them. A message
//! the relay cannot use gets an error with a specific code and the socket
//! stays open; only a bad token, no valid hello within 5 s of opening, a
//! hello past the subject's read budget or its share of the node's
//! connections, a slow reader, a silent socket or the relay shutting down
//! close it (with a close code and reason).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use gaesup_protocol::{
    Ack, AckStatus, Acks, ClientMessage, MAX_HELLO_BYTES, Ping, ProtocolError, ServerMessage,
    Welcome, code,
};
use gaesup_state_core::{MAX_MESSAGE_BYTES, encoded_len, split_by_len};
use tokio::sync::{Notify, mpsc};

use crate::AppState;
use crate::hub::{CatchUp, FRAME_SLACK, Missed, Outlet, now_ms};
use crate::limits::SharedBucket;
use crate::metrics::{Pending, Slot, SubjectSlot};
use crate::queue::SendQueue;
use crate::token::{self, Claims};

/// Close code: the token was refused, or no valid hello came in time.
const CLOSE_UNAUTHORIZED: u16 = 4001;
/// Close code: the device read too slowly.
const CLOSE_SLOW: u16 = 4008;
/// Close code: no message for three heartbeats.
const CLOSE_SILENT: u16 = 4009;
/// Close code: going away (shutdown).
const CLOSE_GOING_AWAY: u16 = 1001;
/// Longest a socket that never said a valid hello is given to take its
/// error and close frame (at most `--hello-within-ms`): it holds one of
/// the node's connections meanwhile.
const NO_HELLO_GRACE_MS: u64 = 1_000;
/// Starting read and write buffer of a socket.
const SOCKET_BUFFER_BYTES: usize = 4 * 1024;

/// Upgrades to a WebSocket, unless the node holds all it may.
pub async fn upgrade(State(app): State<Arc<AppState>>, ws: WebSocketUpgrade) -> Response {
    // Sockets and waiting long polls share the bound. The slot is the
    // socket's from here: freed if the upgrade never completes, or when
    // the socket ends.
    let Some(slot) = app.metrics.take_slot(app.config.max_connections) else {
        return crate::http::refuse(&app, &crate::http::node_full());
    };
    // Until its hello shows a token, a socket is anyone's: those are
    // bounded apart (the oldest told to go when a new one comes), or peers
    // without a token could fill the node with sockets that never say
    // hello (each held up to `hello_within_ms`).
    let pending = app.metrics.take_pending(app.config.pending_share());
    // Twice the frame limit: a frame between one and two limits gets a
    // specific error; beyond, the socket layer closes with 1009.
    ws.max_message_size(app.config.max_frame_bytes.saturating_mul(2))
        // Small buffers that grow with the frame: most sockets are idle,
        // and the 128 KiB defaults made an idle socket cost ≈ 140 KiB.
        .read_buffer_size(SOCKET_BUFFER_BYTES)
        .write_buffer_size(SOCKET_BUFFER_BYTES)
        .on_upgrade(move |socket| serve(app, socket, slot, pending))
        .into_response()
}

/// `acks` in order, as messages that each fit a frame: an applied op's ack
/// carries its key's whole value, so the acks of one push (small patches of
/// a large merged value) can add up past a frame, which would not encode
/// and never reach the device.
fn ack_frames(acks: Vec<Ack>) -> Vec<Vec<Ack>> {
    let budget = MAX_MESSAGE_BYTES - FRAME_SLACK;
    let sized = acks.into_iter().map(|ack| {
        let len = encoded_len(&ack, budget);
        (ack, len)
    });
    let mut frames = split_by_len(sized, budget, usize::MAX);
    // A push of no ops still gets its (empty) ack.
    if frames.is_empty() {
        frames.push(Vec::new());
    }
    frames
}

fn text(message: &ServerMessage) -> Option<Message> {
    message
        .encode()
        .ok()
        .map(|text| Message::Text(Utf8Bytes::from(text)))
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(reason.to_owned()),
    }))
}

/// The relay's heartbeat (pings, and the unit of its patience with a
/// silent or stuck device).
fn heartbeat_of(app: &AppState) -> Duration {
    Duration::from_millis(app.config.heartbeat_ms.max(50))
}

/// Serves one socket until it ends, its writer included, then gives back
/// what it held (`slot`, its share of the node; `pending`, until a valid
/// hello; its subject's share, from then).
async fn serve(app: Arc<AppState>, socket: WebSocket, slot: Slot, pending: Pending) {
    let evicted = pending.evicted();
    app.metrics.connected();
    let conn = app.next_conn();
    let (mut sink, mut incoming) = socket.split();
    let (send, mut outgoing) = SendQueue::new(app.config.send_queue, app.config.send_queue_bytes);
    let (catch_up, mut missed) = mpsc::unbounded_channel::<Missed>();
    let (closing, mut close_rx) = mpsc::channel::<Message>(1);
    let slow = Arc::new(Notify::new());
    // Where a fan-out to this socket was cut short, if it was.
    let cut = send.cut().clone();
    // A device that stops reading fills the socket's buffers: a frame that
    // cannot be written within this is the end of the connection (it
    // would otherwise hold the session, its slot and a shutdown forever).
    let patience = heartbeat_of(&app) * 3;
    let stuck = Arc::clone(&slow);
    let hub = app.hub.clone();
    let metrics = Arc::clone(&app.metrics);
    let budgets = Arc::clone(&app);
    let mut writer = tokio::spawn(async move {
        let write = async |sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
                           frame: Message| {
            match tokio::time::timeout(patience, sink.send(frame)).await {
                Ok(Ok(())) => true,
                Ok(Err(_)) => false,
                Err(_) => {
                    stuck.notify_one();
                    false
                }
            }
        };
        // A catch-up in progress: each page is fetched once the one before
        // is written, and nothing live goes out before the last.
        let mut catching: Option<CatchUp> = None;
        // Whether that catch-up is past its first page.
        let mut continued = false;
        // How the loop ended: the close frame to send, if any, and whether
        // a write failed (nothing more is written then).
        let (ending, broken) = loop {
            let Some(job) = catching.take() else {
                tokio::select! {
                    biased;
                    frame = close_rx.recv() => break (frame, false),
                    Some(item) = missed.recv() => match item {
                        Missed::Message(message) => {
                            if let Some(frame) = text(&message) && !write(&mut sink, frame).await {
                                break (None, true);
                            }
                        }
                        Missed::CatchUp(job) => {
                            catching = Some(job);
                            continued = false;
                        }
                    },
                    queued = outgoing.recv() => {
                        let Some(queued) = queued else { break (None, false) };
                        // After a gap in what this socket was sent, nothing
                        // but errors: an ack or a pong queued after the cut
                        // (an ack may wait for room while it comes) would
                        // say the device caught up. What was queued before
                        // it goes. The socket closes as slow.
                        if !queued.error && cut.follows(&queued) {
                            continue;
                        }
                        // Its bytes stay counted until it is written.
                        let written = write(&mut sink, Message::Text(queued.text.clone())).await;
                        drop(queued);
                        if !written {
                            break (None, true);
                        }
                    }
                }
                continue;
            };
            // Closing (or the session gone) ends the catch-up unfinished.
            match close_rx.try_recv() {
                Ok(frame) => {
                    catching = Some(job);
                    break (Some(frame), false);
                }
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    catching = Some(job);
                    break (None, false);
                }
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            // Each page past a subscription's first is a read of its token
            // subject's, as a pull of it would be (the hello paid for the
            // first): a hello from cursor 0 otherwise streamed a whole log
            // through the hub for one read. The catch-up waits for the
            // budget rather than fail.
            if continued {
                let reads = budgets.reads.of(&job.claims.sub);
                let mut closing = None;
                if !reads.take(1) {
                    metrics.catch_up_waited();
                    loop {
                        tokio::select! {
                            biased;
                            frame = close_rx.recv() => {
                                closing = Some(frame);
                                break;
                            }
                            () = tokio::time::sleep(budgets.read_refill()) => {
                                if reads.take(1) {
                                    break;
                                }
                            }
                        }
                    }
                }
                if let Some(frame) = closing {
                    catching = Some(job);
                    break (frame, false);
                }
            }
            let page = hub
                .page(Arc::clone(&job.claims), job.subscription.clone(), job.until)
                .await;
            match page {
                Ok(page) => {
                    let mut written = true;
                    for message in &page.messages {
                        if let Some(frame) = text(message) {
                            written = written && write(&mut sink, frame).await;
                        }
                    }
                    if !written {
                        break (None, true);
                    }
                    catching = page.next.map(|subscription| CatchUp {
                        subscription,
                        ..job
                    });
                    continued = true;
                }
                Err(error) => {
                    // The store could not be read, or the relay is going:
                    // the device comes back and catches up from its cursor.
                    // The session is told to end (it would otherwise wait
                    // for the device to go).
                    metrics.refused(error.code);
                    catching = Some(job);
                    if let Some(frame) = text(&ServerMessage::Error(error.body()))
                        && !write(&mut sink, frame).await
                    {
                        break (None, true);
                    }
                    stuck.notify_one();
                    break (Some(close(CLOSE_GOING_AWAY, error.code)), false);
                }
            }
        };
        if !broken {
            // A catch-up cut short leaves a gap before whatever is live:
            // nothing live may follow it (an op past the gap would move the
            // device's cursor over it; an ack or a pong would say it caught
            // up); a fan-out cut short, before what was queued after it. Only errors still go, saying why the socket closes; the
            // device resumes from its cursor. Whether one was cut short is
            // known before anything is written; the first write that fails
            // ends the flush (each could take the whole patience).
            let mut left = Vec::new();
            while let Ok(item) = missed.try_recv() {
                left.push(item);
            }
            let unfinished =
                catching.is_some() || left.iter().any(|item| matches!(item, Missed::CatchUp(_)));
            // (Whether each is an error, and its text.)
            let mut queued: Vec<(bool, Message)> = left
                .into_iter()
                .filter_map(|item| match item {
                    Missed::Message(message) => text(&message)
                        .map(|frame| (matches!(message, ServerMessage::Error(_)), frame)),
                    Missed::CatchUp(_) => None,
                })
                .collect();
            while let Ok(message) = outgoing.try_recv() {
                // After a cut fan-out's gap, as an error or not at all.
                if message.error || !cut.follows(&message) {
                    queued.push((message.error, Message::Text(message.text.clone())));
                }
            }
            let mut flushed = true;
            for (error, frame) in queued {
                if unfinished && !error {
                    continue;
                }
                if !write(&mut sink, frame).await {
                    flushed = false;
                    break;
                }
            }
            if flushed && let Some(frame) = ending {
                let _ = write(&mut sink, frame).await;
            }
        }
        let _ = tokio::time::timeout(patience, sink.close()).await;
    });
    let mut session = Session {
        app: Arc::clone(&app),
        conn,
        claims: None,
        pending: Some(pending),
        subject: None,
        bucket: None,
        reads: None,
        send: send.clone(),
        outlet: Outlet {
            send,
            catch_up,
            slow: Arc::clone(&slow),
            dropped: Arc::new(AtomicBool::new(false)),
        },
    };
    let heartbeat = heartbeat_of(&app);
    let mut ticker = tokio::time::interval(heartbeat);
    ticker.tick().await;
    let mut last_heard = tokio::time::Instant::now();
    // Until a valid hello the socket has shown no token: it may hold a
    // connection slot (and a message half sent) only this long.
    let hello_due = tokio::time::sleep(Duration::from_millis(app.config.hello_within_ms));
    tokio::pin!(hello_due);
    let mut shutdown = app.shutdown.clone();
    let reason = loop {
        tokio::select! {
            frame = incoming.next() => {
                let Some(Ok(frame)) = frame else { break None };
                // WebSocket pings cost nothing to send: before a hello
                // they do not keep a socket alive.
                let control = matches!(frame, Message::Ping(_) | Message::Pong(_));
                if session.claims.is_some() || !control {
                    last_heard = tokio::time::Instant::now();
                }
                match frame {
                    Message::Text(text) => {
                        if let Some(reason) = session.on_text(text.as_str()).await {
                            break Some(reason);
                        }
                    }
                    Message::Binary(_) => session.error(&ProtocolError::new(
                        code::MALFORMED,
                        "the relay speaks JSON text frames",
                    )),
                    Message::Close(_) => break None,
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
            _ = ticker.tick() => {
                // Tokens are short-lived so that a device can be cut off:
                // a socket opened with one ends when it does.
                if let Some(reason) = session.expired() {
                    break Some(reason);
                }
                if last_heard.elapsed() > heartbeat * 3 {
                    break Some(close(CLOSE_SILENT, "no message for three heartbeats"));
                }
                let _ = session.send.try_send(&ServerMessage::Ping(Ping { at: now_ms() }));
            }
            () = &mut hello_due, if session.claims.is_none() => {
                session.error(&ProtocolError::new(code::NO_HELLO, "no hello in time"));
                break Some(close(CLOSE_UNAUTHORIZED, code::NO_HELLO));
            }
            () = evicted.notified(), if session.claims.is_none() => {
                // As a socket refused for want of connections: a device
                // counts it as one that did not open, and after two syncs
                // over HTTP, without a notice.
                let error = ProtocolError::new(
                    code::TOO_MANY_CONNECTIONS,
                    "no hello yet, and newer sockets need the place; try again",
                );
                session.error(&error);
                break Some(close(CLOSE_GOING_AWAY, error.code));
            }
            () = slow.notified() => {
                break Some(close(CLOSE_SLOW, code::SLOW_CONSUMER));
            }
            _ = shutdown.changed() => {
                session.error(&ProtocolError::new(code::SHUTTING_DOWN, "the relay is shutting down"));
                break Some(close(CLOSE_GOING_AWAY, code::SHUTTING_DOWN));
            }
        }
    };
    let counted = app.metrics.closing();
    app.hub.unsubscribe(conn).await;
    if let Some(frame) = reason {
        let _ = closing.send(frame).await;
    }
    drop(closing);
    let hello_said = session.claims.is_some();
    // Held until the writer is done, with the node's slot: a writer stuck
    // on a peer that stopped reading holds the connection as long.
    let shares = (session.pending.take(), session.subject.take());
    drop(session);
    if hello_said {
        let _ = writer.await;
    } else {
        // A socket that never said hello is owed nothing but its error and
        // close frame: one that does not read them does not get to hold
        // its slot (and its buffers) for the writer's patience.
        let grace = Duration::from_millis(app.config.hello_within_ms.min(NO_HELLO_GRACE_MS));
        if tokio::time::timeout(grace, &mut writer).await.is_err() {
            writer.abort();
        }
    }
    drop(counted);
    app.metrics.disconnected();
    drop((slot, shares));
}

struct Session {
    app: Arc<AppState>,
    conn: u64,
    claims: Option<Arc<Claims>>,
    /// The socket's place among those that have not said hello; given
    /// back when `claims` is set.
    pending: Option<Pending>,
    /// The socket's share of its subject's connections; set with
    /// `claims`.
    subject: Option<SubjectSlot>,
    /// The rate budget of the token's subject, shared with its other
    /// connections and HTTP pushes; set with `claims`.
    bucket: Option<SharedBucket>,
    /// The read budget of the token's subject (with several nodes, each
    /// ping takes one); set with `claims`.
    reads: Option<SharedBucket>,
    send: SendQueue,
    outlet: Outlet,
}

impl Session {
    /// The close frame for a socket whose token has expired since its
    /// hello (said to the device first), if it has.
    fn expired(&self) -> Option<Message> {
        let error = self.claims.as_ref()?.check_expiry(now_ms() / 1000).err()?;
        self.error(&ProtocolError::new(error.code(), error.to_string()));
        Some(close(CLOSE_UNAUTHORIZED, code::TOKEN_EXPIRED))
    }

    fn error(&self, error: &ProtocolError) {
        self.app.metrics.refused(error.code);
        let _ = self.send.try_send(&ServerMessage::Error(error.body()));
    }

    /// Handles one text frame; `Some(close frame)` ends the session.
    async fn on_text(&mut self, text: &str) -> Option<Message> {
        // Before the hello, no more than a hello needs: nothing about the
        // sender is known yet.
        let limit = match self.claims {
            Some(_) => self.app.config.max_frame_bytes,
            None => self.app.config.max_frame_bytes.min(MAX_HELLO_BYTES),
        };
        let message = match ClientMessage::decode_bounded(text, limit) {
            Ok(message) => message,
            Err(error) => {
                self.error(&error);
                return None;
            }
        };
        match message {
            ClientMessage::Hello(hello) => {
                if self.claims.is_some() {
                    self.error(&ProtocolError::new(
                        code::MALFORMED,
                        "hello was already said",
                    ));
                    return None;
                }
                let Some(token) = hello.token.as_deref() else {
                    self.error(&ProtocolError::new(code::UNAUTHORIZED, "no token"));
                    return Some(close(CLOSE_UNAUTHORIZED, code::UNAUTHORIZED));
                };
                let claims = match token::verify(&self.app.secret, token, now_ms() / 1000) {
                    Ok(claims) => Arc::new(claims),
                    Err(err) => {
                        self.error(&ProtocolError::new(err.code(), err.to_string()));
                        return Some(close(CLOSE_UNAUTHORIZED, err.code()));
                    }
                };
                tracing::debug!(client = %hello.client, subject = %claims.sub, "hello");
                // The socket has held one of the node's connections since
                // its upgrade; from here one of its subject's too, or one
                // token could fill the node and shut every other out.
                let Some(subject) = self
                    .app
                    .metrics
                    .take_subject_slot(&claims.sub, self.app.config.subject_share())
                else {
                    let error = self.app.subject_full();
                    self.error(&error);
                    return Some(close(CLOSE_GOING_AWAY, error.code));
                };
                // A hello is a read (its catch-ups, a snapshot perhaps): a
                // peer that says hello and leaves in a loop pays for each.
                let reads = self.app.reads.of(&claims.sub);
                if !reads.take(1) {
                    let error = self.app.reads_refused();
                    self.error(&error);
                    return Some(close(CLOSE_GOING_AWAY, error.code));
                }
                // A valid hello: the socket is no longer anyone's (given
                // back before the welcome, which a device may answer at
                // once).
                self.pending = None;
                // Before the catch-ups, which hold back everything live.
                let _ = self
                    .outlet
                    .catch_up
                    .send(Missed::Message(ServerMessage::Welcome(Welcome {
                        node: self.app.config.node.clone(),
                        heartbeat_ms: self.app.config.heartbeat_ms,
                        limits: self.app.config.limits(),
                    })));
                self.claims = Some(Arc::clone(&claims));
                self.subject = Some(subject);
                self.bucket = Some(self.app.budgets.of(&claims.sub));
                self.reads = Some(reads);
                if let Err(error) = self
                    .app
                    .hub
                    .subscribe(self.conn, claims, hello.subscribe, self.outlet.clone())
                    .await
                {
                    self.error(&error);
                    if error.code == code::STORAGE {
                        // Some streams may have been caught up, others not:
                        // the device comes back and subscribes again.
                        return Some(close(CLOSE_GOING_AWAY, code::STORAGE));
                    }
                }
                None
            }
            ClientMessage::Push(push) => {
                let (Some(claims), Some(bucket)) = (self.claims.clone(), self.bucket.clone())
                else {
                    self.error(&ProtocolError::new(code::NO_HELLO, "say hello first"));
                    return None;
                };
                if let Some(reason) = self.expired() {
                    return Some(reason);
                }
                self.app.metrics.pushed();
                if push.ops.len() > self.app.config.max_ops_per_push {
                    self.error(&ProtocolError::new(
                        code::TOO_MANY_OPS,
                        format!(
                            "{} ops in one push; at most {}",
                            push.ops.len(),
                            self.app.config.max_ops_per_push
                        ),
                    ));
                    return None;
                }
                // An op's worth per op (a push of nothing still costs a
                // turn: it is work for the hub); the hub draws what ops on
                // large keys cost more.
                let acks = if bucket.take(push.ops.len().max(1)) {
                    match self
                        .app
                        .hub
                        .push(claims, push.ops.clone(), Some(self.conn), bucket)
                        .await
                    {
                        Ok(acks) => acks,
                        Err(error) => all_refused(&push.ops, &error),
                    }
                } else {
                    // An ack still means caught up (see `Hub::barrier`).
                    self.app.hub.barrier(self.conn).await;
                    let error = ProtocolError::new(
                        code::RATE_LIMITED,
                        format!(
                            "more than {} ops' worth per second (an op on a large key counts for more); resend later",
                            self.app.config.max_ops_per_second
                        ),
                    );
                    self.app.metrics.refused(code::RATE_LIMITED);
                    all_refused(&push.ops, &error)
                };
                if self.outlet.dropped.load(Ordering::SeqCst) {
                    // Ops committed before these acks did not all reach the
                    // device: no ack (it pushes again after reconnecting,
                    // and gets duplicates).
                    return Some(close(CLOSE_SLOW, code::SLOW_CONSUMER));
                }
                // Acks must not be lost to a full queue: wait for room, as
                // long as a device that reads would take to make some.
                let patience = heartbeat_of(&self.app) * 3;
                for acks in ack_frames(acks) {
                    let ack = ServerMessage::Ack(Acks { acks });
                    let queued = self.send.send(&ack);
                    if tokio::time::timeout(patience, queued).await.is_err() {
                        return Some(close(CLOSE_SLOW, code::SLOW_CONSUMER));
                    }
                }
                None
            }
            ClientMessage::Ping(ping) => {
                // With several nodes a pong waits for a read of the store
                // per stream followed: a read, and no pong past the
                // subject's budget. On one node it costs nothing and is
                // not counted (a public site's visitors, who share one
                // subject, ping every few seconds).
                if self.app.hub.shared()
                    && let Some(reads) = &self.reads
                    && !reads.take(1)
                {
                    self.error(&self.app.reads_refused());
                    return None;
                }
                // A pong follows everything sent before it, as an ack does
                // (with several nodes, everything the store held when the
                // ping came): not after a cut fan-out.
                self.app.hub.barrier(self.conn).await;
                if !self.outlet.dropped.load(Ordering::SeqCst) {
                    let _ = self.send.try_send(&ServerMessage::Pong(ping));
                }
                None
            }
            ClientMessage::Pong(_) => None,
        }
    }
}

/// The same refusal for every op of a push.
pub fn all_refused(ops: &[gaesup_state_core::Op], error: &ProtocolError) -> Vec<Ack> {
    ops.iter()
        .map(|op| Ack {
            op: op.id,
            status: AckStatus::Refused {
                code: error.code.to_owned(),
                message: error.message.clone(),
            },
        })
        .collect()
}
