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
//!
//! With a shared store (Redis, several nodes) a commit also states the head
//! its ops were admitted against. When another node got there first the
//! stream is reloaded (states and head read together) and its ops are
//! admitted again against the new state, so every node's replica applies
//! the same ops in the same order: the log's. What other nodes commit comes
//! to this node through its reader ([`Hub::remote`]) and is applied and
//! fanned out here in log order; every subscriber therefore sees each
//! stream's numbers without a gap, whichever node committed them.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use gaesup_protocol::{
    Ack, AckStatus, ErrorBody, OpsBody, ProtocolError, Sequenced, ServerMessage, Snapshot,
    StreamId, Subscription, code,
};
use gaesup_state_core::{
    Error as CoreError, FullKey, KeySpec, KeyState, Lifetime, MAX_CLOCK_AHEAD_MS,
    MAX_MESSAGE_BYTES, MAX_SYNC_STATES, MemoryStorage, Op, Replica, STATE_PREFIX, SharedKey,
    Storage, SyncEntry, TabId, encoded_len, first_groups_by_len,
};
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::db::Row;
use crate::limits::{MAX_STORED_BYTES, SharedBucket, extra_cost};
use crate::metrics::Metrics;
use crate::queue::{self, SendQueue};
use crate::retention::Retention;
use crate::store::{CommitError, LEGACY_OWNER, Store, StreamCommit};
use crate::token::Claims;

/// Most ops one commit takes (more wait for the next one).
const MAX_BATCH_OPS: usize = 4096;
/// Ops under repeated ids read back per store read (one round trip to
/// Redis): a batch may repeat thousands, each up to a frame in size.
const READ_BACK_CHUNK: usize = 64;
/// How long a push is admitted again after other nodes committed to the
/// same stream first, before it is refused as busy.
const MAX_RETRYING: std::time::Duration = std::time::Duration::from_secs(5);

/// How far the clocks of relay nodes sharing a store may differ. A node
/// admits ops stamped up to this much less than the core's own horizon
/// ([`MAX_CLOCK_AHEAD_MS`]) ahead of its clock, so another node whose
/// clock lags by less applies them as they come instead of holding them
/// for later (which it would never do: its stored state would lack them).
pub const NODE_CLOCK_SLACK_MS: u64 = 60 * 60 * 1000;
/// Room for a message's envelope around its ops or states.
pub(crate) const FRAME_SLACK: usize = 4096;

/// A push waiting in the hub.
struct Pending {
    claims: Arc<Claims>,
    ops: Vec<Op>,
    /// Where the acks go.
    reply: oneshot::Sender<Vec<Ack>>,
    /// The socket it came on (none over HTTP).
    conn: Option<ConnId>,
    /// The pusher's rate budget, which each op the core takes draws its
    /// [`extra_cost`] from.
    bucket: SharedBucket,
}

/// A connection's id, for subscriptions.
pub type ConnId = u64;

/// What a connection receives, and how the hub tells it it was too slow.
#[derive(Clone)]
pub struct Outlet {
    /// Live messages for the device (bounded by count and by bytes: a
    /// slow reader fills it).
    pub send: SendQueue,
    /// What a device missed, sent before anything live: a few messages,
    /// and the catch-ups the connection fetches a page at a time (see
    /// [`Missed`]).
    pub catch_up: mpsc::UnboundedSender<Missed>,
    /// Notified when the queue was full (by count or by bytes): the
    /// connection closes with `slow_consumer` and the device resyncs from
    /// its cursor.
    pub slow: Arc<Notify>,
    /// Set with `slow`, before it is notified: a fan-out to this
    /// connection was cut short, so no ack may follow on it (a device takes
    /// an ack to mean it has every op committed before).
    pub dropped: Arc<AtomicBool>,
}

/// What a connection sends before anything live.
pub enum Missed {
    /// One message (the welcome, a refusal, "nothing missed").
    Message(ServerMessage),
    /// A stream to catch up on, up to the head it had when the device
    /// subscribed (what came after is sent live): the connection asks the
    /// hub for it a page at a time ([`Hub::page`]) and writes each page
    /// before it asks for the next, so a device that reads slowly, or not
    /// at all, holds one page of it in the relay's memory, not the log.
    CatchUp(CatchUp),
}

/// A catch-up in progress (see [`Missed::CatchUp`]).
pub struct CatchUp {
    /// Whose: what the token may read.
    pub claims: Arc<Claims>,
    /// Where it stands: the cursor, or the snapshot's last key sent.
    pub subscription: Subscription,
    /// The head when the device subscribed: ops after it come live.
    pub until: u64,
}

/// One page of a catch-up ([`Hub::page`]).
pub struct Page {
    /// The messages to send.
    pub messages: Vec<ServerMessage>,
    /// Where the next page starts; `None` once the catch-up is done.
    pub next: Option<Subscription>,
}

/// Most ops one catch-up page reads.
const PAGE_OPS: usize = 512;
/// Most ops one page reads from the store at a time: a page holds at
/// most [`PAGE_BYTES`] plus this many ops (each at most a frame), however
/// small the ops read before them were.
const PAGE_READ_OPS: usize = 16;
/// Ops a page reads first, before it knows how large they are.
const FIRST_READ_OPS: usize = 4;
/// A page ends once its ops hold this many bytes (their stored text).
const PAGE_BYTES: usize = 1 << 20;

enum Request {
    Push {
        claims: Arc<Claims>,
        ops: Vec<Op>,
        reply: oneshot::Sender<Vec<Ack>>,
        conn: Option<ConnId>,
        bucket: SharedBucket,
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
    Page {
        claims: Arc<Claims>,
        subscription: Subscription,
        until: u64,
        reply: oneshot::Sender<Result<Page, ProtocolError>>,
    },
    /// Answered once `conn`'s streams hold everything the store holds.
    Barrier {
        conn: ConnId,
        reply: oneshot::Sender<()>,
    },
    /// Ops another node committed, in log order (from this node's reader).
    Remote {
        stream: StreamId,
        ops: Vec<(u64, String)>,
    },
}

/// A handle to the hub (cheap to clone).
#[derive(Clone)]
pub struct Hub {
    requests: mpsc::Sender<Request>,
    /// Whether other nodes write the same store (barriers are needed).
    shared: bool,
    /// Each stream's head as this node made it known (long polls watch
    /// the streams they follow).
    pub heads: Arc<Heads>,
}

/// Each stream's head as this node last made it known: ops committed here
/// (once stored, as they are fanned out), ops of other nodes applied here, or the
/// stream loaded. A long poll watches the one stream it follows: a commit
/// wakes only the polls of its stream, a poll whose cursor is the head
/// known here is answered without asking the hub, and so is a poll whose
/// cursor lies among the stream's recent ops ([`Heads::answer`]; kept while
/// polls come for the stream: one commit wakes them all at once, and each
/// asking the hub in turn would hold up every other stream).
#[derive(Default)]
pub struct Heads(RwLock<HashMap<StreamId, Followed>>);

/// One stream's head: its watch, the recent ops beside it, and when a
/// poll last came for it.
struct Followed {
    wake: watch::Sender<u64>,
    recent: Mutex<Recent>,
    /// When a poll last watched the stream (ms since the epoch): the
    /// recent ops are kept while one came within [`POLLED_WITHIN_MS`].
    polled_ms: AtomicU64,
}

/// A stream's head and the last ops fanned out up to it, in order and
/// without a gap, each with its serialized size (empty when no poll came
/// for the stream lately, or when they did not end at the head).
#[derive(Default)]
struct Recent {
    head: u64,
    ops: VecDeque<(Arc<Sequenced>, usize)>,
    /// Their serialized size in all (what bounds them, with their count).
    bytes: usize,
    /// The answers last given from them to polls whose token reads every
    /// op of theirs, by the cursor each answers and the head it says
    /// (the latest [`ANSWERS_KEPT`]): built and encoded once for all of
    /// them (one commit wakes them all with the same cursor), which share
    /// its text.
    answers: VecDeque<(u64, u64, SharedAnswer)>,
}

/// Most shared answers kept per stream: polls woken by two commits in a
/// row, or reading different store heads, each find theirs (and pulls at
/// other cursors among the recent ops cannot push them out).
const ANSWERS_KEPT: usize = 4;

/// An answer's encoded text, made by the first poll that needs it (`None`
/// if it would not encode: the hub is asked).
type SharedAnswer = Arc<OnceLock<Option<axum::body::Bytes>>>;

/// At most this many recent ops are kept per stream: a pull's answer
/// holds no more. A commit of more keeps its last ones, and the polls it
/// woke (whose cursor lies before them) ask the hub.
pub const RECENT_OPS: usize = 512;

/// At most this many bytes of recent ops (serialized) are kept per
/// stream, as with [`RECENT_OPS`]: room for eight ops of the largest value.
pub const RECENT_BYTES: usize = 2 << 20;

/// How long after a poll came for a stream its recent ops are kept: a
/// poll waits 25 s at most, and the polls a commit answers come back a
/// round trip later.
const POLLED_WITHIN_MS: u64 = 30_000;

impl Recent {
    /// Sets the head to `head` after `ops` (fanned out just now, with their
    /// sizes; `None` if not kept), keeping the ops if they follow the ones
    /// held and end at `head`.
    fn advance(&mut self, head: u64, ops: Option<Vec<(Arc<Sequenced>, usize)>>) {
        let follows = |ops: &[(Arc<Sequenced>, usize)]| {
            let next = self.ops.back().map(|(last, _)| last.seq + 1);
            ops.first()
                .is_some_and(|(first, _)| next.is_none_or(|next| first.seq == next))
                && ops.last().is_some_and(|(last, _)| last.seq == head)
                && ops
                    .windows(2)
                    .all(|pair| pair[0].0.seq + 1 == pair[1].0.seq)
        };
        match ops {
            Some(ops) if follows(&ops) => {
                for (op, len) in ops {
                    self.bytes = self.bytes.saturating_add(len);
                    self.ops.push_back((op, len));
                }
                while self.ops.len() > RECENT_OPS || self.bytes > RECENT_BYTES {
                    let Some((_, len)) = self.ops.pop_front() else {
                        break;
                    };
                    self.bytes = self.bytes.saturating_sub(len);
                }
            }
            // A head unchanged keeps what leads to it, and the answers
            // built from that.
            None if head == self.head => {}
            _ => self.clear(),
        }
        // Any change of the ops moved the head (the last op held is the
        // head), which the answers say: none holds any longer.
        if head != self.head {
            self.answers.clear();
        }
        self.head = head;
    }

    fn clear(&mut self) {
        self.ops.clear();
        self.bytes = 0;
        self.answers.clear();
    }

