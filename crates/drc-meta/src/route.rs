//! The live routing map and the cutover journal (docs/routing.md):
//!
//! - `<meta>.route_unit (unit PK, home, state, target, epoch, cutover, updated_at)`: one row per
//!   routing unit. `state` is `writable` or `moving` (then `target` names the center it moves
//!   to). Every change raises `epoch` above every epoch the changer saw; a center converges by
//!   taking, per unit, the row of the highest epoch it finds in any center ([`UnitRow::newer`]).
//!   Seeded from the topology file with epoch 0 ([`seed_statement`]).
//! - `<meta>.route_cutover (id PK, …)`: one row per `drc cutover`, written in every center it
//!   reached: what moved where, whether it was forced, the step reached and, for a forced one,
//!   the last position of the old home that the new home had applied (the window of writes that
//!   may arrive late).
//! - `<meta>.route_fence (center PK, cutover, fenced_at)`: present while `drc cutover` holds the
//!   center `read_only` (a whole center moved away); the cutover that moves units back lifts it.
//!
//! Every change is a compare-and-set on the row read before ([`cas_statement`]), so two writers
//! never both win.

use std::fmt::Write as _;

use drc_core::sqltext::quoted;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::{table, MetaError};

/// A unit's state.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UnitState {
    /// Its keys are written in its home center.
    Writable,
    /// A cutover moves it to the named center; its keys are not written anywhere.
    Moving(String),
}

impl UnitState {
    /// The stored `state` column.
    pub fn as_str(&self) -> &'static str {
        match self {
            UnitState::Writable => "writable",
            UnitState::Moving(_) => "moving",
        }
    }
}

/// One row of `route_unit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitRow {
    /// The unit.
    pub unit: String,
    /// Its home center.
    pub home: String,
    /// Writable, or moving to a center.
    pub state: UnitState,
    /// Raised by every change.
    pub epoch: u64,
    /// The cutover that wrote this row (`""` for the seed).
    pub cutover: String,
}

impl UnitRow {
    /// True when `self` replaces `other` in the converged map: a higher epoch, or the same epoch
    /// and a larger content (a tie only two writers without each other's view can make; every
    /// center breaks it the same way).
    pub fn newer(&self, other: &UnitRow) -> bool {
        (self.epoch, &self.home, &self.state, &self.cutover)
            > (other.epoch, &other.home, &other.state, &other.cutover)
    }
}

/// Reads every row of `route_unit` (empty when the table does not exist yet).
pub async fn load(conn: &mut Conn, meta: &str) -> Result<Vec<UnitRow>, MetaError> {
    let mut q = String::from("SELECT `unit`, `home`, `state`, `target`, `epoch`, `cutover` FROM ");
    table(&mut q, meta, "route_unit");
    type Row = (String, String, String, Option<String>, u64, String);
    let rows: Vec<Row> = match conn.query(q).await {
        Ok(r) => r,
        Err(e) if crate::is_missing(&e) => return Ok(Vec::new()),
        Err(e) => return Err(MetaError::query("reading the routing map")(e)),
    };
    rows.into_iter()
        .map(|(unit, home, state, target, epoch, cutover)| {
            let state = match (state.as_str(), target) {
                ("writable", _) => UnitState::Writable,
                ("moving", Some(t)) if !t.is_empty() => UnitState::Moving(t),
                (s, t) => {
                    return Err(MetaError::Corrupt(format!(
                        "route_unit {unit:?}: state {s:?} with target {t:?} is not a routing state"
                    )))
                }
            };
            Ok(UnitRow {
                unit,
                home,
                state,
                epoch,
                cutover,
            })
        })
        .collect()
}

/// The statement that seeds `units` (`(unit, home)`) at epoch 0; existing rows are kept.
pub fn seed_statement(meta: &str, units: &[(&str, &str)]) -> Option<String> {
    if units.is_empty() {
        return None;
    }
    let mut q = String::from("INSERT IGNORE INTO ");
    table(&mut q, meta, "route_unit");
    q.push_str(" (`unit`, `home`, `state`, `target`, `epoch`, `cutover`) VALUES ");
    for (i, (unit, home)) in units.iter().enumerate() {
        if i > 0 {
            q.push_str(", ");
        }
        q.push('(');
        quoted(&mut q, unit);
        q.push_str(", ");
        quoted(&mut q, home);
        q.push_str(", 'writable', NULL, 0, '')");
    }
    Some(q)
}

