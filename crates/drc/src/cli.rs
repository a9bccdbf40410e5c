//! Command-line interface: every flag of every subcommand, with its documentation.

use clap::{Args, Parser, Subcommand};

/// drc: active-active replication for MySQL and MariaDB across data centers.
#[derive(Debug, Parser)]
#[command(name = "drc", version = env!("DRC_VERSION"), about, long_about = None)]
pub struct Cli {
    /// Log filter for messages on stderr (`error`, `warn`, `info`, `debug`, or a tracing
    /// filter such as `drc_source=debug`). The DRC_LOG environment variable overrides it; without
    /// either, RUST_LOG is used, and without any of them `warn`.
    #[arg(long, global = true)]
    pub log: Option<String>,
    /// Log lines on stderr as human-readable text, or as JSON objects, one per line (for log
    /// collectors; each carries its level, target, fields and the spans it is in, e.g. the link).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the row changes of a binlog as JSON lines, live from a server or from a file.
    Tail(TailArgs),
    /// Mint and decode distributed ids (SnowFlake, RainDrop, segments, central).
    Id(crate::id::IdArgs),
    /// Run the daemon beside one center: one link from every peer into it.
    Run(RunArgs),
    /// Print one line per link: its state, last applied position and lag.
    Status(StatusArgs),
    /// Check every center for what would stop or endanger replication; all problems at once.
    Check(crate::check::CheckArgs),
    /// List the writes that lost to conflict resolution (last-writer-wins), per center.
    Conflicts(crate::conflicts::ConflictsArgs),
    /// Schema changes: let a link pass a DDL statement it stopped at.
    Ddl(crate::ddl::DdlArgs),
    /// Control one link: pause, resume, skip a transaction, set its position.
    Link(crate::link::LinkArgs),
    /// Print a shell completion script (e.g. `drc completions bash > /etc/bash_completion.d/drc`).
    Completions(CompletionsArgs),
    /// Print the manual page (roff; e.g. `drc man > /usr/local/share/man/man1/drc.1`).
    Man,
    /// Fill a center with a live peer's data and write its links' starting checkpoints.
    Bootstrap(crate::bootstrap::BootstrapArgs),
    /// Where keys live (center closure): one key's home center, or the whole routing map.
    Route(crate::route::RouteArgs),
    /// Move routing units to another home center, with no key writable in two centers.
    Cutover(crate::route::CutoverArgs),
    /// Compare every replicated table across all centers (exit 0 equal, 1 differ, 2 failed).
    Verify(crate::verify::VerifyArgs),
    /// Rewrite the rows that differ between centers with the winning row.
    Repair(crate::verify::RepairArgs),
}

/// `drc completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `drc run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The topology file (TOML; see docs/configuration.md).
    #[arg(long)]
    pub config: std::path::PathBuf,
    /// The center this daemon runs beside (a `[[center]] name`).
    #[arg(long)]
    pub center: String,
    /// Serve /metrics and /health here instead of the center's `metrics_listen`.
    #[arg(long)]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// This daemon's index in the center's `replicas` list (required when the center has
    /// replicas; refused when it has none). Only the elected leader applies.
    #[arg(long)]
    pub replica: Option<usize>,
    /// Where this replica keeps its Raft votes and log (created when missing).
    /// Default: ./drc-data/<center>-<replica>.
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// Accept Raft peers on this address instead of `replicas[INDEX]` (e.g. 0.0.0.0:9501 behind
    /// NAT or a proxy).
    #[arg(long)]
    pub raft_listen: Option<std::net::SocketAddr>,
    /// Where a link that has no checkpoint yet starts: `now` (every such link at its source's
    /// current end of binlog: the first run of a new, empty cluster), or SOURCE=POSITION
    /// (repeatable, one per source center, e.g. `--start a=0-1-100`). Without it such a link
    /// refuses to start. Links with a checkpoint always resume from it.
    #[arg(long, value_name = "now|SOURCE=POSITION")]
    pub start: Vec<String>,
}

/// `drc status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The topology file.
    #[arg(long)]
    pub config: std::path::PathBuf,
    /// Print one JSON object (`links`: link, state, position, lag_seconds; `clock_skew`;
    /// `healthy`) instead of the table. The exit code is the same.
    #[arg(long)]
    pub json: bool,
}

/// `drc tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// Server to read from, as a replica: mysql://user[:password]@host:port.
    /// The user needs REPLICATION SLAVE. The password can also come from DRC_MYSQL_PASSWORD.
    /// TLS: `?drc-tls=verify_ca&drc-tls-ca=/path/ca.pem` (docs/security.md).
    #[arg(long, conflicts_with = "file", required_unless_present = "file", value_parser = secret_arg)]
    pub mysql: Option<drc_config::Secret>,
    /// Read this binlog file instead of a server (offline, like mysqlbinlog).
    #[arg(long)]
    pub file: Option<std::path::PathBuf>,
    /// Start after this position: a MariaDB GTID list (`0-1-100,1-2-5`), a MySQL GTID set
    /// (`3e11fa47-71ca-11e1-9e33-c80aa9429562:1-100`) or `binlog-file:offset`.
    /// Default: the server's current end of binlog (only new changes).
    #[arg(long, conflicts_with = "file")]
    pub from: Option<String>,
    /// Stop after printing this many row changes.
    #[arg(long)]
    pub limit: Option<u64>,
    /// The replica server_id to register with; must be unique among the server's replicas.
    /// Default: 900000000 + (process id mod 1000000).
    #[arg(long)]
    pub replica_server_id: Option<u32>,
    /// Also print DDL statements (as objects with "kind": "ddl").
    #[arg(long)]
    pub ddl: bool,
}

/// A command-line value that may hold a password (a URL): kept as a `Secret`, so that no
/// `Debug` of the arguments prints it.
pub fn secret_arg(s: &str) -> Result<drc_config::Secret, String> {
    Ok(drc_config::Secret::new(s))
}
