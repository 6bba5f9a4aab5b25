//! The store's reads, on each store the relay runs on: the embedded
//! SQLite one and a real `redis-server` (started here, on a port of its
//! own).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use gaesup_relay::db::{Db, Row};
use gaesup_relay::store::{
    LEGACY_OWNER, RedisStore, Store, StreamCommit, TAB_CLAIM_MS, TAB_OWNER_TTL_MS,
};
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

/// Commits `ops` as the hub does: the owners of their tabs then get
/// their full time.
async fn commit(store: &Store, stream: &str, base: u64, ops: Vec<Row>) -> bool {
    let owned: Vec<(String, String)> = ops
        .iter()
        .filter_map(|row| Some((row.tab.clone(), row.owner.clone()?)))
        .filter(|(_, owner)| owner != LEGACY_OWNER)
        .collect();
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
        store.renew_tabs(&owned).await.unwrap();
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

/// The owners `store` answers for `asked` (tab, subject) pairs, each
/// subject claiming the tab; `-` for none.
async fn claim(store: &Store, asked: &[(&str, &str)]) -> Vec<String> {
    let asked: Vec<(String, Option<String>)> = asked
        .iter()
        .map(|(tab, subject)| ((*tab).to_owned(), Some((*subject).to_owned())))
        .collect();
    answers(store.claim_tabs(&asked).await.unwrap())
}

/// The owners of `tabs`, read without claiming any; `-` for none.
async fn owners(store: &Store, tabs: &[&str]) -> Vec<String> {
    let asked: Vec<(String, Option<String>)> =
        tabs.iter().map(|tab| ((*tab).to_owned(), None)).collect();
    answers(store.claim_tabs(&asked).await.unwrap())
}

fn answers(owners: Vec<Option<String>>) -> Vec<String> {
    owners
        .into_iter()
        .map(|owner| owner.unwrap_or_else(|| "-".to_owned()))
        .collect()
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
        ("c".to_owned(), Some("carol".to_owned())),
        ("b".to_owned(), Some("mallory".to_owned())),
        ("d".to_owned(), None),
    ];
    let (seqs, found) = store.seqs_and_claims(&lookups, &asked).await.unwrap();
    assert_eq!(seqs, [vec![Some(2), None, Some(1)], vec![], vec![Some(1)]]);
    assert_eq!(answers(found), ["carol", "bob", "-"]);
    // Read without a claim, an unowned tab stays unowned.
    assert_eq!(owners(store, &["d", "a"]).await, ["-", "alice"]);
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
    // A committed op gives its owner the full time; a claim whose op was
    // never committed (refused after the claim) holds only minutes; a tab
    // read without a claim is not written at all.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let mut ttl = async |tab: &str| -> i64 {
        redis::cmd("PTTL")
            .arg(format!("gaesup:tab:{tab}"))
            .query_async(&mut raw)
            .await
            .unwrap()
    };
    let full = i64::try_from(TAB_OWNER_TTL_MS).unwrap();
    let (a, c, d) = (ttl("a").await, ttl("c").await, ttl("d").await);
    assert!(a > full - 60_000 && a <= full, "{a}");
    assert!(c > 0 && c <= i64::try_from(TAB_CLAIM_MS).unwrap(), "{c}");
    assert_eq!(d, -2, "no key");
    // Renewing for another subject leaves the tab to its owner.
    store
        .renew_tabs(&[("b".to_owned(), "mallory".to_owned())])
        .await
        .unwrap();
    assert_eq!(owners(&store, &["b"]).await, ["bob"]);
    // When the owner's time runs out, the tab is free.
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
    // Pushed by anyone, it stays nobody's, and its time is not moved: it
    // runs out 30 days after the upgrade.
    let seeded = "SELECT last_ms FROM tab_owners WHERE tab = 'old'";
    let at: i64 = db.query_row(seeded, [], |row| row.get(0)).unwrap();
    db.execute("UPDATE tab_owners SET last_ms = last_ms - 1000", [])
        .unwrap();
    let ops = vec![
        row(STREAM, 2, "old", LEGACY_OWNER),
        row(STREAM, 3, "new", "mallory"),
    ];
    assert!(commit(&store, STREAM, 1, ops).await);
    assert_eq!(claim(&store, &[("old", "bob")]).await, [LEGACY_OWNER]);
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
    assert_eq!(
        claim(&store, &[("old", "mallory"), ("new", "mallory")]).await,
        [LEGACY_OWNER, "mallory"]
    );
    // Its time is the seeding's: claims do not renew it.
    let () = redis::cmd("PEXPIRE")
        .arg("gaesup:tab:old")
        .arg(100_000)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(claim(&store, &[("old", "bob")]).await, [LEGACY_OWNER]);
    let ttl: i64 = redis::cmd("PTTL")
        .arg("gaesup:tab:old")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 100_000, "{ttl}");
}
