//! The topology file: which centers exist, how to reach them, what to replicate and how.
//!
//! Loading happens in two steps (style guide): [`raw`] deserializes the TOML into structs that
//! reject unknown keys, then [`validate`](validate::validate) checks every rule and reports
//! **all** problems at once ([`ConfigErrors`]), each with the key it concerns and what to change.
//! The result, [`Config`], holds only valid, defaulted values; code downstream never re-checks.
//!
//! Secrets: passwords may come from the URL, an environment variable or a file. They are held in
//! [`Secret`], which never prints its content (`Debug` shows `***`) and is not serializable.

mod ddl;
mod election;
mod patterns;
pub mod raw;
pub mod routing;
mod validate;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub use ddl::{Ddl, DdlMode};
pub use drc_core::secret::Secret;
pub use election::Election;
pub use patterns::TablePattern;
pub use routing::{Routing, Unit};
pub use validate::validate;

/// A validated topology. Build it with [`Config::load`] or [`Config::parse`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Every center, in file order.
    pub centers: Vec<Center>,
    /// What to replicate.
    pub replication: Replication,
    /// How changes are applied.
    pub applier: Applier,
    /// How peers' binlogs are read.
    pub source: SourceSettings,
    /// The heartbeat each daemon writes in its own center.
    pub heartbeat: Heartbeat,
    /// How conflicting writes are resolved.
    pub conflict: Conflict,
    /// Leader election among a center's replicas.
    pub election: Election,
    /// What links do with schema changes (DDL) read from a peer.
    pub ddl: Ddl,
    /// Center closure: where each key lives (`[routing]`; docs/routing.md).
    pub routing: Option<Routing>,
    /// The daemon's HTTP listener (`[http]`; docs/security.md).
    pub http: Http,
}

/// `[http]`: who may read the daemon's HTTP endpoints, and over what.
#[derive(Debug, Clone, Default)]
pub struct Http {
    /// The bearer token every request but `/livez` and `/readyz` must carry; `None`: open.
    pub token: Option<Secret>,
    /// Certificate chain and key (PEM) to serve HTTPS with; `None`: plain HTTP.
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// The CA drc's own clients (`drc status`, `drc cutover`) verify the daemons' HTTPS
    /// certificates with; `None`: the public web roots.
    pub tls_ca: Option<std::path::PathBuf>,
}

/// One center (data center / region) and its database.
#[derive(Debug, Clone)]
pub struct Center {
    /// Unique short name (`[a-z0-9_-]`, at most 32 characters).
    pub name: String,
    /// Connection URL, password included when one was configured (see [`Center::url`]).
    url: Secret,
    /// The URL without password, for logs and messages.
    pub display_url: String,
    /// Where this center's daemon serves `/metrics` and `/health`.
    pub metrics_listen: Option<SocketAddr>,
    /// Raft addresses of the center's drc replicas, by replica index; empty: one daemon, no
    /// election.
    pub replicas: Vec<String>,
    /// TLS to the center's server (also carried in [`Center::url`], see `drc_mysql::tls`).
    pub tls: drc_mysql::Tls,
    /// The secret that authenticates the Raft frames between the center's replicas (required
    /// with `replicas`).
    pub raft_secret: Option<Secret>,
}

impl Center {
    /// The connection URL with the password filled in. Never log it; use
    /// [`Center::display_url`].
    pub fn url(&self) -> &str {
        self.url.expose()
    }
}

/// How the applier tags what it writes, so that readers can drop it (no loops).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loopback {
    /// `server_id` when the applier's user may set it, else `marker` (decided at start-up).
    Auto,
    /// The applier session takes the origin's `server_id` (MariaDB; needs BINLOG REPLAY or SUPER).
    ServerId,
    /// Each applied transaction writes a row in `drc_meta.origin` (portable).
    Marker,
}

/// What to replicate.
#[derive(Debug, Clone)]
pub struct Replication {
    /// Databases whose tables are replicated.
    pub databases: Vec<String>,
    /// Only tables matching one of these (`db.table` globs) are replicated; empty = all.
    pub include_tables: Vec<TablePattern>,
    /// Tables matching one of these are never replicated (wins over include).
    pub exclude_tables: Vec<TablePattern>,
    /// Origin tagging strategy.
    pub loopback: Loopback,
    /// The database drc keeps its own state in (checkpoints, heartbeats, markers).
    pub meta_database: String,
}

