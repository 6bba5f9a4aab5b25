//! The hub: one task that owns every stream's canonical state, numbers ops,
//! makes them durable and fans them out.
//!
//! Each stream has a replica of the same core the tabs run, with the app's
//! declarations: an op is admitted by it exactly as a tab would admit it
//! (strategy, schema and migrations, types, permissions, clock window,
//! limits), and the value it leaves is the canonical value every device
//! converges to. Ops are applied in memory, then made durable in batches
//! (every push waiting in the queue goes into one transaction, so many
//! writers share one disk sync), and only then acknowledged and sent to
//! subscribers. If the commit fails, the touched streams are reloaded
//! from the store and every op of the batch is refused: nothing is ever
//! acknowledged that is not on disk.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use gaesup_protocol::{
    Ack, AckStatus, OpsBody, ProtocolError, Sequenced, ServerMessage, Snapshot, StreamId,
    Subscription, code,
};
use gaesup_state_core::{
    FullKey, KeySpec, KeyState, Lifetime, MAX_CLOCK_AHEAD_MS, MAX_MESSAGE_BYTES, MemoryStorage, Op,
    Replica, STATE_PREFIX, SharedKey, Storage, SyncEntry, TabId, encoded_len,
};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::db::{Commit, Db, Row};
use crate::metrics::Metrics;
use crate::token::Claims;

/// Most ops one commit takes (more wait for the next one).
const MAX_BATCH_OPS: usize = 4096;
/// Room for a message's envelope around its ops or states.
const FRAME_SLACK: usize = 4096;

/// A push waiting in the hub: who pushed, the ops, where the acks go.
type Pending = (Arc<Claims>, Vec<Op>, oneshot::Sender<Vec<Ack>>);

/// A connection's id, for subscriptions.
pub type ConnId = u64;

/// What a connection receives, and how the hub tells it it was too slow.
#[derive(Clone)]
pub struct Outlet {
    /// Live messages for the device (bounded: a slow reader fills it).
    pub send: mpsc::Sender<ServerMessage>,
    /// What a device missed, sent before anything live (bounded by the log
    /// the relay keeps, or a snapshot).
    pub catch_up: mpsc::UnboundedSender<ServerMessage>,
    /// Notified when the queue was full: the connection closes with
    /// `slow_consumer` and the device resyncs from its cursor.
    pub slow: Arc<Notify>,
    /// Set with `slow`, before it is notified: a fan-out to this
    /// connection was cut short, so no ack may follow on it (a device takes
    /// an ack to mean it has every op committed before).
    pub dropped: Arc<AtomicBool>,
}

enum Request {
    Push {
        claims: Arc<Claims>,
        ops: Vec<Op>,
        reply: oneshot::Sender<Vec<Ack>>,
    },
    Subscribe {
        conn: ConnId,
        claims: Arc<Claims>,
        subscriptions: Vec<Subscription>,
        outlet: Outlet,
        reply: oneshot::Sender<Result<(), ProtocolError>>,
    },
    Unsubscribe {
        conn: ConnId,
    },
    Pull {
        claims: Arc<Claims>,
        subscription: Subscription,
        limit: usize,
        reply: oneshot::Sender<Result<ServerMessage, ProtocolError>>,
    },
}

/// A handle to the hub (cheap to clone).
#[derive(Clone)]
pub struct Hub {
    requests: mpsc::Sender<Request>,
    /// Notified after every commit (long polls wait on it).
    pub committed: Arc<Notify>,
}

struct Stream {
    id: StreamId,
    replica: Replica,
    head: u64,
    first: u64,
}

struct Subscriber {
    claims: Arc<Claims>,
    streams: BTreeSet<StreamId>,
    outlet: Outlet,
}

struct State {
    db: Arc<Db>,
    declarations: Vec<Arc<KeySpec>>,
    streams: BTreeMap<StreamId, Stream>,
    subscribers: BTreeMap<ConnId, Subscriber>,
    metrics: Arc<Metrics>,
    committed: Arc<Notify>,
    /// Ops kept per stream behind the head before the log is trimmed.
    keep: u64,
}

/// The relay's own replica id: random per start, so no device's op can
/// claim it.
fn relay_tab() -> TabId {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    use std::hash::{BuildHasher, RandomState};
    let salt = COUNTER.fetch_add(1, Ordering::Relaxed);
    TabId::new(RandomState::new().hash_one((now_ms(), salt)) | 1 << 63)
}

