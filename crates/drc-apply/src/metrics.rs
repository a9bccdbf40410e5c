//! Prometheus metrics of the links and the daemon. Names follow
//! `drc_<subsystem>_<name>_<unit>[_total]`; labels are low-cardinality (`link`, `kind`,
//! `center`), never row values. Every metric is listed in docs/metrics.md.

use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Rows applied, by link and kind (insert/update/delete).
pub const APPLY_ROWS: &str = "drc_apply_rows_total";
/// Source transactions covered by applied batches, by link.
pub const APPLY_TRANSACTIONS: &str = "drc_apply_transactions_total";
/// Target batches committed, by link.
pub const APPLY_BATCHES: &str = "drc_apply_batches_total";
/// Source transactions dropped as drc's own writes (loopback), by link.
pub const LINK_LOOPBACK_DROPPED: &str = "drc_link_loopback_dropped_total";
/// Link failures (each stop of a link with an error), by link.
pub const LINK_ERRORS: &str = "drc_link_errors_total";
/// 1 while the link is applying, 0 otherwise, by link.
pub const LINK_UP: &str = "drc_link_up";
/// 1 while the link is paused by the operator (`drc link pause`), by link.
pub const LINK_PAUSED: &str = "drc_link_paused";
/// 1 while the link runs but its binlog source lost its server and reconnects, by link.
pub const LINK_RECONNECTING: &str = "drc_link_reconnecting";
/// Seconds since the link's binlog source last received anything (an event or a heartbeat)
/// from its server, by link.
pub const LINK_SOURCE_SILENCE: &str = "drc_link_source_seconds_since_last_event";
/// Seconds between now and the newest heartbeat of the link's source center seen in the target,
/// both read from clocks of their own center: negative when the source's clock is ahead by more
/// than the lag (never clamped; see [`CENTER_CLOCK_SKEW`]).
pub const LINK_LAG: &str = "drc_link_lag_seconds";

/// Seconds the database clock of a peer center is ahead of this center's (negative: behind),
/// by peer; measured NTP-style by the daemon (docs/metrics.md).
pub const CENTER_CLOCK_SKEW: &str = "drc_center_clock_skew_seconds";
/// The error bound of [`CENTER_CLOCK_SKEW`] (half the round trips of its two clock readings),
/// by peer.
pub const CENTER_CLOCK_SKEW_ERROR: &str = "drc_center_clock_skew_error_seconds";

/// Writes lost to conflict resolution, by link, table and resolution (docs/conflicts.md).
pub const APPLY_CONFLICTS: &str = "drc_apply_conflicts_total";

/// DDL statements a link met and did not simply pass, by link and action (`replicated`,
/// `skipped` after an acknowledgment, `stopped`).
pub const APPLY_DDL: &str = "drc_apply_ddl_total";

