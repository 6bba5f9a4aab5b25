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
    assert_eq!(store.trim(STREAM, 2).await.unwrap(), 11);
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