impl Replication {
    /// Whether changes of `db.table` are replicated.
    pub fn replicates(&self, db: &str, table: &str) -> bool {
        if !self.databases.iter().any(|d| d == db) {
            return false;
        }
        if self.exclude_tables.iter().any(|p| p.matches(db, table)) {
            return false;
        }
        self.include_tables.is_empty() || self.include_tables.iter().any(|p| p.matches(db, table))
    }
}

/// How changes are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applier {
    /// Connections applying in parallel per link.
    pub parallelism: usize,
    /// Row changes per target transaction (a batch; many source transactions share one).
    pub batch_rows: usize,
    /// Row changes per share of a batch at least: a batch goes to at most one connection per
    /// this many changes (and at most `parallelism`).
    pub share_rows: usize,
    /// How long to wait for more changes before committing a partial batch.
    pub batch_delay: Duration,
    /// Rows per multi-row statement.
    pub statement_rows: usize,
    /// The longest one applier transaction attempt (all its round trips) or one metadata
    /// query may take; beyond it the connection is dropped and the work retried.
    pub query_timeout: Duration,
    /// Row changes one source transaction may have; a larger one stops the link (it would be
    /// held in memory whole).
    pub max_transaction_rows: usize,
}

/// How peers' binlogs are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSettings {
    /// Heartbeat period requested from the peer's server.
    pub heartbeat: Duration,
    /// Reconnect when nothing arrived for this long.
    pub idle_timeout: Duration,
    /// Base of the replica `server_id`s drc registers with (see docs/configuration.md).
    pub replica_server_id_base: u32,
}

/// How conflicting writes from several centers are resolved (docs/conflicts.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The default version column; `None` when last-writer-wins is off by default.
    pub version_column: Option<String>,
    /// Per-table overrides by `(database, table)`; `None`: source wins for that table.
    pub tables: std::collections::BTreeMap<(String, String), Option<String>>,
    /// How long tombstones of deleted rows are kept.
    pub tombstone_retention: Duration,
    /// The largest skew between two centers' database clocks that `drc check` and the daemon
    /// accept without a warning (last-writer-wins compares versions stamped by those clocks).
    pub max_clock_skew: Duration,
}

impl Default for Conflict {
    fn default() -> Self {
        Conflict {
            version_column: Some("updated_at".to_string()),
            tables: Default::default(),
            tombstone_retention: Duration::from_secs(7 * 24 * 3600),
            max_clock_skew: Duration::from_millis(500),
        }
    }
}

impl Conflict {
    /// The version column configured for `db.table` (whether the table has it is checked
    /// elsewhere); `None` when the table is configured as "source wins".
    pub fn version_column(&self, db: &str, table: &str) -> Option<&str> {
        match self.tables.get(&(db.to_string(), table.to_string())) {
            Some(over) => over.as_deref(),
            None => self.version_column.as_deref(),
        }
    }
}

/// The heartbeat row each daemon writes in its own center; peers measure their lag with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// How often the row is written.
    pub interval: Duration,
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.0))]
pub struct ConfigErrors(pub Vec<ConfigError>);

fn render(errors: &[ConfigError]) -> String {
    let mut s = format!(
        "the configuration has {} problem{}:",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    );
    for e in errors {
        s.push_str("\n  - ");
        s.push_str(&e.to_string());
    }
    s
}

/// One problem in a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// The key concerned, e.g. `center[1].mysql` (or `file` for I/O and syntax problems).
    pub key: String,
    /// What is wrong and what to change.
    pub message: String,
}

impl Config {
    /// Reads and validates a topology file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                key: "file".into(),
                message: format!("cannot read {}: {e}", path.display()),
            }])
        })?;
        Config::parse(&text, &|name| std::env::var(name).ok())
    }

    /// Parses and validates a topology from text; `env` looks up environment variables (tests
    /// pass their own).
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
        let raw: raw::RawConfig = toml::from_str(text).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                key: "file".into(),
                message: e.to_string().trim_end().replace('\n', "\n    "),
            }])
        })?;
        validate(raw, env)
    }

    /// The center named `name`.
    pub fn center(&self, name: &str) -> Option<&Center> {
        self.centers.iter().find(|c| c.name == name)
    }

    /// The names of all centers, for messages.
    pub fn center_names(&self) -> Vec<&str> {
        self.centers.iter().map(|c| c.name.as_str()).collect()
    }
}

#[cfg(test)]
mod tests;
