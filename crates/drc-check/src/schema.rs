//! Checks of the replicated schema, per center and across centers.
//!
//! - `database` (error): a replicated database is missing in a center (or its user cannot see
//!   it). Its tables are then not reported one by one.
//! - `primary_key` (error): drc orders, rewrites and deletes by primary key; a table without one
//!   cannot be replicated.
//! - `missing_table` (error): a replicated table exists in some centers but not in others; the
//!   link into a center without it stops at the first change of that table.
//! - `columns` (warning): a column missing in some center (the link stops if a change carries
//!   it) or with a different type or nullability (values may be truncated or refused).
//!   Columns are matched by name; their order does not matter.
//! - `primary_key` (warning, across centers): the primary key differs between centers, so
//!   centers would not agree on which row a change means.
//! - `trigger` (warning): a trigger on a replicated table fires in the origin center, and its
//!   effects are replicated; it fires again when drc applies the change in every other center,
//!   so its effects happen twice.
//! - `version_column` (warning): a table lacks the last-writer-wins version column that
//!   `[conflict]` names for it (or the column cannot order versions), so conflicting writes to
//!   it are resolved by "source wins" and centers can end with different rows
//!   (docs/conflicts.md). A table configured with `""` (source wins on purpose) is an info.

use std::collections::{BTreeMap, BTreeSet};

use drc_config::{Conflict, Replication};

use crate::facts::{CenterFacts, TableName};
use crate::{and_list, Finding, Severity};

/// Every schema check over the reachable centers.
pub(crate) fn check(
    centers: &[(&str, CenterFacts)],
    replication: &Replication,
    conflict: &Conflict,
) -> Vec<Finding> {
    let mut out = Vec::new();
    version_columns(centers, conflict, &mut out);
    databases(centers, replication, &mut out);
    primary_keys(centers, &mut out);
    missing_tables(centers, &mut out);
    columns(centers, &mut out);
    triggers(centers, &mut out);
    out
}

fn databases(centers: &[(&str, CenterFacts)], replication: &Replication, out: &mut Vec<Finding>) {
    for db in &replication.databases {
        let having: Vec<&str> = centers
            .iter()
            .filter(|(_, f)| f.schema.databases.contains(db))
            .map(|(n, _)| *n)
            .collect();
        for (name, f) in centers {
            if f.schema.databases.contains(db) {
                continue;
            }
            let hint = if having.is_empty() {
                "it exists in no center; create it in every center (or fix `replication.databases`)"
                    .to_string()
            } else {
                format!("create it with the same tables as in {}", and_list(&having))
            };
            out.push(Finding::new(
                Severity::Error,
                Some(name),
                "database",
                format!(
                    "replicated database `{db}` does not exist here (or user {} cannot see it); {hint}",
                    crate::account(&f.user)
                ),
            ));
        }
    }
}

fn primary_keys(centers: &[(&str, CenterFacts)], out: &mut Vec<Finding>) {
    for (name, f) in centers {
        for (table, t) in &f.schema.tables {
            if t.primary_key.is_empty() {
                out.push(Finding::new(
                    Severity::Error,
                    Some(name),
                    "primary_key",
                    format!(
                        "table {table} has no primary key; drc orders and applies changes by primary key: add one (ALTER TABLE `{}`.`{}` ADD PRIMARY KEY (...)) in every center, or exclude the table with `replication.exclude_tables`",
                        table.db, table.table
                    ),
                ));
            }
        }
    }
    // Keys that differ between centers (only where every center has one).
    for (table, by_center) in across(centers) {
        let mut keys: BTreeMap<&[String], Vec<&str>> = BTreeMap::new();
        for (name, t) in &by_center {
            if !t.primary_key.is_empty() {
                keys.entry(&t.primary_key).or_default().push(name);
            }
        }
        if keys.len() > 1 {
            let variants = keys
                .iter()
                .map(|(k, names)| format!("({}) in {}", k.join(", "), and_list(names)))
                .collect::<Vec<_>>()
                .join("; ");
            out.push(Finding::new(
                Severity::Warning,
                None,
                "primary_key",
                format!(
                    "the primary key of {table} differs between centers: {variants}; make it the same everywhere"
                ),
            ));
        }
    }
}

