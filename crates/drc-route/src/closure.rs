//! The closure check: every row change a link applies is looked up in the routing map; a
//! change whose origin center (the link's source: drc drops the changes it wrote itself, so
//! every change a link reads was written in its source center) is not the home of its key's
//! unit is a closure violation. It is counted in `drc_routing_foreign_writes_total{link,unit}`
//! and logged, at most once per [`LOG_EVERY`] per link. The write itself is applied as usual:
//! the check reports, it does not refuse (the conflict rules keep the centers equal).
//!
//! Tables are checked when they have a routing-key column (`[routing] key_column`, per-table
//! overrides in `[routing.tables]`); tables without that column are not checked. A value that is
//! not a key (NULL, a date…) is not checked either.
//!
//! While a unit moves, its old home is still its home, so writes that the old home committed
//! before the fence and that arrive during the move are not violations; nor are writes of the
//! center it moves to (the new home writes as soon as it serves the flip, which this daemon may
//! read up to one refresh later). After a forced cutover,
//! the old home's late writes (the window) arrive after the flip and are counted: they were
//! written in what is no longer the key's home.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drc_core::change::{ChangeKind, RowChange};
use drc_meta::route::UnitState;
use tracing::warn;

use crate::key::bucket_of_value;
use crate::live::Router;
use crate::metrics::RouteMetrics;

/// The shortest time between two log lines of one link.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// The closure check of the links into one center.
#[derive(Clone)]
pub struct Closure {
    router: Router,
    metrics: RouteMetrics,
    last_log: Arc<Mutex<HashMap<String, Instant>>>,
}

impl std::fmt::Debug for Closure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Closure")
    }
}

impl Closure {
    /// A check against `router`'s map, counting in `metrics`.
    pub fn new(router: Router, metrics: RouteMetrics) -> Self {
        Closure {
            router,
            metrics,
            last_log: Arc::default(),
        }
    }

    /// Checks the changes link `link` applied, all written in center `origin`; returns how many
    /// were foreign.
    pub fn check(&self, link: &str, origin: &str, changes: &[RowChange]) -> u64 {
        let routing = self.router.routing();
        let mut foreign: HashMap<String, (u64, String, String)> = HashMap::new();
        let checked = self.router.with(|map| {
            for c in changes {
                let Some(col) = routing.key_column(&c.table.database, &c.table.table) else {
                    continue;
                };
                let Some(i) = c.table.column_index(col) else {
                    continue;
                };
                let image = match c.kind {
                    ChangeKind::Delete => c.before.as_ref(),
                    ChangeKind::Insert | ChangeKind::Update => c.after.as_ref(),
                };
                let Some(bucket) = image
                    .and_then(|im| im.get(i))
                    .and_then(|v| bucket_of_value(v, routing.buckets))
                else {
                    continue;
                };
                let Some(row) = map.by_bucket(bucket) else {
                    continue;
                };
                // A unit moving to the origin: the new home writes as soon as it serves the
                // flip, which this daemon may read up to a refresh later.
                let arriving = matches!(&row.state, UnitState::Moving(t) if t == origin);
                if row.home != origin && !arriving {
                    let e = foreign.entry(row.unit.clone()).or_insert_with(|| {
                        (
                            0,
                            row.home.clone(),
                            format!("{}.{}", c.table.database, c.table.table),
                        )
                    });
                    e.0 += 1;
                }
            }
        });
        if checked.is_err() {
            return 0;
        }
        let mut total = 0;
        for (unit, (n, home, table)) in &foreign {
            total += n;
            self.metrics
                .foreign
                .with_label_values(&[link, unit.as_str()])
                .inc_by(*n);
            let mut last = self.last_log.lock().unwrap_or_else(|p| p.into_inner());
            let due = last.get(link).is_none_or(|t| t.elapsed() >= LOG_EVERY);
            if due {
                last.insert(link.to_string(), Instant::now());
                warn!(
                    link, unit = %unit, home = %home, origin, table = %table, writes = n,
                    "center closure violated: writes of unit {unit} (home {home}) were made in {origin} (further ones counted in drc_routing_foreign_writes_total, logged at most every {} s)",
                    LOG_EVERY.as_secs()
                );
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use drc_core::change::{ChangeKind, Image, RowChange};
    use drc_core::schema::{ColumnSchema, SqlType, TableSchema};
    use drc_core::value::Value;
    use drc_meta::route::{UnitRow, UnitState};

    use super::*;

    fn router() -> Router {
        let text = "[[center]]\nname = \"a\"\nmysql = \"mysql://r@h:1\"\n\
                    [[center]]\nname = \"b\"\nmysql = \"mysql://r@h:2\"\n\
                    [replication]\ndatabases = [\"s\"]\n\
                    [routing]\nbuckets = 4\nkey_column = \"uid\"\n[routing.tables]\n\"s.free\" = \"\"\n\
                    [[routing.unit]]\nname = \"u1\"\nbuckets = \"0-1\"\nhome = \"a\"\n\
                    [[routing.unit]]\nname = \"u2\"\nbuckets = \"2-3\"\nhome = \"b\"\n";
        let config = drc_config::Config::parse(text, &|_| None).expect("config");
        let r = Router::new(config.routing.expect("routing"));
        r.merge(&[]);
        r
    }

    fn change(table: &str, kind: ChangeKind, uid: i64) -> RowChange {
        let schema = Arc::new(TableSchema {
            database: "s".into(),
            table: table.into(),
            columns: vec![ColumnSchema {
                name: "uid".into(),
                sql_type: SqlType::BigInt,
                unsigned: false,
                collation: None,
            }],
            primary_key: vec![0],
            unique_keys: Vec::new(),
            unique_keys_known: true,
        });
        let image = Some(Image(vec![Some(Value::Int(uid))]));
        RowChange {
            table: schema,
            kind,
            before: (kind != ChangeKind::Insert)
                .then(|| image.clone())
                .flatten(),
            after: (kind != ChangeKind::Delete).then_some(image).flatten(),
        }
    }

    #[test]
    fn writes_outside_their_home_are_counted_per_unit() {
        let registry = prometheus::Registry::new();
        let metrics = RouteMetrics::register(&registry).expect("metrics");
        let r = router();
        let c = Closure::new(r.clone(), metrics.clone());
        // uid 1 -> bucket 1 (u1, home a); uid 2 -> bucket 2 (u2, home b); deletes by before image.
        let changes = vec![
            change("t", ChangeKind::Insert, 1),
            change("t", ChangeKind::Update, 2),
            change("t", ChangeKind::Delete, 6),
            change("free", ChangeKind::Insert, 2),
        ];
        assert_eq!(c.check("a->b", "a", &changes), 2);
        assert_eq!(metrics.foreign.with_label_values(&["a->b", "u2"]).get(), 2);
        assert_eq!(c.check("b->a", "b", &changes), 1);
        // u2 moving to a: a's writes of it are the new home's, not violations.
        r.merge(&[UnitRow {
            unit: "u2".into(),
            home: "b".into(),
            state: UnitState::Moving("a".into()),
            epoch: 1,
            cutover: "x".into(),
        }]);
        assert_eq!(c.check("a->b", "a", &changes), 0);
    }
}
