//! Async helpers for tests: connect with retry, create a fresh database, wait for a condition.
//!
//! They panic instead of returning errors: they are meant for test bodies, where a panic with a
//! clear message is the failure report. Every wait is bounded by a deadline and polls every
//! 50 ms; none of them sleeps a fixed time.

use std::future::Future;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};

use crate::server::MariaDb;
use crate::shared::unique_db_name;

/// How long [`connect`] keeps retrying.
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(30);

/// How often [`connect`] and [`wait_until`] poll.
const POLL: Duration = Duration::from_millis(50);

/// Connects to `url`, retrying for up to [`CONNECT_DEADLINE`] (e.g. while a server restarts).
///
/// Panics if `url` is malformed or no connection succeeds in time.
pub async fn connect(url: &str) -> Conn {
    let opts = match Opts::from_url(url) {
        Ok(opts) => opts,
        Err(e) => panic!("bad MySQL URL {url:?}: {e}"),
    };
    let began = Instant::now();
    loop {
        match Conn::new(opts.clone()).await {
            Ok(conn) => return conn,
            Err(e) if began.elapsed() > CONNECT_DEADLINE => {
                panic!("could not connect to {url} within {CONNECT_DEADLINE:?}: {e}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Creates a fresh, empty database on `server` named `PREFIX_PID_COUNTER` and returns its name.
///
/// Panics if the server refuses.
pub async fn create_db(server: &MariaDb, prefix: &str) -> String {
    let name = unique_db_name(prefix);
    let mut conn = connect(&server.url()).await;
    if let Err(e) = conn.query_drop(format!("CREATE DATABASE `{name}`")).await {
        panic!(
            "CREATE DATABASE {name} on port {} failed: {e}",
            server.port()
        );
    }
    let _ = conn.disconnect().await;
    name
}

/// Polls `condition` every 50 ms until it returns `true`; panics with `what` if `deadline`
/// passes first. Use it instead of sleeping.
///
/// ```no_run
/// # async fn example(count: impl Fn() -> u64) {
/// use std::time::Duration;
/// drc_testkit::wait_until("the row arrives", Duration::from_secs(10), || async { count() == 1 })
///     .await;
/// # }
/// ```
pub async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let began = Instant::now();
    loop {
        if condition().await {
            return;
        }
        if began.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting until {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}
