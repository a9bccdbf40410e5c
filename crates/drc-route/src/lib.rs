//! Center closure (docs/routing.md): every key of the application's sharding key has one home
//! center, where all of its writes go, and drc is the source of truth for where each key lives.
//!
//! - [`key`]: the key -> bucket rule, documented for clients in other languages;
//! - [`map`]: the map as served (the file's buckets and units, the live homes and states);
//! - [`live`]: the daemon's in-memory map ([`live::Router`]) and the task that keeps it fresh
//!   from every center's meta database (`route_unit`, owned by `drc_meta::route`);
//! - [`closure`]: the closure check of the writes a link applies;
//! - [`cutover`]: `drc cutover`, moving units between centers with no key ever written in two
//!   centers at once (mark moving, fence, wait until caught up, flip); [`centers`] holds its
//!   connections, lock and fence.

pub mod centers;
pub mod client;
pub mod closure;
pub mod cutover;
pub mod key;
pub mod live;
pub mod map;
pub mod metrics;

pub use closure::Closure;
pub use cutover::{cutover, CutoverReport, CutoverRequest, Selection};
pub use key::{bucket_of, bucket_of_value};
pub use live::{refresh, Router};
pub use map::{LiveMap, MapView, Route};
pub use metrics::RouteMetrics;

/// Why a routing command failed.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The topology has no `[routing]`.
    #[error("the configuration has no [routing] table: add one with its buckets and units (docs/routing.md)")]
    NotConfigured,
    /// A statement failed.
    #[error("{what}: {source}")]
    Query {
        /// What was being done.
        what: &'static str,
        /// The driver's error.
        #[source]
        source: mysql_async::Error,
    },
    /// A meta database read or write failed.
    #[error(transparent)]
    Meta(#[from] drc_meta::MetaError),
    /// Connecting or a bounded query failed.
    #[error(transparent)]
    Mysql(#[from] drc_mysql::MysqlError),
    /// A center the command needs does not answer.
    #[error("center {center} is unreachable: {error}")]
    Unreachable {
        /// The center.
        center: String,
        /// Why.
        error: String,
    },
    /// Another `drc cutover` holds the cutover lock.
    #[error("another drc cutover is running (it holds the cutover lock in center {center}); wait for it to finish, or run this one again afterwards")]
    Busy {
        /// Where the lock is held.
        center: String,
    },
    /// The request cannot be carried out; the message says what to change.
    #[error("{0}")]
    Refused(String),
    /// A wait ran out of time; the message says the state left behind and what to do.
    #[error("{0}")]
    Timeout(String),
}

impl RouteError {
    /// Wraps a driver error with what was being done.
    pub fn query(what: &'static str) -> impl FnOnce(mysql_async::Error) -> RouteError {
        move |source| RouteError::Query { what, source }
    }
}
