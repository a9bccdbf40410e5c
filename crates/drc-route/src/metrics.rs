//! The routing metrics (docs/metrics.md), registered in the daemon's registry.

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

/// Applied writes whose origin center is not the home of their key's unit, by link and unit.
pub const FOREIGN_WRITES: &str = "drc_routing_foreign_writes_total";
/// The epoch of the routing map this daemon serves.
pub const EPOCH: &str = "drc_routing_epoch";
/// Units whose keys are not writable now (a cutover moves them).
pub const UNITS_MOVING: &str = "drc_routing_units_moving";

/// The routing metric handles.
#[derive(Clone)]
pub struct RouteMetrics {
    /// [`FOREIGN_WRITES`].
    pub foreign: IntCounterVec,
    /// [`EPOCH`].
    pub epoch: IntGauge,
    /// [`UNITS_MOVING`].
    pub moving: IntGauge,
}

impl RouteMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let foreign = IntCounterVec::new(
            Opts::new(
                FOREIGN_WRITES,
                "Applied writes whose origin center is not the home of their key's unit (center closure violations)",
            ),
            &["link", "unit"],
        )?;
        let epoch = IntGauge::new(EPOCH, "The epoch of the routing map this daemon serves")?;
        let moving = IntGauge::new(
            UNITS_MOVING,
            "Units not writable now (a cutover moves them)",
        )?;
        registry.register(Box::new(foreign.clone()))?;
        registry.register(Box::new(epoch.clone()))?;
        registry.register(Box::new(moving.clone()))?;
        Ok(RouteMetrics {
            foreign,
            epoch,
            moving,
        })
    }
}
