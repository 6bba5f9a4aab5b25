//! Counters for `/metrics` (Prometheus text format).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gaesup_protocol::AckStatus;

/// How often `/metrics` counts the log, at most. Counting reads the whole
/// log (on SQLite under the read connection the hub's catch-ups share; on
/// Redis a round trip per stream), and `/metrics` needs no token.
pub const LOG_COUNT_EVERY: Duration = Duration::from_secs(10);

/// The log's length as `/metrics` shows it: counted at most once per
/// interval however many requests ask (one that comes while it is being
/// counted waits for that count rather than counting again).
pub struct LogCount {
    every: Duration,
    last: tokio::sync::Mutex<Option<(Instant, u64)>>,
}

impl LogCount {
    /// Counts at most once per `every`.
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The last count if it is younger than the interval, else a new one
    /// by `count` (`None`: it failed, and the last value stands until the
    /// interval has passed again).
    pub async fn get<F>(&self, count: impl FnOnce() -> F) -> u64
    where
        F: Future<Output = Option<u64>>,
    {
        let mut last = self.last.lock().await;
        match *last {
            Some((at, n)) if at.elapsed() < self.every => n,
            previous => {
                let n = count().await.or(previous.map(|(_, n)| n)).unwrap_or(0);
                *last = Some((Instant::now(), n));
                n
            }
        }
    }
}

/// Everything the relay counts.
#[derive(Default)]
pub struct Metrics {
    connections: AtomicU64,
    connections_total: AtomicU64,
    /// HTTP long polls waiting now.
    polls: AtomicU64,
    /// WebSockets whose session ended while their writer still sends
    /// what was queued (and the close).
    closing: AtomicU64,
    /// WebSockets that have not said a valid hello yet, by number (the
    /// oldest first), each holding a [`Pending`]: how to tell it to go.
    pending: Mutex<Places>,
    /// What counts against `--max-connections`: sockets (from their
    /// upgrade) and waiting long polls, each holding a [`Slot`].
    slots: AtomicU64,
    /// The same, per token subject (sockets from their hello, and
    /// waiting long polls), each counted by a [`SubjectSlot`]; a subject
    /// holding none is not kept.
    by_subject: Mutex<HashMap<Arc<str>, u64>>,
    pushes: AtomicU64,
    applied: AtomicU64,
    duplicates: AtomicU64,
    delivered: AtomicU64,
    snapshots: AtomicU64,
    commits: AtomicU64,
    commit_micros: AtomicU64,
    conflicts: AtomicU64,
    remote: AtomicU64,
    reads_hub: AtomicU64,
    reads_cached: AtomicU64,
    catch_up_waits: AtomicU64,
    answers_built: AtomicU64,
    streams: AtomicU64,
    refusals: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    /// A connection opened.
    pub fn connected(&self) -> u64 {
        self.connections_total.fetch_add(1, Ordering::Relaxed);
        self.connections.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A connection closed.
    pub fn disconnected(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// Connections open now.
    pub fn open_connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// A socket's session ended; its writer still sends until the
    /// guard is dropped.
    pub fn closing(self: &Arc<Self>) -> Closing {
        self.closing.fetch_add(1, Ordering::Relaxed);
        Closing {
            metrics: Arc::clone(self),
        }
    }

    /// HTTP long polls waiting now.
    pub fn polls_held(&self) -> u64 {
        self.polls.load(Ordering::Relaxed)
    }

    /// One of the `max` slots sockets and waiting long polls share, if one
    /// is free (taken in one step: concurrent takers never pass `max`);
    /// freed by dropping it.
    pub fn take_slot(self: &Arc<Self>, max: u64) -> Option<Slot> {
        self.slots
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                (held < max).then_some(held + 1)
            })
            .ok()?;
        Some(Slot {
            metrics: Arc::clone(self),
            poll: false,
            subject: None,
        })
    }

