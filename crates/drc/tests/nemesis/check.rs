//! The nemesis test's verdict, once every fault is healed and the writers stopped:
//!
//! 1. every center holds identical rows in every table (checksums);
//! 2. every acknowledged write is there (`wlog` for last-writer-wins writes, `ev` for
//!    center-closure writes), and nothing is there that no writer tried (acknowledged or
//!    ambiguous);
//! 3. center closure, in every center: each key's counter `home.n` equals its number of `ev`
//!    rows, those are numbered 1..n without a gap or a repeat, the last one is `home.last_tok`,
//!    and every key was written by its home center only. A transaction applied twice, or an
//!    older one applied over a newer one, breaks one of these;
//! 4. last-writer-wins: every token that is no longer in `lww` was replaced by a later write that
//!    read it (`wlog.prev`) or is on record as a conflict loser in some center.

use std::collections::HashSet;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::net::{Run, NAMES};
use crate::writer::{Outcome, TABLES};

async fn conn(run: &Run, i: usize) -> Result<Conn, String> {
    let url = format!("{}/{}", run.urls[i], run.db);
    mysql_async::Conn::from_url(url.as_str())
        .await
        .map_err(|e| format!("connect to {}: {e}", NAMES[i]))
}

/// (row count, content hash) of `table` in center `i`.
async fn checksum(run: &Run, i: usize, table: &str) -> Result<(u64, Option<String>), String> {
    let mut c = conn(run, i).await?;
    let cols: Vec<String> = c
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? \
             AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (&run.db, table),
        )
        .await
        .map_err(|e| e.to_string())?;
    let concat = cols
        .iter()
        .map(|c| format!("COALESCE(HEX(`{c}`), 'NULL')"))
        .collect::<Vec<_>>()
        .join(", '|', ");
    let r = c
        .query_first(format!(
            "SELECT COUNT(*), SHA2(GROUP_CONCAT(SHA2(CONCAT({concat}), 256) ORDER BY 1 SEPARATOR ''), 256) FROM `{table}`"
        ))
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no checksum row")?;
    let _ = c.disconnect().await;
    Ok(r)
}

