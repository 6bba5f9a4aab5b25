//! The store's reads, on each store the relay runs on: the embedded
//! SQLite one and a real `redis-server` (started here, on a port of its
//! own).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use gaesup_relay::db::{Db, Row};
use gaesup_relay::retention::{Retention, Trimmed};
use gaesup_relay::store::{LEGACY_OWNER, RedisStore, Store, StreamCommit, TAB_OWNER_TTL_MS};
use support::RedisServer;

const STREAM: &str = "apartment:main";

fn body(seq: u64) -> String {
    format!(r#"{{"n":{seq}}}"#)
}

/// At most `ops` ops kept, bytes without bound.
fn count(ops: u64) -> Retention {
    Retention {
        ops,
        bytes: u64::MAX,
    }
}

/// At most `bytes` bytes kept, ops without bound.
fn bytes(bytes: u64) -> Retention {
    Retention {
        ops: u64::MAX,
        bytes,
    }
}

/// The op `seq` of tab `t`, `size` bytes long.
fn sized(seq: u64, size: usize) -> Row {
    Row {
        body: format!("{seq:>size$}"),
        ..row(STREAM, seq, "t", "me")
    }
}

/// Where the log of [`STREAM`] starts as loaded, and its bytes.
async fn loaded(store: &Store) -> Trimmed {
    let loaded = store.load(STREAM).await.unwrap().unwrap();
    Trimmed {
        first: loaded.first,
        bytes: loaded.bytes,
    }
}

/// The op `seq` of `stream`, issued by `tab` and pushed by `owner`.
fn row(stream: &str, seq: u64, tab: &str, owner: &str) -> Row {
    Row {
        stream: stream.to_owned(),
        seq,
        op_id: format!("{tab}:{seq}"),
        body: body(seq),
        tab: tab.to_owned(),
        owner: Some(owner.to_owned()),
    }
}

/// Commits `ops` as the hub does: the tabs nobody owns are claimed for
/// their first pusher first (false, and nothing committed, if one of
/// them is another's by then), then the owners of the others get their
/// full time.
async fn commit(store: &Store, stream: &str, base: u64, ops: Vec<Row>) -> bool {
    let mut owned: Vec<(String, String)> = ops
        .iter()
        .filter_map(|row| Some((row.tab.clone(), row.owner.clone()?)))
        .collect();
    owned.sort();
    owned.dedup_by(|a, b| a.0 == b.0);
    let tabs: Vec<String> = owned.iter().map(|(tab, _)| tab.clone()).collect();
    let current = store.tab_owners(&tabs).await.unwrap();
    let (new, known): (Vec<_>, Vec<_>) = owned
        .into_iter()
        .zip(current)
        .partition(|(_, current)| current.is_none());
    let new: Vec<(String, String)> = new.into_iter().map(|(owned, _)| owned).collect();
    if !store
        .claim_tabs(&new)
        .await
        .unwrap()
        .iter()
        .all(|done| *done)
    {
        return false;
    }
    let results = store
        .commit(vec![StreamCommit {
            stream: stream.to_owned(),
            base,
            ops,
            states: Vec::new(),
        }])
        .await;
    assert_eq!(results.len(), 1);
    let committed = results.into_iter().all(|result| result.is_ok());
    if committed {
        let renew: Vec<(String, String)> = known
            .into_iter()
            .map(|(owned, _)| owned)
            .filter(|(_, owner)| owner != LEGACY_OWNER)
            .collect();
        let renewed = store.renew_tabs(&renew).await.unwrap();
        assert!(renewed.iter().all(|done| *done), "{renew:?}: {renewed:?}");
    }
    committed
}

/// Ten ops in the log, trimmed to the newest four (7 to 10): `ops_at`
/// answers each number asked, in the order asked, with the op the log
/// holds there, and `None` for a number trimmed, not yet written or of a
/// stream never written, whatever the numbers around it.
async fn ops_at_answers_each_number_in_the_order_asked(store: Store) {
    let rows = (1..=10).map(|seq| row(STREAM, seq, "t", "me")).collect();
    assert!(commit(&store, STREAM, 0, rows).await);
    assert_eq!(store.trim(STREAM, count(4)).await.unwrap().first, 7);

    let asked = [9, 2, 12, 7, 10, 9, 6, 1];
    let expected: Vec<Option<String>> = asked
        .iter()
        .map(|&seq| (7..=10).contains(&seq).then(|| body(seq)))
        .collect();
    assert_eq!(store.ops_at(STREAM, &asked).await.unwrap(), expected);
    assert_eq!(store.ops_at(STREAM, &[]).await.unwrap(), Vec::new());
    assert_eq!(
        store.ops_at("global", &[1, 7]).await.unwrap(),
        vec![None, None]
    );
}

#[tokio::test]
async fn sqlite_ops_at_answers_each_number_in_the_order_asked() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Sqlite(Db::open(dir.path()).unwrap());
    ops_at_answers_each_number_in_the_order_asked(store).await;
}

