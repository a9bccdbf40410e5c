//! Supervision of the daemon's long-running tasks: the links and the local-delete reader.
//!
//! Each run is a tokio task of its own, so that a panic inside it ends only that run: the
//! supervisor sees it as a failure (`JoinError::is_panic`, with the panic's message), marks the
//! link failed, counts it in `drc_link_errors_total`, and starts it again after the normal
//! backoff ([`RESTART`]: 1 s doubling to 60 s, less up to 20 % jitter, back to 1 s after a run
//! that lasted over a minute). A failure that ends in `LinkError::Fenced` is not restarted
//! (another replica took over).
//!
//! The run's task is aborted when the supervisor is dropped (its own task aborted by the
//! election, see [`crate::leader`]), so a run never outlives its supervisor. Every wait wakes on
//! the shutdown signal.
//!
//! Spans: a link is supervised inside a `link` span (field `link`, e.g. `a->b`), the local-delete
//! reader inside a `local_deletes` span; the run's task keeps it.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drc_apply::conflict::local::{run_local_deletes, LocalDeletesSpec};
use drc_apply::{run_link, LinkError, LinkSpec, LinkState, LinkStatus, Metrics};
use drc_mysql::retry::{sleep_unless_shutdown, Policy};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info_span, Instrument};

/// Restart delays of supervised tasks: 1 s doubling to 60 s, less up to 20 % jitter (the links
/// of a restarted server do not all come back in step), back to 1 s after a run that lasted
/// over a minute.
pub(crate) const RESTART: Policy = Policy::new(Duration::from_secs(1), Duration::from_secs(60))
    .with_jitter(20)
    .with_reset_after(Duration::from_secs(60));

/// A task handle that aborts the task when dropped.
struct Owned<T>(JoinHandle<T>);

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why one run of a supervised task ended badly.
#[derive(Debug)]
enum Failure {
    Error(LinkError),
    Panic(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Error(e) => e.fmt(f),
            Failure::Panic(m) => write!(
                f,
                "panicked: {m} (a bug in drc: please report it with the log)"
            ),
        }
    }
}

/// Runs `fut` as a task of its own and catches its panic.
async fn run_caught<F>(fut: F) -> Result<(), Failure>
where
    F: Future<Output = Result<(), LinkError>> + Send + 'static,
{
    // The run's own task keeps the supervisor's span (a link's `link` span).
    let mut task = Owned(tokio::spawn(fut.in_current_span()));
    match (&mut task.0).await {
        Ok(r) => r.map_err(Failure::Error),
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_string());
            Err(Failure::Panic(msg))
        }
        Err(e) => Err(Failure::Panic(format!("the task was cancelled: {e}"))),
    }
}

/// Runs `run()` again and again until it returns `Ok`, fails with `Fenced`, or `shutdown`
/// turns true. `name` labels `drc_link_errors_total`; `state` (a link's) shows the failure.
/// Logs carry no name: the caller's span gives it.
pub(crate) async fn supervise<F, Fut>(
    name: &str,
    mut run: F,
    metrics: &Metrics,
    state: Option<&LinkState>,
    shutdown: watch::Receiver<bool>,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), LinkError>> + Send + 'static,
{
    let mut backoff = RESTART.start();
    loop {
        let began = Instant::now();
        let result = run_caught(run()).await;
        if *shutdown.borrow() {
            return;
        }
        match result {
            Ok(()) => return,
            // A resumed link starts again at once: not a failure.
            Err(Failure::Error(LinkError::Resumed)) => {
                backoff.reset();
                continue;
            }
            Err(Failure::Error(e @ LinkError::Fenced { .. })) => {
                if let Some(s) = state {
                    s.set_status(LinkStatus::Failed(e.to_string()));
                }
                error!(error = %e, "link fenced; not restarting it");
                return;
            }
            Err(f) => {
                metrics.errors.with_label_values(&[name]).inc();
                if let Some(s) = state {
                    s.set_status(LinkStatus::Failed(f.to_string()));
                }
                backoff.ran_for(began.elapsed());
                let delay = backoff.next_delay();
                error!(error = %f, retry_in_ms = delay.as_millis() as u64, "stopped; restarting after the backoff");
                if !sleep_unless_shutdown(delay, Some(&shutdown)).await {
                    return;
                }
            }
        }
    }
}

/// Supervises one link, inside a `link` span named by the link (`a->b`): every log line of
/// the link, its source reader and its appliers (each in its `worker` span) names it.
pub(crate) async fn link(
    spec: LinkSpec,
    metrics: Metrics,
    state: Arc<LinkState>,
    shutdown: watch::Receiver<bool>,
) {
    let name = spec.name.clone();
    let run = || {
        run_link(
            spec.clone(),
            metrics.clone(),
            state.clone(),
            shutdown.clone(),
        )
    };
    supervise(&name, run, &metrics, Some(&state), shutdown.clone())
        .instrument(info_span!("link", link = %name))
        .await;
}

/// Supervises the local-delete reader; its failures count under
/// `drc_link_errors_total{link="<center>~local-deletes"}` (appliers wait for it before deciding
/// missing rows).
pub(crate) async fn local_deletes(
    spec: LocalDeletesSpec,
    tx: watch::Sender<Option<drc_core::position::Position>>,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
) {
    let name = spec.checkpoint_name();
    let run = || run_local_deletes(spec.clone(), tx.clone(), shutdown.clone());
    supervise(&name, run, &metrics, None, shutdown.clone())
        .instrument(info_span!("local_deletes", reader = %name))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A run that panics is a failure like an error: counted, shown, and restarted.
    #[tokio::test]
    async fn a_panicking_run_is_marked_failed_counted_and_restarted() {
        let metrics = Metrics::new().expect("metrics");
        let state = LinkState::default();
        let calls = Arc::new(AtomicU32::new(0));
        let (_tx, rx) = watch::channel(false);
        let c = calls.clone();
        let run = move || {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    panic!("boom in the applier");
                }
                Ok(())
            }
        };
        let supervised = supervise("a->b", run, &metrics, Some(&state), rx);
        tokio::time::timeout(Duration::from_secs(30), supervised)
            .await
            .expect("the supervisor restarts the link after the backoff");
        assert_eq!(calls.load(Ordering::SeqCst), 2, "restarted once");
        assert_eq!(metrics.errors.with_label_values(&["a->b"]).get(), 1);
        match state.get().0 {
            LinkStatus::Failed(m) => assert!(m.contains("panicked: boom in the applier"), "{m}"),
            other => panic!("the link must show the panic, not {other:?}"),
        }
    }

    /// Shutdown during the backoff after a panic ends supervision at once.
    #[tokio::test]
    async fn shutdown_ends_the_backoff() {
        let metrics = Metrics::new().expect("metrics");
        let (tx, rx) = watch::channel(false);
        let run = move || {
            let tx = tx.clone();
            async move {
                let _ = tx.send(true);
                panic!("boom");
            }
        };
        let supervised = supervise("a->b", run, &metrics, None, rx);
        tokio::time::timeout(Duration::from_secs(5), supervised)
            .await
            .expect("supervision ends on shutdown");
    }
}
