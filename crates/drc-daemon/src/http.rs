//! `/metrics` (Prometheus text format), `/health` (JSON: this replica's role and term, every
//! link's state, position and lag; HTTP 200 when `ok`, 503 otherwise), `/livez` (the process
//! answers), `/readyz` (200 when `ok`: a leader whose links run, or a standby ready to take
//! over), and with `[routing]` `/v1/route?key=K` and `/v1/routes` (JSON, from the in-memory
//! map; docs/routing.md). Every endpoint only reads.
//!
//! Access (docs/security.md): with `[http] token_file`/`token_env`, every request but `/livez`
//! and `/readyz` must carry `Authorization: Bearer <token>` (HTTP 401 otherwise). Error texts in
//! `/health` (a failed link's error, a source's last error) can quote row values from a server's
//! message; they are shown to requests that carry the token, or, without a token, only when
//! the listener is on a loopback address. Otherwise `/health` says the link failed and that the
//! details are in the daemon's log. With `[http] tls_cert`/`tls_key` the listener speaks HTTPS
//! ([`crate::https`]).
//!
//! `ok` is true when every link runs or stands by, and no link's binlog source has been
//! reconnecting (nothing received from its server) for longer than [`RECONNECTING_UNHEALTHY`]:
//! a short reconnect (a server restart) is normal, a peer unreachable for minutes is not.
//! Both requests first refresh the link gauges that follow the links' shared state
//! (`drc_link_up`, `drc_link_reconnecting`, `drc_link_source_seconds_since_last_event`,
//! `drc_link_checkpoint_age_seconds`).

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use drc_apply::{LinkReport, LinkStatus, Metrics};
use tokio::sync::watch;

use crate::leader::SharedRole;
use crate::LinkHandle;

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    center: String,
    links: Vec<LinkHandle>,
    role: SharedRole,
    router: Option<drc_route::Router>,
    /// The bearer token, when one is configured.
    token: Option<std::sync::Arc<String>>,
    /// Error texts may be shown without a token (no token configured, loopback listener).
    details_open: bool,
}

/// What `/health` shows instead of an error text the request may not see.
pub const HIDDEN: &str =
    "hidden: the details are in the daemon's log (or ask /health with the bearer token)";

