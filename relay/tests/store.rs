//! The store's reads, on each store the relay runs on: the embedded
//! SQLite one and a real `redis-server` (started here, on a port of its
//! own).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use gaesup_relay::db::{Db, Row};
use gaesup_relay::store::{LEGACY_OWNER, RedisStore, Store, StreamCommit, TAB_OWNER_TTL_MS};
use support::RedisServer;

const STREAM: &str = "apartment:main";

fn body(seq: u64) -> String {
    format!(r#"{{"n":{seq}}}"#)
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

async fn commit(store: &Store, stream: &str, base: u64, ops: Vec<Row>) -> bool {
    let results = store
        .commit(vec![StreamCommit {
            stream: stream.to_owned(),
            base,
            ops,
            states: Vec::new(),
        }])
        .await;
    assert_eq!(results.len(), 1);
    results.into_iter().all(|result| result.is_ok())
}

/// Ten ops in the log, trimmed to the newest four (7 to 10): `ops_at`
/// answers each number asked, in the order asked, with the op the log
/// holds there, and `None` for a number trimmed, not yet written or of a
/// stream never written, whatever the numbers around it.
async fn ops_at_answers_each_number_in_the_order_asked(store: Store) {
    let rows = (1..=10).map(|seq| row(STREAM, seq, "t", "me")).collect();
    assert!(commit(&store, STREAM, 0, rows).await);
    assert_eq!(store.trim(STREAM, 4).await.unwrap(), 7);

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

/// The owners `store` answers for `asked` (tab, subject) pairs.
async fn claim(store: &Store, asked: &[(&str, &str)]) -> Vec<String> {
    let asked: Vec<(String, String)> = asked
        .iter()
        .map(|(tab, subject)| ((*tab).to_owned(), (*subject).to_owned()))
        .collect();
    store.claim_tabs(&asked).await.unwrap()
}

/// A tab belongs to the subject that pushed its first op, in every stream
/// (a page writes its apartment's and the global keys under one tab), and
/// a trim of the log does not free it: a peer that floods a stream until
/// a tab's ops are gone must not be able to take it.
async fn a_tab_belongs_to_its_first_pusher_in_every_stream(store: &Store) {
    // New tabs: the first asker of each gets it.
    assert_eq!(
        claim(store, &[("a", "alice"), ("b", "bob"), ("a", "mallory")]).await,
        ["alice", "bob", "alice"]
    );
    let ops = vec![row(STREAM, 1, "a", "alice"), row(STREAM, 2, "b", "bob")];
    assert!(commit(store, STREAM, 0, ops).await);
    assert_eq!(
        claim(store, &[("a", "mallory"), ("b", "bob"), ("a", "alice")]).await,
        ["alice", "bob", "alice"]
    );
    // Another stream: the same owners.
    assert!(commit(store, "global", 0, vec![row("global", 1, "b", "bob")]).await);
    assert_eq!(claim(store, &[("a", "mallory")]).await, ["alice"]);
    // Read with the numbers of op ids of several streams, each answer in
    // its place (a stream with no id to look up among them).
    let ids = |ids: &[&str]| ids.iter().map(|id| (*id).to_owned()).collect::<Vec<_>>();
    let lookups = [
        (STREAM.to_owned(), ids(&["b:2", "x:1", "a:1"])),
        ("apartment:none".to_owned(), Vec::new()),
        ("global".to_owned(), ids(&["b:1"])),
    ];
    let asked = [
        ("c".to_owned(), "carol".to_owned()),
        ("b".to_owned(), "mallory".to_owned()),
    ];
    let (seqs, owners) = store.seqs_and_claims(&lookups, &asked).await.unwrap();
    assert_eq!(seqs, [vec![Some(2), None, Some(1)], vec![], vec![Some(1)]]);
    assert_eq!(owners, ["carol", "bob"]);
    // Flooded and trimmed past every op of a.
    let flood = (3..=12)
        .map(|seq| row(STREAM, seq, "m", "mallory"))
        .collect();
    assert!(commit(store, STREAM, 2, flood).await);
    assert_eq!(store.trim(STREAM, 2).await.unwrap(), 11);
    assert_eq!(
        claim(store, &[("a", "mallory"), ("m", "mallory")]).await,
        ["alice", "mallory"]
    );
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
    assert!(!commit(&store, STREAM, 12, ops).await);
    assert_eq!(store.head(STREAM).await.unwrap(), 12);
    assert_eq!(claim(&store, &[("n", "mallory")]).await, ["mallory"]);
    // An owner whose tab has had no op for the owner's time is gone.
    let db = rusqlite::Connection::open(dir.path().join("relay.sqlite3")).unwrap();
    let before = support::now_s() * 1000 - TAB_OWNER_TTL_MS - 1;
    db.execute(
        "UPDATE tab_owners SET last_ms = ?1 WHERE tab = 'a'",
        [before],
    )
    .unwrap();
    assert_eq!(
        claim(&store, &[("a", "mallory"), ("b", "mallory")]).await,
        ["mallory", "bob"]
    );
    let ops = vec![row(STREAM, 13, "a", "mallory")];
    assert!(commit(&store, STREAM, 12, ops).await);
    assert_eq!(claim(&store, &[("a", "alice")]).await, ["mallory"]);
}

#[tokio::test]
async fn redis_a_tab_belongs_to_its_first_pusher_in_every_stream() {
    let redis = RedisServer::start();
    let store = Store::Redis(Box::new(RedisStore::connect(&redis.url()).await.unwrap()));
    a_tab_belongs_to_its_first_pusher_in_every_stream(&store).await;
    // Each push renews its owner's time; when it runs out the tab is free.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg("gaesup:tab:a")
        .query_async(&mut raw)
        .await
        .unwrap();
    let ttl = u64::try_from(ttl).unwrap();
    assert!(
        ttl > TAB_OWNER_TTL_MS - 60_000 && ttl <= TAB_OWNER_TTL_MS,
        "{ttl}"
    );
    let () = redis::cmd("PEXPIRE")
        .arg("gaesup:tab:a")
        .arg(0)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(
        claim(&store, &[("a", "mallory"), ("b", "mallory")]).await,
        ["mallory", "bob"]
    );
}

/// A store written before tabs had owners: the tabs its log holds (whose
/// ids peers may have read) are nobody's to take, and anybody's to push,
/// as before; a new tab is its first pusher's.
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
    assert_eq!(
        claim(&store, &[("old", "mallory"), ("new", "mallory")]).await,
        [LEGACY_OWNER, "mallory"]
    );
    // Pushed by anyone, it stays nobody's.
    let ops = vec![
        row(STREAM, 2, "old", LEGACY_OWNER),
        row(STREAM, 3, "new", "mallory"),
    ];
    assert!(commit(&store, STREAM, 1, ops).await);
    assert_eq!(claim(&store, &[("old", "bob")]).await, [LEGACY_OWNER]);
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
        .query_async(&mut raw)
        .await
        .unwrap();
    let store = Store::Redis(Box::new(RedisStore::connect(&redis.url()).await.unwrap()));
    assert_eq!(
        claim(&store, &[("old", "mallory"), ("new", "mallory")]).await,
        [LEGACY_OWNER, "mallory"]
    );
    assert_eq!(claim(&store, &[("old", "bob")]).await, [LEGACY_OWNER]);
}
