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
use mysql_async::{Conn, Row};

use crate::error::BootstrapError;

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

/// `db_table`, `pk_hash`, `version`, `row_hash`, `rank_key` of a stored tombstone, as bytes.
type TombstoneRow = (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>);

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

    /// The rows of the source's `tombstone` and `local_tombstone` tables, as queries (each
    /// `per_query` statements joined) that raise the target's `tombstone` rows to them with
    /// [`drc_meta::tombstone::write_statement`] (a tombstone only ever rises). Both source tables
    /// go into the target's applier table: they are all the target's history now. Their `at`
    /// becomes the copy's time, so they are kept a retention period from now.
    pub async fn tombstone_statements(
        &mut self,
        meta: &str,
        target_meta: &str,
        per_query: usize,
    ) -> Result<(Vec<String>, u64), BootstrapError> {
        let mut out = Vec::new();
        let mut count = 0;
        for source_table in ["tombstone", "local_tombstone"] {
            let mut q = String::from(
                "SELECT `db_table`, `pk_hash`, `version`, `row_hash`, `rank_key` FROM ",
            );
            drc_core::sqltext::qualified(&mut q, meta, source_table);
            let rows: Vec<TombstoneRow> = match self.conn.query(q).await {
                Ok(r) => r,
                Err(e) if drc_meta::is_missing(&e) => Vec::new(),
                Err(e) => return Err(BootstrapError::query(&self.center, "reading tombstones")(e)),
            };
            for chunk in rows.chunks(per_query.max(1)) {
                let mut joined = String::new();
                for (db_table, pk_hash, version, row_hash, rank_key) in chunk {
                    let corrupt = || {
                        BootstrapError::Unsupported(format!(
                            "center {}: a row of {meta}.{source_table} is malformed (hash not 32 bytes or text not UTF-8)",
                            self.center
                        ))
                    };
                    let db_table = std::str::from_utf8(db_table).map_err(|_| corrupt())?;
                    let version = std::str::from_utf8(version).map_err(|_| corrupt())?;
                    let pk_hash: &[u8; 32] =
                        pk_hash.as_slice().try_into().map_err(|_| corrupt())?;
                    let row_hash: &[u8; 32] =
                        row_hash.as_slice().try_into().map_err(|_| corrupt())?;
                    if !joined.is_empty() {
                        joined.push_str("; ");
                    }
                    joined.push_str(&drc_meta::tombstone::write_statement(
                        target_meta,
                        drc_meta::tombstone::Store::Applied,
                        &drc_meta::tombstone::Mark {
                            db_table,
                            pk_hash,
                            version,
                            row_hash,
                            rank_key,
                        },
                    ));
                    count += 1;
                }
                out.push(joined);
            }
        }
        Ok((out, count))
    }
}
