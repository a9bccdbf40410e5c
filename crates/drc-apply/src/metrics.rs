//! Prometheus metrics of the links and the daemon. Names follow
//! `drc_<subsystem>_<name>_<unit>[_total]`; labels are low-cardinality (`link`, `kind`,
//! `center`), never row values. Every metric is listed in docs/metrics.md.
//!
//! Per-link series are created when a link is set up ([`Metrics::init_link`]), so a scrape
//! shows a link's counters at 0 and its histograms empty before anything happened, instead of
//! no series at all (dashboards and alert rules then see a value, not a gap).

use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};

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

/// Seconds from the first source event of a batch arriving in the link to the batch committed
/// in the target (waiting for more changes, planning, applying), by link.
pub const APPLY_LATENCY: &str = "drc_apply_latency_seconds";
/// Seconds to apply one batch (planning and every worker's transaction up to the last commit),
/// by link.
pub const APPLY_BATCH_DURATION: &str = "drc_apply_batch_duration_seconds";
/// Binlog events the link's source received (heartbeats not counted), by link.
pub const SOURCE_EVENTS: &str = "drc_source_events_total";
/// Bytes of the binlog events the link's source received (heartbeats not counted), by link.
pub const SOURCE_BYTES: &str = "drc_source_bytes_total";
/// Times the link's binlog source reconnected to its server, by link.
pub const SOURCE_RECONNECTS: &str = "drc_source_reconnects_total";
/// Seconds since the link last committed a checkpoint, by link.
pub const LINK_CHECKPOINT_AGE: &str = "drc_link_checkpoint_age_seconds";
/// How far the center's local-delete reader is behind its own binlog, in seconds, by center.
pub const LOCAL_DELETES_LAG: &str = "drc_local_deletes_lag_seconds";
/// Local updates of a last-writer-wins table that lowered their row's version, by center and
/// table (read by the local-delete reader): the sign of a clock behind the row's last writer,
/// under which writes in several centers can end different (docs/conflicts.md, "Clock skew").
pub const VERSION_REGRESSIONS: &str = "drc_conflict_version_regressions_total";

/// Buckets of the latency histograms, in seconds: 1 ms to 2 minutes.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// The change kinds of [`APPLY_ROWS`].
pub const KINDS: [&str; 3] = ["insert", "update", "delete"];
/// The actions of [`APPLY_DDL`].
pub const DDL_ACTIONS: [&str; 3] = ["stopped", "skipped", "replicated"];

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
    /// [`APPLY_LATENCY`].
    pub latency: HistogramVec,
    /// [`APPLY_BATCH_DURATION`].
    pub batch_duration: HistogramVec,
    /// [`SOURCE_EVENTS`].
    pub source_events: IntCounterVec,
    /// [`SOURCE_BYTES`].
    pub source_bytes: IntCounterVec,
    /// [`SOURCE_RECONNECTS`].
    pub source_reconnects: IntCounterVec,
    /// [`LINK_CHECKPOINT_AGE`].
    pub checkpoint_age: GaugeVec,
    /// [`LOCAL_DELETES_LAG`].
    pub local_deletes_lag: GaugeVec,
    /// [`VERSION_REGRESSIONS`].
    pub version_regressions: IntCounterVec,
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
        let histogram = |name: &str, help: &str| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                &["link"],
            )
        };
        let latency = histogram(
            APPLY_LATENCY,
            "Seconds from a batch's first source event arriving to the batch committed",
        )?;
        let batch_duration = histogram(
            APPLY_BATCH_DURATION,
            "Seconds to apply one batch (plan and every worker's transaction)",
        )?;
        let counter = |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), &["link"]);
        let source_events = counter(SOURCE_EVENTS, "Binlog events received (no heartbeats)")?;
        let source_bytes = counter(SOURCE_BYTES, "Binlog bytes received (no heartbeats)")?;
        let source_reconnects = counter(SOURCE_RECONNECTS, "Binlog source reconnects")?;
        let checkpoint_age = GaugeVec::new(
            Opts::new(
                LINK_CHECKPOINT_AGE,
                "Seconds since the link last committed a checkpoint",
            ),
            &["link"],
        )?;
        let local_deletes_lag = GaugeVec::new(
            Opts::new(
                LOCAL_DELETES_LAG,
                "Seconds the local-delete reader is behind the center's own binlog",
            ),
            &["center"],
        )?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(batch_duration.clone()))?;
        registry.register(Box::new(source_events.clone()))?;
        registry.register(Box::new(source_bytes.clone()))?;
        registry.register(Box::new(source_reconnects.clone()))?;
        registry.register(Box::new(checkpoint_age.clone()))?;
        registry.register(Box::new(local_deletes_lag.clone()))?;
        let version_regressions = IntCounterVec::new(
            Opts::new(
                VERSION_REGRESSIONS,
                "Local updates of a last-writer-wins table that lowered the row's version",
            ),
            &["center", "table"],
        )?;
        registry.register(Box::new(version_regressions.clone()))?;
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
            latency,
            batch_duration,
            source_events,
            source_bytes,
            source_reconnects,
            checkpoint_age,
            local_deletes_lag,
            version_regressions,
        })
    }

    /// Creates every series of `link` whose labels are known in advance: its counters at 0,
    /// its histograms empty, its state gauges at 0 (the daemon sets them from the link's state
    /// on each scrape). The lag is left out: it appears with the first heartbeat measured, as
    /// a 0 would claim a link is caught up before anything was measured.
    pub fn init_link(&self, link: &str) {
        for kind in KINDS {
            self.rows.with_label_values(&[link, kind]);
        }
        for action in DDL_ACTIONS {
            self.ddl.with_label_values(&[link, action]);
        }
        for c in [
            &self.transactions,
            &self.batches,
            &self.loopback_dropped,
            &self.errors,
            &self.source_events,
            &self.source_bytes,
            &self.source_reconnects,
        ] {
            c.with_label_values(&[link]);
        }
        for g in [&self.up, &self.reconnecting, &self.paused] {
            g.with_label_values(&[link]);
        }
        self.latency.with_label_values(&[link]);
        self.batch_duration.with_label_values(&[link]);
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
