//! `drc link`: operator control of one link, through the target center's meta database
//! (`drc_meta::control`); the running leader obeys within a second (its control check,
//! `drc_apply::link::CONTROL_EVERY`). Every subcommand prints what it changed; `--dry-run`
//! prints what it would change and changes nothing.
//!
//! - `pause` / `resume`: a paused link applies nothing (state `paused` in `drc status`,
//!   `/health` and `drc_link_paused`); resumed, it starts again from its checkpoints.
//! - `skip --transaction GTID`: the link passes that source transaction without applying it,
//!   and records it, with its rows, in `<meta>.link_skip` when it does.
//! - `set-position --to POSITION`: replaces a paused link's checkpoints; it resumes there.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use drc_config::{Center, Config};
use drc_core::position::Position;
use mysql_async::prelude::Queryable;

type BoxError = Box<dyn std::error::Error>;

/// `drc link`.
#[derive(Debug, Args)]
pub struct LinkArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: LinkCommand,
}

/// `drc link` subcommands.
#[derive(Debug, Subcommand)]
pub enum LinkCommand {
    /// Stop applying (after the batch in flight) until `drc link resume`.
    Pause(Target),
    /// Apply again, from the link's checkpoints.
    Resume(Target),
    /// Pass one source transaction without applying it; it is recorded with its rows.
    Skip(SkipArgs),
    /// Move a paused link's checkpoint to a source position (it resumes there).
    SetPosition(SetPositionArgs),
}

/// The link a subcommand acts on.
#[derive(Debug, Args)]
pub struct Target {
    /// The topology file.
    #[arg(long)]
    pub config: std::path::PathBuf,
    /// The link, `source->target` (e.g. `a->c`).
    #[arg(long)]
    pub link: String,
    /// Print what would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `drc link skip`.
#[derive(Debug, Args)]
pub struct SkipArgs {
    /// The link.
    #[command(flatten)]
    pub target: Target,
    /// The source transaction's GTID, as drc's errors and `drc tail` print it (MariaDB
    /// `domain-server-sequence`, e.g. `0-1-57`; MySQL `uuid:number`).
    #[arg(long)]
    pub transaction: String,
}

/// `drc link set-position`.
#[derive(Debug, Args)]
pub struct SetPositionArgs {
    /// The link.
    #[command(flatten)]
    pub target: Target,
    /// The source position to resume from (a MariaDB GTID list such as `0-1-100,1-2-7`, a
    /// MySQL GTID set, or `binlog-file:offset`).
    #[arg(long)]
    pub to: String,
}

/// Why `drc link` refuses.
#[derive(Debug, thiserror::Error)]
pub enum LinkCliError {
    /// The link is not `source->target` of two configured centers.
    #[error("--link {0:?} is not a link of this topology: use source->target with two of the centers {1}")]
    Link(String, String),
    /// The GTID does not look like one.
    #[error("--transaction {0:?} is not a GTID: give it as drc's error or drc tail printed it (MariaDB domain-server-sequence such as 0-1-57, MySQL uuid:number)")]
    Gtid(String),
    /// The position does not parse.
    #[error("--to {0:?} is not a binlog position: {1}")]
    Position(String, String),
    /// set-position on a running link.
    #[error("link {0} is not paused: run `drc link pause --link {0}` first, wait until `drc status` shows it paused, then set its position")]
    NotPaused(String),
}

/// The link's name and its target center.
fn resolve<'a>(config: &'a Config, link: &str) -> Result<(String, &'a Center), LinkCliError> {
    let names = config.center_names().join(", ");
    link.split_once("->")
        .and_then(|(s, t)| Some((config.center(s.trim())?, config.center(t.trim())?)))
        .filter(|(s, t)| s.name != t.name)
        .map(|(s, t)| (format!("{}->{}", s.name, t.name), t))
        .ok_or_else(|| LinkCliError::Link(link.to_string(), names))
}

