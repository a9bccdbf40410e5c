//! The source's consistent snapshot: one REPEATABLE READ transaction opened `WITH CONSISTENT
//! SNAPSHOT`, and everything read in it — the binlog position of that snapshot, the source's
//! own checkpoints of its links from the other peers, its tombstones, and every row copied.
//!
//! The position: MariaDB makes the snapshot and the binlog position agree (the snapshot is
//! taken under the binlog's group-commit lock) and reports it in the same session as
//! `Binlog_snapshot_file` / `Binlog_snapshot_position`; 10.11 has no GTID form of it
//! (`binlog_snapshot_gtid_position` does not exist there, checked on 10.11.19), so the GTID
//! position is `BINLOG_GTID_POS(file, offset)` of that file position. A newer server that reports
//! `binlog_snapshot_gtid_position` directly is read that way. MySQL has no snapshot position in
//! its session (it needs a global read lock for that) and is refused as a source.
//!
//! Why one reading connection: MariaDB cannot share a snapshot between sessions (no
//! `SET TRANSACTION SNAPSHOT` as in PostgreSQL), and separate snapshots opened "at the same
//! time" can differ by any commit in between. So one connection reads every chunk in primary
//! key order, and several connections write (writing, with its binlog and index maintenance,
//! costs more than reading; docs/benchmarks.md has the figures).

use drc_core::position::{MariaGtidList, Position};
use drc_meta::{Checkpoint, Recovery};
use drc_mysql::{connect, Flavor, ServerInfo};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value};

use crate::error::BootstrapError;
use crate::render;
use crate::tables::Kind;

/// How long connecting may take.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// An open snapshot of the source.
pub struct Snapshot {
    /// The connection holding the transaction.
    pub conn: Conn,
    /// The source center.
    pub center: String,
    /// The source's binlog position of the snapshot.
    pub position: Position,
}

/// Opens a snapshot of the source at `url` (center `center`).
pub async fn open(url: &str, center: &str, info: &ServerInfo) -> Result<Snapshot, BootstrapError> {
    if info.flavor != Flavor::MariaDb {
        return Err(BootstrapError::Unsupported(format!(
            "center {center} runs MySQL: a bootstrap needs a MariaDB source (MySQL reports no binlog position of a consistent snapshot without a global read lock)"
        )));
    }
    let mut conn = connect(url, CONNECT_TIMEOUT)
        .await
        .map_err(BootstrapError::server(center))?;
    conn.query_drop(
        "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ; \
         SET SESSION time_zone = '+00:00', character_set_results = NULL",
    )
    .await
    .map_err(BootstrapError::query(
        center,
        "setting up the snapshot session",
    ))?;
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .await
        .map_err(BootstrapError::query(
            center,
            "opening the consistent snapshot",
        ))?;
    let rows: Vec<Row> = conn
        .query("SHOW STATUS LIKE 'binlog_snapshot_%'")
        .await
        .map_err(BootstrapError::query(
            center,
            "reading the snapshot's binlog position",
        ))?;
    let mut file = None;
    let mut offset = None;
    let mut gtid = None;
    for mut r in rows {
        let name: Option<String> = r.take(0);
        let value: Option<String> = r.take(1);
        match name.map(|n| n.to_ascii_lowercase()).as_deref() {
            Some("binlog_snapshot_file") => file = value,
            Some("binlog_snapshot_position") => offset = value,
            Some("binlog_snapshot_gtid_position") => gtid = value,
            _ => {}
        }
    }
    let gtid = match gtid.filter(|g| !g.is_empty()) {
        Some(g) => g,
        None => {
            let (Some(file), Some(offset)) = (file.filter(|f| !f.is_empty()), offset) else {
                return Err(BootstrapError::Unsupported(format!(
                    "center {center}: the server reports no binlog position for the snapshot (is log_bin on?)"
                )));
            };
            let offset: u64 = offset.parse().map_err(|_| {
                BootstrapError::Unsupported(format!(
                    "center {center}: Binlog_snapshot_position {offset:?} is not a number"
                ))
            })?;
            let g: Option<Option<String>> = conn
                .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (file.as_str(), offset))
                .await
                .map_err(BootstrapError::query(
                    center,
                    "reading the snapshot's GTID position",
                ))?;
            g.flatten().ok_or_else(|| {
                BootstrapError::Unsupported(format!(
                    "center {center}: BINLOG_GTID_POS({file}, {offset}) is NULL (binlog file gone?)"
                ))
            })?
        }
    };
    let list: MariaGtidList = gtid.parse().map_err(|e| {
        BootstrapError::Unsupported(format!(
            "center {center}: the snapshot's GTID position {gtid:?} does not parse: {e}"
        ))
    })?;
    Ok(Snapshot {
        conn,
        center: center.to_string(),
        position: Position::MariaGtid(list),
    })
}

