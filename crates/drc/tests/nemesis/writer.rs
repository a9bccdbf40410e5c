//! The nemesis test's writers: one per center, a seeded random mix of writes, each carrying a
//! unique token and recorded by outcome.
//!
//! - Last-writer-wins table `lww`: inserts, updates, deletes, primary-key changes, and unique
//!   values (`u`) taken and released (odd seeds; on even seeds `u` is not unique and a key's
//!   run of changes folds into one level, [`schema`]), on a small key set shared by all
//!   centers (so they conflict). Every such transaction also inserts a `wlog` row `(tok, prev, op)`: the token it
//!   wrote (or a fresh one for a delete) and the token of the row it replaced, read under
//!   `FOR UPDATE` in the same transaction. `wlog` replicates like any table, so after the run
//!   every center holds the exact history of committed writes, whatever the client saw.
//! - Center-closure tables `home` and `ev`: a writer only touches keys whose home is its own
//!   center (`k % 3`); each write bumps `home.n` and appends `ev (tok, k, n)` in one transaction.
//!
//! Clock skew: while the nemesis sets a center's clock behind, its writer stamps versions from
//! that clock, and writes only what last-writer-wins can order under skew (docs/conflicts.md,
//! "Clock skew"): updates whose version is at least the row's version plus a microsecond (a
//! hybrid logical clock: `GREATEST(NOW(6), updated_at + INTERVAL 1 MICROSECOND)`), without
//! taking unique values, and deletes. An insert, a primary-key change or a unique value taken
//! by a center whose clock is behind can be causally later than a delete or a release in
//! another center and still carry an older version; the other centers then rightly drop it
//! while its own center keeps it: versions from wall clocks cannot order such writes, and the
//! nemesis found exactly that (seeds 16166541788319284853, 10807387822426381705, with skews of
//! 3 and 30 s before this rule).
//!
//! A write is acknowledged when its COMMIT returned OK; it is ambiguous when the connection
//! failed during COMMIT (it may or may not have committed); anything earlier is rolled back.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::schedule::Clocks;

/// The schema of the test database for `seed`: on odd seeds `lww.u` is unique (values taken
/// and released), on even seeds it is a plain index, so that `lww`'s only unique key is its
/// integer primary key and the appliers fold a key's run of changes into one level
/// (`drc_apply::plan::lww_levels`).
pub fn schema(seed: u64) -> String {
    let u = if seed % 2 == 1 { "UNIQUE" } else { "" };
    let key = if seed % 2 == 1 { "" } else { ", KEY (u)" };
    format!(
        "CREATE TABLE lww (id INT PRIMARY KEY, tok VARCHAR(40) NOT NULL, u VARCHAR(8) NULL {u}, \
         updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6){key}); {}",
        OTHER_TABLES
    )
}

/// The tables besides `lww`.
const OTHER_TABLES: &str = "\
    CREATE TABLE wlog (tok VARCHAR(40) PRIMARY KEY, prev VARCHAR(40) NULL, op VARCHAR(8) NOT NULL); \
    CREATE TABLE home (k INT PRIMARY KEY, n INT NOT NULL, last_tok VARCHAR(40) NOT NULL); \
    CREATE TABLE ev (tok VARCHAR(40) PRIMARY KEY, k INT NOT NULL, n INT NOT NULL, KEY (k));";

/// The tables compared at the end.
pub const TABLES: [&str; 4] = ["lww", "wlog", "home", "ev"];

/// Keys of `lww`.
const LWW_KEYS: i32 = 16;
/// Keys of `home` (each center owns a third).
pub const HOME_KEYS: i32 = 30;

/// What one writer did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Tokens of acknowledged `lww` writes (deletes included).
    pub acked_lww: Vec<String>,
    /// Tokens of acknowledged center-closure writes.
    pub acked_home: Vec<String>,
    /// Tokens whose COMMIT failed on the connection (outcome unknown).
    pub ambiguous: Vec<String>,
    /// Writes that did not happen, by reason (duplicate key, deadlock, connection...).
    pub failed: BTreeMap<String, u64>,
}

enum Step {
    /// Rolled back (or never began): the reason.
    Failed(String),
    /// Committed.
    Acked,
    /// COMMIT failed on the connection.
    Ambiguous,
}

fn reason(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => format!("server error {}", s.code),
        mysql_async::Error::Io(_) => "connection".into(),
        mysql_async::Error::Driver(_) => "driver".into(),
        other => format!("{other:?}").chars().take(40).collect(),
    }
}

/// Whether a failed statement left the connection usable (a server error reply).
fn usable(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(_))
}

async fn connect(url: &str) -> Option<Conn> {
    let opts = mysql_async::Opts::from_url(url).ok()?;
    let mut c = tokio::time::timeout(Duration::from_secs(5), Conn::new(opts))
        .await
        .ok()?
        .ok()?;
    c.query_drop("SET SESSION innodb_lock_wait_timeout = 5")
        .await
        .ok()?;
    Some(c)
}

