//! `drc repair`: a verify, then for each confirmed differing key a winner, written over the
//! losing centers' rows with drc's origin tag, logged, and compared again.
//!
//! - **Winner.** A table with a last-writer-wins version column (`[conflict]`) takes the row of
//!   the highest rank among the centers that hold one — version first, then the row hash — by
//!   the appliers' own rule ([`drc_apply::conflict::decide::beats`]); a center that lacks the
//!   row gets it. A table without one takes the row of `--from` (its absence there deletes
//!   the row elsewhere); without `--from` such tables are refused, named
//!   ([`VerifyError::NeedFrom`]).
//! - **Unconfirmed differences** (rows still changing, links lagging) are not repaired: they are
//!   listed, and a later run decides them.
//! - **Writes.** In each losing center L, for a winner from center W, one tagged transaction
//!   per batch of keys: the tag of link `W->L` (session `server_id` of W, or W's marker row, the
//!   way `drc bootstrap` tags its copy, [`drc_bootstrap::target`]), so no link reading L sends
//!   the repair on; each key is `REPLACE`d with the winning row (every column, literals exact,
//!   [`drc_bootstrap::render`]) or `DELETE`d, and logged in L's `<meta>.repair`
//!   ([`drc_meta::repair`]) in the same transaction.
//! - **Check.** The chunks that held repaired keys are compared again ([`crate::chunk`]).
//!
//! `--dry-run` stops after the decision and returns each center's statements.

use std::collections::BTreeMap;

use drc_apply::conflict::decide::beats;
use drc_bootstrap::target::{self, Tag, Writer};
use drc_config::Config;
use drc_meta::repair::{insert_statement, RepairRow};
use drc_meta::{IdentityRole, Marker};
use mysql_async::Value;
use serde::Serialize;

use crate::report::{Difference, Report};
use crate::sql::{self, Range};
use crate::tables::Table;
use crate::{values, Options, Session, VerifyError};

/// The marker-row worker number of repair writes (appliers use 0.. their parallelism).
pub const REPAIR_WORKER: u32 = 1_000_000;

/// Keys per repair transaction.
pub const KEYS_PER_TRANSACTION: usize = 100;

/// What to repair and how.
#[derive(Debug, Clone)]
pub struct RepairOptions {
    /// The verify that finds the differences.
    pub verify: Options,
    /// The center whose rows win for tables without a version column.
    pub from: Option<String>,
    /// Decide and print, write nothing.
    pub dry_run: bool,
    /// The run's id in the repair log.
    pub run: String,
}

/// One row rewrite in one center.
#[derive(Debug, Clone, Serialize)]
pub struct Fix {
    /// The center written.
    pub center: String,
    /// `db.table`.
    pub table: String,
    /// The primary key.
    pub key: serde_json::Value,
    /// `upsert` or `delete`.
    pub action: &'static str,
    /// The center whose row won.
    pub winner: String,
    /// `last_writer_wins` or `from`.
    pub rule: &'static str,
    /// The statement.
    pub statement: String,
    #[serde(skip)]
    log: String,
    #[serde(skip)]
    range: (usize, Range),
}

/// What a repair did.
#[derive(Debug, Clone, Serialize)]
pub struct RepairReport {
    /// The verify before the repair.
    pub before: Report,
    /// Every rewrite (written, or only printed with `--dry-run`).
    pub fixes: Vec<Fix>,
    /// Differences left alone because they were unconfirmed.
    pub skipped_unconfirmed: usize,
    /// The comparison of the repaired chunks afterwards (`None` with `--dry-run` or when
    /// nothing was written).
    pub after: Option<Report>,
}

impl RepairReport {
    /// 0: nothing differs (any more); 1: differences remain (or would be written, dry run).
    pub fn exit_code(&self) -> u8 {
        let remaining = match &self.after {
            Some(a) => !a.differences.is_empty(),
            None => !self.fixes.is_empty(),
        };
        if remaining || self.skipped_unconfirmed > 0 || !self.before.schema_differences.is_empty() {
            1
        } else {
            0
        }
    }
}

