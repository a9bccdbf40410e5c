//! The data: the seed every server gets from the same SQL, the `oltp_write_only`-like backlog
//! generated on a from a fixed seed, and how a table's content is fingerprinted.

#[allow(unused_imports)]
use super::*;

pub(crate) async fn q(conn: &mut Conn, sql: &str) {
    if let Err(e) = conn.query_drop(sql).await {
        panic!("query failed: {e}\n{}", truncate(sql, 300));
    }
}

pub(crate) fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

pub(crate) async fn position(conn: &mut Conn) -> Position {
    let info = drc_mysql::server_info(conn).await.expect("server info");
    drc_mysql::current_position(conn, &info)
        .await
        .expect("current position")
}

/// Binlog bytes written between two `SHOW MASTER STATUS` positions.
pub(crate) async fn binlog_bytes(
    conn: &mut Conn,
    from: &drc_core::position::FilePos,
    to: &drc_core::position::FilePos,
) -> u64 {
    let logs: Vec<Row> = conn
        .query("SHOW BINARY LOGS")
        .await
        .expect("SHOW BINARY LOGS");
    let mut bytes = 0u64;
    let mut inside = false;
    for mut r in logs {
        let name: String = r.take(0).expect("log name");
        let size: u64 = r.take(1).expect("log size");
        inside |= name == from.file;
        if !inside {
            continue;
        }
        let lo = if name == from.file { from.offset } else { 0 };
        let hi = if name == to.file { to.offset } else { size };
        bytes += hi.saturating_sub(lo);
        if name == to.file {
            break;
        }
    }
    bytes
}

/// What identifies the content of `bench.sbtest1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    pub(crate) checksum: u64,
    pub(crate) count: u64,
    pub(crate) sum_k: i64,
}

pub(crate) async fn fingerprint(conn: &mut Conn) -> Fingerprint {
    let row: Option<(String, Option<u64>)> = conn
        .query_first(format!("CHECKSUM TABLE {DB}.sbtest1"))
        .await
        .expect("CHECKSUM TABLE");
    let checksum = row.and_then(|(_, c)| c).expect("a checksum");
    let (count, sum_k): (u64, i64) = conn
        .query_first(format!(
            "SELECT COUNT(*), CAST(COALESCE(SUM(k), 0) AS SIGNED) FROM {DB}.sbtest1"
        ))
        .await
        .expect("count and sum")
        .expect("a row");
    Fingerprint {
        checksum,
        count,
        sum_k,
    }
}

pub(crate) const SBTEST_DDL: &str =
    "(id INT AUTO_INCREMENT PRIMARY KEY, k INT NOT NULL DEFAULT 0, \
     c CHAR(120) NOT NULL DEFAULT '', pad CHAR(60) NOT NULL DEFAULT '', KEY k_1(k)) ENGINE=InnoDB";

/// `--version-column`: the same table with a last-writer-wins version column.
pub(crate) const SBTEST_DDL_VERSIONED: &str =
    "(id INT AUTO_INCREMENT PRIMARY KEY, k INT NOT NULL DEFAULT 0, \
     c CHAR(120) NOT NULL DEFAULT '', pad CHAR(60) NOT NULL DEFAULT '', \
     updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6), \
     KEY k_1(k)) ENGINE=InnoDB";

/// Creates and fills `bench.sbtest1` with `rows` rows, identically on every server. With
/// `binlog = false` nothing reaches the server's binlog (the targets' copy of a's state).
pub(crate) async fn seed(conn: &mut Conn, rows: u64, binlog: bool, versioned: bool) {
    q(
        conn,
        &format!("SET SESSION sql_log_bin = {}", if binlog { 1 } else { 0 }),
    )
    .await;
    q(conn, &format!("CREATE DATABASE {DB}")).await;
    // The Sequence engine's tables (seq_1_to_N) live in the current database.
    q(conn, &format!("USE {DB}")).await;
    let ddl = if versioned {
        SBTEST_DDL_VERSIONED
    } else {
        SBTEST_DDL
    };
    q(conn, &format!("CREATE TABLE {DB}.sbtest1 {ddl}")).await;
    if versioned {
        // The same version on every server (the column's default is the session's time).
        q(conn, "SET TIMESTAMP = 1767225600").await;
    }
    let mut lo = 1;
    while lo <= rows {
        let hi = (lo + SEED_CHUNK - 1).min(rows);
        q(
            conn,
            &format!(
                "INSERT INTO {DB}.sbtest1 (id, k, c, pad) SELECT seq, \
                 FLOOR(1 + RAND(seq) * {rows}), \
                 LEFT(CONCAT(SHA2(CONCAT('c', seq), 256), SHA2(CONCAT('C', seq), 256)), 119), \
                 LEFT(SHA2(CONCAT('p', seq), 256), 59) \
                 FROM seq_{lo}_to_{hi}"
            ),
        )
        .await;
        lo = hi + 1;
    }
    q(conn, "SET SESSION sql_log_bin = 1, TIMESTAMP = DEFAULT").await;
}

/// splitmix64: a small, fixed, fast pseudo-random stream.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// In `1..=n`.
    pub(crate) fn id(&mut self, n: u64) -> u64 {
        1 + self.next() % n
    }

    /// sysbench's text shape: `groups` groups of 11 digits joined by `-`.
    pub(crate) fn digits(&mut self, out: &mut String, groups: usize) {
        for g in 0..groups {
            if g > 0 {
                out.push('-');
            }
            let v = self.next() % 100_000_000_000;
            out.push_str(&format!("{v:011}"));
        }
    }
}

/// Appends one sysbench `oltp_write_only` transaction (4 row changes).
pub(crate) fn write_only_txn(out: &mut String, rng: &mut Rng, rows: u64) {
    let (i1, i2, i3) = (rng.id(rows), rng.id(rows), rng.id(rows));
    out.push_str(&format!(
        "BEGIN;UPDATE sbtest1 SET k = k + 1 WHERE id = {i1};UPDATE sbtest1 SET c = '"
    ));
    rng.digits(out, 10);
    out.push_str(&format!(
        "' WHERE id = {i2};DELETE FROM sbtest1 WHERE id = {i3};\
         INSERT INTO sbtest1 (id, k, c, pad) VALUES ({i3}, {}, '",
        rng.id(rows)
    ));
    rng.digits(out, 10);
    out.push_str("', '");
    rng.digits(out, 5);
    out.push_str("');COMMIT;");
}

/// Generates the backlog on a; returns the generation time.
pub(crate) async fn generate_backlog(conn: &mut Conn, o: &Opts) -> f64 {
    let t = Instant::now();
    q(conn, &format!("USE {DB}")).await;
    let mut rng = Rng(o.seed);
    let mut buf = String::with_capacity(o.txns_per_query as usize * 512);
    let mut left = o.txns;
    while left > 0 {
        buf.clear();
        let n = left.min(o.txns_per_query);
        for _ in 0..n {
            write_only_txn(&mut buf, &mut rng, o.rows);
        }
        q(conn, &buf).await;
        left -= n;
    }
    t.elapsed().as_secs_f64()
}
