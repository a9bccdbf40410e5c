//! `drc cutover`: move units to another home center with no key ever writable in two centers
//! (docs/routing.md, "Cutover"). Steps, each reported with its duration:
//!
//! 0. connect to every center, take the cutover lock, bring every reachable center's map to the
//!    newest one (a center that missed an earlier cutover catches up here);
//! 1. mark the units `moving` (epoch + 1) in every reachable center, and wait until the daemons
//!    serve it (their route API answers `writable: false`);
//! 2. fence the old home: for a whole center (`--from`), `read_only` for application users and
//!    their open write transactions ended; for one unit (`--unit`) the route state is the fence,
//!    and the cutover waits `--drain-ms` for writes routed before the mark to commit;
//! 3. wait until every reachable center has applied everything the old home committed (its
//!    binlog position, read after the fence, covered by each link's checkpoint from it);
//! 4. flip the units' home (epoch + 1) and make them writable; lift the new home's fence when
//!    an earlier cutover had set it.
//!
//! `--force` (the old home is unreachable) skips 2 and 3, flips at once, and records the last
//! position of the old home that the new home had applied: the window of writes that may
//! arrive later and resolve by the conflict rules.
//!
//! Resumable and idempotent: the state lives in the units' rows. A run after a crash finds the
//! units moving to the same center and continues; a run after success finds nothing to move.

use std::time::{Duration, Instant};

use drc_config::Config;
use drc_meta::route::{CutoverRecord, UnitRow, UnitState};

use crate::centers::{self, describe, Centers};
use crate::map::LiveMap;
use crate::RouteError;

/// Which units move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every unit whose home is this center.
    Center(String),
    /// One unit.
    Unit(String),
}

/// What `drc cutover` was asked.
#[derive(Debug, Clone)]
pub struct CutoverRequest {
    /// The units.
    pub selection: Selection,
    /// The new home.
    pub to: String,
    /// Skip the fence and the wait (the old home is unreachable).
    pub force: bool,
    /// The longest wait for the centers to catch up (step 3).
    pub catch_up_timeout: Duration,
    /// For one unit (no read-only fence): how long writes routed before the mark may still
    /// take to commit in the old home; step 2 waits this long before step 3 reads its position.
    pub drain: Duration,
}