/// Wall-clock milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Hub {
    /// Loads every stream from `db` and starts the hub on a thread of its
    /// own (the core's replicas are single-owner values, not `Send`).
    /// The returned task ends when every handle is dropped and what was
    /// queued is committed.
    pub async fn start(
        db: Arc<Db>,
        declarations: Vec<Arc<KeySpec>>,
        metrics: Arc<Metrics>,
        keep: u64,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), String> {
        let committed = Arc::new(Notify::new());
        let (requests, inbox) = mpsc::channel(1024);
        let (ready, started) = oneshot::channel::<Result<(), String>>();
        let notify = Arc::clone(&committed);
        let thread = std::thread::Builder::new()
            .name("relay-hub".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = ready.send(Err(err.to_string()));
                        return;
                    }
                };
                let state = match State::load_all(db, declarations, metrics, notify, keep) {
                    Ok(state) => state,
                    Err(err) => {
                        let _ = ready.send(Err(err));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                runtime.block_on(state.run(inbox));
            })
            .map_err(|err| err.to_string())?;
        started
            .await
            .map_err(|_| String::from("the hub thread died while starting"))??;
        let task = tokio::task::spawn_blocking(move || {
            let _ = thread.join();
        });
        Ok((
            Self {
                requests,
                committed,
            },
            task,
        ))
    }

    /// Applies, stores and acknowledges `ops` (one ack each, in order).
    pub async fn push(&self, claims: Arc<Claims>, ops: Vec<Op>) -> Result<Vec<Ack>, ProtocolError> {
        let (reply, wait) = oneshot::channel();
        self.requests
            .send(Request::Push { claims, ops, reply })
            .await
            .map_err(|_| shutting_down())?;
        wait.await.map_err(|_| shutting_down())
    }

    /// Catches `conn` up on `subscriptions` and sends it every later op.
    pub async fn subscribe(
        &self,
        conn: ConnId,
        claims: Arc<Claims>,
        subscriptions: Vec<Subscription>,
        outlet: Outlet,
    ) -> Result<(), ProtocolError> {
        let (reply, wait) = oneshot::channel();
        self.requests
            .send(Request::Subscribe {
                conn,
                claims,
                subscriptions,
                outlet,
                reply,
            })
            .await
            .map_err(|_| shutting_down())?;
        wait.await.map_err(|_| shutting_down())?
    }

    /// Stops sending to `conn`.
    pub async fn unsubscribe(&self, conn: ConnId) {
        let _ = self.requests.send(Request::Unsubscribe { conn }).await;
    }

    /// What a device at `subscription`'s cursor lacks: ops (at most
    /// `limit`, possibly none) or a snapshot.
    pub async fn pull(
        &self,
        claims: Arc<Claims>,
        subscription: Subscription,
        limit: usize,
    ) -> Result<ServerMessage, ProtocolError> {
        let (reply, wait) = oneshot::channel();
        self.requests
            .send(Request::Pull {
                claims,
                subscription,
                limit,
                reply,
            })
            .await
            .map_err(|_| shutting_down())?;
        wait.await.map_err(|_| shutting_down())?
    }
}

fn shutting_down() -> ProtocolError {
    ProtocolError::new(code::SHUTTING_DOWN, "the relay is shutting down")
}

fn refused(code: &str, message: impl Into<String>) -> AckStatus {
    AckStatus::Refused {
        code: code.to_owned(),
        message: message.into(),
    }
}

/// A stream with nothing in it yet, its replica knowing every declaration.
fn new_stream(declarations: &[Arc<KeySpec>], id: StreamId) -> Stream {
    let clock = now_ms;
    let mut replica = match &id {
        StreamId::Apartment(apartment) => {
            Replica::for_apartment(relay_tab(), apartment.clone(), clock)
        }
        StreamId::Global => Replica::new(relay_tab(), clock),
    };
    for spec in declarations {
        // Declarations come from the app and agree (the app's own tests
        // check it); a clash would only refuse that key's ops.
        let _ = replica.declare(&SharedKey::erased(Arc::clone(spec)));
    }
    Stream {
        id,
        replica,
        head: 0,
        first: 1,
    }
}