/// Replicated tables by name, with the centers that have them.
fn across<'a>(
    centers: &'a [(&'a str, CenterFacts)],
) -> BTreeMap<&'a TableName, Vec<(&'a str, &'a crate::facts::Table)>> {
    let mut map: BTreeMap<&TableName, Vec<(&str, &crate::facts::Table)>> = BTreeMap::new();
    for (name, f) in centers {
        for (table, t) in &f.schema.tables {
            map.entry(table).or_default().push((name, t));
        }
    }
    map
}

fn missing_tables(centers: &[(&str, CenterFacts)], out: &mut Vec<Finding>) {
    for (table, by_center) in across(centers) {
        let having: Vec<&str> = by_center.iter().map(|(n, _)| *n).collect();
        for (name, f) in centers {
            // A missing database was reported once already.
            if having.contains(name) || !f.schema.databases.contains(&table.db) {
                continue;
            }
            out.push(Finding::new(
                Severity::Error,
                Some(name),
                "missing_table",
                format!(
                    "table {table} exists in {} but not in {name}; create it in {name} with the same definition (SHOW CREATE TABLE `{}`.`{}` in {})",
                    and_list(&having),
                    table.db,
                    table.table,
                    having[0]
                ),
            ));
        }
    }
}

fn columns(centers: &[(&str, CenterFacts)], out: &mut Vec<Finding>) {
    for (table, by_center) in across(centers) {
        if by_center.len() < 2 {
            continue;
        }
        let names: BTreeSet<&String> = by_center
            .iter()
            .flat_map(|(_, t)| t.columns.keys())
            .collect();
        for column in names {
            let mut types: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            let mut lacking = Vec::new();
            for (center, t) in &by_center {
                match t.columns.get(column) {
                    Some(ty) => types.entry(ty.as_str()).or_default().push(center),
                    None => lacking.push(*center),
                }
            }
            let having: Vec<&str> = types.values().flatten().copied().collect();
            for center in &lacking {
                out.push(Finding::new(
                    Severity::Warning,
                    Some(center),
                    "columns",
                    format!(
                        "column {table}.{column} exists in {} but not in {center}; the link into {center} stops at the first change that carries it: add it (ALTER TABLE ... ADD COLUMN)",
                        and_list(&having)
                    ),
                ));
            }
            if types.len() > 1 {
                let variants = types
                    .iter()
                    .map(|(ty, names)| format!("{ty} in {}", and_list(names)))
                    .collect::<Vec<_>>()
                    .join("; ");
                out.push(Finding::new(
                    Severity::Warning,
                    None,
                    "columns",
                    format!(
                        "column {table}.{column} differs between centers: {variants}; values may be truncated or refused: make it the same everywhere"
                    ),
                ));
            }
        }
    }
}

/// Column types that can order versions (as `information_schema.COLUMNS.COLUMN_TYPE` starts).
const VERSION_TYPES: [&str; 8] = [
    "tinyint",
    "smallint",
    "mediumint",
    "int",
    "bigint",
    "decimal",
    "date",
    "timestamp",
];