fn upsert(t: &Table, row: &[Value]) -> Result<String, VerifyError> {
    let mut q = String::from("REPLACE INTO ");
    q.push_str(&t.def.sql_name());
    q.push_str(" (");
    q.push_str(&t.def.column_list());
    q.push_str(") VALUES (");
    for (i, (v, c)) in row.iter().zip(&t.def.columns).enumerate() {
        if i > 0 {
            q.push_str(", ");
        }
        drc_bootstrap::render::value(&mut q, v, &c.kind)?;
    }
    q.push(')');
    Ok(q)
}

fn delete(t: &Table, key: &sql::Key) -> Result<String, VerifyError> {
    let mut q = String::from("DELETE FROM ");
    q.push_str(&t.def.sql_name());
    q.push_str(" WHERE ");
    sql::key_equals(&mut q, t, key)?;
    Ok(q)
}

/// The winner of one difference: the center index, its row (`None`: deleted) and the rule.
fn winner(
    t: &Table,
    d: &Difference,
    from: Option<usize>,
) -> Option<(usize, Option<Vec<Value>>, &'static str)> {
    let vals = &d.detail.values;
    if let Some(v) = t.version {
        let mut best: Option<(usize, drc_apply::conflict::decide::Row)> = None;
        for (i, row) in vals.iter().enumerate() {
            let Some(row) = row else { continue };
            let r = values::lww_row(t, row);
            best = match best {
                Some((bi, b)) if beats(&r, &b, v).is_none() => Some((bi, b)),
                _ => Some((i, r)),
            };
        }
        return best.map(|(i, _)| (i, vals[i].clone(), "last_writer_wins"));
    }
    from.map(|f| (f, vals.get(f).cloned().flatten(), "from"))
}

/// Runs `drc repair`.
pub async fn repair(config: &Config, options: &RepairOptions) -> Result<RepairReport, VerifyError> {
    let names: Vec<String> = config.centers.iter().map(|c| c.name.clone()).collect();
    let from = match &options.from {
        None => None,
        Some(f) => Some(names.iter().position(|n| n == f).ok_or_else(|| {
            VerifyError::Input(format!(
                "--from {f}: no such center (the topology has {})",
                names.join(", ")
            ))
        })?),
    };
    let mut s = Session::open(config, &options.verify).await?;
    let before = s.verify(&options.verify).await?;
    let confirmed: Vec<&Difference> = before.differences.iter().filter(|d| d.confirmed).collect();
    let skipped_unconfirmed = before.differences.len() - confirmed.len();
    if from.is_none() {
        let mut need: Vec<String> = confirmed
            .iter()
            .filter(|d| s.tables[d.detail.table].version.is_none())
            .map(|d| d.table.clone())
            .collect();
        need.dedup();
        if !need.is_empty() {
            return Err(VerifyError::NeedFrom(need));
        }
    }
    let mut fixes = Vec::new();
    for d in &confirmed {
        let t = &s.tables[d.detail.table];
        let Some((w, row, rule)) = winner(t, d, from) else {
            continue;
        };
        let after_json = row
            .as_ref()
            .map(|r| values::row_json(t, r))
            .unwrap_or(serde_json::Value::Null);
        for (i, have) in d.detail.values.iter().enumerate() {
            if *have == row {
                continue;
            }
            let (action, statement) = match &row {
                Some(r) => ("upsert", upsert(t, r)?),
                None => ("delete", delete(t, &d.detail.key)?),
            };
            let before_json = have
                .as_ref()
                .map(|r| values::row_json(t, r))
                .unwrap_or(serde_json::Value::Null);
            let log = insert_statement(
                &config.replication.meta_database,
                &RepairRow {
                    run: options.run.clone(),
                    table: d.table.clone(),
                    key: d.key.to_string(),
                    action: action.to_string(),
                    winner: names[w].clone(),
                    rule: rule.to_string(),
                    before: before_json.to_string(),
                    after: after_json.to_string(),
                },
            );
            fixes.push(Fix {
                center: names[i].clone(),
                table: d.table.clone(),
                key: d.key.clone(),
                action,
                winner: names[w].clone(),
                rule,
                statement,
                log,
                range: (d.detail.table, d.detail.range.clone()),
            });
        }
    }
    if options.dry_run || fixes.is_empty() {
        return Ok(RepairReport {
            before,
            fixes,
            skipped_unconfirmed,
            after: None,
        });
    }
    write(config, &mut s, &fixes).await?;
    // Compare the repaired chunks again.
    let mut ranges: Vec<(usize, Range)> = fixes.iter().map(|f| f.range.clone()).collect();
    ranges.sort_by(|a, b| (a.0, &a.1.lower, &a.1.upper).cmp(&(b.0, &b.1.lower, &b.1.upper)));
    ranges.dedup();
    let mut after = Report {
        centers: names.clone(),
        tables: Vec::new(),
        schema_differences: Vec::new(),
        differences: Vec::new(),
        warnings: Vec::new(),
        rows: 0,
        chunks: 0,
        rechecked_chunks: 0,
        seconds: 0.0,
        rows_per_sec: 0.0,
    };
    let started = std::time::Instant::now();
    for (ti, range) in &ranges {
        let (o, diffs) = s.compare_range(*ti, range, &options.verify).await?;
        after.rows += o.rows;
        after.chunks += 1;
        after.rechecked_chunks += u64::from(o.waited);
        after.differences.extend(diffs);
    }
    after.seconds = started.elapsed().as_secs_f64();
    after.warnings = s.lag_warnings(&options.verify);
    Ok(RepairReport {
        before,
        fixes,
        skipped_unconfirmed,
        after: Some(after),
    })
}

