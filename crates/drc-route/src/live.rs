//! The map a daemon serves from memory ([`Router`]) and the task that keeps it fresh
//! ([`refresh`]):
//!
//! - every [`LOCAL_EVERY`] it reads its own center's `route_unit` (so a cutover is served
//!   within a second);
//! - every [`PEERS_EVERY`] it reads every peer's too, and raises its own center's rows to the
//!   newest of them (compare-and-set): a center that was down during a cutover converges on the
//!   highest epoch as soon as its daemon runs, and a daemon whose own database is down still
//!   serves the newest map its peers hold.
//!
//! The map only ever moves forward (per unit, the row of the highest epoch wins everywhere), so
//! merging in any order converges.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use drc_config::{Center, Config, Routing};
use drc_meta::route::UnitRow;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::map::{LiveMap, MapView, Route};
use crate::metrics::RouteMetrics;

/// How often the daemon reads its own center's map.
pub const LOCAL_EVERY: Duration = Duration::from_millis(250);
/// How often the daemon reads its peers' maps.
pub const PEERS_EVERY: Duration = Duration::from_secs(2);
/// Connect and query timeout of one read.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a route cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteUnavailable {
    /// No map was read from any center yet (the daemon just started and no database answered).
    #[error("the routing map is not loaded yet: no center's meta database has answered")]
    NotLoaded,
}

/// The map in memory, shared by the HTTP handlers, the closure check and the refresher.
#[derive(Clone)]
pub struct Router {
    map: Arc<RwLock<Option<LiveMap>>>,
    routing: Arc<Routing>,
}

impl Router {
    /// A router for `routing`, not loaded yet.
    pub fn new(routing: Routing) -> Self {
        Router {
            map: Arc::new(RwLock::new(None)),
            routing: Arc::new(routing),
        }
    }

    /// The file's routing.
    pub fn routing(&self) -> &Routing {
        &self.routing
    }

    /// Calls `f` with the loaded map.
    pub fn with<T>(&self, f: impl FnOnce(&LiveMap) -> T) -> Result<T, RouteUnavailable> {
        let guard = self.map.read().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map(f).ok_or(RouteUnavailable::NotLoaded)
    }

    /// Where `key` lives.
    pub fn route(&self, key: &str) -> Result<Route, RouteUnavailable> {
        self.with(|m| m.route(key))?
            .ok_or(RouteUnavailable::NotLoaded)
    }

    /// The whole map.
    pub fn view(&self) -> Result<MapView, RouteUnavailable> {
        self.with(LiveMap::view)
    }

    /// Merges `rows` into the served map (loading it on first use). True when it changed.
    pub fn merge(&self, rows: &[UnitRow]) -> bool {
        let mut guard = self.map.write().unwrap_or_else(|p| p.into_inner());
        let map = guard.get_or_insert_with(|| LiveMap::seeded((*self.routing).clone()));
        map.merge(rows)
    }

    /// Marks the map loaded (the file's seed when no row was read).
    fn loaded(&self) {
        let mut guard = self.map.write().unwrap_or_else(|p| p.into_inner());
        guard.get_or_insert_with(|| LiveMap::seeded((*self.routing).clone()));
    }
}

/// Seeds the file's units into a center's meta database (existing rows are kept).
pub async fn seed(conn: &mut Conn, meta: &str, routing: &Routing) -> Result<(), crate::RouteError> {
    let units: Vec<(&str, &str)> = routing
        .units
        .iter()
        .map(|u| (u.name.as_str(), u.home.as_str()))
        .collect();
    if let Some(q) = drc_meta::route::seed_statement(meta, &units) {
        conn.query_drop(q)
            .await
            .map_err(crate::RouteError::query("seeding the routing map"))?;
    }
    Ok(())
}

