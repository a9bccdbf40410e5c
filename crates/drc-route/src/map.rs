//! The routing map as the daemons serve it: the file's buckets and units, with each unit's
//! home, state and epoch from the live map (the newest row of any center).

use std::collections::BTreeMap;

use drc_config::Routing;
use drc_meta::route::{UnitRow, UnitState};
use serde::Serialize;

use crate::key::bucket_of;

/// The answer for one key (`GET /v1/route?key=K`, `drc route --key K`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    /// The key as asked.
    pub key: String,
    /// Its bucket.
    pub bucket: u32,
    /// The unit holding the bucket.
    pub unit: String,
    /// The unit's home center.
    pub home: String,
    /// The map's epoch (the highest of any unit): a cache is stale when it moves.
    pub epoch: u64,
    /// Whether the key may be written (in `home`) now; false while its unit moves.
    pub writable: bool,
    /// The center the unit is moving to, while it moves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moving_to: Option<String>,
}

/// One unit of the whole map (`GET /v1/routes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitView {
    /// Unit name.
    pub unit: String,
    /// Its buckets, e.g. `0-340`.
    pub buckets: String,
    /// Home center.
    pub home: String,
    /// `writable` or `moving`.
    pub state: &'static str,
    /// The unit's own epoch (raised by each of its changes).
    pub epoch: u64,
    /// Where it moves, while it moves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moving_to: Option<String>,
}

/// The whole map (`GET /v1/routes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MapView {
    /// Number of buckets.
    pub buckets: u32,
    /// The map's epoch: the highest unit epoch.
    pub epoch: u64,
    /// Every unit, in file order.
    pub units: Vec<UnitView>,
}

/// The file's routing plus the live rows, merged.
#[derive(Debug, Clone)]
pub struct LiveMap {
    routing: Routing,
    rows: BTreeMap<String, UnitRow>,
}

impl LiveMap {
    /// The map as the file seeds it (every unit at its file home, epoch 0).
    pub fn seeded(routing: Routing) -> Self {
        let rows = routing
            .units
            .iter()
            .map(|u| (u.name.clone(), seed_row(&u.name, &u.home)))
            .collect();
        LiveMap { routing, rows }
    }

    /// The file's routing.
    pub fn routing(&self) -> &Routing {
        &self.routing
    }

    /// Takes every row of `rows` that is newer than the one held (rows of units the file does
    /// not name are ignored). Returns true when something changed.
    pub fn merge(&mut self, rows: &[UnitRow]) -> bool {
        let mut changed = false;
        for r in rows {
            if let Some(held) = self.rows.get_mut(&r.unit) {
                if r.newer(held) {
                    *held = r.clone();
                    changed = true;
                }
            }
        }
        changed
    }

    /// The current row of `unit`.
    pub fn row(&self, unit: &str) -> Option<&UnitRow> {
        self.rows.get(unit)
    }

    /// Every current row, by unit name.
    pub fn rows(&self) -> impl Iterator<Item = &UnitRow> {
        self.rows.values()
    }

    /// The map's epoch: the highest unit epoch.
    pub fn epoch(&self) -> u64 {
        self.rows.values().map(|r| r.epoch).max().unwrap_or(0)
    }

    /// The home center of the unit holding `bucket`, with its row.
    pub fn by_bucket(&self, bucket: u32) -> Option<&UnitRow> {
        let unit = self.routing.unit_of_bucket(bucket)?;
        self.rows.get(&unit.name)
    }

    /// Where `key` lives.
    pub fn route(&self, key: &str) -> Option<Route> {
        let bucket = bucket_of(key, self.routing.buckets);
        let row = self.by_bucket(bucket)?;
        let moving_to = match &row.state {
            UnitState::Writable => None,
            UnitState::Moving(t) => Some(t.clone()),
        };
        Some(Route {
            key: key.to_string(),
            bucket,
            unit: row.unit.clone(),
            home: row.home.clone(),
            epoch: self.epoch(),
            writable: moving_to.is_none(),
            moving_to,
        })
    }

    /// The whole map.
    pub fn view(&self) -> MapView {
        MapView {
            buckets: self.routing.buckets,
            epoch: self.epoch(),
            units: self
                .routing
                .units
                .iter()
                .filter_map(|u| {
                    let r = self.rows.get(&u.name)?;
                    Some(UnitView {
                        unit: u.name.clone(),
                        buckets: drc_config::routing::format_ranges(&u.buckets),
                        home: r.home.clone(),
                        state: r.state.as_str(),
                        epoch: r.epoch,
                        moving_to: match &r.state {
                            UnitState::Writable => None,
                            UnitState::Moving(t) => Some(t.clone()),
                        },
                    })
                })
                .collect(),
        }
    }
}

/// The row the file seeds for a unit.
pub fn seed_row(unit: &str, home: &str) -> UnitRow {
    UnitRow {
        unit: unit.to_string(),
        home: home.to_string(),
        state: UnitState::Writable,
        epoch: 0,
        cutover: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routing() -> Routing {
        let text = "[[center]]\nname = \"a\"\nmysql = \"mysql://r@h:1\"\n\
                    [[center]]\nname = \"b\"\nmysql = \"mysql://r@h:2\"\n\
                    [replication]\ndatabases = [\"s\"]\n\
                    [routing]\nbuckets = 4\n\
                    [[routing.unit]]\nname = \"u1\"\nbuckets = \"0-1\"\nhome = \"a\"\n\
                    [[routing.unit]]\nname = \"u2\"\nbuckets = \"2-3\"\nhome = \"b\"\n";
        drc_config::Config::parse(text, &|_| None)
            .expect("config")
            .routing
            .expect("routing")
    }

    #[test]
    fn routes_follow_the_newest_row() {
        let mut m = LiveMap::seeded(routing());
        let r = m.route("5").expect("route");
        assert_eq!((r.bucket, r.unit.as_str(), r.home.as_str()), (1, "u1", "a"));
        assert!(r.writable);
        let moving = UnitRow {
            state: UnitState::Moving("b".into()),
            epoch: 1,
            ..seed_row("u1", "a")
        };
        assert!(m.merge(std::slice::from_ref(&moving)));
        let r = m.route("5").expect("route");
        assert!(!r.writable);
        assert_eq!(r.moving_to.as_deref(), Some("b"));
        assert_eq!(r.epoch, 1);
        // An older row changes nothing.
        assert!(!m.merge(&[seed_row("u1", "a")]));
        // Units the file does not name are ignored.
        assert!(!m.merge(&[UnitRow {
            epoch: 9,
            ..seed_row("zz", "a")
        }]));
        let v = m.view();
        assert_eq!(v.units[0].buckets, "0-1");
        assert_eq!(v.units[0].state, "moving");
        assert_eq!(v.epoch, 1);
    }
}
