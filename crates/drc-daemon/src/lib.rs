//! The daemon beside one center: one link from every peer into this center, the heartbeat, lag
//! measurement, and the `/metrics` and `/health` endpoints.
//!
//! Links are supervised: a link that stops with an error is counted
//! (`drc_link_errors_total`), shown as failed in `/health`, and started again after a backoff
//! (1 s doubling to 60 s) — it resumes from its checkpoint, so a restart loses nothing. Other
//! links keep running meanwhile.

mod http;
mod status;

use std::sync::Arc;
use std::time::Duration;

use drc_apply::{run_link, LinkSpec, LinkState, LinkStatus, Metrics};
use drc_config::{Center, Config};
use mysql_async::prelude::Queryable;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

pub use status::{link_status_lines, LinkRow};

/// Errors that stop the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The named center is not in the configuration.
    #[error("center {name:?} is not in the configuration (centers: {known})")]
    UnknownCenter {
        /// Requested name.
        name: String,
        /// Configured names.
        known: String,
    },
    /// The metrics endpoint could not be served.
    #[error("cannot listen on {addr} for /metrics: {source}")]
    Listen {
        /// Address.
        addr: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Metric registration failed.
    #[error("metrics: {0}")]
    Metrics(#[from] drc_apply::metrics::PrometheusError),
}

/// A running link's name and shared state.
#[derive(Clone)]
pub struct LinkHandle {
    /// `source->target`.
    pub name: String,
    /// Its state.
    pub state: Arc<LinkState>,
}

/// The replica server_id a link registers with on its source server: unique per (source,
/// target) pair, even, so that the canary's `+1` never collides.
pub fn replica_server_id(base: u32, target_index: usize, source_index: usize) -> u32 {
    base.wrapping_add(((target_index * 100 + source_index) * 2) as u32)
}

/// The links into `center`, one per peer.
pub fn links_into(config: &Config, center: &Center) -> Vec<LinkSpec> {
    let t = config
        .centers
        .iter()
        .position(|c| c.name == center.name)
        .unwrap_or(0);
    config
        .centers
        .iter()
        .enumerate()
        .filter(|(_, c)| c.name != center.name)
        .map(|(s, c)| LinkSpec {
            name: format!("{}->{}", c.name, center.name),
            source_name: c.name.clone(),
            source_url: c.url().to_string(),
            target_url: center.url().to_string(),
            replication: config.replication.clone(),
            applier: config.applier.clone(),
            source: config.source.clone(),
            replica_server_id: replica_server_id(config.source.replica_server_id_base, t, s),
            fence: None,
        })
        .collect()
}

async fn supervise(
    spec: LinkSpec,
    metrics: Metrics,
    state: Arc<LinkState>,
    shutdown: watch::Receiver<bool>,
) {
    let mut delay = Duration::from_secs(1);
    loop {
        let began = std::time::Instant::now();
        let result = run_link(
            spec.clone(),
            metrics.clone(),
            state.clone(),
            shutdown.clone(),
        )
        .await;
        if *shutdown.borrow() {
            return;
        }
        match result {
            Ok(()) => return,
            Err(e) => {
                metrics
                    .errors
                    .with_label_values(&[spec.name.as_str()])
                    .inc();
                state.set_status(LinkStatus::Failed(e.to_string()));
                error!(link = %spec.name, error = %e, retry_in_s = delay.as_secs(), "link stopped");
            }
        }
        if began.elapsed() > Duration::from_secs(60) {
            delay = Duration::from_secs(1);
        }
        let mut sd = shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = sd.changed() => return,
        }
        delay = (delay * 2).min(Duration::from_secs(60));
    }
}

async fn heartbeat(config: Config, center: Center, shutdown: watch::Receiver<bool>) {
    let meta = config.replication.meta_database.clone();
    let mut conn: Option<mysql_async::Conn> = None;
    let mut tick = tokio::time::interval(config.heartbeat.interval);
    let mut sd = shutdown;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = sd.changed() => return,
        }
        if conn.is_none() {
            match drc_mysql::connect(center.url(), Duration::from_secs(5)).await {
                Ok(mut c) => {
                    let mut ok = true;
                    for s in drc_apply::meta::schema_statements(&meta) {
                        if let Err(e) = c.query_drop(&s).await {
                            warn!(error = %e, "heartbeat: cannot create drc's meta tables");
                            ok = false;
                            break;
                        }
                    }
                    if ok {
                        conn = Some(c);
                    }
                }
                Err(e) => warn!(error = %e, "heartbeat: cannot connect to the local center"),
            }
        }
        if let Some(c) = conn.as_mut() {
            let q = format!(
                "INSERT INTO `{}`.`heartbeat` (`center`, `ts`, `seq`) VALUES ('{}', NOW(6), 1) \
                 ON DUPLICATE KEY UPDATE `ts` = NOW(6), `seq` = `seq` + 1",
                meta.replace('`', "``"),
                center.name
            );
            if let Err(e) = c.query_drop(q).await {
                warn!(error = %e, "heartbeat write failed");
                conn = None;
            }
        }
    }
}

async fn measure_lag(
    config: Config,
    center: Center,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
) {
    let mut conn: Option<mysql_async::Conn> = None;
    let mut tick = tokio::time::interval(config.heartbeat.interval);
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
        match status::heartbeat_ages(c, &config.replication.meta_database).await {
            Ok(ages) => {
                for (peer, age) in ages {
                    if peer != center.name {
                        let link = format!("{peer}->{}", center.name);
                        metrics.lag.with_label_values(&[link.as_str()]).set(age);
                    }
                }
            }
            Err(_) => conn = None,
        }
    }
}

/// Runs the daemon for `center_name` until `shutdown` turns true.
pub async fn run(
    config: Config,
    center_name: &str,
    metrics_listen: Option<std::net::SocketAddr>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), DaemonError> {
    let center = config
        .center(center_name)
        .cloned()
        .ok_or_else(|| DaemonError::UnknownCenter {
            name: center_name.to_string(),
            known: config.center_names().join(", "),
        })?;
    let metrics = Metrics::new()?;
    let specs = links_into(&config, &center);
    let handles: Vec<LinkHandle> = specs
        .iter()
        .map(|s| LinkHandle {
            name: s.name.clone(),
            state: Arc::new(LinkState::default()),
        })
        .collect();
    let mut tasks = JoinSet::new();
    if let Some(addr) = metrics_listen.or(center.metrics_listen) {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| DaemonError::Listen {
                addr: addr.to_string(),
                source,
            })?;
        info!(%addr, "serving /metrics and /health");
        tasks.spawn(http::serve(
            listener,
            metrics.clone(),
            center.name.clone(),
            handles.clone(),
            shutdown.clone(),
        ));
    }
    for (spec, h) in specs.into_iter().zip(&handles) {
        info!(link = %spec.name, "starting link");
        tasks.spawn(supervise(
            spec,
            metrics.clone(),
            h.state.clone(),
            shutdown.clone(),
        ));
    }
    tasks.spawn(heartbeat(config.clone(), center.clone(), shutdown.clone()));
    tasks.spawn(measure_lag(
        config.clone(),
        center.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    while tasks.join_next().await.is_some() {}
    Ok(())
}