    /// The shared answer for polls from `cursor` saying `said` as the head.
    fn shared_answer(&mut self, cursor: u64, said: u64) -> SharedAnswer {
        if let Some((_, _, answer)) = self
            .answers
            .iter()
            .find(|(at, says, _)| (*at, *says) == (cursor, said))
        {
            return Arc::clone(answer);
        }
        if self.answers.len() == ANSWERS_KEPT {
            self.answers.pop_front();
        }
        let answer = SharedAnswer::default();
        self.answers.push_back((cursor, said, Arc::clone(&answer)));
        answer
    }

    /// Where the op after `cursor` lies among the recent ops, if they hold
    /// every op after it (and it is behind the head).
    fn start_after(&self, cursor: u64) -> Option<usize> {
        let first = self.ops.front()?.0.seq;
        if cursor >= self.head || cursor.checked_add(1)? < first {
            return None;
        }
        usize::try_from(cursor + 1 - first).ok()
    }
}

/// What [`Heads::answer`] gives a poll.
pub struct Answer {
    /// The encoded answer (an ops message).
    pub text: axum::body::Bytes,
    /// Whether this call built it (not another poll before it).
    pub built: bool,
}

impl Heads {
    /// A watch of `id`'s head, for a poll; `None` while the hub does not
    /// hold the stream (never loaded here, or dropped after a failed
    /// reload: the watch of a dropped stream ends).
    pub fn watch(&self, id: &StreamId) -> Option<watch::Receiver<u64>> {
        let map = self.0.read().unwrap_or_else(PoisonError::into_inner);
        let followed = map.get(id)?;
        followed.polled_ms.store(now_ms(), Ordering::Relaxed);
        Some(followed.wake.subscribe())
    }

    /// The head of `id` if its recent ops hold every op after `cursor`:
    /// whether [`answer`](Self::answer) would answer, without a copy.
    pub fn covers(&self, id: &StreamId, cursor: u64) -> Option<u64> {
        self.with_recent(id, |recent| recent.start_after(cursor).map(|_| recent.head))
    }

    /// `read` of the recent ops of `id`, locked while it runs.
    fn with_recent<R>(
        &self,
        id: &StreamId,
        read: impl FnOnce(&mut Recent) -> Option<R>,
    ) -> Option<R> {
        let map = self.0.read().unwrap_or_else(PoisonError::into_inner);
        let mut recent = map
            .get(id)?
            .recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        read(&mut recent)
    }

    /// The answer to a poll from `cursor` on `id`, if the recent ops hold
    /// every op after `cursor`: as many as one message holds (the answer
    /// to a pull is one message; the device asks again from where it says
    /// it read through), those `readable` lets through, encoded. It says
    /// the head of the recent ops, or `store_head` (with a shared store,
    /// the store's head, read first: no answer if it is behind them).
    ///
    /// While the stream's recent ops are locked, only shared pointers are
    /// copied and the token's grants checked; the answer is built after.
    /// Polls at the same cursor and head whose token reads every op of
    /// the answer share one, built once: a commit that wakes ten thousand
    /// such polls is encoded once, and held in memory once.
    pub fn answer(
        &self,
        id: &StreamId,
        cursor: u64,
        store_head: Option<u64>,
        readable: impl Fn(&FullKey) -> bool,
    ) -> Option<Answer> {
        let (said, held, shared) = self.with_recent(id, |recent| {
            let said = match store_head {
                Some(stored) if stored < recent.head => return None,
                Some(stored) => stored,
                None => recent.head,
            };
            let start = recent.start_after(cursor)?;
            // As `ops_messages` fills a message: at least one op.
            let mut bytes = 0usize;
            let held: Vec<Arc<Sequenced>> = recent
                .ops
                .iter()
                .skip(start)
                .take_while(|(_, len)| {
                    let fits = bytes == 0 || bytes + len <= MAX_MESSAGE_BYTES - FRAME_SLACK;
                    bytes = bytes.saturating_add(*len);
                    fits
                })
                .map(|(op, _)| Arc::clone(op))
                .collect();
            let shared = held
                .iter()
                .all(|s| readable(&s.op.key))
                .then(|| recent.shared_answer(cursor, said));
            Some((said, held, shared))
        })?;
        let mut built = false;
        let mut build = || {
            built = true;
            let through = held.last().map_or(cursor, |last| last.seq);
            let ops = held
                .iter()
                .filter(|s| readable(&s.op.key))
                .map(|s| Sequenced::clone(s))
                .collect();
            match ops_messages(id, ops, said, through).swap_remove(0).encode() {
                Ok(text) => Some(axum::body::Bytes::from(text)),
                Err(err) => {
                    // The hub answers (and says why, if it fails the same).
                    tracing::warn!(stream = %id, error = %err, "an answer from the recent ops does not encode");
                    None
                }
            }
        };
        let text = match shared {
            Some(shared) => shared.get_or_init(build).clone(),
            None => build(),
        }?;
        Some(Answer { text, built })
    }

    /// Makes `head` known as `id`'s, waking its watchers if it moved.
    /// `ops` are those just fanned out up to it (see [`Recent::advance`]):
    /// kept while polls come for the stream, so what they wake is
    /// answered from them.
    fn publish(&self, id: &StreamId, head: u64, ops: Option<&[Sequenced]>) {
        let advance = |followed: &Followed| {
            let polled = now_ms().saturating_sub(followed.polled_ms.load(Ordering::Relaxed))
                < POLLED_WITHIN_MS;
            // Sized before the lock, and only the last that can be kept.
            let kept = ops.filter(|_| polled).map(|ops| {
                let from = ops.len().saturating_sub(RECENT_OPS);
                ops.get(from..)
                    .unwrap_or_default()
                    .iter()
                    .map(|op| (Arc::new(op.clone()), encoded_len(op, RECENT_BYTES + 1)))
                    .collect()
            });
            let mut recent = followed
                .recent
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !polled {
                // No poll came lately: nothing to keep.
                recent.clear();
            }
            recent.advance(head, kept);
            drop(recent);
            // After the recent ops: a poll it wakes finds them.
            followed
                .wake
                .send_if_modified(|known| std::mem::replace(known, head) != head);
        };
        if let Some(followed) = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
        {
            advance(followed);
            return;
        }
        let mut map = self.0.write().unwrap_or_else(PoisonError::into_inner);
        let followed = map.entry(id.clone()).or_insert_with(|| Followed {
            wake: watch::channel(head).0,
            recent: Mutex::new(Recent {
                head,
                ..Recent::default()
            }),
            polled_ms: AtomicU64::new(0),
        });
        advance(followed);
    }

    /// Drops the recent ops of `id` (its stream loaded again: what the
    /// store holds is read anew).
    fn forget_recent(&self, id: &StreamId) {
        self.with_recent(id, |recent| {
            recent.clear();
            Some(())
        });
    }

    /// Forgets `id` (dropped from memory): its watches end, and the polls
    /// on it ask the hub.
    fn forget(&self, id: &StreamId) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }
}

struct Stream {
    id: StreamId,
    replica: Replica,
    head: u64,
    first: u64,
    /// The bytes of the ops the log holds, as loaded or trimmed and grown
    /// by every op committed since, here or (read back) at other nodes.
    /// Other nodes' trims are not seen: it may count more than the log
    /// holds, never less, and the trim it calls for answers the truth.
    log_bytes: u64,
    /// Each key's state in bytes, as this node last measured it (stored,
    /// loaded, or measured again to charge an op), and as counted since:
    /// what an op on the key costs (see [`Stream::extra_for`]).
    sizes: BTreeMap<FullKey, Size>,
    /// Keys whose stored state this node could not load (a newer schema
    /// than it knows, a migration that failed, past a limit), and why: an
    /// op on one is refused, or the commit would write the little the op
    /// holds over what the store keeps.
    unloaded: BTreeMap<FullKey, CoreError>,
}

impl Stream {
    /// Counts what `op` (`body` serialized) may have added to its key's
    /// state ([`Op::growth_bound`]), never past the state limit.
    fn grew(&mut self, op: &Op, body: usize) {
        let size = self.sizes.entry(op.key.clone()).or_default();
        size.counted = size
            .counted
            .saturating_add(op.growth_bound(body))
            .min(MAX_STORED_BYTES);
    }

    /// Sets `key`'s size as measured (`bytes` of stored state).
    fn measured(&mut self, key: FullKey, bytes: usize) {
        self.sizes.insert(
            key,
            Size {
                measured: bytes,
                counted: bytes,
            },
        );
    }

    /// What an op on `key` costs past its one op's worth ([`extra_cost`])
    /// by the key's counted size. A count that would cost more than the
    /// last measure did is measured again first (the state walked as a
    /// commit serializes it): an over-count (ops that replaced rather than
    /// added, ops of other nodes) never charges more than the state holds.
    /// The op that needed a measure pays for it too: as much again.
    fn extra_for(&mut self, key: &FullKey) -> usize {
        let Some(size) = self.sizes.get(key).copied() else {
            return 0;
        };
        if extra_cost(size.counted) > extra_cost(size.measured) {
            let exact = stored_len(&self.replica, key);
            self.measured(key.clone(), exact);
            return extra_cost(exact).saturating_mul(2);
        }
        extra_cost(size.counted)
    }
}

/// A key's stored state in bytes: as last measured, and that grown by a
/// bound of what each op applied since may have added.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    measured: usize,
    counted: usize,
}

struct Subscriber {
    claims: Arc<Claims>,
    streams: BTreeSet<StreamId>,
    outlet: Outlet,
}

struct State {
    store: Arc<Store>,
    declarations: Vec<Arc<KeySpec>>,
    streams: BTreeMap<StreamId, Stream>,
    subscribers: BTreeMap<ConnId, Subscriber>,
    /// Per stream, the number up to which its subscribers were sent ops
    /// (kept when a stream is dropped from memory after a failed reload).
    sent: BTreeMap<StreamId, u64>,
    /// Streams dropped from memory because the store could not be read;
    /// loaded again (and their subscribers sent what they lack) on the
    /// next tick.
    stale: BTreeSet<StreamId>,
    metrics: Arc<Metrics>,
    heads: Arc<Heads>,
    /// How much of each stream's log is kept.
    keep: Retention,
    /// Owners of tabs this node committed ops of lately: see [`Seen`].
    seen: Seen,
    /// Tabs claimed per token subject this hour: see [`ClaimCount`].
    claims: ClaimCount,
}

/// How many tabs each token subject had this node claim in the current
/// hour (all subjects' hours begin together, and the counts are dropped
/// whole when it ends): see [`MAX_TAB_CLAIMS_PER_HOUR`].
struct ClaimCount {
    counts: HashMap<String, u32>,
    since: Instant,
}

impl ClaimCount {
    fn new() -> Self {
        Self {
            counts: HashMap::new(),
            since: Instant::now(),
        }
    }