#[tokio::test]
async fn redis_ops_at_answers_each_number_in_the_order_asked() {
    let redis = RedisServer::start();
    let store = Store::Redis(Box::new(RedisStore::connect(&redis.url()).await.unwrap()));
    ops_at_answers_each_number_in_the_order_asked(store).await;
}

/// The log's bytes are each op's stored text: counted as ops are
/// committed, kept by the store (a store loaded again knows them), and
/// bounded as the ops are: a trim drops the oldest ops (and their ids)
/// while the log holds more bytes or more ops than kept, never the
/// newest.
async fn the_log_is_trimmed_by_its_bytes_and_they_are_stored(store: Store) {
    let sizes = [100, 300, 200, 50, 400, 120, 80, 500, 60, 90];
    let rows = (1..)
        .zip(sizes)
        .map(|(seq, size)| sized(seq, size))
        .collect();
    assert!(commit(&store, STREAM, 0, rows).await);
    let all = Trimmed {
        first: 1,
        bytes: 1900,
    };
    assert_eq!(loaded(&store).await, all);
    // Within both bounds: nothing goes.
    assert_eq!(store.trim(STREAM, bytes(1900)).await.unwrap(), all);
    // 90 + 60 + 500 + 80 + 120 = 850; with 400 more, past 1000.
    let by_bytes = Trimmed {
        first: 6,
        bytes: 850,
    };
    assert_eq!(store.trim(STREAM, bytes(1000)).await.unwrap(), by_bytes);
    assert_eq!(loaded(&store).await, by_bytes);
    assert_eq!(
        store.ops_at(STREAM, &[5, 6]).await.unwrap(),
        [None, Some(format!("{:>120}", 6))]
    );
    let ids = ["t:5".to_owned(), "t:6".to_owned()];
    assert_eq!(store.seqs_of(STREAM, &ids).await.unwrap(), [None, Some(6)]);
    assert!(commit(&store, STREAM, 10, vec![sized(11, 700)]).await);
    assert_eq!(
        loaded(&store).await,
        Trimmed {
            first: 6,
            bytes: 1550
        }
    );
    // The count bound holds as before, the bytes following.
    let by_count = Trimmed {
        first: 9,
        bytes: 850,
    };
    assert_eq!(store.trim(STREAM, count(3)).await.unwrap(), by_count);
    assert_eq!(loaded(&store).await, by_count);
    // The newest op stays, however large.
    let newest = Trimmed {
        first: 11,
        bytes: 700,
    };
    assert_eq!(store.trim(STREAM, bytes(10)).await.unwrap(), newest);
    assert_eq!(store.trim(STREAM, bytes(10)).await.unwrap(), newest);
    assert_eq!(loaded(&store).await, newest);
    // A stream never written has nothing to trim, and is not created.
    assert_eq!(
        store.trim("global", bytes(10)).await.unwrap(),
        Trimmed { first: 1, bytes: 0 }
    );
    assert!(store.load("global").await.unwrap().is_none());
}

#[tokio::test]
async fn sqlite_the_log_is_trimmed_by_its_bytes_and_they_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Sqlite(Db::open(dir.path()).unwrap());
    the_log_is_trimmed_by_its_bytes_and_they_are_stored(store).await;
    // Read from the ops themselves: right in a store opened again.
    let store = Store::Sqlite(Db::open(dir.path()).unwrap());
    assert_eq!(
        loaded(&store).await,
        Trimmed {
            first: 11,
            bytes: 700
        }
    );
}

#[tokio::test]
async fn redis_the_log_is_trimmed_by_its_bytes_and_they_are_stored() {
    let redis = RedisServer::start();
    let store = Store::Redis(Box::new(RedisStore::connect(&redis.url()).await.unwrap()));
    the_log_is_trimmed_by_its_bytes_and_they_are_stored(store).await;
}

