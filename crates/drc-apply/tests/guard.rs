//! The local-commit guard against a real server (`Progress::local_commit_guard`): in the query
//! that commits a last-writer-wins share, it lets the commit through while the local domain's
//! GTID is what the lookups saw, fails with `LOCAL_COMMIT_SEEN` once a local transaction
//! committed, and leaves the open transaction and its writes in place when it fails (the
//! applier then checks the writes and sends the rest of its query).

use drc_apply::conflict::tombstone::{Progress, LOCAL_COMMIT_SEEN};
use drc_core::position::{MariaGtidList, Position};
use mysql_async::prelude::Queryable;

/// The local domain of this test alone: other tests sharing the server never write in it.
const DOMAIN: u32 = 4242;

async fn position(c: &mut mysql_async::Conn) -> Position {
    let text: String = c
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .expect("position")
        .expect("a row");
    Position::MariaGtid(text.parse::<MariaGtidList>().expect("a GTID list"))
}

/// The server error code of `r`, or `None` when it succeeded.
fn code(r: Result<(), mysql_async::Error>) -> Option<u16> {
    match r {
        Ok(()) => None,
        Err(mysql_async::Error::Server(s)) => Some(s.code),
        Err(e) => panic!("expected a server error, got {e}"),
    }
}

#[tokio::test]
async fn the_guard_trips_on_a_local_commit_and_keeps_the_transaction() {
    let s = &drc_testkit::shared_servers(1)[0];
    let db = drc_testkit::create_db(s, "guard").await;
    let mut applier = drc_testkit::connect(&s.url()).await;
    let mut local = drc_testkit::connect(&s.url()).await;
    local
        .query_drop(format!(
            "SET SESSION gtid_domain_id = {DOMAIN}; CREATE TABLE `{db}`.t (id INT PRIMARY KEY)"
        ))
        .await
        .expect("create");
    let (_tx, rx) = tokio::sync::watch::channel(None);
    let mut p = Progress::new(rx, "SELECT @@gtid_binlog_pos");
    p.local_domain = Some(DOMAIN);
    let before = position(&mut applier).await;
    let guard = p.local_commit_guard(&before).expect("a guard on MariaDB");

    // Nothing committed locally: the guard passes and the row commits.
    let q = format!("START TRANSACTION; INSERT INTO `{db}`.t VALUES (1); {guard}; COMMIT");
    assert_eq!(code(applier.query_drop(q).await), None);

    // A local transaction commits between the lookups and the commit's query.
    local
        .query_drop(format!("INSERT INTO `{db}`.t VALUES (100)"))
        .await
        .expect("local insert");
    let q = format!("START TRANSACTION; INSERT INTO `{db}`.t VALUES (2); {guard}; COMMIT");
    assert_eq!(
        code(applier.query_drop(q).await),
        Some(LOCAL_COMMIT_SEEN),
        "the guard must trip"
    );
    // The query stopped at the guard: the transaction is open with row 2 in it.
    let seen: Vec<i64> = local
        .query(format!("SELECT id FROM `{db}`.t ORDER BY id"))
        .await
        .expect("read");
    assert_eq!(
        seen,
        [1, 100],
        "nothing after the guard ran, not even COMMIT"
    );
    applier.query_drop("COMMIT").await.expect("commit");
    let seen: Vec<i64> = local
        .query(format!("SELECT id FROM `{db}`.t ORDER BY id"))
        .await
        .expect("read");
    assert_eq!(seen, [1, 2, 100], "the writes before the guard commit");

    // A guard from the position after the local commit passes again.
    let now = p
        .local_commit_guard(&position(&mut applier).await)
        .expect("guard");
    let q = format!("START TRANSACTION; INSERT INTO `{db}`.t VALUES (3); {now}; COMMIT");
    assert_eq!(code(applier.query_drop(q).await), None);

    // A position without the local domain: any local GTID trips it.
    let empty = Position::MariaGtid("77-1-5".parse().expect("list"));
    let q = p.local_commit_guard(&empty).expect("guard");
    assert_eq!(code(applier.query_drop(q).await), Some(LOCAL_COMMIT_SEEN));
}

#[test]
fn no_guard_without_a_local_domain_or_on_mysql() {
    let (_tx, rx) = tokio::sync::watch::channel(None);
    let p = Progress::new(rx, "SELECT @@GLOBAL.gtid_executed");
    let before = Position::MariaGtid("0-1-5".parse().expect("list"));
    assert!(p.local_commit_guard(&before).is_none());
}