    /// Whether `subject` may have one more tab claimed this hour (counted).
    fn allow(&mut self, subject: &str) -> bool {
        if self.since.elapsed() >= Duration::from_secs(3600) {
            self.counts.clear();
            self.since = Instant::now();
        }
        let count = self.counts.entry(subject.to_owned()).or_insert(0);
        if *count >= MAX_TAB_CLAIMS_PER_HOUR {
            return false;
        }
        *count += 1;
        true
    }

    /// Gives back a claim [`allow`](Self::allow) counted that the store did
    /// not make.
    fn refund(&mut self, subject: &str) {
        if let Some(count) = self.counts.get_mut(subject) {
            *count = count.saturating_sub(1);
        }
    }
}

/// How long a tab's owner seen at a commit is taken as known (see
/// [`Seen`]): the store renews an owner's time at most this late.
const OWNER_RECHECK: Duration = Duration::from_secs(3600);

/// Most tabs one token subject may have this node claim in an hour. Each
/// claim is a record the store keeps for 30 days: a subject writing from
/// ever new tabs must not grow it without bound. Past it, the subject's
/// new tabs are left unowned (their ops go in, as before tabs had
/// owners); tabs it owns, and other subjects' tabs, are checked as ever.
const MAX_TAB_CLAIMS_PER_HOUR: u32 = 600;

/// The owners of tabs whose ops this node committed, with when the store
/// renewed each: an owner lasts [`crate::store::TAB_OWNER_TTL_MS`] from
/// its last renewal, so one renewed less than [`OWNER_RECHECK`] ago is
/// still the owner, and the store is neither asked again nor renews it
/// until then. Two generations, swapped every [`OWNER_RECHECK`]: memory
/// holds at most two hours of commits' tabs, and forgetting is O(1).
struct Seen {
    now: HashMap<String, (String, Instant)>,
    before: HashMap<String, (String, Instant)>,
    since: Instant,
}

impl Seen {
    fn new() -> Self {
        Self {
            now: HashMap::new(),
            before: HashMap::new(),
            since: Instant::now(),
        }
    }

    /// The owner of `tab`, if renewed less than [`OWNER_RECHECK`] ago.
    fn fresh(&self, tab: &str) -> Option<&String> {
        let (owner, renewed) = self.now.get(tab).or_else(|| self.before.get(tab))?;
        (renewed.elapsed() < OWNER_RECHECK).then_some(owner)
    }

