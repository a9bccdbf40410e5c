//! Shared helpers: stores with a fresh namespace or database per test, seeds, deadlines.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use drc_id::{MysqlStore, RedisStore};

/// Bound on every wait of a test.
pub const DEADLINE: Duration = Duration::from_secs(30);

const REDIS_ADDR: &str = "127.0.0.1:6379";

/// True when running under CI (`CI` set to anything but empty, `0` or `false`).
fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The test Redis URL, or `None` (after printing why) when no Redis answers and `CI` is unset.
/// Under CI a missing Redis fails the test instead: `.ci/run` starts one.
pub fn redis_url(test: &str) -> Option<String> {
    let addr: SocketAddr = REDIS_ADDR.parse().expect("a socket address");
    if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
        return Some(format!("redis://{REDIS_ADDR}"));
    }
    assert!(
        !under_ci(),
        "{test}: no Redis answers on {REDIS_ADDR}, and CI is set (.ci/run starts redis-server)"
    );
    eprintln!(
        "SKIPPED {test}: no Redis answers on {REDIS_ADDR} (apt-get install redis-server, or run \
         bash .ci/run); under CI this fails instead"
    );
    None
}

/// A Redis store, or `None` when the test is skipped (see [`redis_url`]).
pub async fn redis(test: &str) -> Option<RedisStore> {
    let url = redis_url(test)?;
    Some(RedisStore::connect(&url).await.expect("connect to redis"))
}

/// A MySQL store in a fresh metadata database of the shared test server.
pub async fn mysql() -> MysqlStore {
    let srv = &drc_testkit::shared_servers(1)[0];
    let db = drc_testkit::unique_db_name("idmeta");
    MysqlStore::connect(&srv.url(), &db)
        .await
        .expect("mysql store")
}

/// A namespace no other test (in this run or an earlier one) uses.
pub fn namespace(prefix: &str) -> String {
    format!(
        "{}_{:08x}",
        drc_testkit::unique_db_name(prefix),
        fastrand::u32(..)
    )
}

/// A seed for a randomized test, printed so that a failure can be replayed with
/// `DRC_TEST_SEED=<seed>`.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("DRC_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("{test}: seed {seed} (replay with DRC_TEST_SEED={seed})");
    seed
}
