//! `[ddl]`: what a link does with a schema change (DDL) read from a peer's binlog. Part of the
//! second loading step (see [`crate::validate`]); problems are added to the common list, never
//! returned early.
//!
//! Modes (docs/configuration.md, docs/operations.md "Schema changes"):
//! - `stop` (the default): the link stops at the statement, everything before it applied, and
//!   names the statement, its tables, its position and the remedy. The default is the mode that
//!   can never diverge the centers silently: `replicate` would run an operator's `DROP` or
//!   `TRUNCATE` everywhere at once, and `ignore` leaves the centers with different schemas.
//! - `replicate`: the statement is applied to the target in source order, under the origin's
//!   tag. Needs the `server_id` origin tag: a DDL cannot carry a marker row.
//! - `ignore`: the statement is passed (logged). Allowed only in `[ddl.tables]`, for tables
//!   named there: a global `ignore` would hide every schema change.
//!
//! Overrides in `[ddl.tables]` are `db.table` patterns ([`TablePattern`]); a table named
//! without wildcards wins over patterns, and among patterns the longest one wins.

use crate::{ConfigError, Loopback, TablePattern};

/// What a link does with DDL on a replicated table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DdlMode {
    /// Stop the link at the statement (nothing skipped) until an operator acknowledges it.
    Stop,
    /// Apply the statement to the target.
    Replicate,
    /// Pass the statement (logged): the operator keeps the schemas apart on purpose.
    Ignore,
}

impl DdlMode {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DdlMode::Stop => "stop",
            DdlMode::Replicate => "replicate",
            DdlMode::Ignore => "ignore",
        }
    }
}

/// The validated `[ddl]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ddl {
    /// The mode of tables without an override (`stop` or `replicate`).
    pub mode: DdlMode,
    /// Overrides, in file order.
    pub tables: Vec<(TablePattern, DdlMode)>,
}

impl Default for Ddl {
    fn default() -> Self {
        Ddl {
            mode: DdlMode::Stop,
            tables: Vec::new(),
        }
    }
}

impl Ddl {
    /// The mode of `db.table`: its override (exact name first, then the longest matching
    /// pattern), else the global mode.
    pub fn mode_of(&self, db: &str, table: &str) -> DdlMode {
        self.tables
            .iter()
            .filter(|(p, _)| p.matches(db, table))
            .max_by_key(|(p, _)| {
                let text = p.to_string();
                (!text.contains(['*', '?']), text.len())
            })
            .map_or(self.mode, |(_, m)| *m)
    }

    /// True when some table may be replicated (global mode or an override).
    pub fn replicates_any(&self) -> bool {
        self.mode == DdlMode::Replicate || self.tables.iter().any(|(_, m)| *m == DdlMode::Replicate)
    }
}

fn push(e: &mut Vec<ConfigError>, key: impl Into<String>, message: impl Into<String>) {
    e.push(ConfigError {
        key: key.into(),
        message: message.into(),
    });
}

fn mode(s: &str) -> Option<DdlMode> {
    match s {
        "stop" => Some(DdlMode::Stop),
        "replicate" => Some(DdlMode::Replicate),
        "ignore" => Some(DdlMode::Ignore),
        _ => None,
    }
}

/// Validates `[ddl]`; `loopback` is the configured origin tagging (replicate needs server_id).
pub(crate) fn ddl(
    raw: &crate::raw::RawDdl,
    loopback: Option<Loopback>,
    e: &mut Vec<ConfigError>,
) -> Ddl {
    let global = match raw.mode.as_deref() {
        None => DdlMode::Stop,
        Some("ignore") => {
            push(
                e,
                "ddl.mode",
                "\"ignore\" is allowed only per table: name the tables whose schema changes may be passed in [ddl.tables] (e.g. \"shop.audit_*\" = \"ignore\") and keep mode = \"stop\" or \"replicate\"",
            );
            DdlMode::Stop
        }
        Some(s) => mode(s).unwrap_or_else(|| {
            push(
                e,
                "ddl.mode",
                format!("{s:?} is not a mode: use \"stop\" (the default) or \"replicate\""),
            );
            DdlMode::Stop
        }),
    };
    let mut tables = Vec::new();
    for (name, m) in &raw.tables {
        let key = format!("ddl.tables.{name:?}");
        let pattern = match TablePattern::parse(name) {
            Ok(p) => p,
            Err(msg) => {
                push(e, &key, msg);
                continue;
            }
        };
        let Some(m) = mode(m) else {
            push(
                e,
                &key,
                format!("{m:?} is not a mode: use \"stop\", \"replicate\" or \"ignore\""),
            );
            continue;
        };
        let table_part = name.split_once('.').map_or("", |(_, t)| t);
        if m == DdlMode::Ignore && table_part.chars().all(|c| c == '*') {
            push(
                e,
                &key,
                "\"ignore\" must name tables (e.g. \"shop.audit_*\"), not every table of a database",
            );
            continue;
        }
        tables.push((pattern, m));
    }
    let ddl = Ddl {
        mode: global,
        tables,
    };
    if ddl.replicates_any() && loopback == Some(Loopback::Marker) {
        push(
            e,
            "ddl.mode",
            "\"replicate\" needs loopback = \"server_id\" (or \"auto\" on MariaDB with BINLOG REPLAY): a DDL statement cannot carry the marker row that keeps it from coming back; use \"stop\" and apply schema changes in every center yourself",
        );
    }
    ddl
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_names_win_then_the_longest_pattern() {
        let p = |s: &str| TablePattern::parse(s).expect("pattern");
        let d = Ddl {
            mode: DdlMode::Stop,
            tables: vec![
                (p("shop.*"), DdlMode::Replicate),
                (p("shop.audit_*"), DdlMode::Ignore),
                (p("shop.audit_main"), DdlMode::Stop),
            ],
        };
        assert_eq!(d.mode_of("shop", "orders"), DdlMode::Replicate);
        assert_eq!(d.mode_of("shop", "audit_x"), DdlMode::Ignore);
        assert_eq!(d.mode_of("shop", "audit_main"), DdlMode::Stop);
        assert_eq!(d.mode_of("crm", "x"), DdlMode::Stop);
        assert!(d.replicates_any());
    }
}
