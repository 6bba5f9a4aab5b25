//! The store's reads, on each store the relay runs on: the embedded
//! SQLite one and a real `redis-server` (started here, on a port of its
//! own).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use gaesup_relay::db::{Db, Row};
use gaesup_relay::store::{RedisStore, Store, StreamCommit};
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
        owner: owner.to_owned(),
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

/// Each tab is owned by the subject that committed its first op, per
/// stream: a commit with an op of the tab from another subject writes
/// nothing, whatever else it holds. An owner is kept while the log holds
/// any op of the tab, and dropped by the trim that drops the last one (the
/// table stays as small as the log).
async fn a_tab_is_owned_while_the_log_holds_its_ops(store: Store) {
    let owners = |stream: &'static str, tabs: &[&str]| {
        let tabs: Vec<String> = tabs.iter().map(|t| (*t).to_owned()).collect();
        let store = &store;
        async move { store.tab_owners(stream, &tabs).await.unwrap() }
    };
    let some = |owner: &str| Some(owner.to_owned());
    assert!(
        commit(
            &store,
            STREAM,
            0,
            vec![
                row(STREAM, 1, "a", "alice"),
                row(STREAM, 2, "b", "bob"),
                row(STREAM, 3, "a", "alice"),
            ]
        )
        .await
    );
    assert_eq!(
        owners(STREAM, &["b", "c", "a"]).await,
        vec![some("bob"), None, some("alice")]
    );
    // Owners are per stream.
    assert!(commit(&store, "global", 0, vec![row("global", 1, "a", "bob")]).await);
    assert_eq!(owners("global", &["a"]).await, vec![some("bob")]);
    // Another subject's op of tab a, after a fine one: nothing is written.
    assert!(
        !commit(
            &store,
            STREAM,
            3,
            vec![row(STREAM, 4, "c", "carol"), row(STREAM, 5, "a", "bob")]
        )
        .await
    );
    assert_eq!(store.head(STREAM).await.unwrap(), 3);
    assert_eq!(store.ops_at(STREAM, &[4]).await.unwrap(), vec![None]);
    assert_eq!(owners(STREAM, &["c"]).await, vec![None]);
    // Its owner's ops still go in, and move the tab's newest number.
    assert!(
        commit(
            &store,
            STREAM,
            3,
            vec![row(STREAM, 4, "a", "alice"), row(STREAM, 5, "c", "carol")]
        )
        .await
    );
    // Trimmed to 3..: b's only op is gone, and so is its owner.
    assert_eq!(store.trim(STREAM, 3).await.unwrap(), 3);
    assert_eq!(
        owners(STREAM, &["a", "b", "c"]).await,
        vec![some("alice"), None, some("carol")]
    );
    // Trimmed to 5..: a's ops are all gone.
    assert_eq!(store.trim(STREAM, 1).await.unwrap(), 5);
    assert_eq!(owners(STREAM, &["a", "c"]).await, vec![None, some("carol")]);
    assert!(commit(&store, STREAM, 5, vec![row(STREAM, 6, "b", "dave")]).await);
    assert_eq!(owners(STREAM, &["b"]).await, vec![some("dave")]);
}

#[tokio::test]
async fn sqlite_a_tab_is_owned_while_the_log_holds_its_ops() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::Sqlite(Db::open(dir.path()).unwrap());
    a_tab_is_owned_while_the_log_holds_its_ops(store).await;
}

#[tokio::test]
async fn redis_a_tab_is_owned_while_the_log_holds_its_ops() {
    let redis = RedisServer::start();
    let store = Store::Redis(Box::new(RedisStore::connect(&redis.url()).await.unwrap()));
    a_tab_is_owned_while_the_log_holds_its_ops(store).await;
}
