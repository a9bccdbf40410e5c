//! What `drc status` shows: per link, the daemon's state (from its `/health`), the last applied
//! position (from the checkpoint rows in the target) and the lag (from the heartbeat rows); per
//! center, its database clock's skew against the first center's ([`clock_skews`]).

use std::time::Duration;

use drc_config::Config;
use drc_mysql::clock::{read_clock, Skew};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

/// Every center's heartbeat row in this center's meta database: its `seq` and its age in
/// seconds by this center's clock (see [`heartbeat_ages`] for what the age means).
pub async fn heartbeats(
    conn: &mut Conn,
    meta: &str,
) -> Result<Vec<(String, drc_meta::heartbeat::Seen)>, mysql_async::Error> {
    let rows: Vec<(String, u64, i64)> = conn
        .query(format!(
            "SELECT `center`, `seq`, TIMESTAMPDIFF(MICROSECOND, `ts`, NOW(6)) FROM `{}`.`heartbeat`",
            meta.replace('`', "``")
        ))
        .await?;
    Ok(rows
        .into_iter()
        .map(|(c, seq, us)| {
            (
                c,
                drc_meta::heartbeat::Seen {
                    seq,
                    age: us as f64 / 1e6,
                },
            )
        })
        .collect())
}

/// Ages in seconds of every center's newest heartbeat seen in this center's meta database.
///
/// The age subtracts a time stamped by the heartbeat's center from this center's clock, so it
/// is off by the skew between them, and negative when that center's clock is ahead by more than
/// the lag. It is reported as it is, never clamped: a negative lag is a visible sign of skew
/// (`drc_center_clock_skew_seconds`; lag + skew is the lag on one clock).
pub async fn heartbeat_ages(
    conn: &mut Conn,
    meta: &str,
) -> Result<Vec<(String, f64)>, mysql_async::Error> {
    Ok(heartbeats(conn, meta)
        .await?
        .into_iter()
        .map(|(c, s)| (c, s.age))
        .collect())
}

/// Each center's database clock against the first center that answers (`drc_mysql::clock`:
/// NTP-style, from this process), in file order; `None` for a center that cannot be read.
pub async fn clock_skews(config: &Config) -> Vec<(String, Option<Skew>)> {
    let mut readings = Vec::new();
    for c in &config.centers {
        let read = async {
            let mut conn = drc_mysql::connect(c.url(), Duration::from_secs(5))
                .await
                .ok()?;
            let r = read_clock(&mut conn).await.ok();
            let _ = conn.disconnect().await;
            r
        };
        let r = tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .ok()
            .flatten();
        readings.push((c.name.clone(), r));
    }
    let base = readings.iter().find_map(|(_, r)| *r);
    readings
        .into_iter()
        .map(|(name, r)| (name, r.zip(base).map(|(r, b)| r.skew_against(&b))))
        .collect()
}

/// One line of `drc status`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkRow {
    /// `source->target`.
    pub link: String,
    /// `running`, `starting`, `standby`, `reconnecting: ...` (the link's binlog source lost its
    /// server), `failed: ...`, or why it is unknown.
    pub state: String,
    /// Last applied position (end of the newest batch), if any.
    pub position: Option<String>,
    /// Lag in seconds, if a heartbeat of the source was seen in the target.
    pub lag: Option<f64>,
}

async fn health(
    client: &drc_route::client::HttpClient,
    addr: std::net::SocketAddr,
) -> Option<serde_json::Value> {
    client
        .get_json(&addr.to_string(), "/health")
        .await
        .ok()
        .map(|(_, v)| v)
}

/// Collects the status of every link of the cluster.
pub async fn link_status_lines(config: &Config) -> Vec<LinkRow> {
    let meta = &config.replication.meta_database;
    let client = drc_route::client::HttpClient::new(&config.http).unwrap_or_default();
    let mut out = Vec::new();
    for target in &config.centers {
        let daemon = match target.metrics_listen {
            Some(a) => health(&client, a).await,
            None => None,
        };
        let mut conn = drc_mysql::connect(target.url(), Duration::from_secs(5))
            .await
            .ok();
        let ages = match conn.as_mut() {
            Some(c) => heartbeat_ages(c, meta).await.unwrap_or_default(),
            None => Vec::new(),
        };
        for source in config.centers.iter().filter(|c| c.name != target.name) {
            let link = format!("{}->{}", source.name, target.name);
            let state = match (&daemon, target.metrics_listen) {
                (Some(h), _) => h["links"]
                    .as_array()
                    .and_then(|ls| ls.iter().find(|l| l["link"] == link.as_str()))
                    .map(|l| match (l["error"].as_str(), l["state"].as_str()) {
                        (Some(e), _) => format!("failed: {e}"),
                        (None, Some("reconnecting")) => format!(
                            "reconnecting: nothing from {} for {:.0} s ({})",
                            source.name,
                            l["source_seconds_since_last_event"].as_f64().unwrap_or(0.0),
                            l["source_error"].as_str().unwrap_or("no error recorded")
                        ),
                        (None, s) => s.unwrap_or("unknown").to_string(),
                    })
                    .unwrap_or_else(|| "unknown (not reported by the daemon)".into()),
                (None, Some(a)) => format!("unknown (no daemon answers at {a})"),
                (None, None) => "unknown (no metrics_listen configured)".into(),
            };
            let position = match conn.as_mut() {
                Some(c) => c
                    .exec_first::<String, _, _>(
                        format!(
                            "SELECT `end_position` FROM `{}`.`checkpoint` WHERE `link` = ? ORDER BY `batch` DESC LIMIT 1",
                            meta.replace('`', "``")
                        ),
                        (link.as_str(),),
                    )
                    .await
                    .ok()
                    .flatten(),
                None => None,
            };
            // The daemon's figure (measured when the link applied the heartbeat, see
            // `lag.rs`); without a daemon, the age of the newest heartbeat row.
            let reported = daemon.as_ref().and_then(|h| {
                h["links"]
                    .as_array()?
                    .iter()
                    .find(|l| l["link"] == link.as_str())?["lag_seconds"]
                    .as_f64()
            });
            let lag = reported.or_else(|| {
                ages.iter()
                    .find(|(c, _)| *c == source.name)
                    .map(|(_, a)| *a)
            });
            out.push(LinkRow {
                link,
                state: if conn.is_none() && daemon.is_none() {
                    format!("unknown (cannot reach {})", target.display_url)
                } else {
                    state
                },
                position,
                lag,
            });
        }
    }
    out
}