/// The statement that replaces the row of `new.unit` by `new` when the stored row is still
/// `old` (`None`: no row is stored). Affects one row when it took effect.
pub fn cas_statement(meta: &str, old: Option<&UnitRow>, new: &UnitRow) -> String {
    let target = match &new.state {
        UnitState::Writable => None,
        UnitState::Moving(t) => Some(t.as_str()),
    };
    let mut q = String::new();
    match old {
        None => {
            q.push_str("INSERT IGNORE INTO ");
            table(&mut q, meta, "route_unit");
            q.push_str(" (`unit`, `home`, `state`, `target`, `epoch`, `cutover`) VALUES (");
            quoted(&mut q, &new.unit);
            q.push_str(", ");
            quoted(&mut q, &new.home);
            let _ = write!(q, ", '{}', ", new.state.as_str());
            match target {
                Some(t) => quoted(&mut q, t),
                None => q.push_str("NULL"),
            }
            let _ = write!(q, ", {}, ", new.epoch);
            quoted(&mut q, &new.cutover);
            q.push(')');
        }
        Some(old) => {
            q.push_str("UPDATE ");
            table(&mut q, meta, "route_unit");
            q.push_str(" SET `home` = ");
            quoted(&mut q, &new.home);
            let _ = write!(q, ", `state` = '{}', `target` = ", new.state.as_str());
            match target {
                Some(t) => quoted(&mut q, t),
                None => q.push_str("NULL"),
            }
            let _ = write!(q, ", `epoch` = {}, `cutover` = ", new.epoch);
            quoted(&mut q, &new.cutover);
            q.push_str(" WHERE `unit` = ");
            quoted(&mut q, &old.unit);
            let _ = write!(q, " AND `epoch` = {} AND `home` = ", old.epoch);
            quoted(&mut q, &old.home);
            let _ = write!(
                q,
                " AND `state` = '{}' AND `cutover` = ",
                old.state.as_str()
            );
            quoted(&mut q, &old.cutover);
        }
    }
    q
}

/// One `drc cutover`, as journaled in `route_cutover`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CutoverRecord {
    /// Unique id (`<unix ms>-<from>-<to>`).
    pub id: String,
    /// The units moved, comma-separated.
    pub units: String,
    /// The old home.
    pub from: String,
    /// The new home.
    pub to: String,
    /// `--force`: the old home was not waited for.
    pub forced: bool,
    /// The step reached: `moving`, `fenced`, `caught_up`, `flipped`, `done`.
    pub step: String,
    /// For a forced cutover: the last position of the old home the new home had applied.
    pub window: Option<String>,
    /// Milliseconds from marking the units moving to the flip.
    pub unwritable_ms: Option<u64>,
}

/// The statement that records or updates `r` in `route_cutover`.
pub fn cutover_statement(meta: &str, r: &CutoverRecord) -> String {
    let mut q = String::from("INSERT INTO ");
    table(&mut q, meta, "route_cutover");
    q.push_str(
        " (`id`, `units`, `from_center`, `to_center`, `forced`, `step`, `window_position`, `unwritable_ms`) VALUES (",
    );
    for (i, v) in [&r.id, &r.units, &r.from, &r.to].into_iter().enumerate() {
        if i > 0 {
            q.push_str(", ");
        }
        quoted(&mut q, v);
    }
    let _ = write!(q, ", {}, ", u8::from(r.forced));
    quoted(&mut q, &r.step);
    q.push_str(", ");
    match &r.window {
        Some(w) => quoted(&mut q, w),
        None => q.push_str("NULL"),
    }
    match r.unwritable_ms {
        Some(ms) => {
            let _ = write!(q, ", {ms})");
        }
        None => q.push_str(", NULL)"),
    }
    q.push_str(
        " ON DUPLICATE KEY UPDATE `step` = VALUES(`step`), `window_position` = VALUES(`window_position`), \
         `unwritable_ms` = VALUES(`unwritable_ms`)",
    );
    q
}

