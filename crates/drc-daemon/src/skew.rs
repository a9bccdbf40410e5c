//! The clock skew between this center's database server and each peer's, as the metric
//! `drc_center_clock_skew_seconds{peer}` (and its error bound,
//! `drc_center_clock_skew_error_seconds{peer}`).
//!
//! Every heartbeat interval the daemon reads its own server's clock and then each peer's, one
//! query each ([`drc_mysql::clock`]: NTP-style against this process's clock, so the skew
//! `peer - local` is exact up to half of each round trip). Last-writer-wins compares versions
//! stamped by those clocks, and the lag metric subtracts one from the other, so the skew is
//! shown rather than hidden: a skew above `[conflict] max_clock_skew_ms` is logged as a warning
//! when it starts and when it ends. A peer that cannot be read has its series removed (no stale
//! value), and is tried again at the next tick.

use std::collections::HashMap;
use std::time::Duration;

use drc_apply::Metrics;
use drc_config::{Center, Config};
use drc_mysql::clock::{read_clock, ClockReading, Skew};
use mysql_async::Conn;
use tokio::sync::watch;
use tracing::{info, warn};

/// How long connecting to and reading one server's clock may take.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// One server's clock, read over a connection kept between ticks.
struct Clock {
    url: String,
    conn: Option<Conn>,
}

impl Clock {
    fn new(url: &str) -> Self {
        Clock {
            url: url.to_string(),
            conn: None,
        }
    }

    /// Reads the clock; `None` (and a new connection next time) when the server does not answer.
    async fn read(&mut self) -> Option<ClockReading> {
        let read = async {
            if self.conn.is_none() {
                self.conn = Some(drc_mysql::connect(&self.url, READ_TIMEOUT).await.ok()?);
            }
            read_clock(self.conn.as_mut()?).await.ok()
        };
        let r = tokio::time::timeout(READ_TIMEOUT, read)
            .await
            .ok()
            .flatten();
        if r.is_none() {
            self.conn = None;
        }
        r
    }
}

/// Measures the skew of every peer against `center` until `shutdown` turns true.
pub(crate) async fn measure_skew(
    config: Config,
    center: Center,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
) {
    let limit = config.conflict.max_clock_skew.as_secs_f64();
    let mut local = Clock::new(center.url());
    let mut peers: Vec<(String, Clock)> = config
        .centers
        .iter()
        .filter(|c| c.name != center.name)
        .map(|c| (c.name.clone(), Clock::new(c.url())))
        .collect();
    let mut over: HashMap<String, bool> = HashMap::new();
    let mut tick = tokio::time::interval(config.heartbeat.interval);
    let mut sd = shutdown;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = sd.changed() => return,
        }
        for (peer, clock) in &mut peers {
            // The local reading right before each peer's, so this process's clock only has to
            // run steadily for one round trip.
            let skew = match local.read().await {
                Some(l) => clock.read().await.map(|p| p.skew_against(&l)),
                None => None,
            };
            let labels = [peer.as_str()];
            let Some(skew) = skew else {
                let _ = metrics.clock_skew.remove_label_values(&labels);
                let _ = metrics.clock_skew_error.remove_label_values(&labels);
                continue;
            };
            metrics
                .clock_skew
                .with_label_values(&labels)
                .set(skew.seconds);
            metrics
                .clock_skew_error
                .with_label_values(&labels)
                .set(skew.error);
            report(
                peer,
                &center.name,
                &skew,
                limit,
                over.entry(peer.clone()).or_default(),
            );
        }
    }
}

/// Logs when a peer's skew goes above `limit` seconds, and when it is back below.
fn report(peer: &str, center: &str, skew: &Skew, limit: f64, was_over: &mut bool) {
    let is_over = skew.exceeds(limit);
    if is_over && !*was_over {
        warn!(
            peer, center, skew_s = skew.seconds, error_s = skew.error, limit_s = limit,
            "the peer's database clock differs from this center's by more than conflict.max_clock_skew_ms: last-writer-wins decisions and the lag metric are off by that much; synchronise the servers' clocks (docs/operations.md)"
        );
    } else if !is_over && *was_over {
        info!(
            peer,
            center,
            skew_s = skew.seconds,
            "the peer's database clock is back within conflict.max_clock_skew_ms"
        );
    }
    *was_over = is_over;
}
