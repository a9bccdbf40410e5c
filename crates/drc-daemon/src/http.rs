//! `/metrics` (Prometheus text format) and `/health` (JSON: this replica's role and term, every
//! link's state, position and lag; HTTP 200 when `ok`, 503 otherwise).
//!
//! `ok` is true when every link runs or stands by, and no link's binlog source has been
//! reconnecting (nothing received from its server) for longer than [`RECONNECTING_UNHEALTHY`]:
//! a short reconnect (a server restart) is normal, a peer unreachable for minutes is not.
//! Both requests first refresh the link gauges that follow the links' shared state
//! (`drc_link_up`, `drc_link_reconnecting`, `drc_link_source_seconds_since_last_event`).

use axum::extract::State;
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