/// The op `seq` of tab `t` in text of two bytes a character: `2 * chars`
/// bytes long.
fn wide(seq: u64, chars: usize) -> Row {
    Row {
        body: "é".repeat(chars),
        ..row(STREAM, seq, "t", "me")
    }
}

/// The oldest number kept and the bytes kept of a log of ops of `sizes`
/// (the first numbered `from`) held within `bytes` bytes, the newest op
/// always kept: counted here from the newest op back, apart from the
/// stores' walk from the oldest.
fn newest_within(sizes: &[u64], from: u64, bytes: u64) -> Trimmed {
    let mut kept = 0;
    let mut first = from + sizes.len() as u64;
    for (at, size) in sizes.iter().enumerate().rev() {
        let newest = at + 1 == sizes.len();
        if !newest && kept + size > bytes {
            break;
        }
        kept += size;
        first -= 1;
    }
    Trimmed { first, bytes: kept }
}

/// A walk across many entries (the Redis scripts read the log 16 at a
/// time) over text of several bytes a character: bytes are counted as
/// bytes everywhere (SQLite's `octet_length`, Rust's and Lua's lengths),
/// and one trim drops dozens of ops.
async fn a_long_log_of_wide_text_is_counted_and_trimmed_in_bytes(store: &Store) -> Vec<u64> {
    let rows: Vec<Row> = (1..=40).map(|seq| wide(seq, 10 + seq as usize)).collect();
    let sizes: Vec<u64> = rows.iter().map(|row| row.body.len() as u64).collect();
    assert_eq!(sizes[0], 22, "two bytes a character");
    assert!(commit(store, STREAM, 0, rows).await);
    let all = Trimmed {
        first: 1,
        bytes: sizes.iter().sum(),
    };
    assert_eq!(loaded(store).await, all);
    let trimmed = newest_within(&sizes, 1, 600);
    assert!(trimmed.first > 20, "{trimmed:?}");
    assert_eq!(store.trim(STREAM, bytes(600)).await.unwrap(), trimmed);
    assert_eq!(loaded(store).await, trimmed);
    sizes[trimmed.first as usize - 1..].to_vec()
}

#[tokio::test]
async fn sqlite_a_long_log_of_wide_text_is_counted_and_trimmed_in_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Sqlite(Db::open(dir.path()).unwrap());
    a_long_log_of_wide_text_is_counted_and_trimmed_in_bytes(&store).await;
}

/// Deletes the Redis counter of [`STREAM`]'s log bytes, as a store an
/// older version wrote has none.
async fn forget_byte_count(raw: &mut redis::aio::MultiplexedConnection) {
    let () = redis::cmd("DEL")
        .arg(format!("gaesup:{{{STREAM}}}:bytes"))
        .query_async(raw)
        .await
        .unwrap();
}