fn version_columns(centers: &[(&str, CenterFacts)], conflict: &Conflict, out: &mut Vec<Finding>) {
    for (table, by_center) in across(centers) {
        let Some(column) = conflict.version_column(&table.db, &table.table) else {
            let explicit = conflict
                .tables
                .contains_key(&(table.db.clone(), table.table.clone()));
            if !explicit {
                // Last-writer-wins is off for every table (`version_column = ""`).
                continue;
            }
            out.push(Finding::new(
                Severity::Info,
                None,
                "version_column",
                format!("table {table} is configured for source wins ([conflict.tables] \"\"): concurrent writes to one row in two centers are not resolved"),
            ));
            continue;
        };
        let mut lacking = Vec::new();
        let mut unusable = Vec::new();
        for (center, t) in &by_center {
            match t
                .columns
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(column))
            {
                None => lacking.push(*center),
                Some((_, ty)) => {
                    let ty = ty.to_ascii_lowercase();
                    if !VERSION_TYPES.iter().any(|v| ty.starts_with(v)) {
                        unusable.push(format!("{center} ({ty})"));
                    }
                }
            }
        }
        if !lacking.is_empty() {
            out.push(Finding::new(
                Severity::Warning,
                None,
                "version_column",
                format!(
                    "table {table} has no version column `{column}` in {}: conflicting writes to it fall back to source wins and centers can end with different rows; add `{column} TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)` in every center, or name its version column in [conflict.tables]",
                    and_list(&lacking)
                ),
            ));
        }
        if !unusable.is_empty() {
            out.push(Finding::new(
                Severity::Error,
                None,
                "version_column",
                format!(
                    "version column {table}.{column} cannot order versions in {}: use an integer, DECIMAL, DATE, DATETIME or TIMESTAMP column (the link stops at the table's first change)",
                    unusable.join(", ")
                ),
            ));
        }
    }
}