/// True for a MariaDB (`d-s-n`) or MySQL (`uuid[:tag]:n`) GTID.
fn is_gtid(g: &str) -> bool {
    let maria = g.split('-').count() == 3
        && g.split('-')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    let mysql = g.split(':').count() >= 2
        && g.rsplit(':')
            .next()
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        && g.split(':').next().is_some_and(|u| u.len() == 36);
    maria || mysql
}

async fn connect(center: &Center, meta: &str) -> Result<mysql_async::Conn, BoxError> {
    let mut conn = drc_mysql::connect(center.url(), Duration::from_secs(10)).await?;
    drc_meta::ensure_schema(&mut conn, meta).await?;
    Ok(conn)
}

/// Runs `drc link`.
pub async fn run(args: LinkArgs) -> Result<ExitCode, BoxError> {
    let t = match &args.command {
        LinkCommand::Pause(t) | LinkCommand::Resume(t) => t,
        LinkCommand::Skip(s) => &s.target,
        LinkCommand::SetPosition(s) => &s.target,
    };
    let config = Config::load(&t.config)?;
    let (link, center) = resolve(&config, &t.link)?;
    let meta = config.replication.meta_database.clone();
    let dry = if t.dry_run {
        " (dry run: nothing changed)"
    } else {
        ""
    };
    match &args.command {
        LinkCommand::Pause(_) | LinkCommand::Resume(_) => {
            let pause = matches!(args.command, LinkCommand::Pause(_));
            let mut conn = connect(center, &meta).await?;
            let was = drc_meta::control::read(&mut conn, &meta, &link)
                .await?
                .paused;
            if !t.dry_run {
                conn.query_drop(drc_meta::control::paused_statement(&meta, &link, pause))
                    .await?;
            }
            let state = |p: bool| if p { "paused" } else { "not paused" };
            println!(
                "link {link}: {} -> {}{dry}; the running leader obeys within a second (drc status shows it)",
                state(was),
                state(pause)
            );
        }
        LinkCommand::Skip(s) => {
            let gtid = s.transaction.trim();
            if !is_gtid(gtid) {
                return Err(LinkCliError::Gtid(s.transaction.clone()).into());
            }
            let mut conn = connect(center, &meta).await?;
            if !t.dry_run {
                conn.query_drop(drc_meta::control::skip_request_statement(
                    &meta, &link, gtid,
                ))
                .await?;
            }
            println!(
                "link {link}: transaction {gtid} will be passed without applying it when the link meets it{dry}; it is then recorded with its rows in {meta}.link_skip of center {}",
                center.name
            );
        }
        LinkCommand::SetPosition(s) => {
            let to: Position =
                s.to.trim()
                    .parse()
                    .map_err(|e: drc_core::position::PositionError| {
                        LinkCliError::Position(s.to.clone(), e.to_string())
                    })?;
            let mut conn = connect(center, &meta).await?;
            if !drc_meta::control::read(&mut conn, &meta, &link)
                .await?
                .paused
            {
                return Err(LinkCliError::NotPaused(link).into());
            }
            let old = if t.dry_run {
                drc_meta::load_checkpoints(&mut conn, &meta, &link).await?
            } else {
                drc_meta::control::set_position(&mut conn, &meta, &link, &to).await?
            };
            let was = match drc_meta::recovery(&old) {
                drc_meta::Recovery::Fresh => "no checkpoint".to_string(),
                drc_meta::Recovery::Clean { position, .. } => position.to_string(),
                drc_meta::Recovery::Partial { start, end, .. } => {
                    format!("{start} (an unfinished batch up to {end}, now abandoned)")
                }
            };
            println!(
                "link {link}: checkpoint {was} -> {to}{dry}; the link resumes there after drc link resume"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::is_gtid;

    #[test]
    fn gtids_of_both_flavors_are_recognised() {
        assert!(is_gtid("0-1-57"));
        assert!(is_gtid("3e11fa47-71ca-11e1-9e33-c80aa9429562:23"));
        assert!(is_gtid("3e11fa47-71ca-11e1-9e33-c80aa9429562:tag:5"));
        for bad in ["", "0-1", "a-b-c", "0-1-", "uuid:5", "0-1-5; DROP"] {
            assert!(!is_gtid(bad), "{bad}");
        }
    }
}