/// The metric handles, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    /// The registry to expose at `/metrics`.
    pub registry: Registry,
    /// [`APPLY_ROWS`].
    pub rows: IntCounterVec,
    /// [`APPLY_TRANSACTIONS`].
    pub transactions: IntCounterVec,
    /// [`APPLY_BATCHES`].
    pub batches: IntCounterVec,
    /// [`LINK_LOOPBACK_DROPPED`].
    pub loopback_dropped: IntCounterVec,
    /// [`LINK_ERRORS`].
    pub errors: IntCounterVec,
    /// [`LINK_UP`].
    pub up: IntGaugeVec,
    /// [`LINK_LAG`].
    pub lag: GaugeVec,
    /// [`LINK_RECONNECTING`].
    pub reconnecting: IntGaugeVec,
    /// [`LINK_PAUSED`].
    pub paused: IntGaugeVec,
    /// [`LINK_SOURCE_SILENCE`].
    pub source_silence: GaugeVec,
    /// [`APPLY_CONFLICTS`].
    pub conflicts: IntCounterVec,
    /// [`CENTER_CLOCK_SKEW`].
    pub clock_skew: GaugeVec,
    /// [`CENTER_CLOCK_SKEW_ERROR`].
    pub clock_skew_error: GaugeVec,
    /// [`APPLY_DDL`].
    pub ddl: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let rows = IntCounterVec::new(
            Opts::new(APPLY_ROWS, "Row changes applied"),
            &["link", "kind"],
        )?;
        let transactions = IntCounterVec::new(
            Opts::new(
                APPLY_TRANSACTIONS,
                "Source transactions covered by applied batches",
            ),
            &["link"],
        )?;
        let batches = IntCounterVec::new(Opts::new(APPLY_BATCHES, "Batches committed"), &["link"])?;
        let loopback_dropped = IntCounterVec::new(
            Opts::new(
                LINK_LOOPBACK_DROPPED,
                "Source transactions dropped as drc's own writes",
            ),
            &["link"],
        )?;
        let errors = IntCounterVec::new(Opts::new(LINK_ERRORS, "Link failures"), &["link"])?;
        let up = IntGaugeVec::new(Opts::new(LINK_UP, "1 while the link applies"), &["link"])?;
        let lag = GaugeVec::new(
            Opts::new(
                LINK_LAG,
                "Seconds since the newest heartbeat of the source center seen in the target",
            ),
            &["link"],
        )?;
        let reconnecting = IntGaugeVec::new(
            Opts::new(
                LINK_RECONNECTING,
                "1 while the link's binlog source reconnects to its server",
            ),
            &["link"],
        )?;
        let source_silence = GaugeVec::new(
            Opts::new(
                LINK_SOURCE_SILENCE,
                "Seconds since the link's binlog source last received an event or heartbeat",
            ),
            &["link"],
        )?;
        let paused = IntGaugeVec::new(
            Opts::new(LINK_PAUSED, "1 while the link is paused by the operator"),
            &["link"],
        )?;
        registry.register(Box::new(paused.clone()))?;
        registry.register(Box::new(reconnecting.clone()))?;
        registry.register(Box::new(source_silence.clone()))?;
        let conflicts = IntCounterVec::new(
            Opts::new(
                APPLY_CONFLICTS,
                "Writes lost to conflict resolution (each is a row in <meta>.conflict)",
            ),
            &["link", "table", "resolution"],
        )?;
        let clock_skew = GaugeVec::new(
            Opts::new(
                CENTER_CLOCK_SKEW,
                "Seconds the peer center's database clock is ahead of this center's",
            ),
            &["peer"],
        )?;
        let clock_skew_error = GaugeVec::new(
            Opts::new(
                CENTER_CLOCK_SKEW_ERROR,
                "Error bound of drc_center_clock_skew_seconds (half the round trips)",
            ),
            &["peer"],
        )?;
        registry.register(Box::new(clock_skew.clone()))?;
        registry.register(Box::new(clock_skew_error.clone()))?;
        let ddl = IntCounterVec::new(
            Opts::new(
                APPLY_DDL,
                "DDL statements replicated, skipped or stopped at",
            ),
            &["link", "action"],
        )?;
        registry.register(Box::new(ddl.clone()))?;
        registry.register(Box::new(conflicts.clone()))?;
        registry.register(Box::new(rows.clone()))?;
        registry.register(Box::new(transactions.clone()))?;
        registry.register(Box::new(batches.clone()))?;
        registry.register(Box::new(loopback_dropped.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(up.clone()))?;
        registry.register(Box::new(lag.clone()))?;
        Ok(Metrics {
            registry,
            rows,
            transactions,
            batches,
            loopback_dropped,
            errors,
            up,
            lag,
            reconnecting,
            paused,
            source_silence,
            conflicts,
            clock_skew,
            clock_skew_error,
            ddl,
        })
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let enc = prometheus::TextEncoder::new();
        let _ = enc.encode_utf8(&self.registry.gather(), &mut out);
        out
    }
}
/// Errors of the metrics library.
pub use prometheus::Error as PrometheusError;
