//! The embedded store: SQLite in WAL mode, `synchronous = FULL`.
//!
//! Why SQLite: the most deployed embedded database there is, one file,
//! transactions that survive a killed process (the crash test kills the
//! relay mid-write over and over), and nothing to install (the `bundled`
//! build compiles it in). WAL lets catch-up reads run beside commits.
//!
//! One transaction per batch holds the ops appended to the log, every
//! key's new canonical state and every stream's new head, so after a crash
//! the log, the states and the sequences always agree. The relay
//! acknowledges an op only after its transaction committed (`FULL`: the WAL
//! is synced to disk at every commit).
//!
//! Writes go through one thread (SQLite serializes writers anyway);
//! reads use their own connection.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, mpsc};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use crate::retention::{Retention, Trimmed, Walk};
use crate::store::{LEGACY_OWNER, TAB_OWNER_TTL_MS};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite said no.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The writer thread is gone (the relay is shutting down).
    #[error("the store is closed")]
    Closed,
    /// A commit would append an op of a tab another token subject owns
    /// (the hub checks first; nothing was written).
    #[error("tab {0} belongs to another token subject")]
    TabTaken(String),
}

/// One op appended to a stream's log.
#[derive(Debug, Clone)]
pub struct Row {
    /// The stream (`apartment:<id>` or `global`).
    pub stream: String,
    /// Its number.
    pub seq: u64,
    /// The op id (`tab:seq`), unique per stream.
    pub op_id: String,
    /// The op as JSON.
    pub body: String,
    /// The tab that issued it (the op id's first half).
    pub tab: String,
    /// The tab's owner, to record with the op (its last op's time moves):
    /// the subject of the token that pushed it (see
    /// [`Store::claim_tabs`](crate::store::Store::claim_tabs)), or
    /// [`LEGACY_OWNER`] for a tab from before owners. `None` when the hub
    /// saw the owner recorded less than an hour ago (a tab's owner lasts 30
    /// days from its last recorded op).
    pub owner: Option<String>,
}

/// What one batch makes durable.
#[derive(Debug, Default)]
pub struct Commit {
    /// Ops appended.
    pub ops: Vec<Row>,
    /// New canonical states: (stream, full key, stored JSON).
    pub states: Vec<(String, String, String)>,
    /// New heads: (stream, head).
    pub heads: Vec<(String, u64)>,
}

/// A stream as stored: its newest number and the oldest it still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamRow {
    /// Newest number (0: empty).
    pub head: u64,
    /// Oldest number still in the log; everything before it was trimmed
    /// (a device behind it gets a snapshot).
    pub first: u64,
}

enum Job {
    Commit(Commit, oneshot::Sender<Result<(), DbError>>),
    Trim(String, Retention, oneshot::Sender<Result<Trimmed, DbError>>),
}

/// The store's handle.
pub struct Db {
    jobs: mpsc::Sender<Job>,
    read: Mutex<Connection>,
}

fn open_connection(path: &Path) -> Result<Connection, DbError> {
    let connection = Connection::open(path)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(connection)
}