/// Where a peer's link into the snapshot's center stood in the snapshot.
pub enum PeerPosition {
    /// Every worker finished the link's last batch: the link resumes here.
    Clean(Position),
    /// The last batch is committed by some workers only (they commit separately): the
    /// snapshot holds part of it. Taking a new snapshot a moment later usually finds it done.
    Unfinished,
    /// No checkpoint.
    Missing,
}

impl Snapshot {
    /// Where link `link` (a peer into this center) stood in the snapshot.
    pub async fn peer_position(
        &mut self,
        meta: &str,
        link: &str,
    ) -> Result<PeerPosition, BootstrapError> {
        let rows: Vec<Checkpoint> =
            match drc_meta::load_checkpoints(&mut self.conn, meta, link).await {
                Ok(r) => r,
                Err(drc_meta::MetaError::Query { source, .. }) if drc_meta::is_missing(&source) => {
                    Vec::new()
                }
                Err(e) => return Err(BootstrapError::meta(&self.center)(e)),
            };
        Ok(match drc_meta::recovery(&rows) {
            Recovery::Fresh => PeerPosition::Missing,
            Recovery::Clean { position, .. } => PeerPosition::Clean(position),
            Recovery::Partial { .. } => PeerPosition::Unfinished,
        })
    }

    /// The rows of the source's `tombstone` and `local_tombstone` tables, as statements that
    /// raise the target's `tombstone` rows to them (a tombstone only ever rises, as in
    /// `drc_apply::conflict::tombstone`). At most `per_statement` rows per statement.
    pub async fn tombstone_statements(
        &mut self,
        meta: &str,
        target_meta: &str,
        per_statement: usize,
    ) -> Result<(Vec<String>, u64), BootstrapError> {
        let mut out = Vec::new();
        let mut count = 0;
        let kinds = [
            Kind::Text("utf8mb4".into()),
            Kind::Binary,
            Kind::Text("utf8mb4".into()),
            Kind::Binary,
            Kind::DateTime,
            Kind::Binary,
        ];
        for source_table in ["tombstone", "local_tombstone"] {
            let mut q = String::from(
                "SELECT `db_table`, `pk_hash`, `version`, `row_hash`, `at`, `rank_key` FROM ",
            );
            drc_core::sqltext::qualified(&mut q, meta, source_table);
            let rows: Vec<Row> = match self.conn.exec(q, ()).await {
                Ok(r) => r,
                Err(e) if drc_meta::is_missing(&e) => Vec::new(),
                Err(e) => return Err(BootstrapError::query(&self.center, "reading tombstones")(e)),
            };
            for chunk in rows.chunks(per_statement.max(1)) {
                let mut s = String::from("INSERT INTO ");
                drc_core::sqltext::qualified(&mut s, target_meta, "tombstone");
                s.push_str(
                    " (`db_table`, `pk_hash`, `version`, `row_hash`, `at`, `rank_key`) VALUES ",
                );
                for (i, row) in chunk.iter().enumerate() {
                    if i > 0 {
                        s.push_str(", ");
                    }
                    s.push('(');
                    for (j, kind) in kinds.iter().enumerate() {
                        if j > 0 {
                            s.push_str(", ");
                        }
                        let v = row.as_ref(j).unwrap_or(&Value::NULL);
                        render::value(&mut s, v, kind)?;
                    }
                    s.push(')');
                    count += 1;
                }
                // Assignments run in order and see the new values: `rank_key` goes last.
                s.push_str(
                    " ON DUPLICATE KEY UPDATE \
                     `version` = IF(VALUES(`rank_key`) > `rank_key`, VALUES(`version`), `version`), \
                     `row_hash` = IF(VALUES(`rank_key`) > `rank_key`, VALUES(`row_hash`), `row_hash`), \
                     `at` = IF(VALUES(`rank_key`) > `rank_key`, VALUES(`at`), `at`), \
                     `rank_key` = GREATEST(`rank_key`, VALUES(`rank_key`))",
                );
                out.push(s);
            }
        }
        Ok((out, count))
    }
}
