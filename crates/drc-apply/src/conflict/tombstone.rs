//! Tombstones: the rank (version and row hash) of every row deleted in a last-writer-wins
//! table, kept in `<meta>.tombstone` by table and primary-key hash, so that an older write of
//! the key that arrives after the delete does not bring the row back.
//!
//! Deletes applied by drc write their tombstone in the apply transaction. Deletes made by local
//! writers are read from the center's own binlog by [`super::local`], which publishes how far it
//! has read; an applier that finds a key missing waits until that reader has passed the
//! target's binlog position read *after* the row lookup, so every local delete that could have
//! removed the row has its tombstone committed before the tombstone is read ([`Progress`]).
//!
//! Tombstones older than `[conflict] tombstone_retention_hours` are purged: a write delayed
//! longer than that can bring a deleted row back.

use std::time::Duration;

use drc_core::position::Position;
use tokio::sync::watch;

use super::canon::Canon;
use super::decide::Tomb;
use crate::LinkError;

pub use drc_meta::tombstone::Store;

/// The rank of a tombstone as bytes whose order (`memcmp`, as the server compares VARBINARY)
/// is the rank order of [`super::decide::beats_rank`]: the version, encoded order-preserving
/// and prefix-free per type (types in [`Canon::cmp_version`]'s order), then the row hash.
pub fn rank_key(version: &Canon, hash: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    match version {
        Canon::Null => out.push(0),
        Canon::Int(i) => {
            out.push(1);
            out.extend_from_slice(&((*i as u128) ^ (1u128 << 127)).to_be_bytes());
        }
        Canon::Float(f) => {
            out.push(2);
            let b = f.to_bits();
            let k = if b >> 63 == 1 { !b } else { b | (1u64 << 63) };
            out.extend_from_slice(&k.to_be_bytes());
        }
        Canon::Dec(d) => {
            out.push(3);
            decimal_key(&mut out, d);
        }
        Canon::Temporal(t) => {
            out.push(4);
            out.extend_from_slice(t.as_bytes());
            out.push(0);
        }
        Canon::Bytes(b) => {
            out.push(5);
            escaped(&mut out, b);
        }
        Canon::Json(j) => {
            out.push(6);
            escaped(&mut out, j.as_bytes());
        }
    }
    out.extend_from_slice(hash);
    out
}