/// What a cutover did.
#[derive(Debug, Clone, Default)]
pub struct CutoverReport {
    /// The cutover's id (journal key).
    pub id: String,
    /// The units moved (empty: nothing to do).
    pub units: Vec<String>,
    /// The old home.
    pub from: String,
    /// Milliseconds from marking the units moving to the flip.
    pub unwritable_ms: u64,
    /// Total milliseconds.
    pub total_ms: u64,
    /// For a forced cutover: the last position of the old home the new home had applied.
    pub window: Option<String>,
    /// Every step: name and milliseconds.
    pub steps: Vec<(String, u64)>,
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

/// How long the daemons get to serve a new epoch before the cutover goes on without them.
const DAEMON_WAIT: Duration = Duration::from_secs(3);

/// Runs a cutover; `out` receives one line per step.
pub async fn cutover(
    config: &Config,
    req: &CutoverRequest,
    out: &mut dyn FnMut(String),
) -> Result<CutoverReport, RouteError> {
    let started = Instant::now();
    let routing = config.routing.clone().ok_or(RouteError::NotConfigured)?;
    if config.center(&req.to).is_none() {
        return Err(RouteError::Refused(format!(
            "--to {:?} is not a center (centers: {})",
            req.to,
            config.center_names().join(", ")
        )));
    }
    let mut report = CutoverReport::default();
    let mut step_start = Instant::now();
    let mut cs = Centers::connect(config).await;
    for c in &cs.centers {
        if let Some(e) = &c.error {
            out(format!("center {} is unreachable: {e}", c.name));
        }
    }
    cs.conn(&req.to)?;
    cs.lock().await?;
    let mut map = LiveMap::seeded(routing.clone());
    cs.merge_into(&mut map).await?;
    let all: Vec<String> = routing.units.iter().map(|u| u.name.clone()).collect();
    cs.sync(&map, &all).await?;
    // Which units, and from where.
    let selected: Vec<UnitRow> = match &req.selection {
        Selection::Center(from) => {
            if config.center(from).is_none() {
                return Err(RouteError::Refused(format!(
                    "--from {from:?} is not a center (centers: {})",
                    config.center_names().join(", ")
                )));
            }
            if from == &req.to {
                return Err(RouteError::Refused(format!(
                    "--from and --to are both {from}: give the center the units move to"
                )));
            }
            map.rows().filter(|r| &r.home == from).cloned().collect()
        }
        Selection::Unit(u) => {
            let row = map.row(u).cloned().ok_or_else(|| {
                RouteError::Refused(format!(
                    "--unit {u:?} is not a unit of [routing] (units: {})",
                    all.join(", ")
                ))
            })?;
            if row.home == req.to && row.state == UnitState::Writable {
                if row.cutover.is_empty() {
                    return Err(RouteError::Refused(format!(
                        "unit {u} already lives in {} (its home in the file, never moved): nothing to move; give another --to",
                        req.to
                    )));
                }
                // A rerun of the cutover that moved it here: done already.
                Vec::new()
            } else {
                vec![row]
            }
        }
    };
    let from = match &req.selection {
        Selection::Center(f) => f.clone(),
        Selection::Unit(_) => selected.first().map(|r| r.home.clone()).unwrap_or_default(),
    };
    report.from = from.clone();
    if from == req.to && !selected.is_empty() {
        return Err(RouteError::Refused(format!(
            "the units already live in {}: give another --to",
            req.to
        )));
    }
    for r in &selected {
        if let UnitState::Moving(t) = &r.state {
            if t != &req.to {
                return Err(RouteError::Refused(format!(
                    "unit {} is moving to {t} (cutover {}): finish that one with `drc cutover --unit {} --to {t}` first",
                    r.unit, r.cutover, r.unit
                )));
            }
        }
    }
    report
        .steps
        .push(("prepare".into(), ms(step_start.elapsed())));
    out(format!(
        "step 0 prepare: reached {} of {} centers, map at epoch {} ({} ms)",
        cs.reachable().len(),
        config.centers.len(),
        map.epoch(),
        ms(step_start.elapsed())
    ));
    if selected.is_empty() {
        out(match &req.selection {
            Selection::Center(f) => format!("nothing to move: no unit's home is {f}"),
            Selection::Unit(u) => format!(
                "nothing to move: unit {u} lives in {} and is writable",
                req.to
            ),
        });
        report.total_ms = ms(started.elapsed());
        return Ok(report);
    }
    let from_reachable = cs.conn(&from).is_ok();
    if !from_reachable && !req.force {
        let why = cs
            .conn(&from)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        return Err(RouteError::Refused(format!(
            "{why}; a cutover waits until the other centers have applied everything {from} committed, which needs {from}. If {from} is down for good, run again with --force: its writes not yet applied elsewhere arrive when it returns and resolve by the conflict rules (docs/routing.md)"
        )));
    }
    // The new home must take writes once the units arrive.
    {
        let meta = cs.meta().to_string();
        let to = cs.conn(&req.to)?;
        if centers::read_only(to).await?
            && drc_meta::route::fenced_by(to, &meta, &req.to)
                .await?
                .is_none()
        {
            return Err(RouteError::Refused(format!(
                "center {} is read_only, and not by a drc cutover: the moved keys could not be written there. Run SET GLOBAL read_only = OFF in {} first",
                req.to, req.to
            )));
        }
    }
    let units: Vec<String> = selected.iter().map(|r| r.unit.clone()).collect();
    report.units = units.clone();
    let resumed = selected
        .iter()
        .find(|r| matches!(&r.state, UnitState::Moving(_)))
        .map(|r| r.cutover.clone());
    let id = resumed.clone().unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        format!("{now}-{from}-{}", req.to)
    });
    report.id = id.clone();
    let mut record = CutoverRecord {
        id: id.clone(),
        units: units.join(","),
        from: from.clone(),
        to: req.to.clone(),
        forced: req.force,
        step: "moving".into(),
        window: None,
        unwritable_ms: None,
    };
    // Step 1: moving.
    step_start = Instant::now();
    let moving_since = Instant::now();
    let epoch = map.epoch() + 1;
    let rows: Vec<UnitRow> = selected
        .iter()
        .filter(|r| r.state == UnitState::Writable)
        .map(|r| UnitRow {
            state: UnitState::Moving(req.to.clone()),
            epoch,
            cutover: id.clone(),
            ..r.clone()
        })
        .collect();
    map.merge(&rows);
    cs.sync(&map, &units).await?;
    journal(&mut cs, &record).await?;
    let late = centers::daemons_serve(config, map.epoch(), DAEMON_WAIT).await;
    for (c, why) in &late {
        out(format!(
            "  warning: the daemon of {c} does not serve the new map yet ({why}); gateways asking it may still route writes to {from}"
        ));
    }
    let d = ms(step_start.elapsed());
    report.steps.push(("moving".into(), d));
    out(format!(
        "step 1 mark moving: {} unit(s) of {from} -> {} ({}), epoch {}{} ({d} ms)",
        units.len(),
        req.to,
        units.join(", "),
        map.epoch(),
        if resumed.is_some() { ", resumed" } else { "" }
    ));
    // Step 2: fence.
    step_start = Instant::now();
    let fence_text = match (&req.selection, req.force) {
        (_, true) => "skipped (--force)".to_string(),
        (Selection::Unit(_), false) => {
            tokio::time::sleep(req.drain).await;
            format!(
                "the route state is the fence (one unit; {from} stays writable for its other units); waited {} ms for writes routed before the mark to commit",
                ms(req.drain)
            )
        }
        (Selection::Center(_), false) => {
            let users = centers::drc_users(config);
            let meta = cs.meta().to_string();
            let ended = centers::fence(cs.conn(&from)?, &meta, &from, &id, &users).await?;
            record.step = "fenced".into();
            journal(&mut cs, &record).await?;
            format!("{from} is read_only for application users; {ended} session(s) with open write transactions ended")
        }
    };
    let d = ms(step_start.elapsed());
    report.steps.push(("fence".into(), d));
    out(format!("step 2 fence: {fence_text} ({d} ms)"));
    // Step 3: catch up.
    step_start = Instant::now();
    let meta = cs.meta().to_string();
    let caught = if req.force {
        let link = format!("{from}->{}", req.to);
        let applied = centers::applied(cs.conn(&req.to)?, &meta, &link).await?;
        let w = applied.map_or_else(|| "nothing (no checkpoint)".to_string(), |p| p.to_string());
        record.window = Some(w.clone());
        report.window = Some(w.clone());
        format!("skipped (--force): {} had applied {from} up to {w}; {from}'s writes after it arrive when {from} returns", req.to)
    } else {
        let at = centers::position(cs.conn(&from)?).await?;
        let others: Vec<String> = cs.reachable().into_iter().filter(|c| c != &from).collect();
        let deadline = Instant::now() + req.catch_up_timeout;
        for c in &others {
            let link = format!("{from}->{c}");
            loop {
                let applied = centers::applied(cs.conn(c)?, &meta, &link).await?;
                if applied.as_ref().is_some_and(|p| p.covers(&at)) {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(RouteError::Timeout(format!(
                        "{c} has not applied {from}'s writes up to {at} within {} s (it is at {}): the units stay moving and not writable. Check the link with `drc status`, then run this cutover again to continue (or move the units back with `drc cutover --unit U --to {from}`)",
                        req.catch_up_timeout.as_secs(),
                        applied.map_or_else(|| "no checkpoint".to_string(), |p| p.to_string())
                    )));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        record.step = "caught_up".into();
        journal(&mut cs, &record).await?;
        format!("{} applied {from} up to {at}", others.join(", "))
    };
    let d = ms(step_start.elapsed());
    report.steps.push(("catch-up".into(), d));
    out(format!("step 3 catch up: {caught} ({d} ms)"));
    // Step 4: flip.
    step_start = Instant::now();
    let mut fresh = LiveMap::seeded(routing.clone());
    cs.merge_into(&mut fresh).await?;
    map.merge(&fresh.rows().cloned().collect::<Vec<_>>());
    let epoch = map.epoch() + 1;
    let rows: Vec<UnitRow> = units
        .iter()
        .filter_map(|u| map.row(u))
        .map(|r| UnitRow {
            home: req.to.clone(),
            state: UnitState::Writable,
            epoch,
            cutover: id.clone(),
            unit: r.unit.clone(),
        })
        .collect();
    map.merge(&rows);
    cs.sync(&map, &units).await?;
    let unwritable = ms(moving_since.elapsed());
    record.step = "done".into();
    record.unwritable_ms = Some(unwritable);
    journal(&mut cs, &record).await?;
    let lifted = centers::unfence(cs.conn(&req.to)?, &meta, &req.to).await?;
    let late = centers::daemons_serve(config, map.epoch(), DAEMON_WAIT).await;
    for (c, why) in &late {
        out(format!(
            "  warning: the daemon of {c} does not serve the flip yet ({why})"
        ));
    }
    let d = ms(step_start.elapsed());
    report.steps.push(("flip".into(), d));
    out(format!(
        "step 4 flip: {} unit(s) live in {} and are writable, epoch {}{} ({d} ms)",
        units.len(),
        req.to,
        map.epoch(),
        if lifted {
            format!("; {} is no longer read_only", req.to)
        } else {
            String::new()
        }
    ));
    report.unwritable_ms = ms(moving_since.elapsed());
    report.total_ms = ms(started.elapsed());
    out(format!(
        "done: cutover {id} took {} ms; the keys were not writable for {} ms",
        report.total_ms, report.unwritable_ms
    ));
    if let Some(w) = &report.window {
        out(format!(
            "forced: writes of {from} after {w} were not applied in {} before the flip; they arrive when {from} returns (see `drc route --config F --history`)",
            req.to
        ));
    }
    Ok(report)
}

/// Records the cutover's step in every reachable center.
async fn journal(cs: &mut Centers, r: &CutoverRecord) -> Result<(), RouteError> {
    use mysql_async::prelude::Queryable;
    let q = drc_meta::route::cutover_statement(cs.meta(), r);
    for c in &mut cs.centers {
        if let Some(conn) = c.conn.as_mut() {
            conn.query_drop(q.as_str())
                .await
                .map_err(RouteError::query("journaling the cutover"))?;
        }
    }
    Ok(())
}

/// The newest map held by any reachable center (for `drc route`), with the centers that did
/// not answer or hold an older map.
pub async fn newest_map(config: &Config) -> Result<(LiveMap, Vec<String>), RouteError> {
    let routing = config.routing.clone().ok_or(RouteError::NotConfigured)?;
    let mut cs = Centers::connect(config).await;
    let mut notes = Vec::new();
    let mut map = LiveMap::seeded(routing.clone());
    let mut per_center = Vec::new();
    for c in &mut cs.centers {
        match c.conn.as_mut() {
            Some(conn) => {
                let rows = drc_meta::route::load(conn, &config.replication.meta_database).await?;
                map.merge(&rows);
                per_center.push((c.name.clone(), rows));
            }
            None => notes.push(format!(
                "center {} is unreachable: {}",
                c.name,
                c.error.clone().unwrap_or_default()
            )),
        }
    }
    if per_center.is_empty() {
        return Err(RouteError::Unreachable {
            center: "every center".into(),
            error: notes.join("; "),
        });
    }
    for (name, rows) in per_center {
        for best in map.rows() {
            let held = rows.iter().find(|r| r.unit == best.unit);
            if held != Some(best) {
                notes.push(format!(
                    "center {name} holds an older row of unit {} ({}); its daemon raises it within seconds",
                    best.unit,
                    held.map(describe).unwrap_or_else(|| "none".into())
                ));
            }
        }
    }
    Ok((map, notes))
}