/// True when the request may read this endpoint: no token configured, or the right one given.
fn authorized(s: &AppState, headers: &HeaderMap) -> bool {
    let Some(token) = &s.token else {
        return true;
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    constant_time_eq(given.as_bytes(), token.as_bytes())
}

/// Compares without returning early on the first difference (the time taken tells nothing
/// about how much of a guessed token was right).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

fn unauthorized() -> axum::response::Response {
    (
        StatusCode::UNAUTHORIZED,
        [
            ("content-type", "application/json"),
            ("www-authenticate", "Bearer"),
        ],
        r#"{"error":"this endpoint needs Authorization: Bearer <token> ([http] token_file)"}"#,
    )
        .into_response()
}

/// How long a link's source may reconnect (with nothing received) before `/health` is not ok.
pub const RECONNECTING_UNHEALTHY: std::time::Duration = std::time::Duration::from_secs(60);

/// Every link's report, after setting the gauges that follow it.
fn refresh(s: &AppState) -> Vec<(String, LinkReport)> {
    s.links
        .iter()
        .map(|l| {
            let r = l.state.report();
            let name = l.name.as_str();
            let m = &s.metrics;
            m.up.with_label_values(&[name])
                .set(i64::from(r.state_name() == "running"));
            m.reconnecting
                .with_label_values(&[name])
                .set(i64::from(r.reconnecting()));
            m.paused
                .with_label_values(&[name])
                .set(i64::from(r.state_name() == "paused"));
            m.checkpoint_age
                .with_label_values(&[name])
                .set(l.state.checkpoint_age().as_secs_f64());
            if let Some(src) = &r.source {
                m.source_silence
                    .with_label_values(&[name])
                    .set(src.since_last_event.as_secs_f64());
            }
            (l.name.clone(), r)
        })
        .collect()
}

async fn metrics(State(s): State<AppState>, headers: HeaderMap) -> axum::response::Response {
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    refresh(&s);
    (
        [("content-type", "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

/// True when a link in `state` (with `silence` seconds since its source last heard from its
/// server) counts as healthy.
fn link_ok(state: &str, silence: Option<f64>) -> bool {
    match state {
        "running" | "standby" => true,
        "reconnecting" => silence.is_some_and(|t| t <= RECONNECTING_UNHEALTHY.as_secs_f64()),
        _ => false,
    }
}

/// `GET /livez`: the process answers.
async fn livez() -> axum::response::Response {
    json(StatusCode::OK, r#"{"live":true}"#.to_string())
}

/// `GET /readyz`: 200 when every link runs or stands by (see the module docs), 503 otherwise.
async fn readyz(State(s): State<AppState>) -> axum::response::Response {
    let ready = refresh(&s).iter().all(|(_, r)| {
        link_ok(
            r.state_name(),
            r.source.as_ref().map(|v| v.since_last_event.as_secs_f64()),
        )
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(code, serde_json::json!({ "ready": ready }).to_string())
}

async fn health(State(s): State<AppState>, headers: HeaderMap) -> axum::response::Response {
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    // A configured token was given, or no token and a loopback listener.
    let details = s.details_open || s.token.is_some();
    let shown = |text: Option<String>| text.map(|t| if details { t } else { HIDDEN.to_string() });
    let role = match s.role.lock() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    };
    let mut all_up = true;
    let links: Vec<serde_json::Value> = refresh(&s)
        .into_iter()
        .map(|(name, r)| {
            let state = r.state_name();
            let error = match &r.status {
                LinkStatus::Failed(e) => Some(e.clone()),
                _ => None,
            };
            let silence = r.source.as_ref().map(|v| v.since_last_event.as_secs_f64());
            all_up &= link_ok(state, silence);
            let lag = series_value(&s.metrics.lag, "link", &name);
            serde_json::json!({
                "link": name,
                "state": state,
                "error": shown(error),
                "position": r.position,
                "lag_seconds": lag,
                "source_seconds_since_last_event": silence,
                "source_error": shown(r.source.as_ref().and_then(|v| v.last_error.clone())),
            })
        })
        .collect();
    let body = serde_json::json!({
        "center": s.center,
        "ok": all_up,
        "role": role.mode,
        "replica": role.replica,
        "term": role.term,
        "leader": role.leader,
        "raft_log_index": role.log_index,
        "links": links,
    });
    let code = if all_up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(code, body.to_string())
}

/// The value of the series `label=value` of `gauge`, if it exists (`with_label_values` would
/// create it at 0, and a lag of 0 before any heartbeat was measured would be a false figure).
fn series_value(gauge: &prometheus::GaugeVec, label: &str, value: &str) -> Option<f64> {
    use prometheus::core::Collector;
    gauge.collect().iter().find_map(|family| {
        family.get_metric().iter().find_map(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == label && l.value() == value)
                .then(|| m.get_gauge().get_value())
        })
    })
}

fn json(code: StatusCode, body: String) -> axum::response::Response {
    (code, [("content-type", "application/json")], body).into_response()
}

fn json_error(code: StatusCode, message: &str) -> axum::response::Response {
    json(code, serde_json::json!({ "error": message }).to_string())
}

const NO_ROUTING: &str = "this daemon's configuration has no [routing] table (docs/routing.md)";

/// `GET /v1/route?key=K`: where a key lives, answered from memory.
async fn route(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> axum::response::Response {
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    let Some(router) = &s.router else {
        return json_error(StatusCode::NOT_FOUND, NO_ROUTING);
    };
    let Some(key) = q.get("key") else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "give the key as a query parameter: /v1/route?key=K",
        );
    };
    match router.route(key) {
        Ok(r) => match serde_json::to_string(&r) {
            Ok(body) => json(StatusCode::OK, body),
            Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        },
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// `GET /v1/routes`: the whole map.
async fn routes(State(s): State<AppState>, headers: HeaderMap) -> axum::response::Response {
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    let Some(router) = &s.router else {
        return json_error(StatusCode::NOT_FOUND, NO_ROUTING);
    };
    match router.view() {
        Ok(v) => match serde_json::to_string(&v) {
            Ok(body) => json(StatusCode::OK, body),
            Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        },
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// Serves until `shutdown` turns true.
/// What the listener serves, beyond the links.
pub struct Serving {
    /// The metrics.
    pub metrics: Metrics,
    /// This center.
    pub center: String,
    /// The links.
    pub links: Vec<LinkHandle>,
    /// This replica's role.
    pub role: SharedRole,
    /// The routing map, with `[routing]`.
    pub router: Option<drc_route::Router>,
    /// `[http]`.
    pub http: drc_config::Http,
}

/// Serves until `shutdown` turns true (HTTPS when `tls` is given).
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    what: Serving,
    shutdown: watch::Receiver<bool>,
) {
    let loopback = listener
        .local_addr()
        .map(|a| a.ip().is_loopback())
        .unwrap_or(false);
    let token = what
        .http
        .token
        .as_ref()
        .map(|t| std::sync::Arc::new(t.expose().to_string()));
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/v1/route", get(route))
        .route("/v1/routes", get(routes))
        .with_state(AppState {
            metrics: what.metrics,
            center: what.center,
            links: what.links,
            role: what.role,
            router: what.router,
            details_open: token.is_none() && loopback,
            token,
        });
    let mut sd = shutdown;
    let stop = async move {
        let _ = sd.changed().await;
    };
    match tls {
        None => {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await;
        }
        Some(acceptor) => match crate::https::TlsListener::new(listener, acceptor) {
            Ok(l) => {
                let _ = axum::serve(l, app).with_graceful_shutdown(stop).await;
            }
            Err(e) => tracing::error!(error = %e, "cannot serve HTTPS"),
        },
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_compare_whole() {
        assert!(super::constant_time_eq(b"abcdef", b"abcdef"));
        assert!(!super::constant_time_eq(b"abcdef", b"abcdeg"));
        assert!(!super::constant_time_eq(b"abc", b"abcdef"));
        assert!(!super::constant_time_eq(b"", b"a"));
        assert!(super::constant_time_eq(b"", b""));
    }
}
