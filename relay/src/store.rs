//! Where the relay keeps the op log, the canonical states and the heads:
//! the embedded SQLite store (one node, the default) or Redis (any number
//! of nodes sharing it).
//!
//! The hub speaks to both through [`Store`]. What differs is who else
//! writes: with SQLite the hub is the only writer, so its in-memory heads
//! are the truth. With Redis other nodes append to the same streams, so a
//! commit states the head it was admitted against and is refused as a
//! [`CommitError::Conflict`] when the stream moved on; the hub then reloads
//! the stream and admits the ops again. Every node also follows the streams
//! it holds ([`Store::follow`]) to apply and fan out what other nodes
//! commit.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::Notify;

use crate::db::{Commit, Db, DbError, Row};
use crate::retention::{Retention, Trimmed};

/// A failure of the store (the commit, a read, the connection).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The embedded store failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Redis failed or is unreachable.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis holds something this relay did not write.
    #[error("redis holds an unexpected value: {0}")]
    Corrupt(String),
    /// The embedded store's transaction failed, reported for each stream
    /// it held (the error itself is not `Clone`).
    #[error("{0}")]
    Transaction(String),
}

/// How long a tab stays its owner's after its last op: 30 days. A tab's
/// owner is the subject of the token that pushed its first op (see
/// [`Store::claim_tabs`]); an owner goes by time, never with the log, so
/// a peer that floods a stream until a tab's ops are trimmed does not free
/// the tab.
pub const TAB_OWNER_TTL_MS: u64 = 30 * 24 * 3_600_000;

/// The owner of the tabs a store held ops of before tabs had owners: any
/// subject may push their ops (as before), none may take them. No token
/// subject can be it (`mint-token` takes the subject from the command
/// line, which cannot hold a NUL).
pub const LEGACY_OWNER: &str = "\u{0}legacy";

/// Why one stream's part of a commit was not made durable.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// Another node appended to the stream (or committed one of these op
    /// ids) since this node admitted the ops: nothing was written.
    #[error("the stream moved on at another node")]
    Conflict,
    /// The store failed; nothing of this stream's part is acknowledged.
    #[error(transparent)]
    Failed(#[from] StoreError),
}

/// A stream as loaded: head, oldest kept number, the log's bytes,
/// canonical states.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Newest number (0: empty).
    pub head: u64,
    /// Oldest number still in the log.
    pub first: u64,
    /// The bytes of the ops the log holds (their stored text).
    pub bytes: u64,
    /// (full key, stored JSON).
    pub states: Vec<(String, String)>,
}

/// One stream's part of a commit.
#[derive(Debug, Default)]
pub struct StreamCommit {
    /// The stream.
    pub stream: String,
    /// The head the ops were admitted against: they take the numbers after
    /// it.
    pub base: u64,
    /// The ops, numbered `base + 1`, `base + 2`, ….
    pub ops: Vec<Row>,
    /// The touched keys' new canonical states: (full key, stored JSON).
    pub states: Vec<(String, String)>,
}

/// The relay's store.
pub enum Store {
    /// SQLite in the data directory: one node.
    Sqlite(Db),
    /// Redis: any number of nodes.
    Redis(Box<RedisStore>),
}

impl Store {
    /// Whether other nodes may write the same streams (the hub then
    /// follows them and commits conditionally).
    pub fn shared(&self) -> bool {
        matches!(self, Self::Redis(_))
    }

    /// Every stream the store holds.
    pub async fn stream_names(&self) -> Result<Vec<String>, StoreError> {
        match self {
            Self::Sqlite(db) => Ok(db.streams()?.into_iter().map(|(name, _)| name).collect()),
            Self::Redis(redis) => redis.stream_names().await,
        }
    }

    /// A stream's head, oldest kept number, log bytes and states, read
    /// together; `None` for a stream never written.
    pub async fn load(&self, stream: &str) -> Result<Option<Loaded>, StoreError> {
        match self {
            Self::Sqlite(db) => {
                let Some(row) = db.stream(stream)? else {
                    return Ok(None);
                };
                Ok(Some(Loaded {
                    head: row.head,
                    first: row.first,
                    bytes: db.log_bytes(stream)?,
                    states: db.states(stream)?,
                }))
            }
            Self::Redis(redis) => redis.load(stream).await,
        }
    }

    /// The newest number of `stream` the store holds now (0: none).
    pub async fn head(&self, stream: &str) -> Result<u64, StoreError> {
        match self {
            Self::Sqlite(db) => Ok(db.stream(stream)?.map_or(0, |row| row.head)),
            Self::Redis(redis) => redis.head(stream).await,
        }
    }

    /// Gives up this node's turn on `stream` if it holds it and has nothing
    /// left to commit (Redis; nothing to do with SQLite).
    pub async fn release_turn(&self, stream: &str) {
        if let Self::Redis(redis) = self {
            redis.release_turn(stream).await;
        }
    }