impl State {
    fn load_all(
        db: Arc<Db>,
        declarations: Vec<Arc<KeySpec>>,
        metrics: Arc<Metrics>,
        committed: Arc<Notify>,
        keep: u64,
    ) -> Result<Self, String> {
        let mut state = State {
            db,
            declarations,
            streams: BTreeMap::new(),
            subscribers: BTreeMap::new(),
            metrics,
            committed,
            keep,
        };
        let stored = state.db.streams().map_err(|err| err.to_string())?;
        for (name, row) in stored {
            let id: StreamId = name
                .parse()
                .map_err(|err| format!("stored stream {name:?}: {err}"))?;
            let mut stream = state.new_stream(id);
            stream.head = row.head;
            stream.first = row.first;
            state.load(&mut stream)?;
            state.streams.insert(stream.id.clone(), stream);
        }
        Ok(state)
    }

    fn new_stream(&self, id: StreamId) -> Stream {
        new_stream(&self.declarations, id)
    }

    /// Loads a stream's canonical states from the store, through the core's
    /// own loading (so a state the declarations no longer admit is set
    /// aside, not trusted).
    fn load(&self, stream: &mut Stream) -> Result<(), String> {
        let rows = self
            .db
            .states(&stream.id.to_string())
            .map_err(|err| err.to_string())?;
        let mut storage = MemoryStorage::new();
        for (key, stored) in rows {
            storage
                .set(&format!("{STATE_PREFIX}{key}"), &stored)
                .map_err(|err| err.to_string())?;
        }
        let report = stream
            .replica
            .load(Lifetime::Persistent, &mut storage)
            .map_err(|err| err.to_string())?;
        for quarantined in report.quarantined {
            tracing::warn!(key = %quarantined.key, error = %quarantined.error, "stored state set aside");
        }
        Ok(())
    }

    fn stream(&mut self, id: &StreamId) -> &mut Stream {
        let declarations = &self.declarations;
        self.streams
            .entry(id.clone())
            .or_insert_with(|| new_stream(declarations, id.clone()))
    }

    async fn run(mut self, mut inbox: mpsc::Receiver<Request>) {
        while let Some(first) = inbox.recv().await {
            let mut pushes = Vec::new();
            let mut others = Vec::new();
            let mut ops = 0;
            let mut next = Some(first);
            while let Some(request) = next.take() {
                match request {
                    Request::Push {
                        claims,
                        ops: batch,
                        reply,
                    } => {
                        ops += batch.len();
                        pushes.push((claims, batch, reply));
                    }
                    other => others.push(other),
                }
                if ops < MAX_BATCH_OPS {
                    next = inbox.try_recv().ok();
                }
            }
            if !pushes.is_empty() {
                self.push(pushes).await;
            }
            for request in others {
                self.handle(request);
            }
        }
    }

    fn handle(&mut self, request: Request) {
        match request {
            Request::Push { .. } => {}
            Request::Subscribe {
                conn,
                claims,
                subscriptions,
                outlet,
                reply,
            } => {
                let result = self.subscribe(conn, claims, subscriptions, outlet);
                let _ = reply.send(result);
            }
            Request::Unsubscribe { conn } => {
                self.subscribers.remove(&conn);
            }
            Request::Pull {
                claims,
                subscription,
                limit,
                reply,
            } => {
                let _ = reply.send(self.pull(&claims, &subscription, limit));
            }
        }
    }

