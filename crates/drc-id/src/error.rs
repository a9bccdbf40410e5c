//! The crate's error type and its retry classification.
//!
//! Every error is either *transient* (waiting and retrying the same call can succeed: the clock
//! is behind the generator, a lease is not renewed yet, a store is unreachable) or *permanent*
//! (something must change first: a bad layout, a node number out of range, a lost lease, a
//! namespace used with two different layouts). [`IdError::is_transient`] is the one place that
//! decides, and [`IdError::retry_at_ms`] says when a retry makes sense where that is known.

use std::time::Duration;

/// Errors of `drc-id`.
#[derive(Debug, thiserror::Error)]
pub enum IdError {
    /// A layout or allocator configuration is invalid; every problem is listed.
    #[error("invalid {what}: {}", problems.join("; "))]
    Invalid {
        /// What was being configured ("layout", "partition", ...).
        what: &'static str,
        /// Each problem, with what to change.
        problems: Vec<String>,
    },
    /// The clock reads a time before the layout's epoch.
    #[error(
        "the clock reads {now_ms} ms since 1970, before the layout's epoch ({epoch_ms}); \
         fix the clock or choose an earlier epoch"
    )]
    ClockBeforeEpoch {
        /// Clock reading, ms since the Unix epoch.
        now_ms: u64,
        /// The layout's epoch, ms since the Unix epoch.
        epoch_ms: u64,
    },
    /// The layout's timestamp field is full: no id can be minted any more.
    #[error("the layout's timestamp field ran out at {end_ms} ms since 1970; choose a new epoch")]
    LayoutExhausted {
        /// End of the layout's lifetime, ms since the Unix epoch.
        end_ms: u64,
    },
    /// The next id would be further ahead of the clock than the generator may borrow: the clock
    /// stepped back, or ids were asked for faster than the layout's cap.
    #[error(
        "the generator is {ahead:?} ahead of the clock (limit {max_borrow:?}: the clock stepped \
         back or the rate is above the layout's cap); retry at {retry_at_ms} ms since 1970"
    )]
    AheadOfClock {
        /// When the next id can be minted, ms since the Unix epoch (by the generator's clock).
        retry_at_ms: u64,
        /// How far ahead of the clock the next id would be.
        ahead: Duration,
        /// The generator's borrowing bound.
        max_borrow: Duration,
    },
    /// The worker lease is not renewed up to the next id's timestamp.
    #[error(
        "the worker lease covers timestamps up to {reserved_until_ms} ms since 1970 only and was \
         not renewed (is the lease store reachable?)"
    )]
    LeaseExpired {
        /// End of the lease, ms since the Unix epoch.
        reserved_until_ms: u64,
    },
    /// Another process holds the worker lease.
    #[error(
        "worker {worker} of region {region} in namespace {namespace:?} is leased by {owner:?} \
         until {reserved_until_ms} ms since 1970; use another worker or retry after that"
    )]
    LeaseHeld {
        /// Lease namespace.
        namespace: String,
        /// Region number.
        region: u32,
        /// Worker number.
        worker: u32,
        /// The holder's token.
        owner: String,
        /// When the lease ends, ms since the Unix epoch; it can be taken over after that.
        reserved_until_ms: u64,
    },
    /// The worker lease was taken over by another process: this generator mints no more ids.
    #[error(
        "the worker lease was taken over by another process (this one was paused or cut off \
         longer than the lease); this generator is closed"
    )]
    LeaseLost,
    /// The generator was closed (its lease released).
    #[error("the id generator is closed")]
    Closed,
    /// A lease or segment record was written with a different layout or partition.
    #[error(
        "{what} {key:?} is stored with {stored:?} but this process uses {wanted:?}; one \
         namespace must keep one layout (use a new namespace to change it)"
    )]
    Mismatch {
        /// "lease" or "segment counter".
        what: &'static str,
        /// Store key.
        key: String,
        /// What the store holds.
        stored: String,
        /// What this process asked for.
        wanted: String,
    },
    /// A segment would contain ids above the configured maximum.
    #[error("the id space of {key:?} is used up (next id above {max_id})")]
    SpaceExhausted {
        /// Store key.
        key: String,
        /// The configured maximum id.
        max_id: u64,
    },
    /// An id does not belong to the layout (bits set above the layout's width).
    #[error("{id} is not an id of this layout (it has bits above bit {bits})")]
    NotAnId {
        /// The value.
        id: u64,
        /// The layout's width.
        bits: u32,
    },
    /// A Redis command failed.
    #[error("redis ({what}) at {url}: {source}")]
    Redis {
        /// What was being done.
        what: &'static str,
        /// Server URL, password removed.
        url: String,
        /// Driver error.
        #[source]
        source: redis::RedisError,
    },
    /// A MySQL statement failed.
    #[error("mysql ({what}) at {url}: {source}")]
    Mysql {
        /// What was being done.
        what: &'static str,
        /// Server URL, password removed.
        url: String,
        /// Driver error.
        #[source]
        source: mysql_async::Error,
    },
    /// A store answered something this crate cannot interpret.
    #[error("unexpected answer from the store ({what}): {detail}")]
    Unexpected {
        /// What was being done.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A store call did not answer in time.
    #[error("the store did not answer within {after:?} ({what})")]
    Timeout {
        /// What was being done.
        what: &'static str,
        /// The bound.
        after: Duration,
    },
}

impl IdError {
    /// True when retrying the same call later can succeed; false when something must change
    /// first (configuration, the clock, or a new lease).
    pub fn is_transient(&self) -> bool {
        match self {
            IdError::AheadOfClock { .. }
            | IdError::LeaseExpired { .. }
            | IdError::LeaseHeld { .. }
            | IdError::Timeout { .. } => true,
            IdError::Redis { source, .. } => redis_is_transient(source),
            IdError::Mysql { source, .. } => drc_mysql::is_transient_driver_error(source),
            IdError::Invalid { .. }
            | IdError::ClockBeforeEpoch { .. }
            | IdError::LayoutExhausted { .. }
            | IdError::LeaseLost
            | IdError::Closed
            | IdError::Mismatch { .. }
            | IdError::SpaceExhausted { .. }
            | IdError::NotAnId { .. }
            | IdError::Unexpected { .. } => false,
        }
    }

    /// When a retry can succeed, in ms since the Unix epoch, where the error knows it.
    pub fn retry_at_ms(&self) -> Option<u64> {
        match self {
            IdError::AheadOfClock { retry_at_ms, .. } => Some(*retry_at_ms),
            IdError::LeaseHeld {
                reserved_until_ms, ..
            } => Some(reserved_until_ms.saturating_add(1)),
            _ => None,
        }
    }

    pub(crate) fn invalid(what: &'static str, problems: Vec<String>) -> IdError {
        IdError::Invalid { what, problems }
    }
}

/// Network trouble, timeouts and "busy / loading / try again" answers are transient; wrong
/// passwords, script errors and bad answers are not.
fn redis_is_transient(e: &redis::RedisError) -> bool {
    if e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_io_error() {
        return true;
    }
    matches!(
        e.retry_method(),
        redis::RetryMethod::WaitAndRetry | redis::RetryMethod::RetryImmediately
    ) && !matches!(e.kind(), redis::ErrorKind::AuthenticationFailed)
}
