//! `/metrics` (Prometheus text format) and `/health` (JSON: this replica's role and term, every
//! link's state, position and lag; HTTP 200 when all links run or stand by, 503 otherwise).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use drc_apply::{LinkStatus, Metrics};
use tokio::sync::watch;

use crate::leader::SharedRole;
use crate::LinkHandle;

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    center: String,
    links: Vec<LinkHandle>,
    role: SharedRole,
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
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
    let links: Vec<serde_json::Value> = s
        .links
        .iter()
        .map(|l| {
            let (status, position) = l.state.get();
            let (state, error) = match status {
                LinkStatus::Starting => ("starting", None),
                LinkStatus::Running => ("running", None),
                LinkStatus::Failed(e) => ("failed", Some(e)),
                LinkStatus::Standby => ("standby", None),
            };
            all_up &= state == "running" || state == "standby";
            let lag = s.metrics.lag.with_label_values(&[l.name.as_str()]).get();
            serde_json::json!({
                "link": l.name,
                "state": state,
                "error": error,
                "position": position,
                "lag_seconds": lag,
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

/// Serves until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    m: Metrics,
    center: String,
    links: Vec<LinkHandle>,
    role: SharedRole,
    shutdown: watch::Receiver<bool>,
) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .with_state(AppState {
            metrics: m,
            center,
            links,
            role,
        });
    let mut sd = shutdown;
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = sd.changed().await;
        })
        .await;
}
