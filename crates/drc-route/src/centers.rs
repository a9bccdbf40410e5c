//! What `drc cutover` does in the centers: one connection per center (unreachable ones
//! noted), the cutover lock, syncing every reachable center's `route_unit` to a map, the
//! read-only fence, reading positions and checkpoints, and asking the daemons which epoch they
//! serve.

use std::time::Duration;

use drc_config::Config;
use drc_core::position::Position;
use drc_meta::route::UnitRow;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::map::LiveMap;
use crate::RouteError;

/// Connect timeout of the cutover's connections.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Timeout of one statement of the cutover.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// One center as the cutover sees it.
pub struct CenterConn {
    /// Its name.
    pub name: String,
    /// The connection, when the center answered.
    pub conn: Option<Conn>,
    /// Why it did not.
    pub error: Option<String>,
}

/// Every center of the topology, connected where possible.
pub struct Centers {
    /// In file order.
    pub centers: Vec<CenterConn>,
    meta: String,
}

async fn bounded<T>(
    what: &'static str,
    f: impl std::future::Future<Output = Result<T, mysql_async::Error>>,
) -> Result<T, RouteError> {
    match tokio::time::timeout(QUERY_TIMEOUT, f).await {
        Ok(r) => r.map_err(RouteError::query(what)),
        Err(_) => Err(RouteError::Timeout(format!(
            "{what}: no answer within {} s",
            QUERY_TIMEOUT.as_secs()
        ))),
    }
}

