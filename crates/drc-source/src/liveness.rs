//! What a live source's connection looks like from outside, while [`crate::Source::next`] is
//! busy reconnecting inside: shared with the link (its `/health`, `drc status` and metrics), so
//! that a peer unreachable for hours never shows as running.
//!
//! The source marks every event or heartbeat it receives from the server
//! ([`LivenessView::since_last_event`] counts from there) and every transient failure (the
//! stream broke or went idle, a reconnect failed): from the first failure until the next event,
//! the source is *reconnecting*, and the failure's message is kept.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A shared, cheap handle on a source's connection state.
#[derive(Debug, Clone)]
pub struct Liveness(Arc<Mutex<Inner>>);

#[derive(Debug)]
struct Inner {
    last_event: Instant,
    reconnecting: bool,
    last_error: Option<String>,
}

/// A snapshot of [`Liveness`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LivenessView {
    /// True from a transient failure of the stream until the next event arrives.
    pub reconnecting: bool,
    /// Time since the server last sent anything (an event or a heartbeat) on the stream, or
    /// since the source was created. It also grows while the consumer does not read (a slow
    /// applier), since the stream is then not polled.
    pub since_last_event: Duration,
    /// The last transient failure's message (kept after the source recovered).
    pub last_error: Option<String>,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness(Arc::new(Mutex::new(Inner {
            last_event: Instant::now(),
            reconnecting: false,
            last_error: None,
        })))
    }
}

impl Liveness {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        match self.0.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// The current state.
    pub fn view(&self) -> LivenessView {
        self.with(|i| LivenessView {
            reconnecting: i.reconnecting,
            since_last_event: i.last_event.elapsed(),
            last_error: i.last_error.clone(),
        })
    }

    /// The server sent something: the connection works.
    pub(crate) fn event(&self) {
        self.with(|i| {
            i.last_event = Instant::now();
            i.reconnecting = false;
        })
    }

    /// A transient failure: the source reconnects.
    pub(crate) fn failed(&self, error: &dyn std::fmt::Display) {
        let msg = error.to_string();
        self.with(|i| {
            i.reconnecting = true;
            i.last_error = Some(msg);
        })
    }

    /// Awaits `fut`, a query the source needs before it can read on (a table's unique keys).
    /// Nothing can arrive from the stream meanwhile, so when the query takes longer than
    /// `after` (the idle timeout) the source shows as reconnecting, with `waiting()` as its
    /// error, until the next event; the query itself runs on to its own bound.
    pub(crate) async fn watch<F: std::future::Future>(
        &self,
        after: Duration,
        waiting: impl FnOnce() -> String,
        fut: F,
    ) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        match tokio::time::timeout(after, &mut fut).await {
            Ok(v) => v,
            Err(_) => {
                self.failed(&waiting());
                fut.await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnecting_from_a_failure_until_the_next_event() {
        let l = Liveness::default();
        assert!(!l.view().reconnecting);
        l.failed(&"idle for 10 s");
        let v = l.view();
        assert!(v.reconnecting);
        assert_eq!(v.last_error.as_deref(), Some("idle for 10 s"));
        l.event();
        let v = l.view();
        assert!(!v.reconnecting);
        assert!(v.since_last_event < Duration::from_secs(5));
        assert_eq!(v.last_error.as_deref(), Some("idle for 10 s"));
    }

    /// A query that outlasts the idle timeout shows as reconnecting while it waits, and still
    /// returns its answer.
    #[tokio::test]
    async fn a_slow_query_shows_reconnecting_while_it_waits() {
        let l = Liveness::default();
        let go = std::sync::Arc::new(tokio::sync::Notify::new());
        let task = {
            let (l, go) = (l.clone(), go.clone());
            tokio::spawn(async move {
                l.watch(Duration::from_millis(10), || "no answer".into(), async {
                    go.notified().await;
                    7
                })
                .await
            })
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !l.view().reconnecting {
            assert!(Instant::now() < deadline, "never marked reconnecting");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(l.view().last_error.as_deref(), Some("no answer"));
        go.notify_one();
        assert_eq!(task.await.expect("joins"), 7);
        // A quick query changes nothing.
        let fresh = Liveness::default();
        let v = fresh
            .watch(Duration::from_secs(30), || "unused".into(), async { 1 })
            .await;
        assert_eq!(v, 1);
        assert!(!fresh.view().reconnecting);
    }
}