    /// The numbers `ids` got in `stream`, where they are in the log.
    pub async fn seqs_of(
        &self,
        stream: &str,
        ids: &[String],
    ) -> Result<Vec<Option<u64>>, StoreError> {
        match self {
            Self::Sqlite(db) => Ok(db.seqs_of(stream, ids)?),
            Self::Redis(redis) => redis.seqs_of(stream, ids).await,
        }
    }

    /// The owner of each of `tabs`, in the same order: the subject of the
    /// token whose op of the tab was first admitted (while the tab has
    /// had an op within [`TAB_OWNER_TTL_MS`]), [`LEGACY_OWNER`] for a tab
    /// the log held before tabs had owners, `None` for a tab nobody owns.
    /// A tab is owned across streams (a page writes its apartment's and the
    /// global keys under one tab).
    pub async fn tab_owners(&self, tabs: &[String]) -> Result<Vec<Option<String>>, StoreError> {
        Ok(self.seqs_and_owners(&[], tabs).await?.1)
    }

    /// Makes each (tab, subject) the tab's owner, for
    /// [`TAB_OWNER_TTL_MS`], unless the tab has one: `true` where the tab
    /// is the subject's now. The hub claims the new tabs of the ops it
    /// admitted before it commits them, so no peer can have read a tab's
    /// id before its owner has it, and an op refused when admitted leaves
    /// nothing (one whose commit then fails leaves its subject the owner).
    /// Redis claims each tab for every node, atomically; SQLite, whose only
    /// writer is this node's hub, records owners with the commit (`true`
    /// here).
    pub async fn claim_tabs(&self, claims: &[(String, String)]) -> Result<Vec<bool>, StoreError> {
        match self {
            Self::Sqlite(_) => Ok(vec![true; claims.len()]),
            Self::Redis(redis) => redis.claim_tabs(claims).await,
        }
    }

    /// Gives each (tab, owner) whose op was just committed the owner's
    /// full time, [`TAB_OWNER_TTL_MS`] from now (Redis; SQLite recorded it
    /// with the commit). A tab another subject holds is left to it: `false`
    /// in its place.
    pub async fn renew_tabs(&self, owned: &[(String, String)]) -> Result<Vec<bool>, StoreError> {
        match self {
            Self::Sqlite(_) => Ok(vec![true; owned.len()]),
            Self::Redis(redis) => redis.renew_tabs(owned).await,
        }
    }

    /// [`seqs_of`](Self::seqs_of) each stream's ids and
    /// [`tab_owners`](Self::tab_owners) of `tabs`, together (one round trip
    /// to Redis): what a push needs before its ops are admitted.
    pub async fn seqs_and_owners(
        &self,
        lookups: &[(String, Vec<String>)],
        tabs: &[String],
    ) -> Result<(Vec<Vec<Option<u64>>>, Vec<Option<String>>), StoreError> {
        match self {
            Self::Sqlite(db) => {
                let seqs = lookups.iter().map(|(stream, ids)| db.seqs_of(stream, ids));
                let owners = tabs.iter().map(|tab| db.tab_owner(tab));
                Ok((
                    seqs.collect::<Result<_, _>>()?,
                    owners.collect::<Result<_, _>>()?,
                ))
            }
            Self::Redis(redis) => redis.seqs_and_owners(lookups, tabs).await,
        }
    }

    /// The ops of `stream` after `after`, at most `limit`, in order.
    pub async fn ops_after(
        &self,
        stream: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        match self {
            Self::Sqlite(db) => Ok(db.ops_after(stream, after, limit)?),
            Self::Redis(redis) => redis.ops_after(stream, after, limit).await,
        }
    }

    /// The ops of `stream` at `seqs`, one per number, in the same order:
    /// `None` where the log holds none (trimmed meanwhile). One read in
    /// all (a statement per number in SQLite, in process; one pipelined
    /// round trip to Redis), however many there are.
    pub async fn ops_at(
        &self,
        stream: &str,
        seqs: &[u64],
    ) -> Result<Vec<Option<String>>, StoreError> {
        match self {
            Self::Sqlite(db) => Ok(seqs
                .iter()
                .map(|seq| db.op_at(stream, *seq))
                .collect::<Result<_, _>>()?),
            Self::Redis(redis) => redis.ops_at(stream, seqs).await,
        }
    }

    /// Makes each stream's part durable; one result per part, in order.
    /// SQLite commits them all in one transaction (all succeed or all
    /// fail); Redis commits each stream atomically on its own.
    pub async fn commit(&self, parts: Vec<StreamCommit>) -> Vec<Result<(), CommitError>> {
        match self {
            Self::Sqlite(db) => {
                let count = parts.len();
                let mut commit = Commit::default();
                for part in parts {
                    let head = part.base + part.ops.len() as u64;
                    commit.heads.push((part.stream.clone(), head));
                    commit.ops.extend(part.ops);
                    for (key, stored) in part.states {
                        commit.states.push((part.stream.clone(), key, stored));
                    }
                }
                match db.commit(commit).await {
                    Ok(()) => (0..count).map(|_| Ok(())).collect(),
                    Err(err) => {
                        let text = err.to_string();
                        (0..count)
                            .map(|_| {
                                Err(CommitError::Failed(StoreError::Transaction(text.clone())))
                            })
                            .collect()
                    }
                }
            }
            Self::Redis(redis) => {
                let mut results = Vec::with_capacity(parts.len());
                for part in parts {
                    results.push(redis.commit(part).await);
                }
                results
            }
        }
    }

