//! The daemon beside one center: one link from every peer into this center, the heartbeat, lag
//! and clock-skew measurement ([`skew`]), the `/metrics` and `/health` endpoints, and with
//! `[routing]` the routing map (`/v1/route`, `/v1/routes`, the closure check; `drc_route`).
//!
//! With `replicas` configured for the center, this daemon is one replica of a Raft group and
//! runs the links only while it is the elected leader, under the DB fence ([`leader`]).
//!
//! Links are supervised: a link that stops with an error is counted
//! (`drc_link_errors_total`), shown as failed in `/health`, and started again after a backoff
//! (1 s doubling to 60 s) — it resumes from its checkpoint, so a restart loses nothing. Other
//! links keep running meanwhile. A link that panics is treated the same way (each run is a
//! task of its own; the panic's message is the failure) — see [`supervise`].
//!
//! When any table may use last-writer-wins, the daemon also runs the center's local-delete
//! reader (tombstones of rows deleted by local writers, `drc_apply::conflict::local`), supervised
//! the same way; its failures count in `drc_link_errors_total{link="<center>~local-deletes"}`.
//!
//! Under systemd (`Type=notify`) the daemon reports `READY=1` once its links started and
//! `STOPPING=1` when it shuts down ([`notify`]).

mod http;
mod https;
mod lag;
pub mod leader;
mod notify;
mod skew;
mod status;
mod supervise;

use std::sync::Arc;
use std::time::Duration;

use drc_apply::conflict::local::LocalDeletesSpec;
use drc_apply::{LinkSpec, LinkState, Metrics};
use drc_config::{Center, Config};
use mysql_async::prelude::Queryable;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

pub use status::{clock_skews, link_status_lines, LinkRow};

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
    /// `--replica` does not fit the center's `replicas`.
    #[error("{0}")]
    Replica(String),
    /// `--start` is not valid.
    #[error("{0}")]
    Start(String),
    /// The Raft node could not start.
    #[error(transparent)]
    Election(#[from] drc_election::ElectionError),
    /// The HTTPS certificate or key could not be used.
    #[error(transparent)]
    Https(#[from] https::HttpsError),
}

/// How this daemon runs, beyond the configuration.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The center this daemon runs beside.
    pub center: String,
    /// Serve `/metrics` and `/health` here instead of the center's `metrics_listen`.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// This replica's index in the center's `replicas` (required when it has replicas).
    pub replica: Option<usize>,
    /// Where the Raft state is kept (default `./drc-data/<center>-<replica>`).
    pub data_dir: Option<std::path::PathBuf>,
    /// Accept Raft peers here instead of on `replicas[replica]` (e.g. `0.0.0.0:9501`).
    pub raft_listen: Option<std::net::SocketAddr>,
    /// Where links without a checkpoint start (`--start`).
    pub start: StartOption,
}

/// `drc run --start`: where links without a checkpoint start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StartOption {
    /// Nowhere: such a link refuses to start.
    #[default]
    Refuse,
    /// Every such link at its source's current end of binlog.
    Now,
    /// The link from each named source center at the given position; the others refuse.
    At(Vec<(String, drc_core::position::Position)>),
}

impl StartOption {
    /// Parses the `--start` values: `now`, or `SOURCE=POSITION` once per source center.
    pub fn parse(values: &[String], config: &Config, center: &str) -> Result<Self, DaemonError> {
        let bad = |m: String| DaemonError::Start(m);
        if values.is_empty() {
            return Ok(StartOption::Refuse);
        }
        if values.len() == 1 && values[0].trim() == "now" {
            return Ok(StartOption::Now);
        }
        let mut at = Vec::new();
        for v in values {
            let Some((source, pos)) = v.split_once('=') else {
                return Err(bad(format!(
                    "--start {v:?}: give `now`, or SOURCE=POSITION (e.g. a=0-1-100) once per source center"
                )));
            };
            let source = source.trim();
            if source == center || config.center(source).is_none() {
                return Err(bad(format!(
                    "--start {v:?}: {source:?} is not a peer of {center} (centers: {})",
                    config.center_names().join(", ")
                )));
            }
            if at.iter().any(|(s, _): &(String, _)| s == source) {
                return Err(bad(format!("--start names {source:?} twice")));
            }
            let p = pos
                .trim()
                .parse::<drc_core::position::Position>()
                .map_err(|e| {
                    bad(format!(
                        "--start {v:?}: {pos:?} is not a binlog position: {e}"
                    ))
                })?;
            at.push((source.to_string(), p));
        }
        Ok(StartOption::At(at))
    }

