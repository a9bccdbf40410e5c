//! `/metrics` (Prometheus text format), `/health` (JSON: this replica's role and term, every
//! link's state, position and lag; HTTP 200 when `ok`, 503 otherwise), and with `[routing]`
//! `/v1/route?key=K` and `/v1/routes` (JSON, from the in-memory map; docs/routing.md).
//!
//! `ok` is true when every link runs or stands by, and no link's binlog source has been
//! reconnecting (nothing received from its server) for longer than [`RECONNECTING_UNHEALTHY`]:
//! a short reconnect (a server restart) is normal, a peer unreachable for minutes is not.
//! Both requests first refresh the link gauges that follow the links' shared state
//! (`drc_link_up`, `drc_link_reconnecting`, `drc_link_source_seconds_since_last_event`,
//! `drc_link_checkpoint_age_seconds`).

use axum::extract::{Query, State};
use axum::http::StatusCode;
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

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    refresh(&s);
    (
        [("content-type", "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

async fn health(State(s): State<AppState>) -> impl IntoResponse {
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
            all_up &= match state {
                "running" | "standby" => true,
                "reconnecting" => {
                    silence.is_some_and(|t| t <= RECONNECTING_UNHEALTHY.as_secs_f64())
                }
                _ => false,
            };
            let lag = s.metrics.lag.with_label_values(&[name.as_str()]).get();
            serde_json::json!({
                "link": name,
                "state": state,
                "error": error,
                "position": r.position,
                "lag_seconds": lag,
                "source_seconds_since_last_event": silence,
                "source_error": r.source.as_ref().and_then(|v| v.last_error.clone()),
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
    (
        code,
        [("content-type", "application/json")],
        body.to_string(),
    )
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
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> axum::response::Response {
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
async fn routes(State(s): State<AppState>) -> axum::response::Response {
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
pub async fn serve(
    listener: tokio::net::TcpListener,
    m: Metrics,
    center: String,
    links: Vec<LinkHandle>,
    role: SharedRole,
    router: Option<drc_route::Router>,
    shutdown: watch::Receiver<bool>,
) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/v1/route", get(route))
        .route("/v1/routes", get(routes))
        .with_state(AppState {
            metrics: m,
            center,
            links,
            role,
            router,
        });
    let mut sd = shutdown;
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = sd.changed().await;
        })
        .await;
}