    /// Drops the oldest ops of `stream` while its log holds more ops or
    /// bytes than `keep` allows (never the newest: see
    /// [`Walk`](crate::retention::Walk)); returns where the log starts now
    /// and the bytes it holds, as the store has them (with Redis, after
    /// what every node committed and trimmed).
    pub async fn trim(&self, stream: &str, keep: Retention) -> Result<Trimmed, StoreError> {
        match self {
            Self::Sqlite(db) => Ok(db.trim(stream, keep).await?),
            Self::Redis(redis) => redis.trim(stream, keep).await,
        }
    }

    /// How many ops the log holds in all.
    pub async fn log_len(&self) -> Result<u64, StoreError> {
        match self {
            Self::Sqlite(db) => Ok(db.log_len()?),
            Self::Redis(redis) => redis.log_len().await,
        }
    }

    /// Starts following `stream` after `head` (Redis: the node's reader
    /// then brings what other nodes commit to it). SQLite: nothing to do.
    pub fn follow(&self, stream: &str, head: u64) {
        if let Self::Redis(redis) = self {
            redis.follow(stream, head);
        }
    }
}

/// Redis, as the store of several relay nodes.
///
/// Per stream `s`, under the hash tag `{s}` (so one stream's keys live on
/// one shard):
/// - `gaesup:{s}:log`: a Redis Stream, one entry per op, with the id
///   `<seq>-0` and the fields `id` (the op id) and `op` (the op as JSON);
/// - `gaesup:{s}:ids`: op id → number, for deduplication (trimmed with the
///   log);
/// - `gaesup:{s}:state`: full key → canonical state (the snapshot);
/// - `gaesup:{s}:head` and `gaesup:{s}:first`: newest and oldest numbers;
/// - `gaesup:{s}:bytes`: the bytes of the log's ops (each entry's `op`
///   field), as a hash of `bytes`, and `from` and `through`, the numbers
///   they were counted over (kept by the commit and trim scripts; see
///   `log_bytes_lua!` for a count an older node left behind);
///
/// and `gaesup:streams`, the set of stream names; per tab `t`,
/// `gaesup:tab:t`, the subject that owns it (expiring
/// [`TAB_OWNER_TTL_MS`] after its last op was committed);
/// `gaesup:tabs-seeded`, set once the tabs of a store written before tabs
/// had owners were given [`LEGACY_OWNER`]. A commit is one Lua
/// script per stream: it checks the head and the op ids, appends, records
/// the ids, writes the states and moves the head, all or nothing.
pub struct RedisStore {
    commands: ConnectionManager,
    client: redis::Client,
    followed: Mutex<BTreeMap<String, u64>>,
    /// Woken when a stream is first followed.
    pub changed: Notify,
    commit: redis::Script,
    trim: redis::Script,
    release: redis::Script,
    /// This process's id in turns (random per start).
    node: u64,
    /// Fault injection: how long each claim of tabs waits first.
    claim_delay: Duration,
}

/// KEYS: head, log, ids, state, first, turn, bytes. ARGV: base, node, n,
/// then n times (seq, op id, op), then m, then m times (key, state).
///
/// Returns 1 when committed, -1 when an op id is already in the log, -2
/// while another node has its turn, and -(head + 3) when the head is not
/// `base`. A node that meets a moved head takes the turn (if nobody has
/// it): other nodes' commits wait until it committed, gave the turn up
/// (nothing left to commit) or the turn expired (250 ms), so a node cannot
/// lose every race to a busier one. All checks come before any write: a
/// refusal writes nothing.
///
/// The count of the log's bytes grows by these ops only if it counted
/// every op before them; a count left behind (by a node of an older
/// version, which does not keep it) is brought up to date by the next
/// trim or load.
const COMMIT_SCRIPT: &str = r"
local turn = redis.call('GET', KEYS[6])
if turn and turn ~= ARGV[2] then return -2 end
local head = tonumber(redis.call('GET', KEYS[1]) or '0')
if head ~= tonumber(ARGV[1]) then
  if not turn then redis.call('SET', KEYS[6], ARGV[2], 'PX', 250) end
  return -(head + 3)
end
local n = tonumber(ARGV[3])
for k = 0, n - 1 do
  if tonumber(ARGV[4 + 3 * k]) ~= head + k + 1 then
    return redis.error_reply('op numbers out of order')
  end
  if redis.call('HEXISTS', KEYS[3], ARGV[5 + 3 * k]) == 1 then return -1 end
end
for k = 0, n - 1 do
  local seq = ARGV[4 + 3 * k]
  redis.call('XADD', KEYS[2], seq .. '-0', 'id', ARGV[5 + 3 * k], 'op', ARGV[6 + 3 * k])
  redis.call('HSET', KEYS[3], ARGV[5 + 3 * k], seq)
