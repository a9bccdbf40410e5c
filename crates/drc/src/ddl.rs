//! `drc ddl skip`: acknowledges a DDL statement a link stopped at, so that the link passes it
//! (docs/operations.md, "Schema changes"). The acknowledgment is a row in the target center's
//! `<meta>.ddl_skip`, keyed by link and the statement's source position as the link's error
//! printed it; the link checks it each time it meets a DDL it would not pass, so it takes
//! effect when the daemon restarts the stopped link (its retry backoff, at most 60 s).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use drc_config::Config;
use mysql_async::prelude::Queryable;

type BoxError = Box<dyn std::error::Error>;

/// `drc ddl`.
#[derive(Debug, Args)]
pub struct DdlArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: DdlCommand,
}

/// `drc ddl` subcommands.
#[derive(Debug, Subcommand)]
pub enum DdlCommand {
    /// Let a link pass the DDL statement it stopped at (after you applied the schema change
    /// in every center yourself).
    Skip(SkipArgs),
}

/// `drc ddl skip`.
#[derive(Debug, Args)]
pub struct SkipArgs {
    /// The topology file.
    #[arg(long)]
    pub config: std::path::PathBuf,
    /// The link, `source->target` (e.g. `a->b`), as the link's error names it.
    #[arg(long)]
    pub link: String,
    /// The statement's source position, as the link's error prints it (a GTID such as
    /// `0-1-57`, or `binlog-file:offset`).
    #[arg(long)]
    pub position: String,
}

/// Why `drc ddl skip` refuses its arguments.
#[derive(Debug, thiserror::Error)]
pub enum SkipError {
    /// The link is not `source->target` of two configured centers.
    #[error("--link {0:?} is not a link of this topology: use source->target with two of the centers {1}")]
    Link(String, String),
    /// The position is empty or too long.
    #[error("--position {0:?} is not a position: give it as the link's error printed it (e.g. 0-1-57 or mysql-bin.000003:1234)")]
    Position(String),
}

/// Records the acknowledgment in the target center.
pub async fn run(args: DdlArgs) -> Result<ExitCode, BoxError> {
    let DdlCommand::Skip(args) = args.command;
    let config = Config::load(&args.config)?;
    let names = config.center_names().join(", ");
    let centers = args
        .link
        .split_once("->")
        .and_then(|(s, t)| Some((config.center(s.trim())?, config.center(t.trim())?)))
        .filter(|(s, t)| s.name != t.name);
    let Some((source, target)) = centers else {
        return Err(SkipError::Link(args.link, names).into());
    };
    let position = args.position.trim();
    if position.is_empty() || position.len() > 255 || position.contains(char::is_whitespace) {
        return Err(SkipError::Position(args.position.clone()).into());
    }
    let link = format!("{}->{}", source.name, target.name);
    let meta = &config.replication.meta_database;
    let mut conn = drc_mysql::connect(target.url(), Duration::from_secs(10)).await?;
    drc_meta::ensure_schema(&mut conn, meta).await?;
    conn.query_drop(drc_meta::ddl_skip_statement(meta, &link, position))
        .await?;
    println!(
        "link {link}: the DDL statement at source position {position} is acknowledged in center {}; the link passes it when the daemon next restarts it (within 60 s)",
        target.name
    );
    Ok(ExitCode::SUCCESS)
}