/// Waits until every table has the same checksum in all centers; the last differing
/// checksums on failure.
pub async fn converge(run: &Run, limit: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let mut differ = Vec::new();
        for t in TABLES {
            let mut sums = Vec::new();
            for i in 0..3 {
                sums.push(checksum(run, i, t).await);
            }
            if sums.iter().any(|s| s.is_err()) || sums[0] != sums[1] || sums[0] != sums[2] {
                differ.push(format!("{t}: {sums:?}"));
            }
        }
        if differ.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "the centers did not converge within {limit:?}:\n  {}\n{}",
                differ.join("\n  "),
                dump(run).await
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every center's `lww` rows; for the keys whose rows differ, every center's conflict records
/// and the history (`wlog`) of their tokens; the newest tombstones. For a failure message.
pub async fn dump(run: &Run) -> String {
    let mut out = String::new();
    let mut per_center = Vec::new();
    for (i, name) in NAMES.iter().enumerate() {
        let rows: Vec<(i32, String, Option<String>, String)> = match conn(run, i).await {
            Ok(mut c) => c
                .query("SELECT id, tok, u, CAST(updated_at AS CHAR) FROM lww ORDER BY id")
                .await
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        out.push_str(&format!("center {} lww:\n", name));
        for r in &rows {
            out.push_str(&format!("  {r:?}\n"));
        }
        per_center.push(rows);
    }
    let mut ids: HashSet<i32> = HashSet::new();
    let mut toks: HashSet<String> = HashSet::new();
    for rows in &per_center {
        for r in rows {
            if !per_center.iter().all(|o| o.contains(r)) {
                ids.insert(r.0);
                toks.insert(r.1.clone());
            }
        }
    }
    let id_list = ids
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    for (i, name) in NAMES.iter().enumerate() {
        let Ok(mut c) = conn(run, i).await else {
            continue;
        };
        if !ids.is_empty() {
            let recs: Vec<(String, String, String, String, String, String)> = c
                .exec(
                    format!(
                        "SELECT CAST(at AS CHAR), link, rule, resolution, loser, winner FROM `{}`.conflict \
                         WHERE db_table = ? AND (JSON_EXTRACT(loser, '$.id') IN ({id_list}) \
                         OR JSON_EXTRACT(winner, '$.id') IN ({id_list})) ORDER BY at LIMIT 200",
                        run.meta
                    ),
                    (format!("{}.lww", run.db),),
                )
                .await
                .unwrap_or_default();
            out.push_str(&format!(
                "center {} conflicts of lww ids {id_list}:\n",
                name
            ));
            for r in recs {
                out.push_str(&format!("  {r:?}\n"));
            }
        }
        let tombs: Vec<(String, String, String, String)> = c
            .exec(
                format!(
                    "SELECT 'remote', HEX(pk_hash), CAST(version AS CHAR), CAST(at AS CHAR) FROM `{m}`.tombstone \
                     WHERE db_table = ? UNION ALL SELECT 'local', HEX(pk_hash), CAST(version AS CHAR), \
                     CAST(at AS CHAR) FROM `{m}`.local_tombstone WHERE db_table = ? ORDER BY 4",
                    m = run.meta
                ),
                (format!("{}.lww", run.db), format!("{}.lww", run.db)),
            )
            .await
            .unwrap_or_default();
        out.push_str(&format!("center {} newest tombstones of lww:\n", name));
        for r in tombs.iter().rev().take(20).rev() {
            out.push_str(&format!("  {r:?}\n"));
        }
    }
    if let Ok(mut a) = conn(run, 0).await {
        let hist: Vec<(String, Option<String>, String)> = a
            .query("SELECT tok, prev, op FROM wlog")
            .await
            .unwrap_or_default();
        out.push_str(&format!("history of the differing tokens {toks:?}:\n"));
        for h in hist {
            if toks.contains(&h.0) || h.1.as_ref().is_some_and(|p| toks.contains(p)) {
                out.push_str(&format!("  {h:?}\n"));
            }
        }
    }
    out
}

async fn tokens(c: &mut Conn, sql: &str) -> Result<HashSet<String>, String> {
    let v: Vec<String> = c.query(sql).await.map_err(|e| format!("{sql}: {e}"))?;
    Ok(v.into_iter().collect())
}

/// What the checks counted, for the summary.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub lww_writes: usize,
    pub home_writes: usize,
    pub conflicts: usize,
    pub ambiguous: usize,
}

/// Checks 2-4 (the rows converged already).
pub async fn verify(run: &Run, outcomes: &[Outcome]) -> Result<Counts, String> {
    let mut a = conn(run, 0).await?;
    let wlog = tokens(&mut a, "SELECT tok FROM wlog").await?;
    let ev = tokens(&mut a, "SELECT tok FROM ev").await?;
    let ambiguous: HashSet<&String> = outcomes.iter().flat_map(|o| &o.ambiguous).collect();
    let mut problems = Vec::new();
    // 2. Acknowledged writes present; nothing that no writer tried.
    let acked_lww: HashSet<&String> = outcomes.iter().flat_map(|o| &o.acked_lww).collect();
    let acked_home: HashSet<&String> = outcomes.iter().flat_map(|o| &o.acked_home).collect();
    let lost: Vec<_> = acked_lww.iter().filter(|t| !wlog.contains(**t)).collect();
    if !lost.is_empty() {
        problems.push(format!(
            "acknowledged last-writer-wins writes lost: {lost:?}"
        ));
    }
    let lost: Vec<_> = acked_home.iter().filter(|t| !ev.contains(**t)).collect();
    if !lost.is_empty() {
        problems.push(format!("acknowledged center-closure writes lost: {lost:?}"));
    }
    let phantom: Vec<_> = wlog
        .iter()
        .chain(&ev)
        .filter(|t| !acked_lww.contains(t) && !acked_home.contains(t) && !ambiguous.contains(t))
        .collect();
    if !phantom.is_empty() {
        problems.push(format!("writes no writer committed: {phantom:?}"));
    }
    // 3. Center closure, in every center.
    for (i, name) in NAMES.iter().enumerate() {
        let mut c = conn(run, i).await?;
        type Row = (
            i32,
            i32,
            String,
            i64,
            i64,
            Option<i32>,
            Option<i32>,
            Option<String>,
        );
        let rows: Vec<Row> = c
            .query(
                "SELECT h.k, h.n, h.last_tok, COUNT(e.tok), COUNT(DISTINCT e.n), MIN(e.n), MAX(e.n), \
                 MAX(CASE WHEN e.n = h.n THEN e.tok END) FROM home h LEFT JOIN ev e ON e.k = h.k \
                 GROUP BY h.k, h.n, h.last_tok",
            )
            .await
            .map_err(|e| e.to_string())?;
        for (k, n, last, count, distinct, min, max, at_n) in rows {
            let owner = NAMES[(k % 3) as usize];
            let ok = count == n as i64
                && distinct == n as i64
                && min == Some(1)
                && max == Some(n)
                && at_n.as_deref() == Some(last.as_str())
                && last.starts_with(owner);
            if !ok {
                problems.push(format!(
                    "center {}: closure key {k} (home {owner}): n={n} last={last} but ev has \
                     {count} rows, {distinct} distinct n in {min:?}..{max:?}, n={n} is {at_n:?}",
                    name
                ));
            }
        }
        let strays: Vec<(String, i32)> = c
            .query(
                "SELECT tok, k FROM ev WHERE k NOT IN (SELECT k FROM home) \
                 OR LEFT(tok, 1) <> ELT(MOD(k, 3) + 1, 'a', 'b', 'c') LIMIT 10",
            )
            .await
            .map_err(|e| e.to_string())?;
        if !strays.is_empty() {
            problems.push(format!(
                "center {}: ev rows without their key or from another center: {strays:?}",
                name
            ));
        }
    }
    // 4. Last-writer-wins: every vanished token accounted for. Conflict records can be written
    // after the rows converged (a losing change changes nothing), so wait for them a while.
    let produced = tokens(&mut a, "SELECT tok FROM wlog WHERE op <> 'delete'").await?;
    let replaced = tokens(&mut a, "SELECT prev FROM wlog WHERE prev IS NOT NULL").await?;
    let finals = tokens(&mut a, "SELECT tok FROM lww").await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut recorded;
    loop {
        recorded = HashSet::new();
        for i in 0..3 {
            let mut c = conn(run, i).await?;
            let losers: Vec<Option<String>> = c
                .exec(
                    format!(
                        "SELECT JSON_UNQUOTE(JSON_EXTRACT(loser, '$.tok')) FROM `{}`.conflict \
                         WHERE db_table = ?",
                        run.meta
                    ),
                    (format!("{}.lww", run.db),),
                )
                .await
                .map_err(|e| e.to_string())?;
            recorded.extend(losers.into_iter().flatten());
        }
        let unaccounted: Vec<&String> = produced
            .iter()
            .filter(|t| !replaced.contains(*t) && !finals.contains(*t) && !recorded.contains(*t))
            .collect();
        if unaccounted.is_empty() {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            problems.push(format!(
                "last-writer-wins writes lost without a record: {unaccounted:?}"
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if !problems.is_empty() {
        return Err(problems.join("\n"));
    }
    Ok(Counts {
        lww_writes: wlog.len(),
        home_writes: ev.len(),
        conflicts: recorded.len(),
        ambiguous: ambiguous.len(),
    })
}
