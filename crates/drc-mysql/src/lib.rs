//! MySQL/MariaDB primitives shared by drc's stages: connecting, identifying a server, the named
//! preflight checks a binlog source needs, reading positions, reading key metadata from
//! `information_schema`, and reading a server's clock ([`clock`]).
//!
//! Nothing here streams a binlog (that is `drc-source`) and nothing here writes user data.
//! Errors are [`MysqlError`]; each variant says whether retrying can help
//! ([`MysqlError::is_transient`]). Server error codes are named and classified in [`codes`];
//! how drc waits between attempts is [`retry`].

mod checks;
pub mod clock;
pub mod codes;
mod conn;
mod meta;
pub mod retry;
mod server;
pub mod tls;

pub use checks::{preflight_source, Problem, ProblemList};
pub use codes::{is_packet_too_large, is_transient_driver_error};
pub use conn::{
    bounded, connect, connect_stream, parse_opts, percent_encode, pool_opts, redact_url,
    url_with_password, ConnectHint, MysqlError, PasswordSlot, SESSION_SQL_MODE, TCP_KEEPALIVE,
};
pub use meta::{load_unique_keys, IndexColumns};
pub use server::{
    current_file_pos, current_position, gtid_position_query, server_info, Flavor, ServerInfo,
};
pub use tls::{url_with_tls, Tls, TlsMode};