end
local i = 4 + 3 * n
local m = tonumber(ARGV[i])
for k = 0, m - 1 do
  redis.call('HSET', KEYS[4], ARGV[i + 1 + 2 * k], ARGV[i + 2 + 2 * k])
end
local first = tonumber(redis.call('GET', KEYS[5]) or '1')
local added = 0
for k = 0, n - 1 do added = added + #ARGV[6 + 3 * k] end
local counted = redis.call('HMGET', KEYS[7], 'from', 'through')
if head == 0 then
  redis.call('HSET', KEYS[7], 'bytes', string.format('%d', added),
    'from', string.format('%d', first), 'through', string.format('%d', n))
elseif tonumber(counted[1]) == first and tonumber(counted[2]) == head then
  redis.call('HINCRBY', KEYS[7], 'bytes', string.format('%d', added))
  redis.call('HSET', KEYS[7], 'through', string.format('%d', head + n))
end
redis.call('SET', KEYS[1], string.format('%d', head + n))
if redis.call('EXISTS', KEYS[5]) == 0 then redis.call('SET', KEYS[5], '1') end
if turn then redis.call('DEL', KEYS[6]) end
return 1
";

/// The Lua function `log_bytes(log, counter, first, head)`: the bytes of
/// the ops of the log `log` (its oldest number `first`, its newest
/// `head`), from its `counter` ([`RedisStore`]'s `bytes` key).
///
/// The counter states the numbers it counted, `from` and `through`.
/// Nodes of an older version commit and trim without it: ops committed
/// past `through` are read and counted here (only those), and a log
/// trimmed to another `first` than `from` (the sizes of the ops gone are
/// not known) or a counter missing (a store older than it) is counted
/// again whole. Either way the counter is left right for what the log
/// holds.
///
/// The log is read 16 entries at a time: an op may be as large as a
/// frame, and a script holds what it reads in memory.
macro_rules! log_bytes_lua {
    () => {
        r"
local function log_bytes(log, counter, first, head)
  local c = redis.call('HMGET', counter, 'bytes', 'from', 'through')
  local bytes, from, through = tonumber(c[1]), tonumber(c[2]), tonumber(c[3])
  if not (bytes and from == first and through and through <= head) then
    bytes, through = 0, 0
  elseif through == head then
    return bytes
  end
  local after = through
  while after < head do
    local page = redis.call('XRANGE', log, string.format('%d-0', after + 1),
      string.format('%d-0', head), 'COUNT', 16)
    if #page == 0 then break end
    for _, entry in ipairs(page) do
      local fields = entry[2]
      for f = 1, #fields, 2 do
        if fields[f] == 'op' then bytes = bytes + #fields[f + 1] end
      end
    end
    after = tonumber(string.match(page[#page][1], '^%d+'))
  end
  redis.call('HSET', counter, 'bytes', string.format('%d', bytes),
    'from', string.format('%d', first), 'through', string.format('%d', head))
  return bytes
end
"
    };
}

/// KEYS: head, log, ids, first, bytes. ARGV: ops kept, bytes kept.
///
/// Walks the log from its oldest op as [`Walk`](crate::retention::Walk)
/// does, dropping each op (and its id) while the log holds more ops or
/// bytes than kept, never the newest; returns the oldest number kept and
/// the bytes the log holds. The log's bytes are brought up to date first
/// (see `log_bytes_lua!`), so a trim is right whatever older nodes did.
const TRIM_SCRIPT: &str = concat!(
    log_bytes_lua!(),
    r"
local head = tonumber(redis.call('GET', KEYS[1]) or '0')
local old = tonumber(redis.call('GET', KEYS[4]) or '1')
if head == 0 then return {old, 0} end
local bytes = log_bytes(KEYS[2], KEYS[5], old, head)
local keep, keep_bytes = tonumber(ARGV[1]), tonumber(ARGV[2])
local goal = math.max(1, head - keep + 1)
if old >= goal and bytes <= keep_bytes then return {old, bytes} end
local first = old
local cursor = string.format('%d-0', old)
local walking = true
while walking do
  local page = redis.call('XRANGE', KEYS[2], cursor, '+', 'COUNT', 16)
  if #page == 0 then break end
  for _, entry in ipairs(page) do
    local seq = tonumber(string.match(entry[1], '^%d+'))
    if seq >= head or (seq >= goal and bytes <= keep_bytes) then
      walking = false
      break
    end
    local fields = entry[2]
    for f = 1, #fields, 2 do
      if fields[f] == 'id' then redis.call('HDEL', KEYS[3], fields[f + 1])
      elseif fields[f] == 'op' then bytes = bytes - #fields[f + 1] end
    end
    first = math.max(first, seq + 1)
    cursor = string.format('%d-0', seq + 1)
  end
end
first = math.max(first, goal)
if first > old then
  redis.call('XTRIM', KEYS[2], 'MINID', string.format('%d-0', first))
  redis.call('SET', KEYS[4], string.format('%d', first))
  redis.call('HSET', KEYS[5], 'bytes', string.format('%d', bytes),
    'from', string.format('%d', first), 'through', string.format('%d', head))
end
return {first, bytes}
"
);

/// KEYS: head, log, first, bytes. The bytes of the log's ops (see
/// `log_bytes_lua!`); 0 for a stream never written (nothing is written
/// for it).
const BYTES_SCRIPT: &str = concat!(
    log_bytes_lua!(),
    r"
local head = redis.call('GET', KEYS[1])
if not head then return 0 end
local first = tonumber(redis.call('GET', KEYS[3]) or '1')
return log_bytes(KEYS[2], KEYS[4], first, tonumber(head))
"
);

/// KEYS: the tab's owner key. ARGV: the subject, the owner's time to live
/// in ms. Makes the subject the owner if the tab has none; returns the
/// owner it had (nil if none).
const CLAIM_SCRIPT: &str = r"
local held = redis.call('GET', KEYS[1])
if held then return held end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
";

/// KEYS: the tab's owner key. ARGV: the owner, its time to live in ms.
/// Renews the owner's time if the tab is still its (or nobody's: its time
/// ran out).
const RENEW_SCRIPT: &str = r"
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// KEYS: turn. ARGV: node. Deletes the turn if this node holds it.
const RELEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

const STREAMS: &str = "gaesup:streams";
const TABS_SEEDED: &str = "gaesup:tabs-seeded";

fn tab_key(tab: &str) -> String {
    format!("gaesup:tab:{tab}")
}

/// Gives every tab of the log [`LEGACY_OWNER`] (where it has no owner)
/// the first time a node of this version meets a store: its ids may have
/// been read by peers before tabs had owners. Once per store: marked
/// done after every stream's tabs (nodes starting together each seed, to
/// the same effect; one killed midway leaves it to the next).
async fn seed_legacy_tabs(commands: &mut ConnectionManager) -> Result<(), StoreError> {
    let done: bool = redis::cmd("EXISTS")
        .arg(TABS_SEEDED)
        .query_async(commands)
        .await?;
    if done {
        return Ok(());
    }
    let streams: Vec<String> = redis::cmd("SMEMBERS")
        .arg(STREAMS)
        .query_async(commands)
        .await?;
    for stream in streams {
        let ids: Vec<String> = redis::cmd("HKEYS")
            .arg(key(&stream, "ids"))
            .query_async(commands)
            .await?;
        let tabs: BTreeSet<&str> = ids
            .iter()
            .filter_map(|id| id.split_once(':').map(|(tab, _)| tab))
            .collect();
        let mut pipe = redis::pipe();
        for tab in tabs {
            pipe.cmd("SET")
                .arg(tab_key(tab))
                .arg(LEGACY_OWNER)
                .arg("NX")
                .arg("PX")
                .arg(TAB_OWNER_TTL_MS)
                .ignore();
        }
        let () = pipe.query_async(commands).await?;
    }
    let () = redis::cmd("SET")
        .arg(TABS_SEEDED)
        .arg("1")
        .query_async(commands)
        .await?;
    Ok(())
}

/// `replies`, if there are `expected` of them.
fn counted<T>(replies: Vec<T>, expected: usize) -> Result<Vec<T>, StoreError> {
    if replies.len() == expected {
        Ok(replies)
    } else {
        Err(StoreError::Corrupt(format!(
            "{} replies to {expected} commands",
            replies.len()
        )))
    }
}

/// A random id for this process.
fn process_id() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one((std::process::id(), crate::hub::now_ms()))
}

fn key(stream: &str, part: &str) -> String {
    format!("gaesup:{{{stream}}}:{part}")
}

/// The stream a log key belongs to.
fn stream_of_log(key: &str) -> Option<&str> {
    key.strip_prefix("gaesup:{")?.strip_suffix("}:log")
}

/// A log entry id `<seq>-0` and its fields, as one op.
fn entry(id: &str, fields: &[String]) -> Result<(u64, String), StoreError> {
    let seq = id
        .split_once('-')
        .and_then(|(seq, _)| seq.parse().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("log entry id {id:?}")))?;
    let body = fields
        .chunks(2)
        .find(|pair| pair.first().map(String::as_str) == Some("op"))
        .and_then(|pair| pair.get(1))
        .ok_or_else(|| StoreError::Corrupt(format!("log entry {id} has no op")))?;
    Ok((seq, body.clone()))
}

/// Timeouts of every connection to Redis: 2 s to connect, 10 s for an
/// answer (longer than the reader's one-second blocking read).
fn connection_config() -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(10)))
}

