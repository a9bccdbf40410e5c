//! `drc_link_lag_seconds` (and `/health` `lag_seconds`): how far this center is behind each
//! peer, from the peer's heartbeat row (`drc_meta::heartbeat`).
//!
//! Two measurements feed one gauge per link:
//!
//! - **At apply** (the link, `drc_apply::link`): right after a link commits its source's
//!   heartbeat row it reads this server's `NOW(6)` minus the row's stamp, and records that
//!   figure with the row's `seq` in its [`LinkState`]. This is the lag itself, in microseconds:
//!   the time from the heartbeat's write in the peer to it being visible here.
//! - **Polled** ([`measure_lag`], every `[heartbeat] interval_ms`): the age of the newest row
//!   of each peer, by this server's clock. While the link measured that very row, the gauge is
//!   the larger of the measured lag and the age less one heartbeat interval: once the age passes
//!   an interval, the peer's next heartbeat is due and not yet applied, so the link is at least
//!   that far behind, and the gauge grows while a link is stuck instead of freezing at its last
//!   measurement. For a row the link did not measure (a standby replica, which applies
//!   nothing; a failed read; a row written by hand) the gauge is the age, as before the
//!   measurement at apply existed.
//!
//! Both subtract a stamp of the peer's clock from this center's clock: the figure is off by
//! the skew between them and is never clamped (a negative lag shows a peer's clock ahead).

use std::time::Duration;

use drc_apply::state::HeartbeatLag;
use drc_apply::Metrics;
use drc_config::{Center, Config};
use drc_meta::heartbeat::Seen;
use tokio::sync::watch;

use crate::{status, LinkHandle};

/// What the gauge shows for a link whose source's newest heartbeat row in this center is
/// `seen` (aged now), given the lag the link measured at its newest applied heartbeat
/// (`applied`) and the heartbeat period. `None`: leave the gauge as it is (the link measured
/// a newer row than the poll read, so the gauge is fresher than the poll).
pub(crate) fn reported_lag(
    applied: Option<HeartbeatLag>,
    seen: Seen,
    interval: Duration,
) -> Option<f64> {
    match applied {
        Some(a) if a.seq == seen.seq => Some(a.lag.max(seen.age - interval.as_secs_f64())),
        Some(a) if a.seq > seen.seq => None,
        _ => Some(seen.age),
    }
}

/// Polls this center's heartbeat rows every `[heartbeat] interval_ms` and sets each link's
/// lag gauge ([`reported_lag`]).
pub(crate) async fn measure_lag(
    config: Config,
    center: Center,
    metrics: Metrics,
    links: Vec<LinkHandle>,
    shutdown: watch::Receiver<bool>,
) {
    let mut conn: Option<mysql_async::Conn> = None;
    let interval = config.heartbeat.interval;
    let mut tick = tokio::time::interval(interval);
    let mut sd = shutdown;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = sd.changed() => return,
        }
        if conn.is_none() {
            conn = drc_mysql::connect(center.url(), Duration::from_secs(5))
                .await
                .ok();
        }
        let Some(c) = conn.as_mut() else { continue };
        let rows = tokio::time::timeout(
            config.applier.query_timeout,
            status::heartbeats(c, &config.replication.meta_database),
        );
        match rows.await {
            Ok(Ok(rows)) => {
                for (peer, seen) in rows {
                    if peer == center.name {
                        continue;
                    }
                    let link = format!("{peer}->{}", center.name);
                    let applied = links
                        .iter()
                        .find(|l| l.name == link)
                        .and_then(|l| l.state.heartbeat());
                    if let Some(lag) = reported_lag(applied, seen, interval) {
                        metrics.lag.with_label_values(&[link.as_str()]).set(lag);
                    }
                }
            }
            Ok(Err(_)) | Err(_) => conn = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn seen(seq: u64, age: f64) -> Seen {
        Seen { seq, age }
    }

    #[test]
    fn the_lag_measured_at_apply_is_shown_while_the_next_heartbeat_is_not_due() {
        let applied = Some(HeartbeatLag {
            seq: 7,
            lag: 0.0031,
        });
        // Polled 0.6 s after the heartbeat was written: the age is mostly the poll's phase.
        assert_eq!(reported_lag(applied, seen(7, 0.6), SECOND), Some(0.0031));
        // Just before the next heartbeat is applied.
        assert_eq!(reported_lag(applied, seen(7, 1.0), SECOND), Some(0.0031));
    }

    #[test]
    fn a_stuck_link_shows_a_growing_lag() {
        let applied = Some(HeartbeatLag { seq: 7, lag: 0.004 });
        let at = |age: f64| reported_lag(applied, seen(7, age), SECOND).unwrap_or(f64::NAN);
        assert!((at(3.5) - 2.5).abs() < 1e-9);
        assert!((at(10.5) - 9.5).abs() < 1e-9);
    }

    #[test]
    fn rows_the_link_did_not_measure_show_their_age() {
        assert_eq!(reported_lag(None, seen(3, 0.7), SECOND), Some(0.7));
        let older = Some(HeartbeatLag { seq: 2, lag: 0.01 });
        assert_eq!(reported_lag(older, seen(3, 0.7), SECOND), Some(0.7));
        // Negative (the peer's clock ahead): never clamped.
        assert_eq!(reported_lag(None, seen(3, -3600.2), SECOND), Some(-3600.2));
    }

    #[test]
    fn a_poll_older_than_the_link_measurement_leaves_the_gauge() {
        let newer = Some(HeartbeatLag { seq: 9, lag: 0.002 });
        assert_eq!(reported_lag(newer, seen(8, 0.9), SECOND), None);
    }

    #[test]
    fn a_negative_lag_at_apply_is_kept() {
        let ahead = Some(HeartbeatLag {
            seq: 4,
            lag: -3599.998,
        });
        assert_eq!(
            reported_lag(ahead, seen(4, -3599.5), SECOND),
            Some(-3599.998)
        );
    }
}