/// On Redis also a count lost with a long log behind it: counted again
/// page by page.
#[tokio::test]
async fn redis_a_long_log_of_wide_text_is_counted_and_trimmed_in_bytes() {
    let redis = RedisServer::start();
    let store = Store::Redis(Box::new(RedisStore::connect(&redis.url()).await.unwrap()));
    let mut sizes = a_long_log_of_wide_text_is_counted_and_trimmed_in_bytes(&store).await;
    let first = loaded(&store).await.first;
    let rows: Vec<Row> = (41..=80).map(|seq| wide(seq, 7)).collect();
    sizes.extend(rows.iter().map(|row| row.body.len() as u64));
    assert!(commit(&store, STREAM, 40, rows).await);
    let client = redis::Client::open(redis.url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    forget_byte_count(&mut raw).await;
    let all = Trimmed {
        first,
        bytes: sizes.iter().sum(),
    };
    assert_eq!(loaded(&store).await, all);
}

/// A node of an older version shares the Redis store and keeps no count
/// of the log's bytes: what it commits is counted when this version next
/// trims or loads the stream (and the count goes on from there), what it
/// trims has the log counted again, and so does a count that is missing
/// (a store an older version wrote). The count is never left wrong.
#[tokio::test]
async fn redis_the_log_s_bytes_stay_right_beside_older_nodes() {
    let redis = RedisServer::start();
    let store = Store::Redis(Box::new(RedisStore::connect(&redis.url()).await.unwrap()));
    let client = redis::Client::open(redis.url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let key = |part: &str| format!("gaesup:{{{STREAM}}}:{part}");
    // The count as stored: (bytes, from, through).
    let counted = |raw: &mut redis::aio::MultiplexedConnection| {
        let mut raw = raw.clone();
        let counter = key("bytes");
        async move {
            let (bytes, from, through): (Option<u64>, Option<u64>, Option<u64>) =
                redis::cmd("HMGET")
                    .arg(counter)
                    .arg("bytes")
                    .arg("from")
                    .arg("through")
                    .query_async(&mut raw)
                    .await
                    .unwrap();
            (bytes, from, through)
        }
    };
    // What an older node's commit script does: append, record the id, move
    // the head.
    let older_commit = |raw: &mut redis::aio::MultiplexedConnection, row: Row| {
        let mut raw = raw.clone();
        let (log, ids, head) = (key("log"), key("ids"), key("head"));
        async move {
            let () = redis::pipe()
                .atomic()
                .cmd("XADD")
                .arg(log)
                .arg(format!("{}-0", row.seq))
                .arg("id")
                .arg(&row.op_id)
                .arg("op")
                .arg(&row.body)
                .ignore()
                .hset(ids, &row.op_id, row.seq)
                .ignore()
                .set(head, row.seq)
                .ignore()
                .query_async(&mut raw)
                .await
                .unwrap();
        }
    };
    let rows = (1..=4).map(|seq| sized(seq, 100 * seq as usize)).collect();
    assert!(commit(&store, STREAM, 0, rows).await);
    assert_eq!(counted(&mut raw).await, (Some(1000), Some(1), Some(4)));
    older_commit(&mut raw, sized(5, 500)).await;
    // Left behind by the older node; counted up to date by a load.
    assert_eq!(counted(&mut raw).await, (Some(1000), Some(1), Some(4)));
    let all = Trimmed {
        first: 1,
        bytes: 1500,
    };
    assert_eq!(loaded(&store).await, all);
    assert_eq!(counted(&mut raw).await, (Some(1500), Some(1), Some(5)));
    // This version's commits count on.
    assert!(commit(&store, STREAM, 5, vec![sized(6, 600)]).await);
    assert_eq!(counted(&mut raw).await, (Some(2100), Some(1), Some(6)));
    // An older node's op, then one of this version: the count lags, and
    // the next trim counts what it lacks before it trims. 100 + … + 800
    // is 3600; 800 + 700 = 1500 fit in 2000, 600 more do not.
    older_commit(&mut raw, sized(7, 700)).await;
    assert!(commit(&store, STREAM, 7, vec![sized(8, 800)]).await);
    assert_eq!(counted(&mut raw).await, (Some(2100), Some(1), Some(6)));
    let trimmed = Trimmed {
        first: 7,
        bytes: 1500,
    };
    assert_eq!(store.trim(STREAM, bytes(2000)).await.unwrap(), trimmed);
    assert_eq!(counted(&mut raw).await, (Some(1500), Some(7), Some(8)));
    // What an older node's trim script does: drop ops and their ids, move
    // the first number. The count's `from` no longer matches: counted
    // again.
    let () = redis::pipe()
        .atomic()
        .cmd("XTRIM")
        .arg(key("log"))
        .arg("MINID")
        .arg("8-0")
        .ignore()
        .hdel(key("ids"), "t:7")
        .ignore()
        .set(key("first"), 8)
        .ignore()
        .query_async::<()>(&mut raw)
        .await
        .unwrap();
    let older_trimmed = Trimmed {
        first: 8,
        bytes: 800,
    };
    assert_eq!(loaded(&store).await, older_trimmed);
    assert_eq!(counted(&mut raw).await, (Some(800), Some(8), Some(8)));
    // A count that is missing is counted again, by a load or a trim.
    forget_byte_count(&mut raw).await;
    assert_eq!(loaded(&store).await, older_trimmed);
    assert!(commit(&store, STREAM, 8, vec![sized(9, 900)]).await);
    assert_eq!(counted(&mut raw).await, (Some(1700), Some(8), Some(9)));
    forget_byte_count(&mut raw).await;
    assert_eq!(
        store.trim(STREAM, bytes(1000)).await.unwrap(),
        Trimmed {
            first: 9,
            bytes: 900
        }
    );
    assert_eq!(counted(&mut raw).await, (Some(900), Some(9), Some(9)));
}

/// The owners of `tabs`; `-` for none.
async fn owners(store: &Store, tabs: &[&str]) -> Vec<String> {
    let tabs: Vec<String> = tabs.iter().map(|tab| (*tab).to_owned()).collect();
    let owners = store.tab_owners(&tabs).await.unwrap();
    owners
        .into_iter()
        .map(|owner| owner.unwrap_or_else(|| "-".to_owned()))
        .collect()
}

/// A tab belongs to the subject whose op of it was first committed, in
/// every stream (a page writes its apartment's and the global keys under
/// one tab), and a trim of the log does not free it: a peer that floods a
/// stream until a tab's ops are gone must not be able to take it.
async fn a_tab_belongs_to_its_first_pusher_in_every_stream(store: &Store) {
    assert_eq!(owners(store, &["a", "b"]).await, ["-", "-"]);
    let ops = vec![row(STREAM, 1, "a", "alice"), row(STREAM, 2, "b", "bob")];
    assert!(commit(store, STREAM, 0, ops).await);
    assert_eq!(owners(store, &["b", "a", "c"]).await, ["bob", "alice", "-"]);
    // Another stream: the same owners.
    assert!(commit(store, "global", 0, vec![row("global", 1, "b", "bob")]).await);
    assert_eq!(owners(store, &["a", "b"]).await, ["alice", "bob"]);
    // Read with the numbers of op ids of several streams, each answer in
    // its place (a stream with no id to look up among them).
    let ids = |ids: &[&str]| ids.iter().map(|id| (*id).to_owned()).collect::<Vec<_>>();
    let lookups = [
        (STREAM.to_owned(), ids(&["b:2", "x:1", "a:1"])),
        ("apartment:none".to_owned(), Vec::new()),
        ("global".to_owned(), ids(&["b:1"])),
    ];
    let (seqs, found) = store
        .seqs_and_owners(&lookups, &ids(&["c", "b"]))
        .await
        .unwrap();
    assert_eq!(seqs, [vec![Some(2), None, Some(1)], vec![], vec![Some(1)]]);
    assert_eq!(found, [None, Some("bob".to_owned())]);
    // Flooded and trimmed past every op of a.
    let flood = (3..=12)
        .map(|seq| row(STREAM, seq, "m", "mallory"))
        .collect();
    assert!(commit(store, STREAM, 2, flood).await);
    assert_eq!(store.trim(STREAM, count(2)).await.unwrap().first, 11);
    assert_eq!(owners(store, &["a", "m"]).await, ["alice", "mallory"]);
}

#[tokio::test]
async fn sqlite_a_tab_belongs_to_its_first_pusher_in_every_stream() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Sqlite(Db::open(dir.path()).unwrap());
    a_tab_belongs_to_its_first_pusher_in_every_stream(&store).await;
    // The hub checks owners first; the commit checks them again: another
    // subject's op of a tab writes nothing, whatever else it holds.
    let ops = vec![
        row(STREAM, 13, "n", "nina"),
        row(STREAM, 14, "a", "mallory"),
    ];
    let results = store
        .commit(vec![StreamCommit {
            stream: STREAM.to_owned(),
            base: 12,
            ops,
            states: Vec::new(),
        }])
        .await;
    assert!(results[0].is_err());
    assert_eq!(store.head(STREAM).await.unwrap(), 12);
    assert_eq!(owners(&store, &["n"]).await, ["-"]);
    // An owner whose tab has had no op for the owner's time is gone.
    let db = rusqlite::Connection::open(dir.path().join("relay.sqlite3")).unwrap();
    let before = support::now_s() * 1000 - TAB_OWNER_TTL_MS - 1;
    db.execute(
        "UPDATE tab_owners SET last_ms = ?1 WHERE tab = 'a'",
        [before],
    )
    .unwrap();
    assert_eq!(owners(&store, &["a", "b"]).await, ["-", "bob"]);
    assert!(commit(&store, STREAM, 12, vec![row(STREAM, 13, "a", "mallory")]).await);
    assert_eq!(owners(&store, &["a"]).await, ["mallory"]);
}

#[tokio::test]
async fn redis_a_tab_belongs_to_its_first_pusher_in_every_stream() {
    let redis = RedisServer::start();
    let store = Store::Redis(Box::new(RedisStore::connect(&redis.url()).await.unwrap()));
    a_tab_belongs_to_its_first_pusher_in_every_stream(&store).await;
    let pair = |tab: &str, subject: &str| (tab.to_owned(), subject.to_owned());
    // A claim is taken once, for every node: the first claimant's (who
    // has it again if it claims again, as through another node).
    let claimed = store
        .claim_tabs(&[
            pair("c", "carol"),
            pair("a", "mallory"),
            pair("c", "mallory"),
            pair("c", "carol"),
        ])
        .await
        .unwrap();
    assert_eq!(claimed, [true, false, false, true]);
    assert_eq!(owners(&store, &["c", "a"]).await, ["carol", "alice"]);
    // An owner has 30 days from its last renewal.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let full = i64::try_from(TAB_OWNER_TTL_MS).unwrap();
    let () = redis::cmd("PEXPIRE")
        .arg("gaesup:tab:a")
        .arg(100_000)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(
        store.renew_tabs(&[pair("a", "alice")]).await.unwrap(),
        [true]
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg("gaesup:tab:a")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(ttl > full - 60_000 && ttl <= full, "{ttl}");
    // Renewing for another subject leaves the tab to its owner.
    assert_eq!(
        store.renew_tabs(&[pair("b", "mallory")]).await.unwrap(),
        [false]
    );
    assert_eq!(owners(&store, &["b"]).await, ["bob"]);
    // When the owner's time runs out, the tab is free.
    let () = redis::cmd("PEXPIRE")
        .arg("gaesup:tab:a")
        .arg(0)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(owners(&store, &["a", "b"]).await, ["-", "bob"]);
    assert_eq!(
        store.claim_tabs(&[pair("a", "mallory")]).await.unwrap(),
        [true]
    );
}

/// A store written before tabs had owners: the tabs its log holds (whose
/// ids peers may have read) are nobody's to take, and anybody's to push,
/// as before, until 30 days after the upgrade (pushes do not renew them);
/// a new tab is its first pusher's.
#[tokio::test]
async fn sqlite_tabs_from_before_owners_are_nobody_s() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::Sqlite(Db::open(dir.path()).unwrap());
        assert!(commit(&store, STREAM, 0, vec![row(STREAM, 1, "old", "alice")]).await);
    }
    let db = rusqlite::Connection::open(dir.path().join("relay.sqlite3")).unwrap();
    db.execute_batch("DROP TABLE tab_owners").unwrap();
    let store = Store::Sqlite(Db::open(dir.path()).unwrap());
    assert_eq!(owners(&store, &["old", "new"]).await, [LEGACY_OWNER, "-"]);
    let seeded = "SELECT last_ms FROM tab_owners WHERE tab = 'old'";
    let at: i64 = db.query_row(seeded, [], |row| row.get(0)).unwrap();
    db.execute("UPDATE tab_owners SET last_ms = last_ms - 1000", [])
        .unwrap();
    let ops = vec![
        row(STREAM, 2, "old", LEGACY_OWNER),
        row(STREAM, 3, "new", "mallory"),
    ];
    assert!(commit(&store, STREAM, 1, ops).await);
    assert_eq!(
        owners(&store, &["old", "new"]).await,
        [LEGACY_OWNER, "mallory"]
    );
    let after: i64 = db.query_row(seeded, [], |row| row.get(0)).unwrap();
    assert_eq!(after, at - 1000);
}

#[tokio::test]
async fn redis_tabs_from_before_owners_are_nobody_s() {
    let redis = RedisServer::start();
    let store = Store::Redis(Box::new(RedisStore::connect(&redis.url()).await.unwrap()));
    assert!(commit(&store, STREAM, 0, vec![row(STREAM, 1, "old", "alice")]).await);
    // As an older relay left it: ops, and no owners ever seeded.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("DEL")
        .arg("gaesup:tabs-seeded")
        .arg("gaesup:tab:old")
        .query_async(&mut raw)
        .await
        .unwrap();
    let store = Store::Redis(Box::new(RedisStore::connect(&redis.url()).await.unwrap()));
    assert_eq!(owners(&store, &["old", "new"]).await, [LEGACY_OWNER, "-"]);
    let pair = |tab: &str, subject: &str| (tab.to_owned(), subject.to_owned());
    assert_eq!(
        store.claim_tabs(&[pair("old", "mallory")]).await.unwrap(),
        [false]
    );
    assert_eq!(owners(&store, &["old"]).await, [LEGACY_OWNER]);
}