/// The Redis persistence settings, as a warning when an ack could be lost
/// by a Redis crash or restart (`None`: every ack is fsynced).
pub fn persistence_warning(appendonly: &str, appendfsync: &str) -> Option<String> {
    if appendonly != "yes" {
        return Some(format!(
            "Redis runs with appendonly {appendonly}: a Redis restart loses every op \
             acknowledged since its last snapshot. Set `appendonly yes` and \
             `appendfsync always` (or `everysec`, losing up to a second of acks on a crash)."
        ));
    }
    match appendfsync {
        "always" => None,
        "everysec" => Some(String::from(
            "Redis runs with appendfsync everysec: a crash of the Redis machine may lose up \
             to a second of acknowledged ops. Set `appendfsync always` for acks that mean \
             durable.",
        )),
        other => Some(format!(
            "Redis runs with appendfsync {other}: a crash of the Redis machine may lose \
             acknowledged ops (the OS decides when they reach the disk). Set \
             `appendfsync always`."
        )),
    }
}

impl RedisStore {
    /// Connects to `url` (`redis://host:port/db`) and checks the
    /// persistence settings (a warning in the log, not a refusal: a
    /// managed Redis may not let the relay read them).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        // TCP_NODELAY: a command written while the previous one awaits its
        // TCP ACK would otherwise wait for that ACK (up to 40 ms).
        let info = redis::IntoConnectionInfo::into_connection_info(url)?
            .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        let client = redis::Client::open(info)?;
        let config = connection_config().set_number_of_retries(2);
        let mut commands = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(StoreError::Redis)?;
        let settings: Result<Vec<String>, _> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("append*")
            .arg("maxmemory-policy")
            .query_async(&mut commands)
            .await;
        match settings {
            Ok(settings) => {
                let get = |name: &str| {
                    settings
                        .chunks(2)
                        .find(|pair| pair.first().map(String::as_str) == Some(name))
                        .and_then(|pair| pair.get(1))
                        .cloned()
                        .unwrap_or_default()
                };
                match persistence_warning(&get("appendonly"), &get("appendfsync")) {
                    Some(warning) => tracing::warn!("{warning}"),
                    None => tracing::info!("Redis persistence: appendonly yes, appendfsync always"),
                }
                let policy = get("maxmemory-policy");
                if policy != "noeviction" {
                    tracing::warn!(
                        "Redis runs with maxmemory-policy {policy}: when full it may evict the \
                         relay's logs, op ids or heads (ops lost or applied twice) or tab owners \
                         (a peer may then take a device's tab). Set `maxmemory-policy noeviction`."
                    );
                }
            }
            Err(err) => tracing::warn!(
                error = %err,
                "could not read Redis's persistence settings (CONFIG GET): make sure it runs \
                 with appendonly yes and appendfsync always, or acks may be lost"
            ),
        }
        seed_legacy_tabs(&mut commands).await?;
        Ok(Self {
            commands,
            client,
            followed: Mutex::new(BTreeMap::new()),
            changed: Notify::new(),
            commit: redis::Script::new(COMMIT_SCRIPT),
            trim: redis::Script::new(TRIM_SCRIPT),
            release: redis::Script::new(RELEASE_SCRIPT),
            node: process_id(),
            claim_delay: Duration::ZERO,
        })
    }

    /// Fault injection for tests: each claim of tabs waits `delay` first,
    /// so that another node's claim of the same tab comes in between.
    #[must_use]
    pub fn with_claim_delay(mut self, delay: Duration) -> Self {
        self.claim_delay = delay;
        self
    }

    fn connection(&self) -> ConnectionManager {
        self.commands.clone()
    }

    async fn claim_tabs(&self, claims: &[(String, String)]) -> Result<Vec<bool>, StoreError> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        if !self.claim_delay.is_zero() {
            tokio::time::sleep(self.claim_delay).await;
        }
        // The owner each tab held, if any: the same subject pushing one new
        // tab through two nodes at once has it either way. (A script, not
        // SET NX GET, which Redis takes only from 7.0.)
        let held: Vec<Option<String>> = self.each_tab(CLAIM_SCRIPT, claims).await?;
        Ok(held
            .into_iter()
            .zip(claims)
            .map(|(held, (_, owner))| held.is_none_or(|held| held == *owner))
            .collect())
    }

    async fn renew_tabs(&self, owned: &[(String, String)]) -> Result<Vec<bool>, StoreError> {
        if owned.is_empty() {
            return Ok(Vec::new());
        }
        let renewed: Vec<i64> = self.each_tab(RENEW_SCRIPT, owned).await?;
        Ok(renewed.into_iter().map(|done| done == 1).collect())
    }

    /// Runs `script` (one of the tab scripts) on each (tab, subject), with
    /// the owner's time to live, in one round trip; one reply each.
    async fn each_tab<T: redis::FromRedisValue>(
        &self,
        script: &str,
        tabs: &[(String, String)],
    ) -> Result<Vec<T>, StoreError> {
        // EVAL, not EVALSHA: a pipeline does not load a script Redis lost
        // (restarted), and Redis caches what it compiled.
        let mut pipe = redis::pipe();
        for (tab, subject) in tabs {
            pipe.cmd("EVAL")
                .arg(script)
                .arg(1)
                .arg(tab_key(tab))
                .arg(subject)
                .arg(TAB_OWNER_TTL_MS);
        }
        let replies: Vec<T> = pipe.query_async(&mut self.connection()).await?;
        counted(replies, tabs.len())
    }

    async fn seqs_and_owners(
        &self,
        lookups: &[(String, Vec<String>)],
        tabs: &[String],
    ) -> Result<(Vec<Vec<Option<u64>>>, Vec<Option<String>>), StoreError> {
        let mut pipe = redis::pipe();
        // HMGET needs a field: a stream with no id to look up is not asked.
        let asking = lookups.iter().filter(|(_, ids)| !ids.is_empty());
        for (stream, ids) in asking.clone() {
            pipe.cmd("HMGET").arg(key(stream, "ids")).arg(ids);
        }
        for tab in tabs {
            pipe.cmd("GET").arg(tab_key(tab));
        }
        let asked_seqs = asking.count();
        let replies: Vec<redis::Value> = if asked_seqs + tabs.len() == 0 {
            Vec::new()
        } else {
            pipe.query_async(&mut self.connection()).await?
        };
        let mut replies = counted(replies, asked_seqs + tabs.len())?;
        let owners = replies.split_off(asked_seqs);
        let parse = |err: redis::ParsingError| StoreError::Corrupt(err.to_string());
        let mut found = replies
            .into_iter()
            .map(redis::from_redis_value::<Vec<Option<u64>>>);
        let seqs = lookups
            .iter()
            .map(|(_, ids)| {
                if ids.is_empty() {
                    Ok(Vec::new())
                } else {
                    found.next().unwrap_or(Ok(Vec::new()))
                }
            })
            .collect::<Result<_, _>>()
            .map_err(parse)?;
        let owners = owners
            .into_iter()
            .map(redis::from_redis_value)
            .collect::<Result<_, _>>()
            .map_err(parse)?;
        Ok((seqs, owners))
    }

    async fn stream_names(&self) -> Result<Vec<String>, StoreError> {
        let names: Vec<String> = redis::cmd("SMEMBERS")
            .arg(STREAMS)
            .query_async(&mut self.connection())
            .await?;
        Ok(names)
    }

    async fn load(&self, stream: &str) -> Result<Option<Loaded>, StoreError> {
        type Reply = (Option<u64>, Option<u64>, Vec<(String, String)>, u64);
        // EVAL, not EVALSHA, as in `each_tab`: the script runs inside the
        // transaction, with the head and first it reads.
        let (head, first, states, bytes): Reply = redis::pipe()
            .atomic()
            .get(key(stream, "head"))
            .get(key(stream, "first"))
            .hgetall(key(stream, "state"))
            .cmd("EVAL")
            .arg(BYTES_SCRIPT)
            .arg(4)
            .arg(key(stream, "head"))
            .arg(key(stream, "log"))
            .arg(key(stream, "first"))
            .arg(key(stream, "bytes"))
            .query_async(&mut self.connection())
            .await?;
        Ok(head.map(|head| Loaded {
            head,
            first: first.unwrap_or(1),
            bytes,
            states,
        }))
    }

    async fn seqs_of(&self, stream: &str, ids: &[String]) -> Result<Vec<Option<u64>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let seqs: Vec<Option<u64>> = redis::cmd("HMGET")
            .arg(key(stream, "ids"))
            .arg(ids)
            .query_async(&mut self.connection())
            .await?;
        Ok(seqs)
    }

    async fn ops_after(
        &self,
        stream: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg(key(stream, "log"))
            .arg(format!("{}-0", after.saturating_add(1)))
            .arg("+")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut self.connection())
            .await?;
        rows.iter().map(|(id, fields)| entry(id, fields)).collect()
    }

    async fn ops_at(&self, stream: &str, seqs: &[u64]) -> Result<Vec<Option<String>>, StoreError> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let log = key(stream, "log");
        let mut pipe = redis::pipe();
        for seq in seqs {
            let id = format!("{seq}-0");
            pipe.cmd("XRANGE").arg(&log).arg(&id).arg(&id);
        }
        let answers: Vec<Vec<(String, Vec<String>)>> =
            pipe.query_async(&mut self.connection()).await?;
        seqs.iter()
            .zip(answers)
            .map(|(seq, rows)| match rows.first() {
                None => Ok(None),
                Some((id, fields)) => match entry(id, fields)? {
                    (at, body) if at == *seq => Ok(Some(body)),
                    (at, _) => Err(StoreError::Corrupt(format!(
                        "asked for log entry {seq}, got {at}"
                    ))),
                },
            })
            .collect()
    }

    async fn commit(&self, part: StreamCommit) -> Result<(), CommitError> {
        let stream = &part.stream;
        let mut connection = self.connection();
        if part.base == 0 {
            let _: () = redis::cmd("SADD")
                .arg(STREAMS)
                .arg(stream)
                .query_async(&mut connection)
                .await
                .map_err(StoreError::from)?;
        }
        let mut invocation = self.commit.key(key(stream, "head"));
        invocation
            .key(key(stream, "log"))
            .key(key(stream, "ids"))
            .key(key(stream, "state"))
            .key(key(stream, "first"))
            .key(key(stream, "turn"))
            .key(key(stream, "bytes"))
            .arg(part.base)
            .arg(self.node)
            .arg(part.ops.len());
        for row in &part.ops {
            invocation.arg(row.seq).arg(&row.op_id).arg(&row.body);
        }
        invocation.arg(part.states.len());
        for (full_key, stored) in &part.states {
            invocation.arg(full_key).arg(stored);
        }
        // While another node has its turn the same commit is tried again,
        // a millisecond apart; the turn ends when that node commits or gives
        // it up, or after 250 ms if it died.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        loop {
            let done: i64 = invocation
                .invoke_async(&mut connection)
                .await
                .map_err(StoreError::from)?;
            match done {
                1 => return Ok(()),
                -2 if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                _ => return Err(CommitError::Conflict),
            }
        }
    }

    async fn head(&self, stream: &str) -> Result<u64, StoreError> {
        let head: Option<u64> = redis::cmd("GET")
            .arg(key(stream, "head"))
            .query_async(&mut self.connection())
            .await?;
        Ok(head.unwrap_or(0))
    }

    async fn release_turn(&self, stream: &str) {
        let released: Result<i64, _> = self
            .release
            .key(key(stream, "turn"))
            .arg(self.node)
            .invoke_async(&mut self.connection())
            .await;
        if let Err(err) = released {
            tracing::warn!(stream, error = %err, "giving up the turn failed (it expires)");
        }
    }

    async fn trim(&self, stream: &str, keep: Retention) -> Result<Trimmed, StoreError> {
        let (first, bytes): (u64, u64) = self
            .trim
            .key(key(stream, "head"))
            .key(key(stream, "log"))
            .key(key(stream, "ids"))
            .key(key(stream, "first"))
            .key(key(stream, "bytes"))
            .arg(keep.ops)
            .arg(keep.bytes)
            .invoke_async(&mut self.connection())
            .await?;
        Ok(Trimmed { first, bytes })
    }

    async fn log_len(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        for stream in self.stream_names().await? {
            let len: u64 = redis::cmd("XLEN")
                .arg(key(&stream, "log"))
                .query_async(&mut self.connection())
                .await?;
            total += len;
        }
        Ok(total)
    }

    fn follow(&self, stream: &str, head: u64) {
        let mut followed = self
            .followed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !followed.contains_key(stream) {
            followed.insert(stream.to_owned(), head);
            self.changed.notify_one();
        }
    }

    /// Streams first followed since `known`, with the head to read after.
    fn newly_followed(&self, known: &BTreeSet<String>) -> Vec<(String, u64)> {
        let followed = self
            .followed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        followed
            .iter()
            .filter(|(name, _)| !known.contains(*name))
            .map(|(name, head)| (name.clone(), *head))
            .collect()
    }

    /// Reads what any node appends to the followed streams, in order, and
    /// hands it to `deliver` (the hub), until `deliver` says stop. One
    /// blocking `XREAD` on a connection of its own; a lost connection is
    /// retried, resuming from the last entry delivered.
    pub async fn read_forever<F, Fut>(&self, mut deliver: F)
    where
        F: FnMut(String, Vec<(u64, String)>) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let config = connection_config();
        let mut connection = None;
        let mut cursors: BTreeMap<String, u64> = BTreeMap::new();
        loop {
            let known: BTreeSet<String> = cursors.keys().cloned().collect();
            cursors.extend(self.newly_followed(&known));
            if cursors.is_empty() {
                self.changed.notified().await;
                continue;
            }
            let reader = match &mut connection {
                Some(reader) => reader,
                None => match self
                    .client
                    .get_connection_manager_with_config(config.clone())
                    .await
                {
                    Ok(reader) => connection.insert(reader),
                    Err(err) => {
                        tracing::warn!(error = %err, "the stream reader cannot reach Redis");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                },
            };
            let mut read = redis::cmd("XREAD");
            read.arg("COUNT")
                .arg(1024)
                .arg("BLOCK")
                .arg(1000)
                .arg("STREAMS");
            for stream in cursors.keys() {
                read.arg(key(stream, "log"));
            }
            for head in cursors.values() {
                read.arg(format!("{head}-0"));
            }
            type Reply = Option<Vec<(String, Vec<(String, Vec<String>)>)>>;
            let reply: Reply = match read.query_async(reader).await {
                Ok(reply) => reply,
                Err(err) => {
                    tracing::warn!(error = %err, "reading the streams from Redis failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            for (log, entries) in reply.unwrap_or_default() {
                let Some(stream) = stream_of_log(&log) else {
                    continue;
                };
                let mut ops = Vec::with_capacity(entries.len());
                for (id, fields) in &entries {
                    match entry(id, fields) {
                        Ok(op) => ops.push(op),
                        Err(err) => tracing::error!(error = %err, "a log entry does not parse"),
                    }
                }
                let Some(last) = ops.last().map(|(seq, _)| *seq) else {
                    continue;
                };
                cursors.insert(stream.to_owned(), last);
                if !deliver(stream.to_owned(), ops).await {
                    return;
                }
            }
        }
    }
}
