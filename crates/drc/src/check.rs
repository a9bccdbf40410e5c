//! `drc check`: runs `drc-check` against every center of a topology and prints the findings,
//! as aligned text lines (default) or as one JSON array (`--json`).
//!
//! With `--offline`, only the topology file is checked (every problem at once, no server
//! contacted; `drc_check::topology`).
//!
//! Exit code: 1 when any finding is an error (or the topology file cannot be loaded), 0
//! otherwise — warnings and infos are printed but do not fail the check.

use std::process::ExitCode;

use clap::Args;
use drc_check::{counts, Finding, Severity};
use drc_config::Config;

/// `drc check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The topology file (TOML; see docs/configuration.md).
    #[arg(long)]
    pub config: std::path::PathBuf,
    /// Print a JSON array of {severity, center, check, message} instead of text.
    #[arg(long)]
    pub json: bool,
    /// Check the topology file only (every problem at once), without connecting to any server.
    #[arg(long)]
    pub offline: bool,
}

type BoxError = Box<dyn std::error::Error>;

/// Runs every check and prints what it found.
pub async fn run(args: CheckArgs) -> Result<ExitCode, BoxError> {
    let findings = if args.offline {
        drc_check::topology::offline(Config::load(&args.config).as_ref())
    } else {
        let config = Config::load(&args.config)?;
        drc_check::run_checks(&config).await
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&findings)?);
    } else {
        print!("{}", render(&findings));
    }
    let (errors, _) = counts(&findings);
    Ok(if errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// One line per finding (`error   b  binlog_format: ...`; `*` for findings about several
/// centers), then `N errors, M warnings`.
fn render(findings: &[Finding]) -> String {
    let width = findings
        .iter()
        .map(|f| f.center.as_deref().map_or(1, str::len))
        .max()
        .unwrap_or(1);
    let mut out = String::new();
    for f in findings {
        out.push_str(&format!(
            "{:<7} {:<width$}  {}: {}\n",
            f.severity.as_str(),
            f.center.as_deref().unwrap_or("*"),
            f.check,
            f.message
        ));
    }
    let (errors, warnings) = counts(findings);
    let infos = findings
        .iter()
        .filter(|f| f.severity == Severity::Info)
        .count();
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    out.push_str(&plural(errors, "error"));
    out.push_str(", ");
    out.push_str(&plural(warnings, "warning"));
    if infos > 0 {
        out.push_str(&format!(" ({} for information)", plural(infos, "note")));
    }
    out.push('\n');
    out
}