/// Runs statements in one transaction; `COMMIT` decides acked or ambiguous.
async fn transaction(
    c: &mut Conn,
    stmts: &[String],
    read_prev: Option<&str>,
) -> (Step, Option<String>) {
    if let Err(e) = c.query_drop("START TRANSACTION").await {
        return (Step::Failed(reason(&e)), None);
    }
    let mut prev = None;
    if let Some(sql) = read_prev {
        match c.query_first::<String, _>(sql).await {
            Ok(Some(p)) => prev = Some(p),
            Ok(None) => {
                let _ = c.query_drop("ROLLBACK").await;
                return (Step::Failed("no row".into()), None);
            }
            Err(e) => {
                if usable(&e) {
                    let _ = c.query_drop("ROLLBACK").await;
                }
                return (Step::Failed(reason(&e)), None);
            }
        }
    }
    for s in stmts {
        let s = match &prev {
            Some(p) => s.replace("{prev}", &format!("'{p}'")),
            None => s.replace("{prev}", "NULL"),
        };
        if let Err(e) = c.query_drop(&s).await {
            if usable(&e) {
                let _ = c.query_drop("ROLLBACK").await;
            }
            return (Step::Failed(reason(&e)), prev);
        }
    }
    match c.query_drop("COMMIT").await {
        Ok(()) => (Step::Acked, prev),
        Err(_) => (Step::Ambiguous, prev),
    }
}

/// Writes into center `center` until `stop` is set.
pub async fn write(
    url: String,
    center: usize,
    seed: u64,
    stop: Arc<AtomicBool>,
    clocks: Arc<Clocks>,
) -> Outcome {
    let mut rng =
        fastrand::Rng::with_seed(seed.wrapping_mul(1_000_003).wrapping_add(center as u64));
    let mut out = Outcome::default();
    let mut conn: Option<Conn> = None;
    let mut skewed = 0i64;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let Some(c) = conn.as_mut() else {
            conn = connect(&url).await;
            if conn.is_none() {
                *out.failed.entry("connect".into()).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            skewed = 0;
            continue;
        };
        // The clock this center's writers stamp versions with.
        let off = clocks.offset[center].load(Ordering::Relaxed);
        let clock = if off != 0 {
            Some(format!(
                "SET TIMESTAMP = UNIX_TIMESTAMP(SYSDATE(6)) + {off}"
            ))
        } else if skewed != 0 {
            Some("SET TIMESTAMP = DEFAULT".to_string())
        } else {
            None
        };
        if let Some(sql) = clock {
            if c.query_drop(sql).await.is_err() {
                conn = None;
                continue;
            }
            skewed = off;
        }
        n += 1;
        let tok = format!("{}{seed:x}-{n}", ["a", "b", "c"][center]);
        let home = rng.u8(0..10) < 4;
        let (stmts, read, op): (Vec<String>, Option<String>, &str) = if home {
            let k = center as i32 + 3 * rng.i32(0..HOME_KEYS / 3);
            (
                vec![
                    format!(
                        "INSERT INTO home (k, n, last_tok) VALUES ({k}, 1, '{tok}') \
                         ON DUPLICATE KEY UPDATE n = n + 1, last_tok = VALUES(last_tok)"
                    ),
                    format!(
                        "INSERT INTO ev (tok, k, n) SELECT '{tok}', k, n FROM home WHERE k = {k}"
                    ),
                ],
                None,
                "home",
            )
        } else {
            let id = rng.i32(1..=LWW_KEYS);
            let u = if rng.u8(0..10) < 3 {
                format!("'e{}'", rng.u8(0..4))
            } else {
                "NULL".into()
            };
            let read = format!("SELECT tok FROM lww WHERE id = {id} FOR UPDATE");
            let pick = rng.u8(0..10);
            if off != 0 {
                // Behind: versioned updates (no unique values) and deletes only.
                let (sql, op) = if pick < 6 {
                    (
                        format!(
                            "UPDATE lww SET tok = '{tok}', updated_at = \
                             GREATEST(NOW(6), updated_at + INTERVAL 1 MICROSECOND) WHERE id = {id}"
                        ),
                        "update",
                    )
                } else {
                    (format!("DELETE FROM lww WHERE id = {id}"), "delete")
                };
                (vec![sql], Some(read), op)
            } else {
                match pick {
                    0..=2 => (
                        vec![format!(
                            "INSERT INTO lww (id, tok, u) VALUES ({id}, '{tok}', {u})"
                        )],
                        None,
                        "insert",
                    ),
                    3..=6 => (
                        vec![format!(
                            "UPDATE lww SET tok = '{tok}', u = {u} WHERE id = {id}"
                        )],
                        Some(read),
                        "update",
                    ),
                    7 | 8 => (
                        vec![format!("DELETE FROM lww WHERE id = {id}")],
                        Some(read),
                        "delete",
                    ),
                    _ => (
                        vec![format!(
                            "UPDATE lww SET id = {}, tok = '{tok}' WHERE id = {id}",
                            rng.i32(1..=LWW_KEYS)
                        )],
                        Some(read),
                        "pk",
                    ),
                }
            }
        };
        let mut stmts = stmts;
        if !home {
            stmts.push(format!(
                "INSERT INTO wlog (tok, prev, op) VALUES ('{tok}', {{prev}}, '{op}')"
            ));
        }
        let step = tokio::time::timeout(
            Duration::from_secs(20),
            transaction(c, &stmts, read.as_deref()),
        )
        .await;
        match step {
            Ok((Step::Acked, _)) if home => out.acked_home.push(tok),
            Ok((Step::Acked, _)) => out.acked_lww.push(tok),
            Ok((Step::Ambiguous, _)) => {
                out.ambiguous.push(tok);
                conn = None;
            }
            Ok((Step::Failed(why), _)) => {
                if !why.starts_with("server error") && why != "no row" {
                    conn = None;
                }
                *out.failed.entry(why).or_default() += 1;
            }
            Err(_) => {
                // Timed out somewhere: the outcome is unknown.
                out.ambiguous.push(tok);
                conn = None;
            }
        }
    }
    out
}