    /// The first start of the link from `source`.
    pub fn for_source(&self, source: &str) -> drc_apply::FirstStart {
        match self {
            StartOption::Refuse => drc_apply::FirstStart::Refuse,
            StartOption::Now => drc_apply::FirstStart::Now,
            StartOption::At(list) => list
                .iter()
                .find(|(s, _)| s == source)
                .map(|(_, p)| drc_apply::FirstStart::At(p.clone()))
                .unwrap_or_default(),
        }
    }
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

/// How far apart the replica server_id ranges of a center's replicas are: replica `r` adds
/// `r * 20000` to [`replica_server_id`] (whose range per replica is below 20000).
pub const REPLICA_SERVER_ID_STRIDE: u32 = 20_000;

/// The index of `center` in the configuration's center list.
fn center_index(config: &Config, center: &Center) -> usize {
    config
        .centers
        .iter()
        .position(|c| c.name == center.name)
        .unwrap_or(0)
}

/// The links into `center`, one per peer.
pub fn links_into(config: &Config, center: &Center) -> Vec<LinkSpec> {
    let t = center_index(config, center);
    config
        .centers
        .iter()
        .enumerate()
        .filter(|(_, c)| c.name != center.name)
        .map(|(s, c)| LinkSpec {
            name: format!("{}->{}", c.name, center.name),
            source_name: c.name.clone(),
            source_url: drc_config::Secret::new(c.url()),
            target_url: drc_config::Secret::new(center.url()),
            replication: config.replication.clone(),
            applier: config.applier.clone(),
            source: config.source.clone(),
            replica_server_id: replica_server_id(config.source.replica_server_id_base, t, s),
            conflict: config.conflict.clone(),
            local_deletes: None,
            key_locks: None,
            fence: None,
            ddl: config.ddl.clone(),
            first_start: drc_apply::FirstStart::Refuse,
            closure: None,
        })
        .collect()
}

/// True when any table may use last-writer-wins (then local deletes need tombstones).
fn uses_lww(config: &Config) -> bool {
    config.conflict.version_column.is_some() || config.conflict.tables.values().any(|c| c.is_some())
}

/// The local-delete reader of `center` (docs/conflicts.md, tombstones).
pub fn local_deletes_spec(config: &Config, center: &Center) -> LocalDeletesSpec {
    let t = center_index(config, center);
    LocalDeletesSpec {
        center: center.name.clone(),
        replica: None,
        url: drc_config::Secret::new(center.url()),
        replication: config.replication.clone(),
        conflict: config.conflict.clone(),
        source: config.source.clone(),
        replica_server_id: replica_server_id(config.source.replica_server_id_base, t, t),
        lag: None,
        regressions: None,
    }
}

/// Why the heartbeat could not prepare its connection.
#[derive(Debug, thiserror::Error)]
enum HeartbeatError {
    #[error(transparent)]
    Meta(drc_meta::MetaError),
    #[error(transparent)]
    Mysql(#[from] drc_mysql::MysqlError),
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
                    let ensure = drc_mysql::bounded(
                        config.applier.query_timeout,
                        "creating drc's meta tables",
                        async {
                            drc_meta::ensure_schema(&mut c, &meta)
                                .await
                                .map_err(HeartbeatError::Meta)
                        },
                    );
                    match ensure.await {
                        Ok(()) => conn = Some(c),
                        Err(e) => warn!(error = %e, "heartbeat: cannot create drc's meta tables"),
                    }
                }
                Err(e) => warn!(error = %e, "heartbeat: cannot connect to the local center"),
            }
        }
        if let Some(c) = conn.as_mut() {
            let q = drc_meta::heartbeat::statement(&meta, &center.name);
            let write = drc_mysql::bounded(
                config.applier.query_timeout,
                "writing the heartbeat",
                async {
                    c.query_drop(q)
                        .await
                        .map_err(|source| drc_mysql::MysqlError::Query {
                            what: "writing the heartbeat",
                            source,
                        })
                },
            );
            if let Err(e) = write.await {
                warn!(error = %e, "heartbeat write failed");
                conn = None;
            }
        }
    }
}

