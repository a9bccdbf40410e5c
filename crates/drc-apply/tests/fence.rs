//! The term fence against a real server: a stale term commits nothing, a transaction left open
//! by a paused leader does not block a new leader (it is killed and rolled back), and a
//! standalone daemon (term 0) never takes the fence from replicas.

use std::time::Duration;

use drc_apply::fence::{self, Fence};
use drc_apply::worker::{Applier, Tag};
use drc_apply::LinkError;
use drc_meta as meta;
use mysql_async::prelude::Queryable;

/// Asserts that `e` is [`LinkError::Fenced`] by stored term `term` (and replica `replica`,
/// when given).
fn assert_fenced(e: &LinkError, term: u64, replica: Option<u32>) {
    match e {
        LinkError::Fenced {
            stored_term,
            stored_replica,
            ..
        } => {
            assert_eq!(*stored_term, Some(term), "{e}");
            if replica.is_some() {
                assert_eq!(*stored_replica, replica, "{e}");
            }
        }
        other => panic!("expected a fenced error, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_term_commits_nothing_and_a_paused_holder_is_killed() {
    let s = &drc_testkit::shared_servers(1)[0];
    let db = drc_testkit::create_db(s, "fence").await;
    let meta_db = format!("{db}_meta");
    let url = s.url();
    let mut c = drc_testkit::connect(&s.url_for(&db)).await;
    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY)")
        .await
        .expect("table");
    meta::ensure_schema(&mut c, &meta_db).await.expect("meta");
    let f1 = Fence {
        meta: meta_db.clone(),
        center: "b".into(),
        replica: 0,
        term: 1,
        slots: 16,
    };
    fence::take(&mut c, &url, &f1)
        .await
        .expect("term 1 takes the fence");
    let tag = Tag::Marker(meta::Marker {
        meta: meta_db.clone(),
        origin: "a".into(),
        link: "a->b".into(),
        worker: 0,
    });
    let mut a1 = Applier::new(url.clone(), tag.clone(), Duration::from_secs(10))
        .with_fence(Some(f1.clone()));
    let insert = |id: u32| vec![format!("INSERT INTO `{db}`.t VALUES ({id})")];
    a1.apply(&insert(1), &f1.log_statement("a->b", 0, 1))
        .await
        .expect("term 1 applies");

    // A leader of term 1 paused in the middle of a transaction: it passed the fence check and
    // wrote a row, then stopped before COMMIT.
    let mut paused = drc_testkit::connect(&url).await;
    paused.query_drop("START TRANSACTION").await.expect("begin");
    let seen: Option<(u64, u32)> = paused
        .query_first(f1.check_statement())
        .await
        .expect("fence check");
    assert_eq!(seen, Some((1, 0)));
    paused
        .query_drop(format!("INSERT INTO `{db}`.t VALUES (50)"))
        .await
        .expect("paused write");

    // Term 2 takes the fence: it waits for the paused transaction, then kills it.
    let f2 = Fence {
        term: 2,
        replica: 1,
        ..f1.clone()
    };
    let mut c2 = drc_testkit::connect(&url).await;
    tokio::time::timeout(Duration::from_secs(60), fence::take(&mut c2, &url, &f2))
        .await
        .expect("a paused transaction does not block the new leader")
        .expect("term 2 takes the fence");
    assert!(
        paused.query_drop("COMMIT").await.is_err(),
        "the paused transaction's connection was killed"
    );

    // Term 1 can neither apply nor take the fence back; term 0 (standalone) cannot take it.
    let e = a1
        .apply(&insert(2), &f1.log_statement("a->b", 0, 2))
        .await
        .expect_err("term 1 is fenced");
    assert_fenced(&e, 2, Some(1));
    assert!(!e.is_transient());
    // The same on the MySQL path (the check in a round trip of its own).
    let mut portable = Applier::new(url.clone(), tag.clone(), Duration::from_secs(10))
        .with_fence(Some(f1.clone()))
        .portable();
    let e = portable
        .apply(&insert(4), &f1.log_statement("a->b", 0, 2))
        .await
        .expect_err("term 1 is fenced on the MySQL path too");
    assert_fenced(&e, 2, None);
    let e = fence::take(&mut c, &url, &f1)
        .await
        .expect_err("no going back");
    assert!(matches!(e, LinkError::Fenced { .. }), "{e}");
    let f0 = Fence {
        term: 0,
        ..f1.clone()
    };
    let e = fence::take(&mut c, &url, &f0)
        .await
        .expect_err("standalone refused");
    assert!(e.to_string().contains("term 2 (replica 1)"), "{e}");

    // Term 2 applies; the table has exactly the rows of committed terms.
    let mut a2 =
        Applier::new(url.clone(), tag, Duration::from_secs(10)).with_fence(Some(f2.clone()));
    a2.apply(&insert(3), &f2.log_statement("a->b", 0, 2))
        .await
        .expect("term 2 applies");
    let ids: Vec<u32> = c.query("SELECT id FROM t ORDER BY id").await.expect("rows");
    assert_eq!(
        ids,
        [1, 3],
        "neither the paused nor the fenced write committed"
    );
    let history: Vec<(u64, u32)> = c
        .query(format!(
            "SELECT term, replica FROM `{meta_db}`.term_history WHERE center = 'b' ORDER BY term"
        ))
        .await
        .expect("history");
    assert_eq!(history, [(1, 0), (2, 1)]);
    let log: Vec<(u64, u64, u32)> = c
        .query(format!(
            "SELECT batch, term, replica FROM `{meta_db}`.apply_log ORDER BY batch"
        ))
        .await
        .expect("apply log");
    assert_eq!(log, [(1, 1, 0), (2, 2, 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_daemon_takes_an_empty_fence_with_term_zero() {
    let s = &drc_testkit::shared_servers(1)[0];
    let db = drc_testkit::create_db(s, "fence0").await;
    let meta_db = format!("{db}_meta");
    let mut c = drc_testkit::connect(&s.url()).await;
    let f0 = Fence {
        meta: meta_db.clone(),
        center: "a".into(),
        replica: 0,
        term: 0,
        slots: 16,
    };
    fence::take(&mut c, &s.url(), &f0)
        .await
        .expect("first start");
    fence::take(&mut c, &s.url(), &f0).await.expect("restart");
    // Replicas take over from it (terms start at 1).
    let f1 = Fence {
        term: 1,
        ..f0.clone()
    };
    fence::take(&mut c, &s.url(), &f1)
        .await
        .expect("replica term 1");
    let e = fence::take(&mut c, &s.url(), &f0)
        .await
        .expect_err("standalone fenced out");
    assert_fenced(&e, 1, None);
}

/// The one-statement check of MariaDB appliers (`Fence::guard_statement`): it takes the fence
/// row's shared lock like the plain check (a new leader's update waits for the transaction),
/// and fails with `fence::FENCED` when the term is not its own, before anything after it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_one_statement_check_locks_the_fence_and_stops_a_stale_term() {
    let s = &drc_testkit::shared_servers(1)[0];
    let db = drc_testkit::create_db(s, "fenceguard").await;
    let meta_db = format!("{db}_meta");
    let mut c = drc_testkit::connect(&s.url()).await;
    meta::ensure_schema(&mut c, &meta_db).await.expect("meta");
    c.query_drop(format!("CREATE TABLE `{db}`.t (id INT PRIMARY KEY)"))
        .await
        .expect("table");
    let f1 = Fence {
        meta: meta_db.clone(),
        center: "b".into(),
        replica: 0,
        term: 1,
        slots: 16,
    };
    fence::take(&mut c, &s.url(), &f1).await.expect("term 1");

    let mut applier = drc_testkit::connect(&s.url()).await;
    applier
        .query_drop(format!(
            "START TRANSACTION; {}; INSERT INTO `{db}`.t VALUES (1)",
            f1.guard_statement()
        ))
        .await
        .expect("term 1 passes its check");
    let mut other = drc_testkit::connect(&s.url()).await;
    let moved = other
        .query_drop(format!(
            "SET SESSION innodb_lock_wait_timeout = 1; \
             UPDATE `{meta_db}`.fence SET term = 2 WHERE center = 'b'"
        ))
        .await;
    match moved {
        Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 1205, "{e}"),
        other => panic!("the fence moved under an open transaction: {other:?}"),
    }
    applier.query_drop("COMMIT").await.expect("commit");

    // The fence moves to term 2: term 1's check stops its query before the insert.
    other
        .query_drop(format!(
            "UPDATE `{meta_db}`.fence SET term = 2, replica = 1 WHERE center = 'b'"
        ))
        .await
        .expect("move the fence");
    let stale = applier
        .query_drop(format!(
            "START TRANSACTION; {}; INSERT INTO `{db}`.t VALUES (2); COMMIT",
            f1.guard_statement()
        ))
        .await;
    match stale {
        Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, fence::FENCED, "{e}"),
        other => panic!("a stale term passed its check: {other:?}"),
    }
    let e = f1.fenced_now(&mut applier).await;
    applier.query_drop("ROLLBACK").await.expect("rollback");
    assert_fenced(&e, 2, Some(1));
    let ids: Vec<u32> = c
        .query(format!("SELECT id FROM `{db}`.t ORDER BY id"))
        .await
        .expect("rows");
    assert_eq!(ids, [1], "nothing after a failed check ran");
}