    /// A place among the `max` sockets that have not said hello yet. When
    /// all are taken the oldest holder is told to go ([`Pending::evicted`])
    /// and its place is this one's: a socket that says hello within a
    /// round trip keeps its place unless `max` newer ones open meanwhile,
    /// however many sockets that never say hello others open. Given back
    /// by dropping it.
    pub fn take_pending(self: &Arc<Self>, max: u64) -> Pending {
        let evicted = Arc::new(tokio::sync::Notify::new());
        let mut places = self.places();
        while places.held.len() as u64 >= max.max(1) {
            let Some((_, oldest)) = places.held.pop_first() else {
                break;
            };
            oldest.notify_one();
        }
        // Numbered under the lock: the oldest place is the first.
        let id = places.next;
        places.next += 1;
        places.held.insert(id, Arc::clone(&evicted));
        Pending {
            metrics: Arc::clone(self),
            id,
            evicted,
        }
    }

    fn places(&self) -> std::sync::MutexGuard<'_, Places> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sockets that have not said a valid hello yet.
    pub fn sockets_before_hello(&self) -> u64 {
        self.places().held.len() as u64
    }

    /// One of the `max` connections token subject `sub` may hold on this
    /// node, if it holds fewer (taken under one lock: concurrent takers
    /// never pass `max`); given back by dropping it.
    pub fn take_subject_slot(self: &Arc<Self>, sub: &str, max: u64) -> Option<SubjectSlot> {
        let mut held = self.subjects();
        let sub: Arc<str> = match held.get_key_value(sub) {
            Some((_, &n)) if n >= max => return None,
            Some((sub, _)) => Arc::clone(sub),
            None if max == 0 => return None,
            None => Arc::from(sub),
        };
        *held.entry(Arc::clone(&sub)).or_insert(0) += 1;
        Some(SubjectSlot {
            metrics: Arc::clone(self),
            sub,
        })
    }

    /// Token subjects holding a connection now.
    pub fn connected_subjects(&self) -> u64 {
        self.subjects().len() as u64
    }