/// Checks `--replica` against the center's `replicas`; `Some(index)` for a replica.
fn replica_index(center: &Center, replica: Option<usize>) -> Result<Option<usize>, DaemonError> {
    let n = center.replicas.len();
    match (n, replica) {
        (0, None) => Ok(None),
        (0, Some(i)) => Err(DaemonError::Replica(format!(
            "--replica {i} given, but center {} has no `replicas` in the configuration: drop --replica to run its single daemon, or list the replicas' Raft addresses",
            center.name
        ))),
        (n, None) => Err(DaemonError::Replica(format!(
            "center {} runs {n} replicas (`replicas` in the configuration): pass --replica INDEX (0..={})",
            center.name,
            n - 1
        ))),
        (n, Some(i)) if i >= n => Err(DaemonError::Replica(format!(
            "--replica {i} is out of range: center {} has {n} replicas (0..={})",
            center.name,
            n - 1
        ))),
        (_, Some(i)) => Ok(Some(i)),
    }
}

async fn resolve(addr: &str) -> Result<std::net::SocketAddr, DaemonError> {
    let mut it = tokio::net::lookup_host(addr).await.map_err(|e| {
        DaemonError::Replica(format!("cannot resolve the Raft address {addr:?}: {e}"))
    })?;
    it.next().ok_or_else(|| {
        DaemonError::Replica(format!("the Raft address {addr:?} resolves to nothing"))
    })
}