    /// Admits and applies every op of every push, commits them in one
    /// transaction, then acknowledges and fans out.
    async fn push(&mut self, pushes: Vec<Pending>) {
        let mut commit = Commit::default();
        let mut dirty: BTreeMap<StreamId, BTreeSet<FullKey>> = BTreeMap::new();
        let mut in_batch: BTreeMap<(StreamId, String), u64> = BTreeMap::new();
        let mut all_acks = Vec::with_capacity(pushes.len());
        let mut fanout: BTreeMap<StreamId, Vec<Sequenced>> = BTreeMap::new();
        for (claims, ops, _) in &pushes {
            let mut acks = Vec::with_capacity(ops.len());
            for op in ops {
                let status = self.admit(
                    claims,
                    op,
                    &mut commit,
                    &mut dirty,
                    &mut in_batch,
                    &mut fanout,
                );
                self.metrics.count_ack(&status);
                acks.push(Ack { op: op.id, status });
            }
            all_acks.push(acks);
        }
        if !commit.ops.is_empty() {
            for (id, keys) in &dirty {
                let Some(stream) = self.streams.get(id) else {
                    continue;
                };
                for key in keys {
                    if let Some(stored) = stored_state(&stream.replica, key) {
                        commit
                            .states
                            .push((id.to_string(), key.to_string(), stored));
                    }
                }
                commit.heads.push((id.to_string(), stream.head));
            }
            let started = std::time::Instant::now();
            let ops = commit.ops.len();
            if let Err(err) = self.db.commit(commit).await {
                tracing::error!(error = %err, "commit failed; the batch is refused");
                self.reload(dirty.keys().cloned().collect());
                for acks in &mut all_acks {
                    for ack in acks.iter_mut() {
                        if matches!(ack.status, AckStatus::Applied { .. }) {
                            ack.status = refused(code::STORAGE, format!("not stored: {err}"));
                        }
                    }
                }
                fanout.clear();
            } else {
                self.metrics.commit(ops, started.elapsed());
            }
        }
        // Fanned out before the acks go: a device that reads an ack has read
        // every op committed with it (its link takes an ack on a socket to
        // mean it has caught up).
        for (id, ops) in fanout {
            self.fan_out(&id, ops);
        }
        for ((_, _, reply), acks) in pushes.into_iter().zip(all_acks) {
            let _ = reply.send(acks);
        }
        self.committed.notify_waiters();
        self.trim().await;
    }

    #[allow(clippy::too_many_arguments)]
    fn admit(
        &mut self,
        claims: &Claims,
        op: &Op,
        commit: &mut Commit,
        dirty: &mut BTreeMap<StreamId, BTreeSet<FullKey>>,
        in_batch: &mut BTreeMap<(StreamId, String), u64>,
        fanout: &mut BTreeMap<StreamId, Vec<Sequenced>>,
    ) -> AckStatus {
        let id = StreamId::of(&op.key);
        if !claims.can_write_key(&op.key) {
            return refused(
                code::FORBIDDEN,
                format!("the token may not write {}", op.key),
            );
        }
        let op_id = op.id.to_string();
        if let Some(seq) = in_batch.get(&(id.clone(), op_id.clone())) {
            return AckStatus::Duplicate {
                stream: id,
                seq: *seq,
            };
        }
        match self.db.seq_of(&id.to_string(), &op_id) {
            Ok(Some(seq)) => return AckStatus::Duplicate { stream: id, seq },
            Ok(None) => {}
            Err(err) => return refused(code::STORAGE, err.to_string()),
        }
        let now = now_ms();
        let stream = self.stream(&id);
        let spec = match stream.replica.spec_for(&op.key) {
            Ok(spec) => spec,
            Err(_) => {
                return refused(
                    code::UNKNOWN_KEY,
                    format!("the relay knows no declaration of {}", op.key),
                );
            }
        };
        if spec.lifetime() != Lifetime::Persistent {
            return refused(
                code::NOT_RELAYED,
                format!(
                    "{} lives {}: it does not travel to other devices",
                    op.key,
                    spec.lifetime()
                ),
            );
        }
        if op.stamp.wall_ms > now.saturating_add(MAX_CLOCK_AHEAD_MS) {
            return refused(
                "clock_skew",
                format!(
                    "the op is stamped {} ms ahead of the relay's clock; check the device's time",
                    op.stamp.wall_ms - now
                ),
            );
        }
        if let Err(err) = stream.replica.apply_remote(op) {
            return refused(err.code(), err.to_string());
        }
        stream.head += 1;
        let seq = stream.head;
        let value = stream
            .replica
            .state(&op.key)
            .and_then(KeyState::value)
            .unwrap_or_else(|| spec.default_value().clone());
        commit.ops.push(Row {
            stream: id.to_string(),
            seq,
            op_id: op_id.clone(),
            body: serde_json::to_string(op).unwrap_or_default(),
        });
        in_batch.insert((id.clone(), op_id), seq);
        dirty.entry(id.clone()).or_default().insert(op.key.clone());
        fanout.entry(id.clone()).or_default().push(Sequenced {
            seq,
            op: op.clone(),
        });
        AckStatus::Applied {
            stream: id,
            seq,
            value,
        }
    }

