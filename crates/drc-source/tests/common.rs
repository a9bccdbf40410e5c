//! Helpers shared by the source tests.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use drc_core::change::{RowChange, SourceEvent};
use drc_core::position::Position;
use drc_source::{Source, SourceConfig, StartFrom};
use drc_testkit::MariaDb;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

/// Deadline for any wait on the stream.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The server shared by the tests of this binary.
pub fn server() -> &'static MariaDb {
    &drc_testkit::shared_servers(1)[0]
}

static NEXT_REPLICA_ID: AtomicU32 = AtomicU32::new(1);

/// A replica server_id unique within this process.
pub fn replica_id() -> u32 {
    1_000_000 + NEXT_REPLICA_ID.fetch_add(1, Ordering::Relaxed)
}

/// A fresh database on `server` and a connection using it (time zone UTC, permissive sql_mode
/// so that zero dates and other edge values can be written).
pub async fn fresh_db(server: &MariaDb, prefix: &str) -> (String, Conn) {
    let db = drc_testkit::create_db(server, prefix).await;
    let mut conn = drc_testkit::connect(&server.url_for(&db)).await;
    conn.query_drop("SET time_zone = '+00:00', sql_mode = ''")
        .await
        .expect("session settings");
    (db, conn)
}

/// The server's current position.
pub async fn position_now(server: &MariaDb) -> Position {
    let mut c = drc_testkit::connect(&server.url()).await;
    let info = drc_mysql::server_info(&mut c).await.expect("server info");
    drc_mysql::current_position(&mut c, &info)
        .await
        .expect("position")
}

/// A source on `server` starting at `start`.
pub async fn source(server: &MariaDb, start: Position) -> Source {
    let mut cfg = SourceConfig::new(server.url(), replica_id());
    cfg.start = StartFrom::Position(start);
    Source::connect(cfg).await.expect("source connects")
}

/// Reads events until `n` row changes of database `db` arrived; returns all events of `db`
/// (Begin/Commit included for transactions that touched it), failing after [`DEADLINE`].
pub async fn read_rows(src: &mut Source, db: &str, n: usize) -> Vec<SourceEvent> {
    let mut out = Vec::new();
    let mut rows = 0;
    let mut pending: Vec<SourceEvent> = Vec::new();
    let fut = async {
        while rows < n {
            let ev = src.next().await.expect("source event");
            match &ev {
                SourceEvent::Begin(_) => {
                    pending.clear();
                    pending.push(ev);
                }
                SourceEvent::Rows(r) => {
                    let mine: Vec<RowChange> = r
                        .iter()
                        .filter(|c| &*c.table.database == db)
                        .cloned()
                        .collect();
                    rows += mine.len();
                    if !mine.is_empty() {
                        pending.push(SourceEvent::Rows(mine));
                    }
                }
                SourceEvent::Commit(_) => {
                    if pending.iter().any(|e| matches!(e, SourceEvent::Rows(_))) {
                        out.append(&mut pending);
                        out.push(ev);
                    }
                    pending.clear();
                }
                SourceEvent::Ddl(d) if d.database == db => out.push(ev),
                SourceEvent::Ddl(_) => {}
            }
        }
        out.append(&mut pending);
    };
    tokio::time::timeout(DEADLINE, fut)
        .await
        .unwrap_or_else(|_| panic!("{n} row changes of {db} did not arrive within {DEADLINE:?}"));
    out
}

/// The row changes in `events`, flattened.
pub fn changes(events: &[SourceEvent]) -> Vec<RowChange> {
    events
        .iter()
        .filter_map(|e| match e {
            SourceEvent::Rows(r) => Some(r.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}