fn triggers(centers: &[(&str, CenterFacts)], out: &mut Vec<Finding>) {
    for (name, f) in centers {
        for t in &f.schema.triggers {
            out.push(Finding::new(
                Severity::Warning,
                Some(name),
                "trigger",
                format!(
                    "trigger {}.{} ({} {} on {}) fires again when drc applies a change made in another center, on top of the trigger's own effects replicated from there, so its effects happen twice; drop it, or make it idempotent",
                    t.table.db, t.name, t.timing, t.event, t.table.table
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{Schema, Table, Trigger};
    use crate::grants::Grants;
    use drc_config::Loopback;
    use drc_mysql::{Flavor, ServerInfo};

    fn table(cols: &[(&str, &str)], pk: &[&str]) -> Table {
        Table {
            columns: cols
                .iter()
                .map(|(c, t)| (c.to_string(), t.to_string()))
                .collect(),
            primary_key: pk.iter().map(|s| s.to_string()).collect(),
            auto_increment: false,
        }
    }

    fn name(t: &str) -> TableName {
        TableName {
            db: "shop".into(),
            table: t.into(),
        }
    }

    fn center(tables: Vec<(&str, Table)>) -> CenterFacts {
        CenterFacts {
            info: ServerInfo {
                flavor: Flavor::MariaDb,
                version: "10.11".into(),
                server_id: 1,
                gtid_domain_id: 1,
                server_uuid: String::new(),
                gtid_enabled: true,
            },
            user: "drc@%".into(),
            preflight: vec![],
            auto_increment_increment: 1,
            auto_increment_offset: 1,
            grants: Grants::default(),
            server_id_probe: None,
            schema: Schema {
                databases: ["shop".to_string()].into(),
                tables: tables.into_iter().map(|(n, t)| (name(n), t)).collect(),
                triggers: vec![],
            },
            clock: Default::default(),
            tls_cipher: String::new(),
        }
    }

    fn replication() -> Replication {
        Replication {
            databases: vec!["shop".into()],
            include_tables: vec![],
            exclude_tables: vec![],
            loopback: Loopback::Auto,
            meta_database: "drc_meta".into(),
        }
    }

    fn no_lww() -> Conflict {
        Conflict {
            version_column: None,
            ..Conflict::default()
        }
    }

    #[test]
    fn tables_without_the_version_column_are_named() {
        let cs = vec![(
            "a",
            center(vec![
                (
                    "users",
                    table(&[("id", "int"), ("updated_at", "timestamp(6)")], &["id"]),
                ),
                ("logs", table(&[("id", "int")], &["id"])),
                (
                    "odd",
                    table(&[("id", "int"), ("updated_at", "varchar(10)")], &["id"]),
                ),
                ("plain", table(&[("id", "int")], &["id"])),
            ]),
        )];
        let mut conflict = Conflict::default();
        conflict
            .tables
            .insert(("shop".into(), "plain".into()), None);
        let out = lines(&check(&cs, &replication(), &conflict));
        let v: Vec<&String> = out
            .iter()
            .filter(|l| l.contains("version_column"))
            .collect();
        assert_eq!(v.len(), 3, "{out:#?}");
        assert!(
            v.iter().any(|l| l.contains("warning")
                && l.contains("shop.logs")
                && l.contains("no version column `updated_at`")),
            "{v:#?}"
        );
        assert!(
            v.iter()
                .any(|l| l.contains("error") && l.contains("shop.odd") && l.contains("varchar")),
            "{v:#?}"
        );
        assert!(
            v.iter()
                .any(|l| l.contains("info") && l.contains("shop.plain")),
            "{v:#?}"
        );
        assert!(!v.iter().any(|l| l.contains("shop.users")), "{v:#?}");
    }

    fn lines(f: &[Finding]) -> Vec<String> {
        f.iter().map(|f| f.to_string()).collect()
    }

    #[test]
    fn every_schema_problem_is_named() {
        let id = ("id", "int(11) NOT NULL");
        let mut b = center(vec![
            ("orders", table(&[id, ("note", "varchar(40)")], &["id"])),
            ("nopk", table(&[("x", "int(11)")], &[])),
        ]);
        b.schema.triggers.push(Trigger {
            table: name("orders"),
            name: "audit".into(),
            timing: "AFTER".into(),
            event: "INSERT".into(),
        });
        let cs = vec![
            (
                "a",
                center(vec![
                    (
                        "orders",
                        table(
                            &[id, ("note", "varchar(20)"), ("extra", "int(11)")],
                            &["id"],
                        ),
                    ),
                    ("nopk", table(&[("x", "int(11)")], &[])),
                    ("only_a", table(&[id], &["id"])),
                ]),
            ),
            ("b", b),
        ];
        let out = lines(&check(&cs, &replication(), &no_lww()));
        let want = [
            "error a primary_key: table shop.nopk has no primary key",
            "error b primary_key: table shop.nopk has no primary key",
            "error b missing_table: table shop.only_a exists in a but not in b",
            "warning b columns: column shop.orders.extra exists in a but not in b",
            "warning * columns: column shop.orders.note differs between centers: varchar(20) in a; varchar(40) in b",
            "warning b trigger: trigger shop.audit (AFTER INSERT on orders) fires again",
        ];
        for w in want {
            assert!(
                out.iter().any(|l| l.starts_with(w)),
                "missing {w:?} in {out:#?}"
            );
        }
        assert_eq!(out.len(), want.len(), "{out:#?}");
    }

    #[test]
    fn a_missing_database_is_reported_once() {
        let mut c = center(vec![]);
        c.schema.databases.clear();
        let cs = vec![("a", center(vec![("t", table(&[], &["id"]))])), ("c", c)];
        let out = lines(&check(&cs, &replication(), &no_lww()));
        assert_eq!(out.len(), 1, "{out:#?}");
        assert!(
            out[0].starts_with("error c database: replicated database `shop` does not exist here")
        );
        assert!(out[0].contains("same tables as in a"));
    }

    #[test]
    fn differing_keys_are_a_warning() {
        let cs = vec![
            ("a", center(vec![("t", table(&[], &["id"]))])),
            ("b", center(vec![("t", table(&[], &["id", "x"]))])),
        ];
        let out = lines(&check(&cs, &replication(), &no_lww()));
        assert_eq!(
            out,
            ["warning * primary_key: the primary key of shop.t differs between centers: (id) in a; (id, x) in b; make it the same everywhere"]
        );
    }
}
