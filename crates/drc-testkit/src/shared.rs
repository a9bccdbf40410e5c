//! Servers shared by all tests of one test binary, and database names that never collide.
//!
//! Starting a server costs ~0.3 s, so a test binary usually starts its servers once
//! ([`shared_servers`]) and gives every test its own database ([`unique_db_name`],
//! [`crate::create_db`]). Shared servers live in a `static`: they are never dropped, never
//! restarted by anyone (the slice is shared, `stop` needs `&mut`), and are not tied to any tokio
//! runtime, so they outlive the test that started them. When the test process exits, the kernel
//! closes the supervisors' pipes and the supervisors delete the servers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::options::ServerOptions;
use crate::server::MariaDb;

static SHARED: OnceLock<Vec<MariaDb>> = OnceLock::new();
static NEXT_DB: AtomicU64 = AtomicU64::new(1);

/// The first `n` servers shared by all tests of this test binary, started (in parallel, with
/// default [`ServerOptions`]) on first use.
///
/// The first call decides how many servers exist; a later call with a larger `n` panics, so call
/// it with the same `n` (a `const`) everywhere in a binary. Panics if a server cannot start.
pub fn shared_servers(n: usize) -> &'static [MariaDb] {
    let servers = SHARED.get_or_init(|| start_many(n));
    assert!(
        n <= servers.len(),
        "shared_servers({n}) but the first call of this test binary started only {}: \
         call shared_servers with the same n in every test",
        servers.len()
    );
    &servers[..n]
}

fn start_many(n: usize) -> Vec<MariaDb> {
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|_| scope.spawn(|| MariaDb::start(ServerOptions::default())))
            .collect();
        handles.into_iter().map(|h| h.join()).collect()
    });
    let mut servers = Vec::with_capacity(n);
    for (i, result) in results.into_iter().enumerate() {
        match result {
            Ok(Ok(server)) => servers.push(server),
            Ok(Err(e)) => panic!("shared server {i} of {n} failed to start: {e}"),
            Err(_) => panic!("shared server {i} of {n}: the starting thread panicked"),
        }
    }
    servers
}

/// A database name unique in this process and across processes: `PREFIX_PID_COUNTER`, e.g.
/// `t_1234_7`. The caller creates the database (or uses [`crate::create_db`]).
pub fn unique_db_name(prefix: &str) -> String {
    let n = NEXT_DB.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}_{}_{n}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_names_are_distinct_and_carry_the_prefix() {
        let a = unique_db_name("t");
        let b = unique_db_name("t");
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("t_{}_", std::process::id())), "{a}");
    }
}