    fn subjects(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, u64>> {
        self.by_subject
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for a long poll about to wait: one of the subject's
    /// (`sub`, at most `per_subject`), then one of the node's (`max`);
    /// counted in `relay_polls_held` while it is held. Which bound was
    /// reached, if one was (then nothing is taken).
    pub fn hold_poll(
        self: &Arc<Self>,
        max: u64,
        sub: &str,
        per_subject: u64,
    ) -> Result<Slot, Full> {
        let subject = self
            .take_subject_slot(sub, per_subject)
            .ok_or(Full::Subject)?;
        let mut slot = self.take_slot(max).ok_or(Full::Node)?;
        self.polls.fetch_add(1, Ordering::Relaxed);
        slot.poll = true;
        slot.subject = Some(subject);
        Ok(slot)
    }

    /// A push arrived.
    pub fn pushed(&self) {
        self.pushes.fetch_add(1, Ordering::Relaxed);
    }

    /// An op's outcome.
    pub fn count_ack(&self, status: &AckStatus) {
        match status {
            AckStatus::Applied { .. } => self.applied.fetch_add(1, Ordering::Relaxed),
            AckStatus::Duplicate { .. } => self.duplicates.fetch_add(1, Ordering::Relaxed),
            AckStatus::Refused { code, .. } => {
                self.refused(code);
                0
            }
        };
    }

    /// A refusal (of an op, a message or a connection), by code.
    pub fn refused(&self, code: &str) {
        let mut refusals = self
            .refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *refusals.entry(code.to_owned()).or_default() += 1;
    }

    /// Messages delivered to subscribers.
    pub fn delivered(&self, n: u64) {
        self.delivered.fetch_add(n, Ordering::Relaxed);
    }

    /// A snapshot sent to a device behind the log.
    pub fn snapshot(&self) {
        self.snapshots.fetch_add(1, Ordering::Relaxed);
    }

    /// A commit of `ops` ops that took `took`.
    pub fn commit(&self, ops: usize, took: Duration) {
        let _ = ops;
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.commit_micros.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// A stream's commit found another node had written first (its ops
    /// are admitted again).
    pub fn conflict(&self) {
        self.conflicts.fetch_add(1, Ordering::Relaxed);
    }

    /// Ops other nodes committed, applied here.
    pub fn remote(&self, n: u64) {
        self.remote.fetch_add(n, Ordering::Relaxed);
    }

    /// An HTTP read (a pull, a snapshot, a long poll woken or at its
    /// deadline) asked of the hub.
    pub fn read_from_hub(&self) {
        self.reads_hub.fetch_add(1, Ordering::Relaxed);
    }

    /// An answer from a stream's recent ops built (and encoded): once for
    /// the polls at the same cursor and head whose token reads every op of
    /// it, once per pull otherwise.
    pub fn answer_built(&self) {
        self.answers_built.fetch_add(1, Ordering::Relaxed);
    }

    /// An HTTP read answered without a request to the hub: from the head
    /// this node knows, or from a stream's recent ops (with a shared store
    /// after one read of its head).
    pub fn read_cached(&self) {
        self.reads_cached.fetch_add(1, Ordering::Relaxed);
    }

    /// A page of a socket's catch-up waited for its subject's read
    /// budget.
    pub fn catch_up_waited(&self) {
        self.catch_up_waits.fetch_add(1, Ordering::Relaxed);
    }

    /// The hub now holds `n` streams in memory.
    pub fn streams(&self, n: usize) {
        self.streams
            .store(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The Prometheus text exposition; `log_ops` is the log's length (see
    /// [`LogCount`]).
    pub fn render(&self, log_ops: u64) -> String {
        let mut out = String::new();
        // `kind`: "counter" or "gauge".
        let mut metric = |kind: &str, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        metric(
            "counter",
            "relay_connections_total",
            "Connections accepted.",
            self.connections_total.load(Ordering::Relaxed),
        );
        metric(
            "counter",
            "relay_pushes_total",
            "Pushes received.",
            self.pushes.load(Ordering::Relaxed),
        );
        metric(
            "counter",
            "relay_ops_applied_total",
            "Ops made durable and acknowledged.",
            self.applied.load(Ordering::Relaxed),
        );
        metric(
            "counter",
            "relay_ops_duplicate_total",
            "Ops acknowledged as resends.",
            self.duplicates.load(Ordering::Relaxed),
        );
        metric(
            "counter",
            "relay_deliveries_total",
            "Messages delivered to subscribers.",
            self.delivered.load(Ordering::Relaxed),
        );
        metric(
            "counter",
            "relay_snapshots_total",
            "Snapshots sent to devices behind the log.",
            self.snapshots.load(Ordering::Relaxed),
        );
        metric(
            "counter",
            "relay_commits_total",
            "Transactions committed.",
            self.commits.load(Ordering::Relaxed),
        );
        metric(
            "counter",
            "relay_commit_microseconds_total",
            "Time spent committing.",
            self.commit_micros.load(Ordering::Relaxed),
        );
        metric(
            "counter",
            "relay_commit_conflicts_total",
            "Stream commits another node beat (the ops were admitted again).",
            self.conflicts.load(Ordering::Relaxed),
        );
        metric(
            "counter",
            "relay_ops_remote_total",
            "Ops other nodes committed, applied on this node.",
            self.remote.load(Ordering::Relaxed),
        );
        metric(
            "counter",
            "relay_reads_hub_total",
            "HTTP reads (pulls, snapshots, long polls woken or ending) asked of the hub.",
            self.reads_hub.load(Ordering::Relaxed),
        );
        metric(
            "counter",
            "relay_poll_answers_built_total",
            "Answers built and encoded from a stream's recent ops: one shared by the polls at the same cursor and head whose token reads every op of it, one per pull otherwise.",
            self.answers_built.load(Ordering::Relaxed),
        );
        metric(
            "counter",
            "relay_reads_cached_total",
            "HTTP reads answered without the hub: from the head this node knows, or from a stream's recent ops (with a shared store, after a read of its head).",
            self.reads_cached.load(Ordering::Relaxed),
        );
        metric(
            "counter",
            "relay_catch_up_waits_total",
            "Pages of a socket's catch-up that waited for the token subject's read budget (each page past a subscription's first is a read).",
            self.catch_up_waits.load(Ordering::Relaxed),
        );
        metric(
            "gauge",
            "relay_connections",
            "WebSocket connections open.",
            self.open_connections(),
        );
        metric(
            "gauge",
            "relay_polls_held",
            "HTTP long polls waiting.",
            self.polls_held(),
        );
        metric(
            "gauge",
            "relay_sockets_before_hello",
            "WebSocket connections that have not said a valid hello yet.",
            self.sockets_before_hello(),
        );
        metric(
            "gauge",
            "relay_sockets_closing",
            "WebSocket connections whose session ended, still sending what was queued (they hold their connection until done).",
            self.closing.load(Ordering::Relaxed),
        );
        metric(
            "gauge",
            "relay_connected_subjects",
            "Token subjects holding a WebSocket (after its hello) or a waiting long poll.",
            self.connected_subjects(),
        );
        metric(
            "gauge",
            "relay_streams",
            "Streams this node holds in memory.",
            self.streams.load(Ordering::Relaxed),
        );
        metric(
            "gauge",
            "relay_log_ops",
            &format!(
                "Ops in the log (counted at most every {} s).",
                LOG_COUNT_EVERY.as_secs()
            ),
            log_ops,
        );
        let _ = writeln!(
            out,
            "# HELP relay_refusals_total Refusals by code.\n# TYPE relay_refusals_total counter"
        );
        let refusals = self
            .refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (code, n) in refusals.iter() {
            let _ = writeln!(out, "relay_refusals_total{{code=\"{code}\"}} {n}");
        }
        out
    }
}

/// A socket's or a waiting long poll's share of `--max-connections`
/// ([`Metrics::take_slot`], [`Metrics::hold_poll`]), until dropped.
pub struct Slot {
    metrics: Arc<Metrics>,
    poll: bool,
    /// A waiting poll's share of its subject's bound.
    subject: Option<SubjectSlot>,
}

/// A socket counted in `relay_sockets_closing` ([`Metrics::closing`]),
/// until dropped.
pub struct Closing {
    metrics: Arc<Metrics>,
}

impl Drop for Closing {
    fn drop(&mut self) {
        self.metrics.closing.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A socket's place among those that have not said a valid hello
/// (`--max-pending-hellos`, [`Metrics::take_pending`]), until dropped or
/// taken by a newer socket.
pub struct Pending {
    metrics: Arc<Metrics>,
    id: u64,
    evicted: Arc<tokio::sync::Notify>,
}

impl Pending {
    /// Notified once a newer socket took this place: the socket must go.
    pub fn evicted(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.evicted)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // Gone already if a newer socket took the place.
        self.metrics.places().held.remove(&self.id);
    }
}

/// The places of sockets that have not said hello ([`Metrics::take_pending`]).
#[derive(Default)]
struct Places {
    next: u64,
    held: BTreeMap<u64, Arc<tokio::sync::Notify>>,
}

/// Which bound refused a connection ([`Metrics::hold_poll`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The node's (`--max-connections`).
    Node,
    /// The token subject's (`--max-connections-per-subject`).
    Subject,
}

/// A connection's share of its token subject's
/// `--max-connections-per-subject` ([`Metrics::take_subject_slot`]),
/// until dropped.
pub struct SubjectSlot {
    metrics: Arc<Metrics>,
    sub: Arc<str>,
}

impl Drop for SubjectSlot {
    fn drop(&mut self) {
        let mut held = self.metrics.subjects();
        if let Some(n) = held.get_mut(&self.sub) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.sub);
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.poll {
            self.metrics.polls.fetch_sub(1, Ordering::Relaxed);
        }
        self.metrics.slots.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::task::Poll;

    use super::*;

    /// Polls `future` once.
    async fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *future).poll(cx))).await
    }

    #[tokio::test]
    async fn the_log_is_counted_once_per_interval_however_many_ask() {
        let counts = AtomicU64::new(0);
        let count = || async { Some(counts.fetch_add(1, Ordering::SeqCst) + 100) };
        let cached = LogCount::new(Duration::from_secs(3600));
        assert_eq!(cached.get(count).await, 100);
        for _ in 0..10 {
            assert_eq!(cached.get(count).await, 100);
        }
        assert_eq!(counts.load(Ordering::SeqCst), 1);
        // An interval of nothing: every request counts.
        let every = LogCount::new(Duration::ZERO);
        every.get(count).await;
        every.get(count).await;
        assert_eq!(counts.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn requests_that_come_while_the_log_is_counted_wait_for_that_count() {
        let counts = AtomicU64::new(0);
        let (release, gate) = tokio::sync::oneshot::channel::<()>();
        let cached = LogCount::new(Duration::from_secs(3600));
        // The first request's count is under way (held at its gate)…
        let mut first = Box::pin(cached.get(|| async {
            counts.fetch_add(1, Ordering::SeqCst);
            gate.await.ok().map(|()| 7)
        }));
        assert!(poll_once(&mut first).await.is_pending());
        assert_eq!(counts.load(Ordering::SeqCst), 1);
        // …when another asks.
        let mut second = Box::pin(cached.get(|| async {
            counts.fetch_add(1, Ordering::SeqCst);
            Some(8)
        }));
        assert!(poll_once(&mut second).await.is_pending());
        release.send(()).unwrap();
        assert_eq!(first.await, 7);
        assert_eq!(second.await, 7, "the first one's count");
        assert_eq!(counts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_count_keeps_the_last_value() {
        let failing = LogCount::new(Duration::ZERO);
        assert_eq!(failing.get(|| async { Some(5) }).await, 5);
        assert_eq!(failing.get(|| async { None }).await, 5);
    }

    /// A subject's share is taken under one lock: threads racing for it
    /// never hold more than the bound together, a refused poll takes
    /// neither slot, and a subject whose connections all ended is not
    /// kept.
    #[test]
    fn a_subjects_share_is_never_passed_and_is_forgotten_when_given_back() {
        let metrics = Arc::new(Metrics::default());
        let taken: Vec<_> = std::thread::scope(|scope| {
            let takers: Vec<_> = (0..8)
                .map(|_| {
                    let metrics = &metrics;
                    scope.spawn(move || {
                        (0..100)
                            .filter_map(|_| metrics.take_subject_slot("a", 50))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            takers
                .into_iter()
                .flat_map(|taker| taker.join().unwrap())
                .collect()
        });
        assert_eq!(taken.len(), 50);
        assert!(metrics.take_subject_slot("a", 50).is_none());
        let other = metrics.take_subject_slot("b", 50);
        assert!(other.is_some(), "another subject has a share of its own");
        assert_eq!(metrics.connected_subjects(), 2);
        // A poll refused by its subject's bound takes no node slot.
        assert_eq!(metrics.hold_poll(10, "a", 50).err(), Some(Full::Subject));
        assert_eq!(metrics.slots.load(Ordering::Relaxed), 0);
        // One refused by the node's gives the subject's back.
        assert_eq!(metrics.hold_poll(0, "c", 50).err(), Some(Full::Node));
        assert_eq!(metrics.connected_subjects(), 2);
        let poll = metrics.hold_poll(10, "c", 50).unwrap();
        assert_eq!(metrics.polls_held(), 1);
        drop((taken, other, poll));
        assert_eq!(metrics.connected_subjects(), 0);
        assert_eq!(metrics.slots.load(Ordering::Relaxed), 0);
        assert_eq!(metrics.polls_held(), 0);
    }

    /// Places before a hello: a new socket past the bound takes the
    /// oldest one's (whose holder is told at once), the count never
    /// passes the bound, and giving back a place taken by another changes
    /// nothing.
    #[tokio::test]
    async fn a_new_socket_takes_the_oldest_place_before_a_hello() {
        let metrics = Arc::new(Metrics::default());
        let oldest = metrics.take_pending(2);
        let second = metrics.take_pending(2);
        assert_eq!(metrics.sockets_before_hello(), 2);
        let third = metrics.take_pending(2);
        assert_eq!(metrics.sockets_before_hello(), 2);
        // Told before anyone waited: the wait ends at once.
        let told = oldest.evicted();
        tokio::time::timeout(Duration::from_secs(1), told.notified())
            .await
            .expect("the oldest is told to go");
        let untold = second.evicted();
        let mut waiting = Box::pin(untold.notified());
        assert!(
            poll_once(&mut waiting).await.is_pending(),
            "the second was not told"
        );
        // The oldest's place is the third's: dropping it frees nothing.
        drop(oldest);
        assert_eq!(metrics.sockets_before_hello(), 2);
        drop(second);
        assert_eq!(metrics.sockets_before_hello(), 1);
        let fourth = metrics.take_pending(2);
        let third_told = third.evicted();
        let mut third_waiting = Box::pin(third_told.notified());
        assert!(
            poll_once(&mut third_waiting).await.is_pending(),
            "nobody was told: there was room"
        );
        drop((third, fourth));
        assert_eq!(metrics.sockets_before_hello(), 0);
    }
}