/// Writes the fixes, per (losing center, winning center), tagged as link `winner->loser`.
async fn write(config: &Config, s: &mut Session, fixes: &[Fix]) -> Result<(), VerifyError> {
    let meta = config.replication.meta_database.clone();
    let mut groups: BTreeMap<(String, String), Vec<&Fix>> = BTreeMap::new();
    for f in fixes {
        groups
            .entry((f.center.clone(), f.winner.clone()))
            .or_default()
            .push(f);
    }
    for ((loser, win), fs) in groups {
        let li = s.centers.list.iter().position(|c| c.name == loser);
        let wi = s.centers.list.iter().position(|c| c.name == win);
        let (Some(li), Some(wi)) = (li, wi) else {
            continue;
        };
        let w_info = s.centers.list[wi].info.clone();
        let l = &mut s.centers.list[li];
        let link = crate::catchup::link(&win, &loser);
        drc_meta::ensure_schema(l.conn(), &meta)
            .await
            .map_err(VerifyError::meta(&loser))?;
        drc_meta::record_identity(
            l.conn(),
            &meta,
            &link,
            IdentityRole::Link,
            w_info.server_id,
            &w_info.server_uuid,
        )
        .await
        .map_err(VerifyError::meta(&loser))?;
        let tag: Tag = target::resolve(
            config.replication.loopback,
            &l.url,
            &loser,
            &l.info,
            &w_info,
            Marker {
                meta: meta.clone(),
                origin: win.clone(),
                link: link.clone(),
                worker: REPAIR_WORKER,
            },
        )
        .await?;
        tracing::info!(center = %loser, winner = %win, ?tag, keys = fs.len(), "repairing");
        let mut writer = Writer::new(&l.url, &loser, &tag, REPAIR_WORKER);
        for part in fs.chunks(KEYS_PER_TRANSACTION) {
            let mut statements = Vec::with_capacity(part.len() * 2);
            for f in part {
                statements.push(f.statement.clone());
                statements.push(f.log.clone());
            }
            writer.transaction(&statements).await?;
        }
    }
    Ok(())
}

/// The dry run's statements, per center: `-- center X` headers and one statement per line.
pub fn dry_run_text(fixes: &[Fix]) -> String {
    let mut by_center: BTreeMap<&str, Vec<&Fix>> = BTreeMap::new();
    for f in fixes {
        by_center.entry(&f.center).or_default().push(f);
    }
    let mut s = String::new();
    for (c, fs) in by_center {
        s.push_str(&format!("-- center {c}\n"));
        for f in fs {
            s.push_str(&format!(
                "-- {} key {}: {} ({} wins, {})\n{};\n",
                f.table, f.key, f.action, f.winner, f.rule, f.statement
            ));
        }
    }
    s
}
