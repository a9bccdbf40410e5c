//! The binlog source: the first stage of drc's data path.
//!
//! [`Source`] connects to a center's server as a replica (its own replica `server_id`), checks
//! that the server is fit (`drc_mysql::preflight_source`), and yields typed
//! [`SourceEvent`](drc_core::change::SourceEvent)s: transactions streamed as
//! `Begin`, `Rows`..., `Commit`, and DDL statements. [`read_file`] does the same offline from a
//! binlog file.
//!
//! # Guarantees
//!
//! - **Order**: events come in binlog order.
//! - **Exactly once across reconnects**: after a transient failure (dropped connection, server
//!   restart) the source reconnects with backoff, resumes from the position after the last
//!   `Commit`/`Ddl` it yielded, and suppresses the already-yielded part of an interrupted
//!   transaction. The consumer sees no gap and no repeat. While it reconnects, its
//!   [`Liveness`] says so (and since when nothing arrived), for the consumer's status.
//! - **Bounded waits**: the stream goes back to reconnecting when nothing, not even a heartbeat,
//!   arrived for `idle_timeout` (a half-open connection); metadata queries are bounded by
//!   `query_timeout`; connections use TCP keepalive.
//! - **Bounded memory**: a transaction is never collected; one rows event is decoded at a time,
//!   and a consumer that stops polling stops the reading (no unbounded buffer in between).
//! - **Nothing skipped silently**: an event drc cannot handle stops the source with an error that
//!   says what to change.
//!
//! # Errors
//!
//! [`SourceError::is_transient`] tells a retrying caller whether waiting can help.

mod assemble;
mod decode;
mod file;
mod live;
mod liveness;

pub use decode::{DecodeError, TableDecoder};
pub use file::{read_file, FileSource};
pub use live::{Source, SourceConfig, StartFrom};
pub use liveness::{Liveness, LivenessView};

use drc_mysql::{MysqlError, ProblemList};

/// Errors of a binlog source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The server is not fit to be read (every problem is listed).
    #[error(transparent)]
    Preflight(#[from] ProblemList),
    /// Connecting or a metadata query failed.
    #[error(transparent)]
    Mysql(#[from] MysqlError),
    /// The binlog stream failed.
    #[error("binlog stream from {server}: {source}")]
    Stream {
        /// Server URL without password.
        server: String,
        /// Driver error.
        #[source]
        source: mysql_async::Error,
    },
    /// The server did not send anything (not even a heartbeat) for too long.
    #[error("binlog stream from {server} idle for {secs} s (no heartbeat): reconnecting")]
    Idle {
        /// Server URL without password.
        server: String,
        /// Idle time.
        secs: u64,
    },
    /// A row could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// An event could not be parsed.
    #[error("malformed binlog event: {0}")]
    Event(#[source] std::io::Error),
    /// The event sequence broke the binlog protocol.
    #[error("binlog protocol: {0}")]
    Protocol(String),
    /// The binlog holds something drc refuses to process.
    #[error("{0}")]
    Unsupported(String),
    /// The start position is not usable on this server.
    #[error("start position: {0}")]
    Position(String),
    /// After a reconnect, the server behind the address is another one (a failover to a replica,
    /// or a restart with a new `server_id`): events from here on would be filtered under the old
    /// identity, so the source stops before yielding any of them. A link restarts on this error,
    /// records the new identity and proves its origin tagging again (docs/operations.md).
    #[error("the server behind {server} changed identity at position {position}: it was server_id {was_id}{was_uuid}, now server_id {now_id}{now_uuid} (failover or restart with a new server_id); the link restarts with the new identity before any further change is applied")]
    IdentityChanged {
        /// Server URL without password.
        server: String,
        /// Where the source stood (nothing after it was yielded).
        position: String,
        /// The `server_id` at the previous connection.
        was_id: u32,
        /// ` (server_uuid ..)` at the previous connection, or empty.
        was_uuid: String,
        /// The `server_id` now.
        now_id: u32,
        /// ` (server_uuid ..)` now, or empty.
        now_uuid: String,
    },
    /// The server no longer has the binlog at the position asked for (purged, or never there):
    /// nothing after it can be read from this server, so no retry can help.
    #[error("the binlog of {server} at position {position} is gone: {message}. The changes after that position can no longer be read from this source; the center that reads it needs a bootstrap from a peer (drc bootstrap; docs/operations.md, \"Recovering from a purged binlog\")")]
    BinlogGone {
        /// Server URL without password.
        server: String,
        /// The position asked for.
        position: String,
        /// The server's error (with its code).
        message: String,
    },
    /// Reading a binlog file failed.
    #[error("reading binlog file {path}: {source}")]
    File {
        /// File path.
        path: String,
        /// I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl SourceError {
    pub(crate) fn event(e: std::io::Error) -> Self {
        SourceError::Event(e)
    }

    /// The error of the binlog stream from `server`, reading at `position`: a purged or
    /// unknown position (ER_MASTER_FATAL_ERROR_READING_BINLOG) is [`SourceError::BinlogGone`].
    pub(crate) fn stream(server: &str, position: &str, source: mysql_async::Error) -> Self {
        match &source {
            mysql_async::Error::Server(e)
                if e.code == drc_mysql::codes::ER_MASTER_FATAL_ERROR_READING_BINLOG =>
            {
                SourceError::BinlogGone {
                    server: server.to_string(),
                    position: position.to_string(),
                    message: format!("{} (error {})", e.message, e.code),
                }
            }
            _ => SourceError::Stream {
                server: server.to_string(),
                source,
            },
        }
    }

    /// True when reconnecting later can succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Mysql(e) => e.is_transient(),
            // Purged or invalid position, unknown GTID, access denied, unknown command.
            SourceError::Stream { source, .. } => match source {
                mysql_async::Error::Server(s) if drc_mysql::codes::is_source_refusal(s.code) => {
                    false
                }
                e => drc_mysql::is_transient_driver_error(e),
            },
            SourceError::Idle { .. } => true,
            _ => false,
        }
    }
}