    /// After a failed commit: the streams' replicas and heads as stored.
    fn reload(&mut self, ids: Vec<StreamId>) {
        let heads = self.db.streams().unwrap_or_default();
        for id in ids {
            let mut stream = self.new_stream(id.clone());
            if let Some((_, row)) = heads.iter().find(|(name, _)| *name == id.to_string()) {
                stream.head = row.head;
                stream.first = row.first;
            }
            if let Err(err) = self.load(&mut stream) {
                tracing::error!(stream = %id, error = %err, "reload failed");
            }
            self.streams.insert(id, stream);
        }
    }

    fn fan_out(&mut self, id: &StreamId, ops: Vec<Sequenced>) {
        let head = self.streams.get(id).map_or(0, |s| s.head);
        let mut slow = Vec::new();
        for (conn, subscriber) in &self.subscribers {
            if !subscriber.streams.contains(id) {
                continue;
            }
            let visible: Vec<Sequenced> = ops
                .iter()
                .filter(|s| subscriber.claims.can_read_key(&s.op.key))
                .cloned()
                .collect();
            for message in ops_messages(id, visible, head) {
                if subscriber.outlet.send.try_send(message).is_err() {
                    slow.push(*conn);
                    break;
                }
                self.metrics.delivered(1);
            }
        }
        for conn in slow {
            if let Some(subscriber) = self.subscribers.remove(&conn) {
                subscriber.outlet.dropped.store(true, Ordering::SeqCst);
                subscriber.outlet.slow.notify_one();
                self.metrics.refused(code::SLOW_CONSUMER);
            }
        }
    }

    fn subscribe(
        &mut self,
        conn: ConnId,
        claims: Arc<Claims>,
        subscriptions: Vec<Subscription>,
        outlet: Outlet,
    ) -> Result<(), ProtocolError> {
        for subscription in &subscriptions {
            if !claims.can_read(&subscription.stream) {
                return Err(ProtocolError::new(
                    code::FORBIDDEN,
                    format!("the token may not read {}", subscription.stream),
                ));
            }
        }
        let mut streams = BTreeSet::new();
        for subscription in &subscriptions {
            for message in self.catch_up(&claims, subscription, usize::MAX)? {
                // Queued here, in the same step that registers the
                // subscriber, so nothing live can overtake it.
                if outlet.catch_up.send(message).is_err() {
                    return Ok(());
                }
            }
            streams.insert(subscription.stream.clone());
        }
        let subscriber = self.subscribers.entry(conn).or_insert_with(|| Subscriber {
            claims: Arc::clone(&claims),
            streams: BTreeSet::new(),
            outlet: outlet.clone(),
        });
        subscriber.claims = claims;
        subscriber.outlet = outlet;
        subscriber.streams.extend(streams);
        Ok(())
    }

    fn pull(
        &mut self,
        claims: &Claims,
        subscription: &Subscription,
        limit: usize,
    ) -> Result<ServerMessage, ProtocolError> {
        if !claims.can_read(&subscription.stream) {
            return Err(ProtocolError::new(
                code::FORBIDDEN,
                format!("the token may not read {}", subscription.stream),
            ));
        }
        let mut messages = self.catch_up(claims, subscription, limit)?;
        Ok(if messages.is_empty() {
            ServerMessage::Ops(OpsBody {
                stream: subscription.stream.clone(),
                ops: Vec::new(),
                head: self.streams.get(&subscription.stream).map_or(0, |s| s.head),
            })
        } else {
            messages.swap_remove(0)
        })
    }

    /// What a device at a cursor lacks: the ops after it (at most `limit`),
    /// or a snapshot when the log no longer reaches back to it (or the
    /// device claims a number the relay never gave). Always at least one
    /// message, saying the head.
    fn catch_up(
        &mut self,
        claims: &Claims,
        subscription: &Subscription,
        limit: usize,
    ) -> Result<Vec<ServerMessage>, ProtocolError> {
        let id = subscription.stream.clone();
        let stream = self.stream(&id);
        let (head, first) = (stream.head, stream.first);
        let cursor = subscription.cursor.unwrap_or(0);
        if cursor == head {
            return Ok(vec![ServerMessage::Ops(OpsBody {
                stream: id,
                ops: Vec::new(),
                head,
            })]);
        }
        if cursor > head || cursor + 1 < first {
            self.metrics.snapshot();
            return Ok(self.snapshot(claims, &id));
        }
        let mut messages = Vec::new();
        let mut after = cursor;
        let mut sent = 0usize;
        while after < head && sent < limit {
            let rows = self
                .db
                .ops_after(&id.to_string(), after, 512.min(limit - sent))
                .map_err(|err| ProtocolError::new(code::STORAGE, err.to_string()))?;
            if rows.is_empty() {
                break;
            }
            let mut ops = Vec::with_capacity(rows.len());
            for (seq, body) in rows {
                after = seq;
                sent += 1;
                match serde_json::from_str::<Op>(&body) {
                    Ok(op) if claims.can_read_key(&op.key) => ops.push(Sequenced { seq, op }),
                    Ok(_) => {}
                    Err(err) => tracing::error!(seq, error = %err, "a stored op does not parse"),
                }
            }
            messages.extend(ops_messages(&id, ops, head));
        }
        if messages.is_empty() {
            messages.push(ServerMessage::Ops(OpsBody {
                stream: id,
                ops: Vec::new(),
                head,
            }));
        }
        Ok(messages)
    }

