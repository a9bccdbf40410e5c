//! systemd readiness (`Type=notify`, deploy/systemd/drc@.service): `READY=1` once the daemon
//! is ready, `STOPPING=1` when it begins to shut down, each with a `STATUS=` line for
//! `systemctl status`. Without `NOTIFY_SOCKET` in the environment (not started by systemd)
//! every notification is a no-op.
//!
//! Ready means: `/metrics` is served (when configured), the heartbeat and clock tasks run, and
//! every link has left `starting` — it runs, stands by (another replica leads), is paused, or
//! failed and waits for its restart (a link that fails is the operator's business, shown in
//! `/health`; holding back readiness would only make systemd kill and restart the daemon).
//! A link may stay `starting` long (recovering a large unfinished batch, a slow peer): after
//! [`READY_AT_THE_LATEST`] the daemon reports ready anyway, naming the links still starting.
//!
//! A failed notification is logged and otherwise ignored: it never stops replication.

use std::time::Duration;

use drc_apply::LinkStatus;
use sd_notify::NotifyState;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::LinkHandle;

/// The longest the daemon waits for its links to leave `starting` before it reports ready.
pub const READY_AT_THE_LATEST: Duration = Duration::from_secs(60);

/// How often the links' states are looked at while waiting.
const POLL: Duration = Duration::from_millis(100);

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}

/// `N links: 2 running, 1 failed` (state names as in `/health`).
fn summary(links: &[LinkHandle]) -> String {
    let mut counts: Vec<(&'static str, usize)> = Vec::new();
    for l in links {
        let name = l.state.report().state_name();
        match counts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, c)) => *c += 1,
            None => counts.push((name, 1)),
        }
    }
    let parts: Vec<String> = counts.iter().map(|(n, c)| format!("{c} {n}")).collect();
    format!("{} links: {}", links.len(), parts.join(", "))
}

/// Sends `READY=1` once no link is starting (at the latest after [`READY_AT_THE_LATEST`]),
/// then `STOPPING=1` when `shutdown` turns true. Ends at shutdown.
pub(crate) async fn readiness(links: Vec<LinkHandle>, mut shutdown: watch::Receiver<bool>) {
    let deadline = tokio::time::Instant::now() + READY_AT_THE_LATEST;
    loop {
        let starting: Vec<&str> = links
            .iter()
            .filter(|l| l.state.report().status == LinkStatus::Starting)
            .map(|l| l.name.as_str())
            .collect();
        if starting.is_empty() {
            let status = format!("ready: {}", summary(&links));
            debug!(%status, "notifying systemd");
            send(&[NotifyState::Ready, NotifyState::Status(&status)]);
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            let status = format!(
                "ready; still starting after {} s: {}",
                READY_AT_THE_LATEST.as_secs(),
                starting.join(", ")
            );
            debug!(%status, "notifying systemd");
            send(&[NotifyState::Ready, NotifyState::Status(&status)]);
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            Ok(_) = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    let _ = shutdown.wait_for(|stop| *stop).await;
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_status_line_counts_links_by_state() {
        let handle = |name: &str, status: LinkStatus| {
            let state = Arc::new(drc_apply::LinkState::default());
            state.set_status(status);
            LinkHandle {
                name: name.into(),
                state,
            }
        };
        let links = vec![
            handle("a->c", LinkStatus::Running),
            handle("b->c", LinkStatus::Failed("x".into())),
            handle("d->c", LinkStatus::Running),
        ];
        assert_eq!(summary(&links), "3 links: 2 running, 1 failed");
    }
}