/// Reads the journal, newest first (at most `limit` rows; empty before the first cutover).
pub async fn cutovers(
    conn: &mut Conn,
    meta: &str,
    limit: u32,
) -> Result<Vec<CutoverRecord>, MetaError> {
    let mut q = String::from(
        "SELECT `id`, `units`, `from_center`, `to_center`, `forced`, `step`, `window_position`, `unwritable_ms` FROM ",
    );
    table(&mut q, meta, "route_cutover");
    let _ = write!(q, " ORDER BY `started_at` DESC, `id` DESC LIMIT {limit}");
    type Row = (
        String,
        String,
        String,
        String,
        u8,
        String,
        Option<String>,
        Option<u64>,
    );
    let rows: Vec<Row> = match conn.query(q).await {
        Ok(r) => r,
        Err(e) if crate::is_missing(&e) => return Ok(Vec::new()),
        Err(e) => return Err(MetaError::query("reading the cutover journal")(e)),
    };
    Ok(rows
        .into_iter()
        .map(
            |(id, units, from, to, forced, step, window, unwritable_ms)| CutoverRecord {
                id,
                units,
                from,
                to,
                forced: forced != 0,
                step,
                window,
                unwritable_ms,
            },
        )
        .collect())
}

/// The statement that records that `cutover` holds `center` read-only.
pub fn fence_statement(meta: &str, center: &str, cutover: &str) -> String {
    let mut q = String::from("REPLACE INTO ");
    table(&mut q, meta, "route_fence");
    q.push_str(" (`center`, `cutover`) VALUES (");
    quoted(&mut q, center);
    q.push_str(", ");
    quoted(&mut q, cutover);
    q.push(')');
    q
}

/// The statement that forgets the read-only fence of `center`.
pub fn unfence_statement(meta: &str, center: &str) -> String {
    let mut q = String::from("DELETE FROM ");
    table(&mut q, meta, "route_fence");
    q.push_str(" WHERE `center` = ");
    quoted(&mut q, center);
    q
}

/// The cutover that holds `center` read-only, if one does.
pub async fn fenced_by(
    conn: &mut Conn,
    meta: &str,
    center: &str,
) -> Result<Option<String>, MetaError> {
    let mut q = String::from("SELECT `cutover` FROM ");
    table(&mut q, meta, "route_fence");
    q.push_str(" WHERE `center` = ");
    quoted(&mut q, center);
    match conn.query_first(q).await {
        Ok(r) => Ok(r),
        Err(e) if crate::is_missing(&e) => Ok(None),
        Err(e) => Err(MetaError::query("reading the read-only fence")(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(epoch: u64, home: &str) -> UnitRow {
        UnitRow {
            unit: "u".into(),
            home: home.into(),
            state: UnitState::Writable,
            epoch,
            cutover: String::new(),
        }
    }

    #[test]
    fn the_highest_epoch_wins_and_ties_break_alike_everywhere() {
        assert!(row(2, "a").newer(&row(1, "b")));
        assert!(!row(1, "b").newer(&row(2, "a")));
        assert!(row(1, "b").newer(&row(1, "a")));
        assert!(!row(1, "a").newer(&row(1, "a")));
    }

    #[test]
    fn statements_escape_values() {
        let new = UnitRow {
            state: UnitState::Moving("b'x".into()),
            ..row(3, "a")
        };
        let q = cas_statement("m`", Some(&row(2, "a")), &new);
        assert!(q.contains("`m```.`route_unit`"), "{q}");
        assert!(q.contains("'b\\'x'") || q.contains("'b''x'"), "{q}");
        assert!(q.contains("`epoch` = 2 AND"), "{q}");
        let q = seed_statement("m", &[("u1", "a"), ("u2", "b")]).expect("units");
        assert!(q.starts_with("INSERT IGNORE"), "{q}");
        assert!(seed_statement("m", &[]).is_none());
    }
}