impl Db {
    /// Opens (creating) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, DbError> {
        std::fs::create_dir_all(dir).map_err(|err| {
            DbError::Sqlite(rusqlite::Error::InvalidPath(
                format!("{}: {err}", dir.display()).into(),
            ))
        })?;
        let path = dir.join("relay.sqlite3");
        let mut write = open_connection(&path)?;
        // One transaction: a relay killed midway creates neither the owners
        // nor their seeding, and the next start does both.
        let tx = write.transaction()?;
        let owners_existed = tx
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tab_owners'",
                [],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS ops (
                 stream TEXT NOT NULL, seq INTEGER NOT NULL, op_id TEXT NOT NULL, body TEXT NOT NULL,
                 PRIMARY KEY (stream, seq)) WITHOUT ROWID;
             CREATE UNIQUE INDEX IF NOT EXISTS ops_by_id ON ops (stream, op_id);
             CREATE TABLE IF NOT EXISTS states (
                 stream TEXT NOT NULL, key TEXT NOT NULL, stored TEXT NOT NULL,
                 PRIMARY KEY (stream, key)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS streams (
                 stream TEXT PRIMARY KEY, head INTEGER NOT NULL, first INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS tab_owners (
                 tab TEXT PRIMARY KEY, owner TEXT NOT NULL, last_ms INTEGER NOT NULL) WITHOUT ROWID;
             CREATE INDEX IF NOT EXISTS tab_owners_by_last ON tab_owners (last_ms);",
        )?;
        if !owners_existed {
            // A store written before tabs had owners: the tabs its log holds
            // (whose ids peers may have read) are nobody's to take, as before.
            tx.execute(
                "INSERT OR IGNORE INTO tab_owners (tab, owner, last_ms)
                 SELECT DISTINCT substr(op_id, 1, instr(op_id, ':') - 1), ?1, ?2 FROM ops
                 WHERE instr(op_id, ':') > 1",
                params![LEGACY_OWNER, now_ms()],
            )?;
        }
        tx.commit()?;
        let read = open_connection(&path)?;
        let (jobs, inbox) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("relay-db-writer".into())
            .spawn(move || writer(write, inbox))
            .map_err(|err| DbError::Sqlite(rusqlite::Error::InvalidPath(err.to_string().into())))?;
        Ok(Self {
            jobs,
            read: Mutex::new(read),
        })
    }

    /// Makes `commit` durable, in one transaction.
    pub async fn commit(&self, commit: Commit) -> Result<(), DbError> {
        let (done, wait) = oneshot::channel();
        self.jobs
            .send(Job::Commit(commit, done))
            .map_err(|_| DbError::Closed)?;
        wait.await.map_err(|_| DbError::Closed)?
    }

    /// Drops the oldest ops of `stream` while its log holds more than
    /// `keep` allows (see [`Walk`]); returns what the log holds now.
    pub async fn trim(&self, stream: &str, keep: Retention) -> Result<Trimmed, DbError> {
        let (done, wait) = oneshot::channel();
        self.jobs
            .send(Job::Trim(stream.to_owned(), keep, done))
            .map_err(|_| DbError::Closed)?;
        wait.await.map_err(|_| DbError::Closed)?
    }

