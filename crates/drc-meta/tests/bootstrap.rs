//! The bootstrap state table against a real server: written, read back typed, cleared.

use drc_core::position::Position;
use drc_meta::bootstrap::{self, LinkStart, TableProgress};
use mysql_async::prelude::Queryable;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_state_round_trips() {
    let s = &drc_testkit::shared_servers(1)[0];
    let db = drc_testkit::create_db(s, "metaboot").await;
    let meta = format!("{db}_meta");
    let mut c = drc_testkit::connect(&s.url()).await;
    drc_meta::ensure_schema(&mut c, &meta)
        .await
        .expect("ensure");
    assert_eq!(bootstrap::load(&mut c, &meta).await.expect("load"), None);
    let link = LinkStart {
        link: "a->c".into(),
        position: "1-1-5,2-2-9".parse::<Position>().expect("pos"),
    };
    let empty = LinkStart {
        link: "c->a".into(),
        // A server that never wrote a GTID: an empty list, which must round-trip too.
        position: Position::MariaGtid(drc_core::position::MariaGtidList::default()),
    };
    let t = TableProgress {
        db: "d".into(),
        table: "t".into(),
        last_key: Some(vec![b"42".to_vec(), vec![0, 0xff]]),
        copied_rows: 7,
        done: false,
    };
    for q in [
        bootstrap::link_statement(&meta, "a", &link),
        bootstrap::link_statement(&meta, "a", &empty),
        bootstrap::table_statement(&meta, "a", &t),
    ] {
        c.query_drop(q).await.expect("write");
    }
    let state = bootstrap::load(&mut c, &meta)
        .await
        .expect("load")
        .expect("state");
    assert_eq!(state.source, "a");
    assert_eq!(state.tables, vec![t]);
    assert!(state.links.contains(&link), "{:?}", state.links);
    assert!(state.links.contains(&empty), "{:?}", state.links);
    c.query_drop(bootstrap::clear_statement(&meta))
        .await
        .expect("clear");
    assert_eq!(bootstrap::load(&mut c, &meta).await.expect("load"), None);
}