async fn open(url: &str, meta: &str, routing: &Routing, own: bool) -> Option<Conn> {
    let mut c = drc_mysql::connect(url, READ_TIMEOUT).await.ok()?;
    if own {
        let prepared = tokio::time::timeout(READ_TIMEOUT * 5, async {
            drc_meta::ensure_schema(&mut c, meta).await.ok()?;
            seed(&mut c, meta, routing).await.ok()
        });
        prepared.await.ok().flatten()?;
    }
    Some(c)
}

async fn read(conn: &mut Conn, meta: &str) -> Option<Vec<UnitRow>> {
    tokio::time::timeout(READ_TIMEOUT, drc_meta::route::load(conn, meta))
        .await
        .ok()?
        .ok()
}

/// Keeps `router` fresh until `shutdown`: this center's map every [`LOCAL_EVERY`], the peers'
/// every [`PEERS_EVERY`], raising this center's rows to the newest seen anywhere.
pub async fn refresh(
    router: Router,
    config: Config,
    center: Center,
    metrics: RouteMetrics,
    shutdown: watch::Receiver<bool>,
) {
    let meta = config.replication.meta_database.clone();
    let routing = router.routing().clone();
    let mut own: Option<Conn> = None;
    let mut peers: HashMap<String, Option<Conn>> = config
        .centers
        .iter()
        .filter(|c| c.name != center.name)
        .map(|c| (c.name.clone(), None))
        .collect();
    let mut tick = tokio::time::interval(LOCAL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_peers: Option<tokio::time::Instant> = None;
    let mut sd = shutdown;
    let mut warned = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = sd.changed() => return,
        }
        if own.is_none() {
            own = open(center.url(), &meta, &routing, true).await;
        }
        let mut local: Option<Vec<UnitRow>> = None;
        if let Some(c) = own.as_mut() {
            local = read(c, &meta).await;
            if local.is_none() {
                own = None;
            }
        }
        if let Some(rows) = &local {
            router.merge(rows);
            router.loaded();
            warned = false;
        } else if !warned {
            warn!(center = %center.name, "routing: cannot read this center's routing map; serving the newest map the peers hold");
            warned = true;
        }
        if last_peers.is_none_or(|t| t.elapsed() >= PEERS_EVERY) {
            last_peers = Some(tokio::time::Instant::now());
            for peer in &config.centers {
                let Some(slot) = peers.get_mut(&peer.name) else {
                    continue;
                };
                if slot.is_none() {
                    *slot = open(peer.url(), &meta, &routing, false).await;
                }
                if let Some(c) = slot.as_mut() {
                    match read(c, &meta).await {
                        Some(rows) => {
                            router.merge(&rows);
                            router.loaded();
                        }
                        None => *slot = None,
                    }
                }
            }
        }
        // Raise this center's rows to the newest seen anywhere.
        if let (Some(c), Some(local)) = (own.as_mut(), &local) {
            let newer: Vec<(Option<UnitRow>, UnitRow)> = router
                .with(|m| {
                    m.rows()
                        .filter_map(|best| {
                            let held = local.iter().find(|r| r.unit == best.unit);
                            match held {
                                Some(h) if !best.newer(h) => None,
                                _ => Some((held.cloned(), best.clone())),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            for (old, new) in newer {
                let q = drc_meta::route::cas_statement(&meta, old.as_ref(), &new);
                match tokio::time::timeout(READ_TIMEOUT, c.query_drop(q)).await {
                    Ok(Ok(())) => info!(
                        unit = %new.unit, home = %new.home, epoch = new.epoch,
                        "routing: raised this center's row to the newest a peer holds"
                    ),
                    _ => {
                        own = None;
                        break;
                    }
                }
            }
        }
        if let Ok((epoch, moving)) = router.with(|m| {
            (
                m.epoch(),
                m.rows()
                    .filter(|r| r.state != drc_meta::route::UnitState::Writable)
                    .count(),
            )
        }) {
            metrics.epoch.set(epoch as i64);
            metrics.moving.set(moving as i64);
        }
    }
}