    /// The stream's canonical states the token may read, as snapshot
    /// messages that each fit a frame.
    fn snapshot(&self, claims: &Claims, id: &StreamId) -> Vec<ServerMessage> {
        let Some(stream) = self.streams.get(id) else {
            return Vec::new();
        };
        let mut messages = Vec::new();
        let mut chunk = Vec::new();
        let mut size = 0;
        for (key, state) in stream.replica.states() {
            if !claims.can_read_key(key) {
                continue;
            }
            let Ok(spec) = stream.replica.spec_for(key) else {
                continue;
            };
            let entry = SyncEntry {
                key: key.clone(),
                schema: spec.schema().version(),
                state: state.clone(),
            };
            let len = encoded_len(&entry, MAX_MESSAGE_BYTES);
            if !chunk.is_empty() && size + len > MAX_MESSAGE_BYTES - FRAME_SLACK {
                messages.push(ServerMessage::Snapshot(Snapshot {
                    stream: id.clone(),
                    seq: stream.head,
                    states: std::mem::take(&mut chunk),
                }));
                size = 0;
            }
            size += len;
            chunk.push(entry);
        }
        messages.push(ServerMessage::Snapshot(Snapshot {
            stream: id.clone(),
            seq: stream.head,
            states: chunk,
        }));
        messages
    }

    /// Trims each stream's log to the newest `keep` ops, behind the
    /// canonical states (which are the snapshot).
    async fn trim(&mut self) {
        let due: Vec<StreamId> = self
            .streams
            .values()
            .filter(|s| s.head.saturating_sub(s.first) + 1 > self.keep + self.keep / 4)
            .map(|s| s.id.clone())
            .collect();
        for id in due {
            match self.db.trim(&id.to_string(), self.keep).await {
                Ok(first) => {
                    if let Some(stream) = self.streams.get_mut(&id) {
                        stream.first = first;
                    }
                }
                Err(err) => tracing::warn!(stream = %id, error = %err, "trimming the log failed"),
            }
        }
    }
}

/// `ops` as messages that each fit a frame (at least one message).
fn ops_messages(id: &StreamId, ops: Vec<Sequenced>, head: u64) -> Vec<ServerMessage> {
    let mut messages = Vec::new();
    let mut chunk = Vec::new();
    let mut size = 0;
    for op in ops {
        let len = encoded_len(&op, MAX_MESSAGE_BYTES);
        if !chunk.is_empty() && size + len > MAX_MESSAGE_BYTES - FRAME_SLACK {
            messages.push(ServerMessage::Ops(OpsBody {
                stream: id.clone(),
                ops: std::mem::take(&mut chunk),
                head,
            }));
            size = 0;
        }
        size += len;
        chunk.push(op);
    }
    if !chunk.is_empty() || messages.is_empty() {
        messages.push(ServerMessage::Ops(OpsBody {
            stream: id.clone(),
            ops: chunk,
            head,
        }));
    }
    messages
}

/// A key's state as stored (the core's stored form: schema and state).
fn stored_state(replica: &Replica, key: &FullKey) -> Option<String> {
    #[derive(serde::Serialize)]
    struct Stored<'a> {
        schema: u32,
        state: &'a KeyState,
    }
    let state = replica.state(key)?;
    let spec = replica.spec_for(key).ok()?;
    serde_json::to_string(&Stored {
        schema: spec.schema().version(),
        state,
    })
    .ok()
}