    fn reader(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent.
        self.read
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every stream with its head and oldest kept number.
    pub fn streams(&self) -> Result<Vec<(String, StreamRow)>, DbError> {
        let read = self.reader();
        let mut query = read.prepare("SELECT stream, head, first FROM streams")?;
        let rows = query.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                StreamRow {
                    head: row.get::<_, i64>(1)?.try_into().unwrap_or(0),
                    first: row.get::<_, i64>(2)?.try_into().unwrap_or(0),
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One stream's head and oldest kept number, if it was ever written.
    pub fn stream(&self, stream: &str) -> Result<Option<StreamRow>, DbError> {
        let read = self.reader();
        let mut query = read.prepare_cached("SELECT head, first FROM streams WHERE stream = ?1")?;
        Ok(query
            .query_row([stream], |row| {
                Ok(StreamRow {
                    head: row.get::<_, i64>(0)?.try_into().unwrap_or(0),
                    first: row.get::<_, i64>(1)?.try_into().unwrap_or(0),
                })
            })
            .optional()?)
    }

    /// The bytes of the ops the log of `stream` holds (their stored text).
    pub fn log_bytes(&self, stream: &str) -> Result<u64, DbError> {
        let read = self.reader();
        let mut query = read.prepare_cached(LOG_BYTES)?;
        let bytes: i64 = query.query_row([stream], |row| row.get(0))?;
        Ok(bytes.try_into().unwrap_or(0))
    }

    /// Every stored state of `stream`: (full key, stored JSON).
    pub fn states(&self, stream: &str) -> Result<Vec<(String, String)>, DbError> {
        let read = self.reader();
        let mut query = read.prepare("SELECT key, stored FROM states WHERE stream = ?1")?;
        let rows = query.query_map([stream], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The ops of `stream` after `after`, at most `limit`, in order.
    pub fn ops_after(
        &self,
        stream: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, DbError> {
        let read = self.reader();
        let mut query = read.prepare_cached(
            "SELECT seq, body FROM ops WHERE stream = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = query.query_map(params![stream, after, limit], |row| {
            Ok((row.get::<_, i64>(0)?.try_into().unwrap_or(0), row.get(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The op of `stream` at `seq`, if the log holds it.
    pub fn op_at(&self, stream: &str, seq: u64) -> Result<Option<String>, DbError> {
        let read = self.reader();
        let mut query =
            read.prepare_cached("SELECT body FROM ops WHERE stream = ?1 AND seq = ?2")?;
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        Ok(query
            .query_row(params![stream, seq], |row| row.get(0))
            .optional()?)
    }

    /// The numbers `ids` got in `stream`, each where it is in the log.
    pub fn seqs_of(&self, stream: &str, ids: &[String]) -> Result<Vec<Option<u64>>, DbError> {
        ids.iter().map(|id| self.seq_of(stream, id)).collect()
    }

    /// The number `op_id` got in `stream`, if it is in the log.
    pub fn seq_of(&self, stream: &str, op_id: &str) -> Result<Option<u64>, DbError> {
        let read = self.reader();
        let mut query =
            read.prepare_cached("SELECT seq FROM ops WHERE stream = ?1 AND op_id = ?2")?;
        let seq: Option<i64> = query
            .query_row([stream, op_id], |row| row.get(0))
            .optional()?;
        Ok(seq.map(|s| s.try_into().unwrap_or(0)))
    }

    /// The subject of the token that owns `tab`: the one whose op of it
    /// was committed first, unless the tab has had no op for
    /// [`TAB_OWNER_TTL_MS`].
    pub fn tab_owner(&self, tab: &str) -> Result<Option<String>, DbError> {
        let read = self.reader();
        let mut query =
            read.prepare_cached("SELECT owner FROM tab_owners WHERE tab = ?1 AND last_ms >= ?2")?;
        Ok(query
            .query_row(params![tab, owners_expired_before()], |row| row.get(0))
            .optional()?)
    }

    /// How many ops the log holds in all.
    pub fn log_len(&self) -> Result<u64, DbError> {
        let read = self.reader();
        let count: i64 = read.query_row("SELECT COUNT(*) FROM ops", [], |row| row.get(0))?;
        Ok(count.try_into().unwrap_or(0))
    }
}

fn writer(mut connection: Connection, inbox: mpsc::Receiver<Job>) {
    while let Ok(job) = inbox.recv() {
        match job {
            Job::Commit(commit, done) => {
                let _ = done.send(apply(&mut connection, &commit));
            }
            Job::Trim(stream, keep, done) => {
                let _ = done.send(trim(&mut connection, &stream, keep));
            }
        }
    }
}

/// Now, in milliseconds since the epoch, as SQLite stores it.
fn now_ms() -> i64 {
    i64::try_from(crate::hub::now_ms()).unwrap_or(i64::MAX)
}

/// Owners whose tab's last op is older than this have expired.
fn owners_expired_before() -> i64 {
    now_ms().saturating_sub(i64::try_from(TAB_OWNER_TTL_MS).unwrap_or(i64::MAX))
}

fn apply(connection: &mut Connection, commit: &Commit) -> Result<(), DbError> {
    let tx = connection.transaction()?;
    {
        let mut insert = tx
            .prepare_cached("INSERT INTO ops (stream, seq, op_id, body) VALUES (?1, ?2, ?3, ?4)")?;
        // Each tab once: owned by its pusher if nobody owns it (or its
        // owner expired), its last op moved if the pusher owns it; a tab
        // from before owners stays nobody's, and its time is not moved (it
        // runs out 30 days after the upgrade).
        let mut tabs: BTreeMap<&str, &str> = BTreeMap::new();
        for row in &commit.ops {
            insert.execute(params![
                row.stream,
                i64::try_from(row.seq).unwrap_or(i64::MAX),
                row.op_id,
                row.body
            ])?;
            let Some(pusher) = &row.owner else { continue };
            if *tabs.entry(&row.tab).or_insert(pusher) != pusher {
                return Err(DbError::TabTaken(row.tab.clone()));
            }
        }
        let mut owner = tx.prepare_cached(
            "INSERT INTO tab_owners (tab, owner, last_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (tab) DO UPDATE SET
                 owner = CASE WHEN last_ms < ?4 THEN excluded.owner ELSE owner END,
                 last_ms = CASE WHEN last_ms >= ?4 AND owner = ?5 THEN last_ms
                                ELSE MAX(last_ms, excluded.last_ms) END
             WHERE owner = excluded.owner OR owner = ?5 OR last_ms < ?4",
        )?;
        let (now, expired) = (now_ms(), owners_expired_before());
        for (tab, pusher) in tabs {
            if owner.execute(params![tab, pusher, now, expired, LEGACY_OWNER])? == 0 {
                // Dropped with the transaction: nothing is written. The hub
                // read the owner just before and is the only writer, so this
                // is a check of the hub, reached by no honest push (but by a
                // wall clock stepping back across an owner's expiry, which
                // fails the whole commit: its devices resend).
                return Err(DbError::TabTaken(tab.to_owned()));
            }
        }
        let mut state = tx.prepare_cached(
            "INSERT INTO states (stream, key, stored) VALUES (?1, ?2, ?3)
             ON CONFLICT (stream, key) DO UPDATE SET stored = excluded.stored",
        )?;
        for (stream, key, stored) in &commit.states {
            state.execute(params![stream, key, stored])?;
        }
        let mut head = tx.prepare_cached(
            "INSERT INTO streams (stream, head, first) VALUES (?1, ?2, 1)
             ON CONFLICT (stream) DO UPDATE SET head = excluded.head",
        )?;
        for (stream, seq) in &commit.heads {
            head.execute(params![stream, i64::try_from(*seq).unwrap_or(i64::MAX)])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// The bytes of one stream's ops: `octet_length`, the bytes of each text
/// as stored (UTF-8), as Rust and Lua count them (`length` would count
/// characters).
const LOG_BYTES: &str = "SELECT COALESCE(SUM(octet_length(body)), 0) FROM ops WHERE stream = ?1";

fn trim(connection: &mut Connection, stream: &str, keep: Retention) -> Result<Trimmed, DbError> {
    let tx = connection.transaction()?;
    let (head, first): (i64, i64) = tx
        .query_row(
            "SELECT head, first FROM streams WHERE stream = ?1",
            [stream],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?
        .unwrap_or((0, 1));
    let bytes: i64 = tx.query_row(LOG_BYTES, [stream], |row| row.get(0))?;
    let mut walk = Walk::new(
        keep,
        head.try_into().unwrap_or(0),
        first.try_into().unwrap_or(1),
        bytes.try_into().unwrap_or(0),
    );
    {
        let mut oldest =
            tx.prepare("SELECT seq, octet_length(body) FROM ops WHERE stream = ?1 ORDER BY seq")?;
        let mut rows = oldest.query([stream])?;
        while let Some(row) = rows.next()? {
            let (seq, size): (i64, i64) = (row.get(0)?, row.get(1)?);
            if !walk.drops(seq.try_into().unwrap_or(0), size.try_into().unwrap_or(0)) {
                break;
            }
        }
    }
    let trimmed = walk.end();
    let first = i64::try_from(trimmed.first).unwrap_or(i64::MAX);
    tx.execute(
        "DELETE FROM ops WHERE stream = ?1 AND seq < ?2",
        params![stream, first],
    )?;
    tx.execute(
        "UPDATE streams SET first = MAX(first, ?2) WHERE stream = ?1",
        params![stream, first],
    )?;
    // Owners go by time, not by the log: a peer that floods a stream until
    // a tab's ops are trimmed must not free the tab.
    tx.execute(
        "DELETE FROM tab_owners WHERE last_ms < ?1",
        [owners_expired_before()],
    )?;
    tx.commit()?;
    Ok(trimmed)
}