impl Centers {
    /// Connects to every center, creating the meta tables and seeding the file's units where
    /// they are missing.
    pub async fn connect(config: &Config) -> Self {
        let meta = config.replication.meta_database.clone();
        let mut centers = Vec::new();
        for c in &config.centers {
            let r: Result<Conn, String> = async {
                let mut conn = drc_mysql::connect(c.url(), CONNECT_TIMEOUT)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::time::timeout(QUERY_TIMEOUT, drc_meta::ensure_schema(&mut conn, &meta))
                    .await
                    .map_err(|_| "creating the meta tables timed out".to_string())?
                    .map_err(|e| e.to_string())?;
                if let Some(r) = &config.routing {
                    crate::live::seed(&mut conn, &meta, r)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok(conn)
            }
            .await;
            centers.push(match r {
                Ok(conn) => CenterConn {
                    name: c.name.clone(),
                    conn: Some(conn),
                    error: None,
                },
                Err(e) => CenterConn {
                    name: c.name.clone(),
                    conn: None,
                    error: Some(e),
                },
            });
        }
        Centers { centers, meta }
    }

    /// The connection to `name`, or why there is none.
    pub fn conn(&mut self, name: &str) -> Result<&mut Conn, RouteError> {
        let c = self
            .centers
            .iter_mut()
            .find(|c| c.name == name)
            .ok_or_else(|| RouteError::Refused(format!("{name:?} is not a center")))?;
        let error = c.error.clone().unwrap_or_default();
        c.conn.as_mut().ok_or(RouteError::Unreachable {
            center: name.to_string(),
            error,
        })
    }

    /// Names of the centers that answered.
    pub fn reachable(&self) -> Vec<String> {
        self.centers
            .iter()
            .filter(|c| c.conn.is_some())
            .map(|c| c.name.clone())
            .collect()
    }

    /// Takes the cutover lock in every reachable center (file order, without waiting): two
    /// cutovers always meet in the first center both reach, and the second one stops there.
    /// The lock is a session lock: it ends with the connection, also when the process dies.
    pub async fn lock(&mut self) -> Result<(), RouteError> {
        let name = format!("drc_cutover.{}", self.meta);
        for c in &mut self.centers {
            if let Some(conn) = c.conn.as_mut() {
                let got: Option<Option<i64>> = bounded(
                    "taking the cutover lock",
                    conn.exec_first("SELECT GET_LOCK(?, 0)", (name.as_str(),)),
                )
                .await?;
                if got.flatten() != Some(1) {
                    return Err(RouteError::Busy {
                        center: c.name.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Every reachable center's rows merged into `map`.
    pub async fn merge_into(&mut self, map: &mut LiveMap) -> Result<(), RouteError> {
        for c in &mut self.centers {
            if let Some(conn) = c.conn.as_mut() {
                let rows = drc_meta::route::load(conn, &self.meta).await?;
                map.merge(&rows);
            }
        }
        Ok(())
    }

    /// Raises every reachable center's rows of `units` to `map`'s, then checks that each holds
    /// exactly `map`'s rows (a compare-and-set lost to a concurrent writer is an error).
    pub async fn sync(&mut self, map: &LiveMap, units: &[String]) -> Result<(), RouteError> {
        for c in &mut self.centers {
            let Some(conn) = c.conn.as_mut() else {
                continue;
            };
            let held = drc_meta::route::load(conn, &self.meta).await?;
            for best in map.rows() {
                let old = held.iter().find(|r| r.unit == best.unit);
                if old.is_some_and(|o| !best.newer(o)) {
                    continue;
                }
                let q = drc_meta::route::cas_statement(&self.meta, old, best);
                bounded("writing the routing map", conn.query_drop(q)).await?;
            }
            let now = drc_meta::route::load(conn, &self.meta).await?;
            for u in units {
                let want = map.row(u);
                let got = now.iter().find(|r| &r.unit == u);
                if want != got {
                    return Err(RouteError::Refused(format!(
                        "the routing map of center {} changed while this cutover wrote it (unit {u}: {} there); another cutover may be running without this one's view: run `drc route --config F` and this cutover again",
                        c.name,
                        got.map(describe).unwrap_or_else(|| "no row".into())
                    )));
                }
            }
        }
        Ok(())
    }

    /// The meta database name.
    pub fn meta(&self) -> &str {
        &self.meta
    }
}

/// A row for messages: `home a, moving to b, epoch 3`.
pub fn describe(r: &UnitRow) -> String {
    match &r.state {
        drc_meta::route::UnitState::Writable => {
            format!("home {}, writable, epoch {}", r.home, r.epoch)
        }
        drc_meta::route::UnitState::Moving(t) => {
            format!("home {}, moving to {t}, epoch {}", r.home, r.epoch)
        }
    }
}

/// `@@global.read_only` of a center.
pub async fn read_only(conn: &mut Conn) -> Result<bool, RouteError> {
    let v: Option<i64> = bounded(
        "reading @@global.read_only",
        conn.query_first("SELECT @@global.read_only"),
    )
    .await?;
    Ok(v.unwrap_or(0) != 0)
}

/// Fences a center: `read_only` for every user without the privilege to write anyway (drc's
/// appliers have it), recorded in `route_fence`, and the sessions of other users that hold
/// open write transactions ended. Returns how many sessions were ended.
pub async fn fence(
    conn: &mut Conn,
    meta: &str,
    center: &str,
    cutover: &str,
    drc_users: &[String],
) -> Result<u64, RouteError> {
    bounded(
        "recording the read-only fence",
        conn.query_drop(drc_meta::route::fence_statement(meta, center, cutover)),
    )
    .await?;
    bounded(
        "SET GLOBAL read_only = ON",
        conn.query_drop("SET GLOBAL read_only = ON"),
    )
    .await?;
    let writers: Vec<(u64, String)> = bounded(
        "listing open write transactions",
        conn.query(
            "SELECT t.trx_mysql_thread_id, p.USER FROM information_schema.INNODB_TRX t \
             JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id \
             WHERE t.trx_rows_modified > 0 AND t.trx_mysql_thread_id <> CONNECTION_ID()",
        ),
    )
    .await?;
    let mut ended = 0;
    for (id, user) in writers {
        if drc_users.contains(&user) || user == "system user" {
            continue;
        }
        // A session that ended by itself meanwhile is fine (unknown thread id).
        if conn
            .query_drop(format!("KILL CONNECTION {id}"))
            .await
            .is_ok()
        {
            ended += 1;
        }
    }
    Ok(ended)
}

/// Lifts the read-only fence of a center when a cutover set it; returns true when it did.
pub async fn unfence(conn: &mut Conn, meta: &str, center: &str) -> Result<bool, RouteError> {
    if drc_meta::route::fenced_by(conn, meta, center)
        .await?
        .is_none()
    {
        return Ok(false);
    }
    bounded(
        "SET GLOBAL read_only = OFF",
        conn.query_drop("SET GLOBAL read_only = OFF"),
    )
    .await?;
    bounded(
        "removing the read-only fence record",
        conn.query_drop(drc_meta::route::unfence_statement(meta, center)),
    )
    .await?;
    Ok(true)
}

/// The server's current end of binlog.
pub async fn position(conn: &mut Conn) -> Result<Position, RouteError> {
    let info = drc_mysql::server_info(conn).await?;
    Ok(drc_mysql::current_position(conn, &info).await?)
}

/// What link `link` (checkpoints in `conn`'s meta database) has applied: everything before
/// this position. `None` before its first checkpoint.
pub async fn applied(
    conn: &mut Conn,
    meta: &str,
    link: &str,
) -> Result<Option<Position>, RouteError> {
    let rows = match drc_meta::load_checkpoints(conn, meta, link).await {
        Ok(r) => r,
        Err(drc_meta::MetaError::Query { source, .. }) if drc_meta::is_missing(&source) => {
            Vec::new()
        }
        Err(e) => return Err(e.into()),
    };
    Ok(match drc_meta::recovery(&rows) {
        drc_meta::Recovery::Fresh => None,
        drc_meta::Recovery::Clean { position, .. } => Some(position),
        drc_meta::Recovery::Partial { start, .. } => Some(start),
    })
}

/// The user names of every center's URL: drc's own sessions, never ended by the fence.
pub fn drc_users(config: &Config) -> Vec<String> {
    config
        .centers
        .iter()
        .filter_map(|c| drc_mysql::parse_opts(c.url()).ok())
        .filter_map(|o| o.user().map(str::to_string))
        .collect()
}

/// Where the daemon of `center` serves HTTP, when it is configured: `metrics_listen`, with an
/// unspecified address (`0.0.0.0`) replaced by the host of the center's MySQL URL.
pub fn daemon_address(config: &Config, center: &str) -> Option<String> {
    let c = config.center(center)?;
    let addr = c.metrics_listen?;
    if addr.ip().is_unspecified() {
        let host = drc_mysql::parse_opts(c.url())
            .ok()
            .map(|o| o.ip_or_hostname().to_string())?;
        Some(format!("{host}:{}", addr.port()))
    } else {
        Some(addr.to_string())
    }
}

/// `GET path` on a daemon's plain HTTP address without a token; the JSON body (tests and
/// tools on an open listener; drc's commands use [`crate::client::HttpClient`]).
pub async fn http_get_json(addr: &str, path: &str) -> Result<serde_json::Value, String> {
    crate::client::HttpClient::default()
        .get_json(addr, path)
        .await
        .map(|(_, v)| v)
}

/// Waits until the daemon of every center with an HTTP address serves a map of at least
/// `epoch`, up to `limit` (all daemons asked at once); returns the centers whose daemon did not
/// (with why).
pub async fn daemons_serve(config: &Config, epoch: u64, limit: Duration) -> Vec<(String, String)> {
    let client = match crate::client::HttpClient::new(&config.http) {
        Ok(c) => c,
        Err(e) => {
            return config
                .centers
                .iter()
                .map(|c| (c.name.clone(), e.clone()))
                .collect()
        }
    };
    let mut asks = tokio::task::JoinSet::new();
    for c in &config.centers {
        let Some(addr) = daemon_address(config, &c.name) else {
            continue;
        };
        let name = c.name.clone();
        let client = client.clone();
        asks.spawn(async move {
            let deadline = tokio::time::Instant::now() + limit;
            loop {
                let last = match client.get_json(&addr, "/v1/routes").await.map(|(_, v)| v) {
                    Ok(v) if v["epoch"].as_u64().is_some_and(|e| e >= epoch) => return None,
                    Ok(v) => format!("serves epoch {}", v["epoch"]),
                    Err(e) => e,
                };
                if tokio::time::Instant::now() >= deadline {
                    return Some((name, last));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }
    let mut late = Vec::new();
    while let Some(r) = asks.join_next().await {
        if let Ok(Some(l)) = r {
            late.push(l);
        }
    }
    late.sort();
    late
}