/// `b` with every 0 byte as `0 FF`, ended by `0 0`: order-preserving and prefix-free.
fn escaped(out: &mut Vec<u8>, b: &[u8]) {
    for &x in b {
        out.push(x);
        if x == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

/// Normalized decimal text (see `canon`): a sign byte (negative first), then for the absolute
/// value the integer digits' count (2 bytes), the integer and fraction digits and a 0 byte;
/// negative values have those bytes inverted, which reverses their order.
fn decimal_key(out: &mut Vec<u8>, d: &str) {
    let (neg, abs) = match d.strip_prefix('-') {
        Some(a) => (true, a),
        None => (false, d),
    };
    let (int, frac) = abs.split_once('.').unwrap_or((abs, ""));
    let mut body = Vec::with_capacity(abs.len() + 3);
    body.extend_from_slice(&(int.len().min(u16::MAX as usize) as u16).to_be_bytes());
    body.extend_from_slice(int.as_bytes());
    body.extend_from_slice(frac.as_bytes());
    body.push(0);
    if neg {
        out.push(0);
        out.extend(body.iter().map(|b| !b));
    } else {
        out.push(1);
        out.extend(body);
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A version as stored in the table: `tag:payload`.
pub fn version_text(c: &Canon) -> String {
    match c {
        Canon::Null => "n".into(),
        Canon::Int(i) => format!("i:{i}"),
        Canon::Float(f) => format!("f:{:016x}", f.to_bits()),
        Canon::Dec(s) => format!("d:{s}"),
        Canon::Temporal(s) => format!("t:{s}"),
        Canon::Json(s) => format!("j:{s}"),
        Canon::Bytes(b) => {
            let mut h = String::from("b:");
            for x in b {
                h.push_str(&format!("{x:02x}"));
            }
            h
        }
    }
}

/// Reads [`version_text`] back; unknown text is kept as bytes (it then ranks by tag, never
/// panics).
pub fn version_from_text(s: &str) -> Canon {
    let (tag, rest) = s.split_once(':').unwrap_or((s, ""));
    match tag {
        "n" => Some(Canon::Null),
        "i" => rest.parse().ok().map(Canon::Int),
        "f" => u64::from_str_radix(rest, 16)
            .ok()
            .map(|b| Canon::Float(f64::from_bits(b))),
        "d" => Some(Canon::Dec(rest.to_string())),
        "t" => Some(Canon::Temporal(rest.to_string())),
        "j" => Some(Canon::Json(rest.to_string())),
        "b" => unhex(rest).map(Canon::Bytes),
        _ => None,
    }
    .unwrap_or_else(|| Canon::Bytes(s.as_bytes().to_vec()))
}

/// The statement that records tombstone `t` for the key `pk_hash` of `db_table`, unless a
/// higher one is there: the server compares the ranks ([`rank_key`]), so concurrent writers
/// of one key (appliers, the local-delete readers of several replicas) only ever raise it.
pub fn write_sql(meta: &str, store: Store, db_table: &str, pk_hash: &[u8; 32], t: &Tomb) -> String {
    drc_meta::tombstone::write_statement(
        meta,
        store,
        &drc_meta::tombstone::Mark {
            db_table,
            pk_hash,
            version: &version_text(&t.version),
            row_hash: &t.hash,
            rank_key: &rank_key(&t.version, &t.hash),
        },
    )
}

/// The writes of `tombs` (`(db.table, key hash, tombstone)`, in order) into the applied store
/// as multi-row raise-only upserts ([`drc_meta::tombstone::write_many_statement`]) of at most
/// `rows` marks and about `limit` bytes each (one mark per statement at least).
pub fn write_many_sqls(
    meta: &str,
    tombs: &[(String, [u8; 32], Tomb)],
    limit: usize,
    rows: usize,
) -> Vec<String> {
    let rendered: Vec<(String, Vec<u8>)> = tombs
        .iter()
        .map(|(_, _, t)| (version_text(&t.version), rank_key(&t.version, &t.hash)))
        .collect();
    let cost = |i: &usize| {
        let (version, rank) = &rendered[*i];
        drc_meta::tombstone::write_many_cost(&tombs[*i].0, version, rank)
    };
    let idx: Vec<usize> = (0..tombs.len()).collect();
    let overhead = drc_meta::tombstone::write_many_overhead(meta);
    let mut out = Vec::new();
    for chunk in crate::size::chunks(&idx, overhead, limit, cost) {
        for part in chunk.chunks(rows.max(1)) {
            let marks: Vec<drc_meta::tombstone::Mark<'_>> = part
                .iter()
                .map(|&i| drc_meta::tombstone::Mark {
                    db_table: &tombs[i].0,
                    pk_hash: &tombs[i].1,
                    version: &rendered[i].0,
                    row_hash: &tombs[i].2.hash,
                    rank_key: &rendered[i].1,
                })
                .collect();
            out.extend(drc_meta::tombstone::write_many_statement(
                meta,
                Store::Applied,
                &marks,
            ));
        }
    }
    out
}

/// One read of the tombstones at `keys` in both tables
/// ([`drc_meta::tombstone::read_many_statement`]); rows parse with [`from_many_row`].
pub fn read_many_sql(meta: &str, keys: &[(String, [u8; 32])]) -> Option<String> {
    drc_meta::tombstone::read_many_statement(meta, keys)
}

/// The key `(db_table, pk_hash)` and tombstone of a [`read_many_sql`] row.
pub fn from_many_row(
    db_table: &str,
    pk_hash: &str,
    version: &str,
    row_hash: &str,
) -> Option<((String, [u8; 32]), Tomb)> {
    let key: [u8; 32] = unhex(pk_hash)?.try_into().ok()?;
    Some(((db_table.to_string(), key), from_row(version, row_hash)?))
}

/// A tombstone from its stored version text and HEX(row_hash).
pub fn from_row(version: &str, row_hash: &str) -> Option<Tomb> {
    let hash: [u8; 32] = unhex(row_hash)?.try_into().ok()?;
    Some(Tomb {
        version: version_from_text(version),
        hash,
    })
}

/// The purges of tombstones older than `retention` (both tables).
pub fn purge_sql(meta: &str, retention: Duration) -> Vec<String> {
    drc_meta::tombstone::purge_statements(meta, retention)
}

/// How far the local-delete reader has read the center's binlog (every local delete up to there
/// has its tombstone committed), and the query that reads the target's current position.
#[derive(Debug, Clone)]
pub struct Progress {
    rx: watch::Receiver<Option<Position>>,
    /// `SELECT` of the target's current binlog position (by server flavor).
    pub position_query: &'static str,
    /// MariaDB: the target's `gtid_domain_id`, the domain of its local writers. Only that
    /// domain's GTID is waited for (drc's own applied transactions carry their origins'
    /// domains, and the reader skips them anyway). `None` compares whole positions.
    pub local_domain: Option<u32>,
}

/// The error code of [`Progress::local_commit_guard`] (a user-defined `SIGNAL`; no server
/// error has it).
pub const LOCAL_COMMIT_SEEN: u16 = 31_999;

/// How long an applier waits for the local-delete reader before the share fails (and is
/// retried).
pub const PROGRESS_WAIT: Duration = Duration::from_secs(30);

impl Progress {
    /// A progress handle on `rx`, for a server whose position `position_query` reads.
    pub fn new(rx: watch::Receiver<Option<Position>>, position_query: &'static str) -> Self {
        Progress {
            rx,
            position_query,
            local_domain: None,
        }
    }

    /// A progress handle on `rx` for the target `server`: its position query and, on MariaDB,
    /// its local domain. `None` when the server has no GTIDs (the reader cannot prove progress
    /// there, so local deletes leave no tombstones).
    pub fn for_target(
        rx: watch::Receiver<Option<Position>>,
        server: &drc_mysql::ServerInfo,
    ) -> Option<Self> {
        let query = drc_mysql::gtid_position_query(server)?;
        let mut p = Progress::new(rx, query);
        if server.flavor == drc_mysql::Flavor::MariaDb {
            p.local_domain = Some(server.gtid_domain_id);
        }
        Some(p)
    }

    /// Where the reader has read to now (`None` before its first report).
    pub fn reader(&self) -> Option<Position> {
        self.rx.borrow().clone()
    }

    /// True when `reader` (a position of the reader) has read every local transaction up to
    /// `p`.
    pub fn passed(&self, reader: &Position, p: &Position) -> bool {
        match (self.local_domain, reader, p) {
            (Some(d), Position::MariaGtid(r), Position::MariaGtid(t)) => match t.get(d) {
                Some(g) => r.get(d).is_some_and(|h| h.seq >= g.seq),
                None => true,
            },
            _ => reader.covers(p),
        }
    }

    /// True when no local transaction can have committed between positions `a` and `b` (read
    /// in that order): the local domain's GTID is the same in both. Always false without a
    /// local domain.
    pub fn no_local_commit_between(&self, a: &Position, b: &Position) -> bool {
        match (self.local_domain, a, b) {
            (Some(d), Position::MariaGtid(a), Position::MariaGtid(b)) => a.get(d) == b.get(d),
            _ => false,
        }
    }

    /// A statement that fails with [`LOCAL_COMMIT_SEEN`] when the local domain's GTID is no
    /// longer what `before` holds: a local transaction committed since `before` was read. It
    /// is [`Progress::no_local_commit_between`] evaluated in the server, so that the check can
    /// ride in a query with other statements. MariaDB only (`None` elsewhere, or without a
    /// local domain).
    pub fn local_commit_guard(&self, before: &Position) -> Option<String> {
        let (Some(d), Position::MariaGtid(b)) = (self.local_domain, before) else {
            return None;
        };
        let expected = b.get(d).map(|g| format!(",{g},")).unwrap_or_default();
        Some(format!(
            "IF NOT (REGEXP_SUBSTR(CONCAT(',', REPLACE(@@gtid_binlog_pos, ' ', ''), ','), \
             ',{d}-[0-9]+-[0-9]+,') <=> '{expected}') THEN SIGNAL SQLSTATE '45000' SET \
             MYSQL_ERRNO = {LOCAL_COMMIT_SEEN}, MESSAGE_TEXT = 'drc: a local transaction \
             committed during conflict resolution'; END IF"
        ))
    }

    /// Waits until the reader has read up to `p`.
    pub async fn wait_covers(&mut self, p: &Position) -> Result<(), LinkError> {
        let deadline = tokio::time::Instant::now() + PROGRESS_WAIT;
        loop {
            let reader = self.rx.borrow_and_update().clone();
            let passed = reader.is_some_and(|r| self.passed(&r, p));
            if passed {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, self.rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    return Err(LinkError::LocalDeletes(
                        "the local-delete reader stopped".into(),
                    ))
                }
                Err(_) => {
                    return Err(LinkError::LocalDeletes(format!(
                    "the local-delete reader has not reached the target's position {p} within {}s",
                    PROGRESS_WAIT.as_secs()
                )))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rank_cmp(a: &(Canon, [u8; 32]), b: &(Canon, [u8; 32])) -> std::cmp::Ordering {
        match crate::conflict::decide::beats_rank(&a.0, &a.1, &b.0, &b.1) {
            Some(_) => std::cmp::Ordering::Greater,
            None if crate::conflict::decide::beats_rank(&b.0, &b.1, &a.0, &a.1).is_some() => {
                std::cmp::Ordering::Less
            }
            None => std::cmp::Ordering::Equal,
        }
    }

    #[test]
    fn rank_keys_order_as_ranks_do() {
        let seed = std::env::var("DRC_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| fastrand::u64(..));
        eprintln!("rank_keys_order_as_ranks_do: seed {seed} (rerun with DRC_TEST_SEED={seed})");
        let mut rng = fastrand::Rng::with_seed(seed);
        let decs = [
            "0",
            "1",
            "-1",
            "0.5",
            "0.05",
            "-0.5",
            "-0.05",
            "10",
            "9.99",
            "-10",
            "-9.99",
            "1.5",
            "1.55",
            "-1.5",
            "-1.55",
            "123456789012345678901234567890.123",
        ];
        let temps = [
            "2026-11-26 10:00:00",
            "2026-11-26 10:00:00.5",
            "2026-11-26 10:00:00.25",
            "2026-11-26 10:00:01",
            "1999-01-01 00:00:00",
        ];
        let mut vals: Vec<(Canon, [u8; 32])> = Vec::new();
        for _ in 0..400 {
            let v = match rng.u8(0..7) {
                0 => Canon::Null,
                1 => Canon::Int(match rng.u8(0..3) {
                    0 => rng.i64(-5..5) as i128,
                    1 => rng.i64(..) as i128,
                    _ => u64::MAX as i128 - rng.i128(0..3),
                }),
                2 => Canon::Float(match rng.u8(0..3) {
                    0 => -rng.f64() * 10.0,
                    1 => rng.f64() * 10.0,
                    _ => [0.0, -0.0, f64::INFINITY, f64::NEG_INFINITY][rng.usize(0..4)],
                }),
                3 => Canon::Dec(decs[rng.usize(0..decs.len())].to_string()),
                4 => Canon::Temporal(temps[rng.usize(0..temps.len())].to_string()),
                5 => Canon::Bytes((0..rng.usize(0..4)).map(|_| rng.u8(0..3)).collect()),
                _ => Canon::Json(format!("{{\"a\":{}}}", rng.u8(0..3))),
            };
            let mut h = [0u8; 32];
            h[0] = rng.u8(0..3);
            h[31] = rng.u8(..);
            vals.push((v, h));
        }
        for a in &vals {
            for b in &vals {
                let want = rank_cmp(a, b);
                let got = rank_key(&a.0, &a.1).cmp(&rank_key(&b.0, &b.1));
                assert_eq!(got, want, "seed {seed}: {a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn only_the_local_domain_is_waited_for() {
        let (tx, rx) = watch::channel(None);
        let mut p = Progress::new(rx, "SELECT 1");
        let pos = |s: &str| -> Position { s.parse().expect("position") };
        let reader = pos("1-1-10,2-2-5");
        let target = pos("1-1-10,2-2-9");
        assert!(!p.passed(&reader, &target), "whole positions by default");
        p.local_domain = Some(1);
        assert!(p.passed(&reader, &target), "domain 2 is another center's");
        assert!(!p.passed(&reader, &pos("1-1-11,2-2-1")));
        assert!(p.passed(&reader, &pos("2-2-100")), "no local write ever");
        assert!(p.no_local_commit_between(&pos("1-1-10,2-2-5"), &pos("1-1-10,2-2-7")));
        assert!(!p.no_local_commit_between(&pos("1-1-10"), &pos("1-1-11")));
        p.local_domain = None;
        assert!(!p.no_local_commit_between(&pos("1-1-10"), &pos("1-1-10")));
        drop(tx);
    }

    #[test]
    fn tombstone_writes_only_raise_the_rank() {
        let t = Tomb {
            version: Canon::Int(5),
            hash: [7; 32],
        };
        let q = write_sql("m", Store::Applied, "d.t", &[1; 32], &t);
        assert!(q.contains("IF(VALUES(`rank_key`) > `rank_key`, VALUES(`version`), `version`)"));
        assert!(q.ends_with("`rank_key` = GREATEST(`rank_key`, VALUES(`rank_key`))"));
    }

    #[test]
    fn versions_round_trip_as_text() {
        for c in [
            Canon::Null,
            Canon::Int(-42),
            Canon::Float(0.1),
            Canon::Dec("-1.5".into()),
            Canon::Temporal("2026-11-26 10:00:00.5".into()),
            Canon::Bytes(vec![0, 255]),
        ] {
            assert_eq!(version_from_text(&version_text(&c)), c);
        }
        assert_eq!(version_from_text("zz"), Canon::Bytes(b"zz".to_vec()));
        assert!(read_many_sql("m", &[]).is_none());
        let q = read_many_sql(
            "m",
            &[
                ("d.a".into(), [1; 32]),
                ("d.b".into(), [2; 32]),
                ("d.a".into(), [3; 32]),
            ],
        )
        .expect("a query");
        assert!(q.contains("(`db_table` = 'd.a' AND `pk_hash` IN (X'0101"));
        assert!(q.contains("FROM `m`.`tombstone` WHERE"));
        assert!(q.contains(
            " UNION ALL SELECT `db_table`, HEX(`pk_hash`), `version`, HEX(`row_hash`) \
             FROM `m`.`local_tombstone` WHERE"
        ));
        assert!(q.contains(", X'0303"));
        assert!(q.contains(" OR (`db_table` = 'd.b' AND `pk_hash` IN (X'0202"));
        let h = "AB".repeat(32);
        let (k, t) = from_many_row("d.a", &h, "i:5", &h).expect("a row");
        assert_eq!(k, ("d.a".to_string(), [0xAB; 32]));
        assert_eq!(t.version, Canon::Int(5));
        assert!(from_row("i:1", "00").is_none());
    }
}