/// How long the daemon's tasks may take to end after the shutdown signal before they are
/// aborted (each of them wakes on the signal; this bounds one that is stuck anyway).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Waits for every task; after `shutdown`, at most [`SHUTDOWN_GRACE`], then aborts the rest.
async fn drain(tasks: &mut JoinSet<()>, shutdown: &watch::Receiver<bool>) {
    let mut sd = shutdown.clone();
    tokio::select! {
        _ = async { while tasks.join_next().await.is_some() {} } => return,
        Ok(_) = sd.wait_for(|stop| *stop) => {}
    }
    let all = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
        warn!(
            tasks = tasks.len(),
            "tasks still running {} s after the shutdown signal; aborting them",
            SHUTDOWN_GRACE.as_secs()
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

/// Runs the daemon until `shutdown` turns true.
pub async fn run(
    config: Config,
    opts: RunOptions,
    shutdown: watch::Receiver<bool>,
) -> Result<(), DaemonError> {
    let center_name = opts.center.as_str();
    let center = config
        .center(center_name)
        .cloned()
        .ok_or_else(|| DaemonError::UnknownCenter {
            name: center_name.to_string(),
            known: config.center_names().join(", "),
        })?;
    let replica = replica_index(&center, opts.replica)?;
    let metrics = Metrics::new()?;
    let election_metrics = leader::ElectionMetrics::register(&metrics, &center.name)?;
    let role = leader::SharedRole::default();
    let mut specs = links_into(&config, &center);
    for s in &mut specs {
        s.first_start = opts.start.for_source(&s.source_name);
    }
    // Each replica registers on the peers under its own ids: MariaDB refuses a second binlog
    // reader with the same server_id (error 4052) while the first is still connected, and a
    // paused or cut-off old leader can stay connected for a long time.
    for s in &mut specs {
        s.replica_server_id = s
            .replica_server_id
            .wrapping_add(REPLICA_SERVER_ID_STRIDE.wrapping_mul(replica.unwrap_or(0) as u32));
    }
    // The local-delete reader runs on every replica (tombstones are facts about the center's
    // binlog, whoever records them, and only ever raised), so a new leader finds it caught up.
    let mut local_reader = None;
    if uses_lww(&config) {
        let (tx, rx) = watch::channel(None);
        // One key-lock table for every link into this center: shares of different links that
        // touch one key value take turns (drc_apply::conflict::keylock).
        let key_locks = drc_apply::conflict::keylock::KeyLocks::new();
        for s in &mut specs {
            s.key_locks = Some(key_locks.clone());
            s.local_deletes = Some(rx.clone());
        }
        let mut spec = local_deletes_spec(&config, &center);
        spec.replica = replica;
        spec.lag = Some(
            metrics
                .local_deletes_lag
                .with_label_values(&[center.name.as_str()]),
        );
        spec.regressions = Some(metrics.version_regressions.clone());
        metrics
            .errors
            .with_label_values(&[spec.checkpoint_name().as_str()]);
        spec.replica_server_id = spec
            .replica_server_id
            .wrapping_add(REPLICA_SERVER_ID_STRIDE.wrapping_mul(replica.unwrap_or(0) as u32));
        local_reader = Some((spec, tx));
    }
    // Center closure: the routing map served from memory, kept fresh from every center, and
    // checked against every write the links apply (drc_route).
    let router = match &config.routing {
        Some(routing) => {
            let router = drc_route::Router::new(routing.clone());
            let route_metrics = drc_route::RouteMetrics::register(&metrics.registry)?;
            let closure = drc_route::Closure::new(router.clone(), route_metrics.clone());
            for s in &mut specs {
                s.closure = Some(closure.clone());
            }
            Some((router, route_metrics))
        }
        None => None,
    };
    for s in &specs {
        metrics.init_link(&s.name);
    }
    let handles: Vec<LinkHandle> = specs
        .iter()
        .map(|s| LinkHandle {
            name: s.name.clone(),
            state: Arc::new(LinkState::default()),
        })
        .collect();
    let links = leader::Links {
        specs,
        handles: handles.clone(),
        metrics: metrics.clone(),
        target_url: center.url().to_string(),
        center: center.name.clone(),
        meta: config.replication.meta_database.clone(),
        slots: config.election.apply_log_slots,
    };
    let election = match replica {
        None => None,
        Some(i) => {
            let listen = match opts.raft_listen {
                Some(a) => a,
                None => resolve(&center.replicas[i]).await?,
            };
            let dir = opts.data_dir.clone().unwrap_or_else(|| {
                std::path::PathBuf::from("drc-data").join(format!("{}-{i}", center.name))
            });
            let timeouts = drc_election::Timeouts {
                heartbeat: config.election.heartbeat,
                election_min: config.election.election_timeout_min,
                election_max: config.election.election_timeout_max,
            };
            info!(replica = i, %listen, dir = %dir.display(), "starting the election");
            // Validation requires the secret with replicas (at least 16 bytes); the empty
            // fallback is only reachable by a configuration built in code.
            let secret = center
                .raft_secret
                .as_ref()
                .map(|s| s.expose())
                .unwrap_or("");
            Some(
                drc_election::Election::start(
                    &center.name,
                    &center.replicas,
                    i,
                    listen,
                    &dir,
                    timeouts,
                    secret.as_bytes(),
                )
                .await?,
            )
        }
    };
    let mut tasks = JoinSet::new();
    if let Some((router, route_metrics)) = &router {
        tasks.spawn(drc_route::refresh(
            router.clone(),
            config.clone(),
            center.clone(),
            route_metrics.clone(),
            shutdown.clone(),
        ));
    }
    if let Some((spec, tx)) = local_reader {
        tasks.spawn(supervise::local_deletes(
            spec,
            tx,
            metrics.clone(),
            shutdown.clone(),
        ));
    }
    if let Some(addr) = opts.metrics_listen.or(center.metrics_listen) {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| DaemonError::Listen {
                addr: addr.to_string(),
                source,
            })?;
        info!(%addr, "serving /metrics, /health, /v1/route and /v1/routes");
        let tls = match &config.http.tls {
            Some((cert, key)) => Some(https::acceptor(cert, key)?),
            None => None,
        };
        tasks.spawn(http::serve(
            listener,
            tls,
            http::Serving {
                metrics: metrics.clone(),
                center: center.name.clone(),
                links: handles.clone(),
                role: role.clone(),
                router: router.as_ref().map(|(r, _)| r.clone()),
                http: config.http.clone(),
            },
            shutdown.clone(),
        ));
    }
    tasks.spawn(heartbeat(config.clone(), center.clone(), shutdown.clone()));
    tasks.spawn(lag::measure_lag(
        config.clone(),
        center.clone(),
        metrics.clone(),
        handles.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(skew::measure_skew(
        config.clone(),
        center.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    // systemd (Type=notify): READY=1 once the links started, STOPPING=1 at shutdown.
    tasks.spawn(notify::readiness(handles.clone(), shutdown.clone()));
    match election {
        None => {
            tasks.spawn(leader::standalone(
                links,
                election_metrics,
                role,
                shutdown.clone(),
            ));
            drain(&mut tasks, &shutdown).await;
        }
        Some(e) => {
            let followed =
                leader::follow(links, &e, election_metrics, role, shutdown.clone()).await;
            if let Err(why) = followed {
                error!(error = %why, "stopping the daemon");
                tasks.abort_all();
                e.shutdown().await;
                return Err(DaemonError::Election(drc_election::ElectionError::Raft(
                    why,
                )));
            }
            drain(&mut tasks, &shutdown).await;
            e.shutdown().await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
