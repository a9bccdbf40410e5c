//! The first step of loading: TOML into structs that reject unknown keys. Nothing is checked
//! here beyond the TOML types; see [`crate::validate`] for the rules.

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[[center]]` tables.
    #[serde(default)]
    pub center: Vec<RawCenter>,
    /// `[replication]`.
    pub replication: Option<RawReplication>,
    /// `[applier]`.
    #[serde(default)]
    pub applier: RawApplier,
    /// `[source]`.
    #[serde(default)]
    pub source: RawSource,
    /// `[heartbeat]`.
    #[serde(default)]
    pub heartbeat: RawHeartbeat,
    /// `[election]`.
    #[serde(default)]
    pub election: RawElection,
    /// `[conflict]`.
    #[serde(default)]
    pub conflict: RawConflict,
    /// `[ddl]`.
    #[serde(default)]
    pub ddl: RawDdl,
    /// `[routing]` (center closure; absent: no routing map).
    pub routing: Option<RawRouting>,
    /// `[http]`: the daemon's HTTP listener.
    #[serde(default)]
    pub http: RawHttp,
}

/// `[http]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// File holding the bearer token every request but /livez and /readyz must carry.
    pub token_file: Option<String>,
    /// Environment variable holding that token.
    pub token_env: Option<String>,
    /// Certificate chain (PEM) to serve HTTPS with.
    pub tls_cert: Option<String>,
    /// Private key (PEM) of `tls_cert`.
    pub tls_key: Option<String>,
    /// CA (PEM) that drc's own clients verify the daemons' certificates with.
    pub tls_ca: Option<String>,
}

/// `[routing]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    /// Number of buckets (default 1024).
    pub buckets: Option<i64>,
    /// The routing-key column of replicated tables, for the closure check.
    pub key_column: Option<String>,
    /// Per-table overrides: `"db.table" = "column"` (`""`: not checked).
    #[serde(default)]
    pub tables: std::collections::BTreeMap<String, String>,
    /// `[[routing.unit]]` tables.
    #[serde(default)]
    pub unit: Vec<RawUnit>,
}

/// One `[[routing.unit]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUnit {
    /// Unit name.
    pub name: Option<String>,
    /// Buckets: numbers and ranges, e.g. `"0-99,512-600"`.
    pub buckets: Option<String>,
    /// The center its keys live in (the seed of the live map).
    pub home: Option<String>,
}

/// `[ddl]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDdl {
    /// `stop` (default) or `replicate`.
    pub mode: Option<String>,
    /// Per-table overrides: `"db.table_pattern" = "stop" | "replicate" | "ignore"`.
    #[serde(default)]
    pub tables: std::collections::BTreeMap<String, String>,
}

/// `[conflict]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConflict {
    /// The last-writer-wins version column (default `updated_at`; `""` turns it off).
    pub version_column: Option<String>,
    /// Per-table overrides: `"db.table" = "column"` (`""`: source wins for that table).
    #[serde(default)]
    pub tables: std::collections::BTreeMap<String, String>,
    /// Hours tombstones are kept.
    pub tombstone_retention_hours: Option<i64>,
    /// Largest tolerated skew between two centers' database clocks, in milliseconds.
    pub max_clock_skew_ms: Option<i64>,
}

/// One `[[center]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCenter {
    /// Center name.
    pub name: Option<String>,
    /// `mysql://user[:password]@host:port`.
    pub mysql: Option<String>,
    /// `host:port` for `/metrics` and `/health`.
    pub metrics_listen: Option<String>,
    /// Name of an environment variable holding the password.
    pub password_env: Option<String>,
    /// Path of a file holding the password (trailing newline ignored).
    pub password_file: Option<String>,
    /// Raft addresses (`host:port`) of the center's drc replicas.
    pub replicas: Option<Vec<String>>,
    /// Name of an environment variable holding the center's Raft secret (replicas).
    pub raft_secret_env: Option<String>,
    /// Path of a file holding the center's Raft secret (replicas).
    pub raft_secret_file: Option<String>,
    /// TLS mode to the center's server.
    pub tls: Option<String>,
    /// CA certificate(s) (PEM) to verify the server with.
    pub tls_ca: Option<String>,
    /// Client certificate chain (PEM).
    pub tls_cert: Option<String>,
    /// Client private key (PEM).
    pub tls_key: Option<String>,
}

/// `[replication]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReplication {
    /// Databases to replicate.
    #[serde(default)]
    pub databases: Vec<String>,
    /// `db.table` globs to include.
    #[serde(default)]
    pub include_tables: Vec<String>,
    /// `db.table` globs to exclude.
    #[serde(default)]
    pub exclude_tables: Vec<String>,
    /// `auto`, `server_id` or `marker`.
    pub loopback: Option<String>,
    /// drc's own database (default `drc_meta`).
    pub meta_database: Option<String>,
}

/// `[applier]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApplier {
    /// Parallel connections per link.
    pub parallelism: Option<i64>,
    /// Row changes per target transaction.
    pub batch_rows: Option<i64>,
    /// Row changes per share of a batch, at least.
    pub share_rows: Option<i64>,
    /// Milliseconds to wait for more changes before committing a partial batch.
    pub batch_delay_ms: Option<i64>,
    /// Rows per multi-row statement.
    pub statement_rows: Option<i64>,
    /// Longest applier transaction attempt or metadata query, milliseconds.
    pub query_timeout_ms: Option<i64>,
    /// Row changes one source transaction may have.
    pub max_transaction_rows: Option<i64>,
}

/// `[source]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// Heartbeat period requested from peers, milliseconds.
    pub heartbeat_ms: Option<i64>,
    /// Reconnect after this long without any event, milliseconds.
    pub idle_timeout_ms: Option<i64>,
    /// Base of the replica server ids.
    pub replica_server_id_base: Option<i64>,
}

/// `[heartbeat]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeartbeat {
    /// Interval, milliseconds.
    pub interval_ms: Option<i64>,
}

/// `[election]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawElection {
    /// Leader heartbeat, milliseconds.
    pub heartbeat_ms: Option<i64>,
    /// Election timeout lower bound, milliseconds.
    pub election_timeout_min_ms: Option<i64>,
    /// Election timeout upper bound, milliseconds.
    pub election_timeout_max_ms: Option<i64>,
    /// Rows kept per link worker in the apply log.
    pub apply_log_slots: Option<i64>,
}