    fn renewed(&mut self, owned: Vec<(String, String)>) {
        if self.since.elapsed() >= OWNER_RECHECK {
            self.before = std::mem::take(&mut self.now);
            self.since = Instant::now();
        }
        let now = Instant::now();
        for (tab, owner) in owned {
            self.now.insert(tab, (owner, now));
        }
    }
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
    /// Loads every stream from `store` and starts the hub on a thread of
    /// its own (the core's replicas are single-owner values, not `Send`).
    /// The returned task ends when every handle is dropped and what was
    /// queued is committed.
    pub async fn start(
        store: Arc<Store>,
        declarations: Vec<Arc<KeySpec>>,
        metrics: Arc<Metrics>,
        keep: Retention,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), String> {
        let heads = Arc::new(Heads::default());
        let shared = store.shared();
        let (requests, inbox) = mpsc::channel(1024);
        let (ready, started) = oneshot::channel::<Result<(), String>>();
        let published = Arc::clone(&heads);
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
                runtime.block_on(async move {
                    let state = match State::load_all(store, declarations, metrics, published, keep)
                        .await
                    {
                        Ok(state) => state,
                        Err(err) => {
                            let _ = ready.send(Err(err));
                            return;
                        }
                    };
                    let _ = ready.send(Ok(()));
                    state.run(inbox).await;
                });
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
                shared,
                heads,
            },
            task,
        ))
    }

    /// Applies, stores and acknowledges `ops` (one ack each, in order).
    /// `conn`: the socket they came on. Its acks come after every op of its
    /// streams the store held when they were committed. Each op the core
    /// takes first draws its [`extra_cost`] from `bucket` (the pusher's,
    /// which already paid an op's worth per op): one it cannot draw for is
    /// refused as rate limited, and so is every later op of the push.
    pub async fn push(
        &self,
        claims: Arc<Claims>,
        ops: Vec<Op>,
        conn: Option<ConnId>,
        bucket: SharedBucket,
    ) -> Result<Vec<Ack>, ProtocolError> {
        let (reply, wait) = oneshot::channel();
        self.requests
            .send(Request::Push {
                claims,
                ops,
                reply,
                conn,
                bucket,
            })
            .await
            .map_err(|_| shutting_down())?;
        wait.await.map_err(|_| shutting_down())
    }

    /// Whether other nodes write the same store: this node's heads may
    /// then lag what the store holds.
    pub fn shared(&self) -> bool {
        self.shared
    }

    /// Returns once `conn` has been sent every op of its streams that the
    /// store holds (with one node: at once; with several: what other nodes
    /// committed and this node's reader had not brought yet). A pong waits
    /// for it: a device takes a pong, as an ack, to mean it has caught up.
    ///
    /// If the store cannot be read, the connection is cut off as slow (its
    /// `dropped` flag is set before this returns): no pong or ack may follow.
    pub async fn barrier(&self, conn: ConnId) {
        if !self.shared {
            // One node: everything committed was fanned out before the
            // commit's acks went, so the queue already holds it.
            return;
        }
        let (reply, wait) = oneshot::channel();
        if self
            .requests
            .send(Request::Barrier { conn, reply })
            .await
            .is_ok()
        {
            let _ = wait.await;
        }
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
    /// `limit`, possibly none) or a snapshot (its next piece after the
    /// subscription's `after` key, when given).
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

    /// The next page of a catch-up (see [`Missed::CatchUp`]): ops after the
    /// subscription's cursor up to `until` (at most 512, stopping once they
    /// hold 1 MiB, read 16 at most at a time), or the next piece of a
    /// snapshot, which says `until` as its number. Its states may hold
    /// later ops, which come live and apply again: harmlessly, unless a
    /// later op in the piece lies 14 days past one of them, which the
    /// device then refuses as stale and takes the stream whole.
    pub async fn page(
        &self,
        claims: Arc<Claims>,
        subscription: Subscription,
        until: u64,
    ) -> Result<Page, ProtocolError> {
        let (reply, wait) = oneshot::channel();
        self.requests
            .send(Request::Page {
                claims,
                subscription,
                until,
                reply,
            })
            .await
            .map_err(|_| shutting_down())?;
        wait.await.map_err(|_| shutting_down())?
    }

    /// Ops of `stream` another node committed, as read from the shared
    /// store in log order. `false` once the hub is gone.
    pub async fn remote(&self, stream: StreamId, ops: Vec<(u64, String)>) -> bool {
        self.requests
            .send(Request::Remote { stream, ops })
            .await
            .is_ok()
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

/// An op refused because its pusher's rate budget could not pay for it.
fn rate_limited() -> AckStatus {
    refused(
        code::RATE_LIMITED,
        "the push cost more than the pusher's rate allows now (ops on large keys cost more); resend later",
    )
}

fn storage_error(err: impl std::fmt::Display) -> ProtocolError {
    ProtocolError::new(code::STORAGE, err.to_string())
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
        log_bytes: 0,
        sizes: BTreeMap::new(),
        unloaded: BTreeMap::new(),
    }
}

/// What the log holds under an op id: its number and the op (`None` if
/// it could not be read back), or why the log could not be asked.
type Held = Result<(u64, Option<Op>), String>;

/// What the store holds about the ops of a push, read before admitting
/// them.
#[derive(Default)]
struct Known {
    /// The op ids the log holds already, by (stream, id).
    ids: BTreeMap<(StreamId, String), Held>,
    /// Tabs whose owner this node saw renewed less than [`OWNER_RECHECK`]
    /// ago: neither asked nor renewed again.
    fresh: BTreeSet<String>,
    /// The owner of each tab the ops name (see [`Store::tab_owners`];
    /// `None`: nobody's yet, so its first pusher admitted here claims it),
    /// or why the store could not be asked.
    owners: BTreeMap<String, Result<Option<String>, String>>,
}

/// One push attempt's work on one stream: the ops admitted against the
/// stream's head, where their acks go, and what to fan out once stored.
#[derive(Default)]
struct Part {
    base: u64,
    rows: Vec<Row>,
    keys: BTreeSet<FullKey>,
    /// (push, op) of every op of this stream decided in this attempt.
    decided: Vec<(usize, usize)>,
    fanout: Vec<Sequenced>,
    /// Op ids in this part: the number each got, and where the op is in
    /// `fanout`.
    in_part: BTreeMap<String, (u64, usize)>,
}

impl State {
    async fn load_all(
        store: Arc<Store>,
        declarations: Vec<Arc<KeySpec>>,
        metrics: Arc<Metrics>,
        heads: Arc<Heads>,
        keep: Retention,
    ) -> Result<Self, String> {
        let mut state = State {
            store,
            declarations,
            streams: BTreeMap::new(),
            subscribers: BTreeMap::new(),
            sent: BTreeMap::new(),
            stale: BTreeSet::new(),
            metrics,
            heads,
            keep,
            seen: Seen::new(),
            claims: ClaimCount::new(),
        };
        let names = state
            .store
            .stream_names()
            .await
            .map_err(|err| err.to_string())?;
        for name in names {
            let id: StreamId = name
                .parse()
                .map_err(|err| format!("stored stream {name:?}: {err}"))?;
            let stream = state.load(&id).await?;
            state.sent.insert(id.clone(), stream.head);
            state.store.follow(&name, stream.head);
            state.heads.publish(&id, stream.head, None);
            state.streams.insert(id, stream);
        }
        state.metrics.streams(state.streams.len());
        Ok(state)
    }

    /// A stream as stored, its canonical states loaded through the core's
    /// own loading (so a state the declarations no longer admit is set
    /// aside, not trusted); an empty stream if the store has none.
    async fn load(&self, id: &StreamId) -> Result<Stream, String> {
        let mut stream = new_stream(&self.declarations, id.clone());
        let Some(loaded) = self
            .store
            .load(&id.to_string())
            .await
            .map_err(|err| err.to_string())?
        else {
            return Ok(stream);
        };
        stream.head = loaded.head;
        stream.first = loaded.first;
        stream.log_bytes = loaded.bytes;
        let mut storage = MemoryStorage::new();
        for (key, stored) in loaded.states {
            if let Ok(full) = key.parse::<FullKey>() {
                stream.measured(full, stored.len());
            }
            storage
                .set(&format!("{STATE_PREFIX}{key}"), &stored)
                .map_err(|err| err.to_string())?;
        }
        let report = stream
            .replica
            .load(Lifetime::Persistent, &mut storage)
            .map_err(|err| err.to_string())?;
        for quarantined in report.quarantined {
            tracing::warn!(key = %quarantined.key, error = %quarantined.error, "stored state set aside; writes to the key are refused until this node can read it");
            stream.unloaded.insert(quarantined.key, quarantined.error);
        }
        for (key, error) in report.failed {
            tracing::warn!(%key, %error, "stored state not loaded; writes to the key are refused until this node can read it");
            if let Some(full) = key
                .strip_prefix(STATE_PREFIX)
                .and_then(|name| name.parse::<FullKey>().ok())
            {
                stream.unloaded.insert(full, error);
            }
        }
        Ok(stream)
    }

    /// The stream `id`, loaded from the store the first time this node
    /// meets it (another node may have written it), and followed from then
    /// on; its subscribers are brought up to its head.
    async fn ensure(&mut self, id: &StreamId) -> Result<(), ProtocolError> {
        if !self.streams.contains_key(id) {
            let stream = self.load(id).await.map_err(storage_error)?;
            self.stale.remove(id);
            self.store.follow(&id.to_string(), stream.head);
            self.install(id, stream).await;
        }
        Ok(())
    }

    /// Reloads `id` from the store (after a conflict, a failed commit or an
    /// op of another node this replica could not place) and sends its
    /// subscribers what they lack. If the store cannot be read, the stream
    /// is dropped from memory and loaded again when next needed.
    async fn resync(&mut self, id: &StreamId) {
        match self.load(id).await {
            Ok(stream) => self.install(id, stream).await,
            Err(err) => {
                tracing::error!(stream = %id, error = %err, "reloading the stream failed");
                self.streams.remove(id);
                self.heads.forget(id);
                self.metrics.streams(self.streams.len());
                self.stale.insert(id.clone());
            }
        }
    }

    /// Puts a freshly loaded stream in place and sends its subscribers what
    /// they lack. A store behind what they were sent lost ops it had
    /// acknowledged (a Redis restarted without its append-only file): what
    /// they hold no longer matches, so they are cut off and resync from
    /// their cursors (a snapshot).
    async fn install(&mut self, id: &StreamId, stream: Stream) {
        let head = stream.head;
        match self.sent.get(id).copied() {
            Some(sent) if head < sent => {
                tracing::error!(stream = %id, head, sent, "the store is behind what was sent");
                self.cut_off(id);
                self.sent.insert(id.clone(), head);
            }
            Some(_) => {}
            None => {
                self.sent.insert(id.clone(), head);
            }
        }
        self.streams.insert(id.clone(), stream);
        self.metrics.streams(self.streams.len());
        // The recent ops kept for polls came from the stream as it was:
        // they are read from the store again as they are sent.
        self.heads.forget_recent(id);
        self.forward(id).await;
        // After what it sends: a poll woken reads what subscribers have.
        self.heads.publish(id, head, None);
    }

    /// Sends the subscribers of `id` the ops between what they were sent
    /// and the replica's head, from the log. If the log no longer holds
    /// them (trimmed), those subscribers are cut off as slow: they come
    /// back from their cursors and get a snapshot.
    async fn forward(&mut self, id: &StreamId) {
        let Some(head) = self.streams.get(id).map(|s| s.head) else {
            return;
        };
        let mut after = self.sent.get(id).copied().unwrap_or(head);
        while after < head {
            let rows = match self.store.ops_after(&id.to_string(), after, 512).await {
                Ok(rows) => rows,
                Err(err) => {
                    tracing::error!(stream = %id, error = %err, "reading the log failed");
                    Vec::new()
                }
            };
            if rows.first().map(|(seq, _)| *seq) != Some(after + 1) {
                self.cut_off(id);
                after = head;
                break;
            }
            let mut ops = Vec::with_capacity(rows.len());
            for (seq, body) in rows {
                // What lies past the replica's head is not applied here yet:
                // it comes through the reader, and is sent then.
                if seq > head {
                    break;
                }
                after = seq;
                match stored_op(&body) {
                    Ok(op) => ops.push(Sequenced { seq, op }),
                    Err(err) => tracing::error!(seq, error = %err, "a stored op does not parse"),
                }
            }
            self.fan_out(id, ops);
        }
        self.sent.insert(id.clone(), after.max(head));
    }

    /// Disconnects every subscriber of `id` as too slow (they resync).
    fn cut_off(&mut self, id: &StreamId) {
        let conns: Vec<ConnId> = self
            .subscribers
            .iter()
            .filter(|(_, s)| s.streams.contains(id))
            .map(|(conn, _)| *conn)
            .collect();
        for conn in conns {
            self.drop_slow(conn);
        }
    }

    fn drop_slow(&mut self, conn: ConnId) {
        if let Some(subscriber) = self.subscribers.remove(&conn) {
            // Before the hub answers anything else of this connection's:
            // an ack queued from now on follows the gap.
            subscriber.outlet.send.cut().mark();
            subscriber.outlet.dropped.store(true, Ordering::SeqCst);
            subscriber.outlet.slow.notify_one();
            self.metrics.refused(code::SLOW_CONSUMER);
        }
    }

    async fn run(mut self, mut inbox: mpsc::Receiver<Request>) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let first = tokio::select! {
                request = inbox.recv() => match request {
                    Some(request) => request,
                    None => break,
                },
                _ = tick.tick(), if !self.stale.is_empty() => {
                    // One at a time; the store still failing ends the pass
                    // (the rest wait for the next tick).
                    let ids: Vec<StreamId> = self.stale.iter().cloned().collect();
                    for id in ids {
                        if self.ensure(&id).await.is_err() {
                            break;
                        }
                    }
                    continue;
                }
            };
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
                        conn,
                        bucket,
                    } => {
                        ops += batch.len();
                        pushes.push(Pending {
                            claims,
                            ops: batch,
                            reply,
                            conn,
                            bucket,
                        });
                    }
                    other => others.push(other),
                }
                if ops < MAX_BATCH_OPS {
                    next = inbox.try_recv().ok();
                }
            }
            // What other nodes committed first: a push admitted on top of
            // it commits at once instead of meeting a conflict.
            let (remote, others): (Vec<_>, Vec<_>) = others
                .into_iter()
                .partition(|r| matches!(r, Request::Remote { .. }));
            for request in remote {
                self.handle(request).await;
            }
            if !pushes.is_empty() {
                self.push(pushes).await;
            }
            for request in others {
                self.handle(request).await;
            }
        }
    }

    async fn handle(&mut self, request: Request) {
        match request {
            Request::Push { .. } => {}
            Request::Subscribe {
                conn,
                claims,
                subscriptions,
                outlet,
                reply,
            } => {
                let result = self.subscribe(conn, claims, subscriptions, outlet).await;
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
                let answer = self.pull(&claims, &subscription, limit);
                let _ = reply.send(answer.await);
            }
            Request::Page {
                claims,
                subscription,
                until,
                reply,
            } => {
                let page = self
                    .catch_up(&claims, &subscription, PAGE_OPS, 1, Some(until))
                    .await;
                let _ = reply.send(page);
            }
            Request::Remote { stream, ops } => {
                self.remote(&stream, ops).await;
            }
            Request::Barrier { conn, reply } => {
                self.barrier(conn).await;
                let _ = reply.send(());
            }
        }
    }

    /// With a shared store: brings every stream `conn` follows up to the
    /// store's head (applied here and sent to its subscribers).
    async fn barrier(&mut self, conn: ConnId) {
        if !self.store.shared() {
            return;
        }
        let streams: Vec<StreamId> = self
            .subscribers
            .get(&conn)
            .map(|s| s.streams.iter().cloned().collect())
            .unwrap_or_default();
        for id in streams {
            if !self.refresh(&id).await {
                // Not known to be caught up: no pong or ack may say so.
                self.drop_slow(conn);
                return;
            }
        }
    }

    /// With a shared store: applies and fans out what other nodes committed
    /// to `id` and this node's reader has not brought yet, up to the head
    /// the store has now.
    ///
    /// `false` when the store could not be read (the stream's state here is
    /// then not known to be the store's).
    async fn refresh(&mut self, id: &StreamId) -> bool {
        if !self.store.shared() {
            return true;
        }
        if self.ensure(id).await.is_err() {
            return false;
        }
        let name = id.to_string();
        let target = match self.store.head(&name).await {
            Ok(head) => head,
            Err(err) => {
                tracing::warn!(stream = %id, error = %err, "reading the stream's head failed");
                return false;
            }
        };
        loop {
            let Some(head) = self.streams.get(id).map(|s| s.head) else {
                break false;
            };
            if head > target {
                // The store lost ops this node holds: reload (subscribers
                // are cut off and resync).
                self.resync(id).await;
                break self.streams.contains_key(id);
            }
            if head == target {
                break true;
            }
            match self.store.ops_after(&name, head, 512).await {
                Ok(ops) if !ops.is_empty() => self.remote(id, ops).await,
                Ok(_) => break false,
                Err(err) => {
                    tracing::warn!(stream = %id, error = %err, "reading the log failed");
                    break false;
                }
            }
        }
    }

    /// Applies and fans out ops another node committed. Ops at or below
    /// the head are already here (this node committed them, or reloaded
    /// past them); a gap, or an op this replica refuses, reloads the
    /// stream from the store.
    async fn remote(&mut self, id: &StreamId, ops: Vec<(u64, String)>) {
        if self.ensure(id).await.is_err() {
            return;
        }
        let mut live = Vec::new();
        let mut resync = false;
        for (seq, body) in ops {
            let Some(stream) = self.streams.get_mut(id) else {
                return;
            };
            if seq <= stream.head {
                continue;
            }
            if seq != stream.head + 1 {
                resync = true;
                break;
            }
            let op = match stored_op(&body) {
                Ok(op) => op,
                Err(err) => {
                    tracing::error!(stream = %id, seq, error = %err, "another node's op does not parse");
                    resync = true;
                    break;
                }
            };
            if let Err(err) = stream.replica.apply_remote(&op) {
                tracing::warn!(stream = %id, seq, error = %err, "another node's op does not apply here; reloading");
                resync = true;
                break;
            }
            stream.grew(&op, body.len());
            stream.log_bytes = stream.log_bytes.saturating_add(body.len() as u64);
            stream.head = seq;
            live.push(Sequenced { seq, op });
        }
        if let Some(last) = live.last().map(|s| s.seq) {
            self.metrics.remote(live.len() as u64);
            self.fan_out(id, live);
            self.sent.insert(id.clone(), last);
        }
        if resync {
            self.resync(id).await;
        }
    }

    /// Admits and applies every op of every push, commits them (one part
    /// per stream), fans out what was stored, then acknowledges. A part
    /// another node beat is admitted again on the reloaded stream.
    async fn push(&mut self, pushes: Vec<Pending>) {
        let mut statuses: Vec<Vec<Option<AckStatus>>> = pushes
            .iter()
            .map(|push| vec![None; push.ops.len()])
            .collect();
        let deadline = std::time::Instant::now() + MAX_RETRYING;
        let mut conflicted = BTreeSet::new();
        loop {
            let conflicts = self.attempt(&pushes, &mut statuses).await;
            let done = conflicts.is_empty() || std::time::Instant::now() >= deadline;
            conflicted.extend(conflicts);
            if done {
                break;
            }
        }
        // A turn taken after a conflict and not used (the ops turned out to
        // be duplicates, or were refused) would hold other nodes back.
        for id in conflicted {
            self.store.release_turn(&id.to_string()).await;
        }
        // An ack on a socket means its device has every op of its streams
        // committed before (its link relies on it): with several nodes, bring
        // what the others committed first.
        let conns: BTreeSet<ConnId> = pushes.iter().filter_map(|p| p.conn).collect();
        for conn in conns {
            self.barrier(conn).await;
        }
        for (push, statuses) in pushes.into_iter().zip(statuses) {
            let acks = push
                .ops
                .iter()
                .zip(statuses)
                .map(|(op, status)| {
                    let status = status.unwrap_or_else(|| {
                        refused(
                            code::STORAGE,
                            "other relay nodes kept writing this stream; try again",
                        )
                    });
                    self.metrics.count_ack(&status);
                    Ack { op: op.id, status }
                })
                .collect();
            let _ = push.reply.send(acks);
        }
        self.trim().await;
    }

    /// One round of [`push`](Self::push) over the ops not yet decided;
    /// returns the streams that met a conflict (their ops are undecided
    /// again).
    async fn attempt(
        &mut self,
        pushes: &[Pending],
        statuses: &mut [Vec<Option<AckStatus>>],
    ) -> Vec<StreamId> {
        // The op ids each stream's log already holds, and who owns the
        // tabs that issued the ops the pushers may write (asked once per
        // tab, by its first pusher here: a later one gets that answer).
        let mut wanted: BTreeMap<StreamId, Vec<String>> = BTreeMap::new();
        let mut tabs: BTreeSet<String> = BTreeSet::new();
        let mut known = Known::default();
        for (i, push) in pushes.iter().enumerate() {
            let claims = &push.claims;
            for (j, op) in push.ops.iter().enumerate() {
                // Refused before anything is loaded for it: an op naming
                // an apartment the token may not write must not make this
                // node load (and keep) a stream of that name.
                if statuses[i][j].is_none() && !claims.can_write_key(&op.key) {
                    statuses[i][j] = Some(refused(
                        code::FORBIDDEN,
                        format!("the token may not write {}", op.key),
                    ));
                }
                if statuses[i][j].is_none() {
                    wanted
                        .entry(StreamId::of(&op.key))
                        .or_default()
                        .push(op.id.to_string());
                    let tab = op.id.tab.to_string();
                    if let Some(owner) = self.seen.fresh(&tab) {
                        known.owners.insert(tab.clone(), Ok(Some(owner.clone())));
                        known.fresh.insert(tab);
                    } else {
                        tabs.insert(tab);
                    }
                }
            }
        }
        let mut ready = Vec::with_capacity(wanted.len());
        for (id, ids) in wanted {
            match self.ensure(&id).await {
                Ok(()) => ready.push((id, ids)),
                Err(err) => {
                    for op_id in ids {
                        known
                            .ids
                            .insert((id.clone(), op_id), Err(err.message.clone()));
                    }
                }
            }
        }
        let lookups: Vec<(String, Vec<String>)> = ready
            .iter()
            .map(|(id, ids)| (id.to_string(), ids.clone()))
            .collect();
        let asked: Vec<String> = tabs.into_iter().collect();
        match self.store.seqs_and_owners(&lookups, &asked).await {
            Ok((seqs, owners)) => {
                let asked = asked.into_iter();
                known.owners.extend(asked.zip(owners.into_iter().map(Ok)));
                for ((id, ids), seqs) in ready.into_iter().zip(seqs) {
                    let held: Vec<(String, u64)> = ids
                        .into_iter()
                        .zip(seqs)
                        .filter_map(|(op_id, seq)| Some((op_id, seq?)))
                        .collect();
                    // What the log holds under each id, to tell the same op
                    // again from another one under its id: read together
                    // (a device resending its outbox brings many).
                    let stored = self.stored_ops(&id, &held).await;
                    for ((op_id, seq), stored) in held.into_iter().zip(stored) {
                        known.ids.insert((id.clone(), op_id), Ok((seq, stored)));
                    }
                }
            }
            Err(err) => {
                for (id, ids) in ready {
                    for op_id in ids {
                        known.ids.insert((id.clone(), op_id), Err(err.to_string()));
                    }
                }
                for tab in asked {
                    known.owners.insert(tab, Err(err.to_string()));
                }
            }
        }
        let mut parts: BTreeMap<StreamId, Part> = BTreeMap::new();
        let mut new_tabs: BTreeMap<String, String> = BTreeMap::new();
        for (i, push) in pushes.iter().enumerate() {
            // Once an op of the push could not draw its cost, the rest of
            // the push is refused too: the device sends them again later.
            let mut exhausted = false;
            for (j, op) in push.ops.iter().enumerate() {
                if statuses[i][j].is_some() {
                    continue;
                }
                if exhausted {
                    statuses[i][j] = Some(rate_limited());
                    continue;
                }
                let id = StreamId::of(&op.key);
                let head = self.streams.get(&id).map_or(0, |s| s.head);
                let part = parts.entry(id.clone()).or_insert_with(|| Part {
                    base: head,
                    ..Part::default()
                });
                part.decided.push((i, j));
                let status = self.admit(push, op, &id, &known, part, &mut new_tabs);
                exhausted = matches!(&status, AckStatus::Refused { code, .. } if code == code::RATE_LIMITED);
                statuses[i][j] = Some(status);
            }
        }
        // The tabs nobody owned, each its first admitted pusher's: claimed
        // before their ops are committed (no peer can have read their ids
        // yet), within each subject's hourly claims (past them a tab is
        // left unowned: its ops go in, recorded for nobody).
        let mut claimed = Vec::with_capacity(new_tabs.len());
        for (tab, subject) in new_tabs {
            if self.claims.allow(&subject) {
                claimed.push((tab, subject));
            } else {
                let rows = parts.values_mut().flat_map(|part| part.rows.iter_mut());
                rows.filter(|row| row.tab == tab)
                    .for_each(|row| row.owner = None);
            }
        }
        let (lost, again) = match self.store.claim_tabs(&claimed).await {
            Ok(done) => {
                let lost: BTreeSet<String> = claimed
                    .iter()
                    .zip(&done)
                    .filter(|(_, done)| !**done)
                    .map(|((tab, _), _)| tab.clone())
                    .collect();
                (lost, None)
            }
            Err(err) => {
                let lost = claimed.iter().map(|(tab, _)| tab.clone()).collect();
                let refusal = refused(code::STORAGE, format!("claiming tabs failed: {err}"));
                (lost, Some(refusal))
            }
        };
        // A claim lost to another subject (or not made: the store failed)
        // sends the streams holding that tab's ops back: none of their ops
        // is committed, the streams are reloaded, and every op decided on
        // them is decided again (as after a commit's conflict: a duplicate
        // of an op admitted here points at a number that will not be
        // committed). The other streams go on.
        let mut conflicts = Vec::new();
        if !lost.is_empty() {
            // Claims lost to another subject were not made; after a store
            // error some may have been, and stay counted.
            if again.is_none() {
                for (_, subject) in claimed.iter().filter(|(tab, _)| lost.contains(tab)) {
                    self.claims.refund(subject);
                }
            }
            // Every stream with an op of a lost tab, admitted or not (the
            // first-pusher rule refuses across streams).
            let hit: Vec<StreamId> = parts
                .iter()
                .filter(|(_, part)| {
                    part.decided.iter().any(|(i, j)| {
                        let tab = pushes[*i].ops.get(*j).map(|op| op.id.tab.to_string());
                        tab.is_some_and(|tab| lost.contains(&tab))
                    })
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in hit {
                let Some(part) = parts.remove(&id) else {
                    continue;
                };
                for (i, j) in part.decided {
                    statuses[i][j].clone_from(&again);
                }
                if !part.rows.is_empty() {
                    self.resync(&id).await;
                }
                if again.is_none() {
                    self.metrics.conflict();
                    conflicts.push(id);
                }
            }
        }
        let claimed: BTreeSet<String> = claimed
            .into_iter()
            .map(|(tab, _)| tab)
            .filter(|tab| !lost.contains(tab))
            .collect();
        let mut order = Vec::new();
        let mut owned = Vec::new();
        // Per stream committed, each key's stored state's length, and the
        // bytes its ops add to the log.
        let mut sizes = Vec::new();
        let mut renewed = Vec::new();
        let mut commits = Vec::new();
        for (id, part) in &mut parts {
            if part.rows.is_empty() {
                continue;
            }
            let Some(stream) = self.streams.get(id) else {
                continue;
            };
            let mut states = Vec::with_capacity(part.keys.len());
            let mut lens = Vec::with_capacity(part.keys.len());
            for key in &part.keys {
                if let Some(stored) = stored_state(&stream.replica, key) {
                    lens.push((key.clone(), stored.len()));
                    states.push((key.to_string(), stored));
                }
            }
            let added = part
                .rows
                .iter()
                .map(|row| row.body.len() as u64)
                .sum::<u64>();
            sizes.push((lens, added));
            order.push(id.clone());
            owned.push(
                part.rows
                    .iter()
                    .filter_map(|row| Some((row.tab.clone(), row.owner.clone()?)))
                    .collect::<Vec<_>>(),
            );
            commits.push(StreamCommit {
                stream: id.to_string(),
                base: part.base,
                ops: std::mem::take(&mut part.rows),
                states,
            });
        }
        if commits.is_empty() {
            return conflicts;
        }
        let started = std::time::Instant::now();
        let results = self.store.commit(commits).await;
        let mut stored = 0;
        let committed = order.into_iter().zip(results).zip(owned).zip(sizes);
        for (((id, result), owned), (lens, added)) in committed {
            let Some(part) = parts.remove(&id) else {
                continue;
            };
            match result {
                Ok(()) => {
                    renewed.extend(owned);
                    if let Some(stream) = self.streams.get_mut(&id) {
                        for (key, len) in lens {
                            stream.measured(key, len);
                        }
                        stream.log_bytes = stream.log_bytes.saturating_add(added);
                    }
                    stored += part.fanout.len();
                    if let Some(last) = part.fanout.last().map(|s| s.seq) {
                        // Fanned out before the acks go: a device that reads
                        // an ack has read every op committed with it (its
                        // link takes an ack on a socket to mean it has
                        // caught up).
                        self.fan_out(&id, part.fanout);
                        self.sent.insert(id.clone(), last);
                    }
                }
                Err(CommitError::Conflict) => {
                    conflicts.push(id.clone());
                    self.metrics.conflict();
                    for (i, j) in part.decided {
                        statuses[i][j] = None;
                    }
                    self.resync(&id).await;
                }
                Err(CommitError::Failed(err)) => {
                    tracing::error!(stream = %id, error = %err, "commit failed; its ops are refused");
                    self.resync(&id).await;
                    // The commit may have run before the answer was lost
                    // (Redis killed after its fsync, a timeout): what the log
                    // holds now is acknowledged as such.
                    let ids: Vec<String> = part.in_part.keys().cloned().collect();
                    let found: BTreeMap<String, u64> =
                        match self.store.seqs_of(&id.to_string(), &ids).await {
                            Ok(seqs) => ids
                                .into_iter()
                                .zip(seqs)
                                .filter_map(|(op_id, seq)| Some((op_id, seq?)))
                                .collect(),
                            Err(_) => BTreeMap::new(),
                        };
                    for (i, j) in part.decided {
                        let op_id = pushes[i].ops[j].id.to_string();
                        // Applied here, or a second copy in this part (its
                        // Duplicate pointed at the first, not stored either).
                        if !part.in_part.contains_key(&op_id) {
                            continue;
                        }
                        if let Some(status) = &mut statuses[i][j] {
                            *status = match found.get(&op_id) {
                                Some(seq) => AckStatus::Duplicate {
                                    stream: id.clone(),
                                    seq: *seq,
                                },
                                None => refused(code::STORAGE, format!("not stored: {err}")),
                            };
                        }
                    }
                }
            }
        }
        if stored > 0 {
            self.metrics.commit(stored, started.elapsed());
        }
        // The owners of committed ops get their full time (a tab from
        // before owners keeps the time it was given, and runs out). Only
        // what the store renewed is taken as known for the next hour.
        let by_tab: BTreeMap<String, String> = renewed.into_iter().collect();
        let (known_now, renew): (Vec<_>, Vec<_>) = by_tab
            .into_iter()
            .partition(|(tab, owner)| owner == LEGACY_OWNER || claimed.contains(tab));
        match self.store.renew_tabs(&renew).await {
            Ok(done) => {
                let renewed = renew
                    .into_iter()
                    .zip(done)
                    .filter_map(|(tab, done)| done.then_some(tab));
                self.seen
                    .renewed(known_now.into_iter().chain(renewed).collect());
            }
            Err(err) => {
                tracing::warn!(error = %err, tabs = renew.len(), "renewing tab owners failed; asked again at their next push")
            }
        }
        conflicts
    }

    /// The op the log holds at each number of `held` of `id`, where it can
    /// be read back (it may have been trimmed meanwhile): read
    /// [`READ_BACK_CHUNK`] at a time. A chunk whose read fails is read again
    /// one op at a time, so a failure costs only the ops it touches their
    /// check (an op not read back is taken to be the pushed one), never a
    /// whole batch of other devices' ops.
    async fn stored_ops(&self, id: &StreamId, held: &[(String, u64)]) -> Vec<Option<Op>> {
        let stream = id.to_string();
        let decode = |body: Option<String>| body.and_then(|body| stored_op(&body).ok());
        let seqs: Vec<u64> = held.iter().map(|(_, seq)| *seq).collect();
        let mut stored = Vec::with_capacity(seqs.len());
        for chunk in seqs.chunks(READ_BACK_CHUNK) {
            match self.store.ops_at(&stream, chunk).await {
                Ok(bodies) => stored.extend(bodies.into_iter().map(decode)),
                Err(err) => {
                    tracing::warn!(stream = %stream, ops = chunk.len(), error = %err, "reading ops back failed; reading them one at a time");
                    for seq in chunk {
                        let body = match self.store.ops_at(&stream, std::slice::from_ref(seq)).await
                        {
                            Ok(mut bodies) => bodies.pop().flatten(),
                            Err(_) => None,
                        };
                        stored.push(decode(body));
                    }
                }
            }
        }
        stored
    }

    /// Decides one op of `claims`' push, which [`attempt`](Self::attempt)
    /// has already refused if the token may not write its key.
    fn admit(
        &mut self,
        push: &Pending,
        op: &Op,
        id: &StreamId,
        known: &Known,
        part: &mut Part,
        new_tabs: &mut BTreeMap<String, String>,
    ) -> AckStatus {
        let claims = &push.claims;
        let op_id = op.id.to_string();
        // An id already in the log is a duplicate only if it is the same op:
        // a peer that read another device's op ids must not be able to push
        // something else under the next one and have that device's real op
        // answered as already stored (and dropped from its outbox).
        let holder = match part.in_part.get(&op_id) {
            Some((seq, at)) => Some((*seq, part.fanout.get(*at).map(|s| &s.op))),
            None => match known.ids.get(&(id.clone(), op_id.clone())) {
                Some(Ok((seq, stored))) => Some((*seq, stored.as_ref())),
                Some(Err(err)) => return refused(code::STORAGE, err.clone()),
                None => None,
            },
        };
        if let Some((seq, stored)) = holder {
            // A stored op that could not be read back is taken to be this
            // one, as before ids were compared.
            if stored.is_some_and(|stored| stored != op) {
                return refused(
                    code::OP_ID_TAKEN,
                    format!("another op already holds the id {op_id} in {id}"),
                );
            }
            return AckStatus::Duplicate {
                stream: id.clone(),
                seq,
            };
        }
        // A tab's ops come from the token subject that pushed its first one:
        // another token that read the tab's op ids (they are fanned out)
        // must not take its next id before the tab does.
        let tab = op.id.tab.to_string();
        let owner = match known.owners.get(&tab) {
            Some(Ok(Some(owner))) if *owner == claims.sub || owner == LEGACY_OWNER => {
                Some(owner.clone())
            }
            // Nobody's: the first pusher admitted here claims it.
            Some(Ok(None)) => match new_tabs.get(&tab) {
                Some(first) if *first != claims.sub => {
                    return refused(
                        code::TAB_TAKEN,
                        format!("the tab {tab} belongs to another token subject"),
                    );
                }
                _ => Some(claims.sub.clone()),
            },
            Some(Ok(Some(_))) => {
                return refused(
                    code::TAB_TAKEN,
                    format!("the tab {tab} belongs to another token subject"),
                );
            }
            Some(Err(err)) => return refused(code::STORAGE, err.clone()),
            None => return refused(code::STORAGE, "the tab's owner could not be read"),
        };
        let now = now_ms();
        let Some(stream) = self.streams.get_mut(id) else {
            return refused(code::STORAGE, "the stream could not be loaded");
        };
        let spec = match stream.replica.spec_for(&op.key) {
            Ok(spec) => spec,
            Err(_) => {
                return refused(
                    code::UNKNOWN_KEY,
                    format!("the relay knows no declaration of {}", op.key),
                );
            }
        };
        if let Some(why) = stream.unloaded.get(&op.key) {
            // A newer schema: for now, as an upgraded node (this one later,
            // or another on a shared store) reads it, and the device sends
            // the op again. Anything else no upgrade mends: refused for
            // good, with the reason, rather than left to fill the device's
            // outbox.
            let code = match why {
                CoreError::NewerSchema { .. } => code::STORAGE,
                other => other.code(),
            };
            return refused(
                code,
                format!(
                    "this relay could not load the stored state of {} ({why}); it takes no write to it until it can",
                    op.key
                ),
            );
        }
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
        // A reset's fold horizon vouches for a write of its writer's that
        // may lie past its own stamp (`Op::newest_wall`): judged alike, so
        // the core never holds what a node admits (it would ack an op its
        // state never gets).
        let newest = op.newest_wall();
        if newest > now.saturating_add(MAX_CLOCK_AHEAD_MS - NODE_CLOCK_SLACK_MS) {
            let what = match newest > op.stamp.wall_ms {
                true => "the reset's fold horizon vouches for a write",
                false => "the op is stamped",
            };
            return refused(
                "clock_skew",
                format!(
                    "{what} {} ms ahead of the relay's clock; check the device's time",
                    newest - now
                ),
            );
        }
        // The work the core is about to do grows with the key's state.
        let extra = stream.extra_for(&op.key);
        if !push.bucket.draw(extra) {
            return rate_limited();
        }
        if let Err(err) = stream.replica.apply_remote(op) {
            return refused(err.code(), err.to_string());
        }
        stream.head += 1;
        let seq = stream.head;
        // Until the commit measures the state: it may have grown by the op.
        let body = serde_json::to_string(op).unwrap_or_default();
        stream.grew(op, body.len());
        let value = stream
            .replica
            .state(&op.key)
            .and_then(KeyState::value)
            .unwrap_or_else(|| spec.default_value().clone());
        if matches!(known.owners.get(&tab), Some(Ok(None))) {
            new_tabs
                .entry(tab.clone())
                .or_insert_with(|| claims.sub.clone());
        }
        part.rows.push(Row {
            stream: id.to_string(),
            seq,
            op_id: op_id.clone(),
            body,
            // Recorded (SQLite) unless seen renewed lately.
            owner: owner.filter(|_| !known.fresh.contains(&tab)),
            tab,
        });
        part.in_part.insert(op_id, (seq, part.fanout.len()));
        part.keys.insert(op.key.clone());
        part.fanout.push(Sequenced {
            seq,
            op: op.clone(),
        });
        AckStatus::Applied {
            stream: id.clone(),
            seq,
            value,
        }
    }

    /// Sends `ops` (stored) to the subscribers of `id`, and makes the
    /// stream's head known to the long polls on it.
    fn fan_out(&mut self, id: &StreamId, ops: Vec<Sequenced>) {
        let head = self.streams.get(id).map_or(0, |s| s.head);
        self.heads.publish(id, head, Some(&ops));
        // A subscriber gets every op in order (its catch-up is queued
        // before anything live), so it may pass the ones of this commit
        // it may not read: its cursor follows the stream, not only the
        // ops it reads.
        let through = ops.last().map_or(0, |last| last.seq);
        let mut slow = Vec::new();
        // Subscribers that may read the same of these ops (most often all
        // of them) get the same messages: each is built and encoded once,
        // and their queues share its text.
        let mut encoded: HashMap<Vec<bool>, Vec<Utf8Bytes>> = HashMap::new();
        for (conn, subscriber) in &self.subscribers {
            if !subscriber.streams.contains(id) {
                continue;
            }
            let readable: Vec<bool> = ops
                .iter()
                .map(|s| subscriber.claims.can_read_key(&s.op.key))
                .collect();
            let messages = encoded.entry(readable).or_insert_with_key(|readable| {
                let visible = ops
                    .iter()
                    .zip(readable)
                    .filter(|(_, readable)| **readable)
                    .map(|(s, _)| s.clone())
                    .collect();
                ops_messages(id, visible, head, through)
                    .iter()
                    .filter_map(queue::encode)
                    .collect()
            });
            for text in messages.iter() {
                if subscriber
                    .outlet
                    .send
                    .try_send_text(text.clone(), false)
                    .is_err()
                {
                    slow.push(*conn);
                    break;
                }
                self.metrics.delivered(1);
            }
        }
        for conn in slow {
            self.drop_slow(conn);
        }
    }

    async fn subscribe(
        &mut self,
        conn: ConnId,
        claims: Arc<Claims>,
        subscriptions: Vec<Subscription>,
        outlet: Outlet,
    ) -> Result<(), ProtocolError> {
        let mut named = BTreeSet::new();
        for subscription in &subscriptions {
            // Each would be caught up again, page by page.
            if !named.insert(&subscription.stream) {
                return Err(ProtocolError::new(
                    code::MALFORMED,
                    format!("the hello subscribes to {} twice", subscription.stream),
                ));
            }
        }
        let mut streams = BTreeSet::new();
        for subscription in &subscriptions {
            // A stream the token may not read is refused on its own (a page
            // follows its apartment and the global keys; a token without a
            // global grant still syncs the apartment).
            if !claims.can_read(&subscription.stream) {
                self.metrics.refused(code::FORBIDDEN);
                let refusal = ServerMessage::Error(ErrorBody {
                    code: code::FORBIDDEN.to_owned(),
                    message: format!(
                        "the token may not read {}; the other streams are followed",
                        subscription.stream
                    ),
                });
                if outlet.catch_up.send(Missed::Message(refusal)).is_err() {
                    return Ok(());
                }
                continue;
            }
            // What it missed, up to the head now: nothing, or a catch-up
            // the connection fetches a page at a time (a device whose last
            // connection ended between two snapshot pieces asks, with
            // `after`, for the pieces after the last key it merged).
            let (head, _) = self.head_of(&subscription.stream).await?;
            let missed = if subscription.cursor.unwrap_or(0) == head {
                Missed::Message(nothing_missed(subscription.stream.clone(), head))
            } else {
                Missed::CatchUp(CatchUp {
                    claims: Arc::clone(&claims),
                    subscription: subscription.clone(),
                    until: head,
                })
            };
            // Queued here, in the same step that registers the subscriber,
            // so nothing live can overtake it.
            if outlet.catch_up.send(missed).is_err() {
                return Ok(());
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

    async fn pull(
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
        // One message an answer: a snapshot in several pieces is taken a
        // piece at a time, each asked for after the last key of the one
        // before (its `more` says another follows).
        let mut page = self.catch_up(claims, subscription, limit, 1, None).await?;
        Ok(if page.messages.is_empty() {
            let head = self.streams.get(&subscription.stream).map_or(0, |s| s.head);
            nothing_missed(subscription.stream.clone(), head)
        } else {
            page.messages.swap_remove(0)
        })
    }

    /// The stream `id` loaded (with a shared store, brought up to the
    /// store's head): its head and the first number its log holds.
    async fn head_of(&mut self, id: &StreamId) -> Result<(u64, u64), ProtocolError> {
        self.ensure(id).await?;
        // With several nodes this one may lag the store: a cursor past its
        // head is then no reason for a snapshot, and an answer saying the
        // head must say the store's.
        self.refresh(id).await;
        // Dropped from memory by a reload that failed: its head is not
        // known (a head of 0 would end a catch-up with nothing said).
        self.streams
            .get(id)
            .map(|stream| (stream.head, stream.first))
            .ok_or_else(|| storage_error(format!("{id} could not be loaded")))
    }

    /// What a device at a cursor lacks: the ops after it (at most `limit`,
    /// fewer once they hold [`PAGE_BYTES`]), or a snapshot when the log no
    /// longer reaches back to it (or the device claims a number the relay
    /// never gave): at most `pieces` of it, from the subscription's
    /// `after` key on. Always at least one message, saying the head, or
    /// `until` when given (a catch-up that stops there: later ops come
    /// live).
    async fn catch_up(
        &mut self,
        claims: &Claims,
        subscription: &Subscription,
        limit: usize,
        pieces: usize,
        until: Option<u64>,
    ) -> Result<Page, ProtocolError> {
        let id = subscription.stream.clone();
        let (now, first) = self.head_of(&id).await?;
        let head = until.map_or(now, |until| until.min(now));
        let cursor = subscription.cursor.unwrap_or(0);
        if cursor == head {
            return Ok(Page {
                messages: vec![nothing_missed(id, head)],
                next: None,
            });
        }
        if cursor > head || cursor + 1 < first {
            self.metrics.snapshot();
            return Ok(self.snapshot(claims, subscription, pieces, head));
        }
        let mut ops = Vec::new();
        let mut after = cursor;
        let mut sent = 0usize;
        let mut bytes = 0usize;
        while after < head && sent < limit && bytes < PAGE_BYTES {
            // Few rows first, then as many as the page has room for at the
            // size they have been: a read of large ops costs what it holds.
            let room = match bytes.checked_div(sent) {
                Some(per_op) => ((PAGE_BYTES - bytes) / per_op.max(1)).clamp(1, PAGE_READ_OPS),
                None => FIRST_READ_OPS,
            };
            let rows = self
                .store
                .ops_after(&id.to_string(), after, room.min(limit - sent))
                .await
                .map_err(storage_error)?;
            if rows.first().map(|(seq, _)| *seq) != Some(after + 1) {
                // Another node trimmed the log past this cursor (or between
                // two reads): what was read would leave a gap.
                self.metrics.snapshot();
                return Ok(self.snapshot(claims, subscription, pieces, head));
            }
            for (seq, body) in rows {
                if seq > head {
                    break;
                }
                after = seq;
                sent += 1;
                bytes += body.len();
                match stored_op(&body) {
                    Ok(op) if claims.can_read_key(&op.key) => ops.push(Sequenced { seq, op }),
                    Ok(_) => {}
                    Err(err) => tracing::error!(seq, error = %err, "a stored op does not parse"),
                }
            }
        }
        // At least one message, saying how far this read (`through`).
        let messages = ops_messages(&id, ops, head, after);
        let next = (after < head).then_some(Subscription {
            stream: id,
            cursor: Some(after),
            after: None,
        });
        Ok(Page { messages, next })
    }

    /// The stream's canonical states the token may read, as snapshot
    /// messages that each fit a frame and hold at most
    /// [`MAX_SYNC_STATES`] states (a browser hands each snapshot to its
    /// tabs as one sync message, which holds no more). Only the keys after
    /// `after` (in key order), when given: the rest of a snapshot whose
    /// pieces are asked for one at a time. Every piece but the last says
    /// [`more`](Snapshot::more). At most `pieces` pieces are made (over
    /// HTTP one, the rest left unread: a stream of many pieces must not
    /// cost the hub every remaining piece on each request).
    ///
    /// Each piece says `head` as its number: the stream's head, or less
    /// (a catch-up's `until`: states holding later ops are harmless, those
    /// ops come live and apply again).
    fn snapshot(
        &self,
        claims: &Claims,
        subscription: &Subscription,
        pieces: usize,
        head: u64,
    ) -> Page {
        let id = &subscription.stream;
        let after = subscription.after.as_ref();
        let Some(stream) = self.streams.get(id) else {
            return Page {
                messages: Vec::new(),
                next: None,
            };
        };
        let states = match after {
            Some(after) => stream.replica.states().range::<FullKey, _>((
                std::ops::Bound::Excluded(after),
                std::ops::Bound::Unbounded,
            )),
            None => stream.replica.states().range::<FullKey, _>(..),
        };
        let entries = states.filter_map(|(key, state)| {
            if !claims.can_read_key(key) {
                return None;
            }
            let spec = stream.replica.spec_for(key).ok()?;
            let entry = SyncEntry {
                key: key.clone(),
                schema: spec.schema().version(),
                state: state.clone(),
            };
            let len = encoded_len(&entry, MAX_MESSAGE_BYTES);
            Some((entry, len))
        });
        let (mut chunks, left) = first_groups_by_len(
            entries,
            MAX_MESSAGE_BYTES - FRAME_SLACK,
            MAX_SYNC_STATES,
            pieces,
        );
        // An empty stream still answers with one (empty) snapshot.
        if chunks.is_empty() {
            chunks.push(Vec::new());
        }
        let last = chunks.len() - 1;
        // Each piece says which key it follows: the one asked after, then
        // the last of the piece before.
        let mut follows = after.cloned();
        let messages = chunks
            .into_iter()
            .enumerate()
            .map(|(i, states)| {
                let after =
                    std::mem::replace(&mut follows, states.last().map(|entry| entry.key.clone()));
                ServerMessage::Snapshot(Snapshot {
                    stream: id.clone(),
                    seq: head.min(stream.head),
                    states,
                    more: i < last || left,
                    after,
                    left_out: Vec::new(),
                    newer: false,
                    piece: gaesup_protocol::PieceOf::Start,
                })
            })
            .collect();
        let next = left.then(|| Subscription {
            stream: id.clone(),
            cursor: subscription.cursor,
            after: follows,
        });
        Page { messages, next }
    }

    /// Trims the log of each stream past its bounds by a quarter to the
    /// newest ops within them (see [`Retention`]), behind the canonical
    /// states (which are the snapshot).
    async fn trim(&mut self) {
        let due: Vec<StreamId> = self
            .streams
            .values()
            .filter(|s| {
                let ops = s.head.saturating_sub(s.first) + 1;
                self.keep.due(ops, s.log_bytes)
            })
            .map(|s| s.id.clone())
            .collect();
        for id in due {
            match self.store.trim(&id.to_string(), self.keep).await {
                Ok(trimmed) => {
                    if let Some(stream) = self.streams.get_mut(&id) {
                        stream.first = trimmed.first;
                        stream.log_bytes = trimmed.bytes;
                    }
                }
                Err(err) => tracing::warn!(stream = %id, error = %err, "trimming the log failed"),
            }
        }
    }
}

/// "Nothing after your cursor": `stream`'s head is `head`.
pub(crate) fn nothing_missed(stream: StreamId, head: u64) -> ServerMessage {
    ServerMessage::Ops(OpsBody::new(stream, Vec::new(), head, None))
}

/// `ops` as messages that each fit a frame (at least one message).
/// `ops` in messages that each fit a frame; the last says `through` (the
/// last number read for them) when it lies past its last op.
pub(crate) fn ops_messages(
    id: &StreamId,
    ops: Vec<Sequenced>,
    head: u64,
    through: u64,
) -> Vec<ServerMessage> {
    let mut messages = Vec::new();
    let mut chunk = Vec::new();
    let mut size = 0;
    for op in ops {
        let len = encoded_len(&op, MAX_MESSAGE_BYTES);
        if !chunk.is_empty() && size + len > MAX_MESSAGE_BYTES - FRAME_SLACK {
            messages.push(ServerMessage::Ops(OpsBody::new(
                id.clone(),
                std::mem::take(&mut chunk),
                head,
                None,
            )));
            size = 0;
        }
        size += len;
        chunk.push(op);
    }
    if !chunk.is_empty() || messages.is_empty() {
        let last = chunk.last().map_or(0, |op| op.seq);
        messages.push(ServerMessage::Ops(OpsBody::new(
            id.clone(),
            chunk,
            head,
            (through > last).then_some(through),
        )));
    }
    messages
}

/// The core's stored form of a key's state: schema and state.
#[derive(serde::Serialize)]
struct Stored<'a> {
    schema: u32,
    state: &'a KeyState,
}

impl<'a> Stored<'a> {
    fn of(replica: &'a Replica, key: &FullKey) -> Option<Self> {
        Some(Self {
            state: replica.state(key)?,
            schema: replica.spec_for(key).ok()?.schema().version(),
        })
    }
}

/// A key's state as stored.
fn stored_state(replica: &Replica, key: &FullKey) -> Option<String> {
    serde_json::to_string(&Stored::of(replica, key)?).ok()
}

/// The length of [`stored_state`], counted without building it.
fn stored_len(replica: &Replica, key: &FullKey) -> usize {
    Stored::of(replica, key).map_or(0, |stored| encoded_len(&stored, usize::MAX))
}

/// An op as the store holds it, read with the core's parser. A node of
/// this relay wrote it, having read it from a device's message, which
/// the frame limit and the depth limit bounded: no limit of size again.
fn stored_op(body: &str) -> Result<Op, gaesup_state_core::Error> {
    gaesup_state_core::decode::read_bounded(body, usize::MAX, "a stored op")
}

#[cfg(test)]
mod tests {
    use super::*;
    use gaesup_state_core::{ManualClock, UnitAddress};
    use serde_json::Value;

    /// A stream of apartment `main` and a device writing its shared note.
    fn note_writer() -> (Stream, Replica, SharedKey<Value>, UnitAddress) {
        let declarations = gaesup_keys::declarations().unwrap();
        let stream = new_stream(&declarations, "apartment:main".parse().unwrap());
        let mut device = Replica::new(TabId::new(2), ManualClock::new(1_000));
        let spec = declarations
            .iter()
            .find(|spec| spec.name().as_str() == "shared-note")
            .unwrap();
        let key = SharedKey::erased(Arc::clone(spec));
        device.declare(&key).unwrap();
        (stream, device, key, "main/lobby/notes".parse().unwrap())
    }

    /// Applies a note of `bytes` written on `device` to `stream`, counted
    /// as the hub counts it.
    fn write(
        stream: &mut Stream,
        device: &mut Replica,
        key: &SharedKey<Value>,
        at: &UnitAddress,
        bytes: usize,
        n: usize,
    ) -> Op {
        let op = device
            .set(at, key, Value::from(format!("{n:06}{}", "x".repeat(bytes))))
            .unwrap()
            .op;
        stream.replica.apply_remote(&op).unwrap();
        stream.grew(&op, serde_json::to_string(&op).unwrap().len());
        op
    }

    #[test]
    fn an_op_pays_for_what_the_key_holds_and_for_a_measure_it_needs() {
        let (mut stream, mut device, key, at) = note_writer();
        let op = write(&mut stream, &mut device, &key, &at, 40_000, 0);
        assert_eq!(
            stream.extra_for(&"apartment/main/nothing".parse().unwrap()),
            0
        );
        // Counted past the last measure (none): measured, and that op pays
        // for the measure as much again.
        let exact = stored_len(&stream.replica, &op.key);
        assert!(exact > 40_000 && exact < 41_000, "{exact}");
        assert_eq!(stream.extra_for(&op.key), 2 * extra_cost(exact));
        assert_eq!(stream.extra_for(&op.key), extra_cost(exact), "measured now");
        // The same note rewritten a hundred times is counted as growing,
        // never past the state limit, and measured at what it holds.
        for n in 1..=100 {
            write(&mut stream, &mut device, &key, &at, 40_000, n);
        }
        assert_eq!(stream.sizes[&op.key].counted, MAX_STORED_BYTES);
        assert_eq!(stream.extra_for(&op.key), 2 * extra_cost(exact));
        assert_eq!(stream.extra_for(&op.key), extra_cost(exact));
    }

    /// `n` notes of `bytes` each, numbered from `from`, as `publish`
    /// keeps them.
    fn notes(from: u64, n: usize, bytes: usize) -> Option<Vec<(Arc<Sequenced>, usize)>> {
        let (_, mut device, key, at) = note_writer();
        let op = |i: usize| Sequenced {
            seq: from + i as u64,
            op: device
                .set(&at, &key, Value::from("x".repeat(bytes)))
                .unwrap()
                .op,
        };
        Some(
            (0..n)
                .map(op)
                .map(|op| {
                    let len = encoded_len(&op, usize::MAX);
                    (Arc::new(op), len)
                })
                .collect(),
        )
    }

    fn seqs(recent: &Recent) -> Vec<u64> {
        recent.ops.iter().map(|(s, _)| s.seq).collect()
    }

    #[test]
    fn the_recent_ops_are_kept_only_without_a_gap_up_to_the_head() {
        let mut recent = Recent::default();
        recent.advance(2, notes(1, 2, 10));
        assert_eq!(seqs(&recent), [1, 2]);
        recent.advance(4, notes(3, 2, 10));
        assert_eq!(seqs(&recent), [1, 2, 3, 4], "they follow: kept");
        // The same head again, without ops: kept.
        recent.advance(4, None);
        assert_eq!(seqs(&recent), [1, 2, 3, 4]);
        // A gap after what is held: dropped, head moved.
        recent.advance(7, notes(6, 2, 10));
        assert_eq!((seqs(&recent), recent.head), (vec![], 7));
        // Ops that stop short of the head (the first piece of a
        // catch-up sent in several): not kept.
        recent.advance(20, notes(8, 2, 10));
        assert!(recent.ops.is_empty());
        // Out of order within.
        let mut shuffled = notes(21, 3, 10);
        if let Some(ops) = shuffled.as_mut() {
            ops.swap(0, 1);
        }
        recent.advance(23, shuffled);
        assert!(recent.ops.is_empty());
        // A head moved without ops: what led to the old one says nothing
        // of the new.
        recent.advance(25, notes(24, 2, 10));
        assert_eq!(seqs(&recent), [24, 25]);
        recent.advance(26, None);
        assert!(recent.ops.is_empty());
    }

    #[test]
    fn the_recent_ops_are_bounded_by_count_and_bytes() {
        let mut recent = Recent::default();
        recent.advance(600, notes(1, 600, 10));
        assert_eq!(recent.ops.len(), RECENT_OPS);
        assert_eq!(recent.ops.front().map(|(s, _)| s.seq), Some(600 - 511));
        // Every op after a cursor among them, and none before.
        assert_eq!(recent.start_after(600 - 512), Some(0));
        assert_eq!(recent.start_after(599), Some(511));
        assert_eq!(recent.start_after(600 - 513), None, "one lies before them");
        assert_eq!(recent.start_after(600), None, "at the head: nothing lacks");
        // Ops of 250 KB: the bytes bound keeps the newest that fit, and
        // always the commit just made when it fits alone.
        let big = 250_000;
        recent.advance(610, notes(601, 10, big));
        assert!(recent.bytes <= RECENT_BYTES, "{}", recent.bytes);
        assert_eq!(recent.ops.back().map(|(s, _)| s.seq), Some(610));
        let fit = RECENT_BYTES / big;
        assert!(
            recent.ops.len() >= fit - 1 && recent.ops.len() <= fit,
            "{}",
            recent.ops.len()
        );
        let counted: usize = recent
            .ops
            .iter()
            .map(|(s, _)| encoded_len(&**s, usize::MAX))
            .sum();
        assert_eq!(recent.bytes, counted);
    }

    /// The ops message of an answer: (op numbers, head, through).
    fn said(answer: &Answer) -> (Vec<u64>, u64, Option<u64>) {
        let text = std::str::from_utf8(&answer.text).unwrap();
        match ServerMessage::decode(text).unwrap() {
            ServerMessage::Ops(ops) => (
                ops.ops.iter().map(|s| s.seq).collect(),
                ops.head,
                ops.through,
            ),
            other => panic!("not ops: {other:?}"),
        }
    }

    #[test]
    fn a_poll_is_given_one_message_worth_and_told_how_far_it_read() {
        let id: StreamId = "apartment:main".parse().unwrap();
        let ops: Vec<Sequenced> = notes(1, 8, 250_000)
            .unwrap()
            .into_iter()
            .map(|(op, _)| Sequenced::clone(&op))
            .collect();
        // Nobody polled: nothing kept.
        let heads = Heads::default();
        heads.publish(&id, 0, None);
        heads.publish(&id, 8, Some(&ops));
        assert!(heads.covers(&id, 0).is_none());

        let heads = Heads::default();
        heads.publish(&id, 0, None);
        let _poll = heads.watch(&id).unwrap();
        heads.publish(&id, 8, Some(&ops));
        assert_eq!(heads.covers(&id, 0), Some(8));
        let first = heads.answer(&id, 0, None, |_| true).unwrap();
        let (seqs, head, through) = said(&first);
        assert_eq!(head, 8);
        assert!(seqs.len() < 8, "8 ops of 250 KB are more than a message");
        assert_eq!((seqs.first(), through), (Some(&1), None));
        assert!(first.built);
        // Another poll from the same cursor shares it.
        let again = heads.answer(&id, 0, None, |_| true).unwrap();
        assert!(!again.built, "built once");
        assert_eq!(again.text, first.text);
        // Ops the token may not read: none given, read through the same,
        // and an answer of its own.
        let blind = heads.answer(&id, 0, None, |_| false).unwrap();
        assert!(blind.built);
        assert_eq!(said(&blind), (vec![], 8, seqs.last().copied()));
        // From the last op before the head: that op alone.
        let last = heads.answer(&id, 7, None, |_| true).unwrap();
        assert_eq!(said(&last), (vec![8], 8, None));
        // Polls at either cursor still share theirs, asked in turn (up to
        // four kept).
        for _ in 0..3 {
            for cursor in [0, 7] {
                assert!(!heads.answer(&id, cursor, None, |_| true).unwrap().built);
            }
        }
        assert!(
            heads.answer(&id, 8, None, |_| true).is_none(),
            "at the head"
        );
        // A store's head ahead is said; one behind is no answer.
        assert_eq!(
            said(&heads.answer(&id, 7, Some(9), |_| true).unwrap()),
            (vec![8], 9, None)
        );
        assert!(heads.answer(&id, 7, Some(7), |_| true).is_none());
        // The head moves: the shared answer goes with it.
        let more: Vec<Sequenced> = notes(9, 1, 10)
            .unwrap()
            .into_iter()
            .map(|(op, _)| Sequenced::clone(&op))
            .collect();
        heads.publish(&id, 9, Some(&more));
        let moved = heads.answer(&id, 0, None, |_| true).unwrap();
        assert!(moved.built);
        assert_eq!(said(&moved).1, 9);
    }
}
