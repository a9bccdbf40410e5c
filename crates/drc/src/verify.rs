//! `drc verify` and `drc repair`: flags, then `drc_verify`, then the report on stdout (text or
//! JSON). Exit status: 0 every center agrees, 1 rows differ (repair: differences remain, or a
//! dry run would write), 2 the command could not run.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use drc_bootstrap::progress::Display;
use drc_config::{Config, TablePattern};
use drc_verify::{MaxLoad, Options};

use crate::bootstrap::ProgressArg;

/// Flags shared by `drc verify` and `drc repair`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The topology file.
    #[arg(long)]
    pub config: std::path::PathBuf,
    /// Only tables matching these `db.table` globs (repeatable; default: every replicated
    /// table).
    #[arg(long, value_name = "GLOB", num_args = 1..)]
    pub tables: Vec<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Milliseconds one chunk's checksum should take in the slowest center (the chunk size
    /// adapts to it).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub chunk_time_ms: u64,
    /// Wait before each chunk while a center's global status variable is above a limit, e.g.
    /// `Threads_running=25`.
    #[arg(long, value_name = "VARIABLE=N")]
    pub max_load: Option<MaxLoad>,
    /// Compare at most this many rows per second.
    #[arg(long)]
    pub max_rows_per_sec: Option<u64>,
    /// Listings of a differing chunk after the first, while keys still differ.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub tries: u32,
    /// Seconds to wait for replication to catch up past a differing read.
    #[arg(long, default_value_t = 30)]
    pub catch_up_timeout: u64,
    /// Progress display (stderr).
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    pub progress: ProgressArg,
}

/// `drc verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// What to compare.
    #[command(flatten)]
    pub compare: CompareArgs,
}

/// `drc repair`.
#[derive(Debug, Args)]
pub struct RepairArgs {
    /// What to compare.
    #[command(flatten)]
    pub compare: CompareArgs,
    /// The center whose rows win in tables without a last-writer-wins version column.
    #[arg(long)]
    pub from: Option<String>,
    /// Print the statements each center would get; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn options(a: &CompareArgs) -> Result<Options, String> {
    let tables = a
        .tables
        .iter()
        .map(|t| TablePattern::parse(t).map_err(|e| format!("--tables: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Options {
        tables,
        chunk_time: Duration::from_millis(a.chunk_time_ms),
        tries: a.tries,
        catch_up_timeout: Duration::from_secs(a.catch_up_timeout),
        max_load: a.max_load.clone(),
        max_rows_per_sec: a.max_rows_per_sec,
        display: match a.progress {
            ProgressArg::Auto => Display::Auto,
            ProgressArg::Plain => Display::Plain,
            ProgressArg::Quiet => Display::Quiet,
        },
        ..Options::default()
    })
}

fn could_not_run(e: &dyn std::error::Error) -> ExitCode {
    eprintln!("drc: error: {e}");
    let mut source = e.source();
    while let Some(s) = source {
        eprintln!("  caused by: {s}");
        source = s.source();
    }
    ExitCode::from(2)
}

/// Runs `drc verify`.
pub async fn verify(args: VerifyArgs) -> ExitCode {
    let config = match Config::load(&args.compare.config) {
        Ok(c) => c,
        Err(e) => return could_not_run(&e),
    };
    let options = match options(&args.compare) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("drc: error: {e}");
            return ExitCode::from(2);
        }
    };
    match drc_verify::verify(&config, &options).await {
        Ok(r) => {
            if args.compare.json {
                match serde_json::to_string_pretty(&r) {
                    Ok(s) => println!("{s}"),
                    Err(e) => return could_not_run(&e),
                }
            } else {
                print!("{}", r.text());
            }
            ExitCode::from(r.exit_code())
        }
        Err(e) => could_not_run(&e),
    }
}

/// Runs `drc repair`.
pub async fn repair(args: RepairArgs) -> ExitCode {
    let config = match Config::load(&args.compare.config) {
        Ok(c) => c,
        Err(e) => return could_not_run(&e),
    };
    let verify = match options(&args.compare) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("drc: error: {e}");
            return ExitCode::from(2);
        }
    };
    let run = format!(
        "{}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        std::process::id()
    );
    let options = drc_verify::repair::RepairOptions {
        verify,
        from: args.from,
        dry_run: args.dry_run,
        run: run.clone(),
    };
    match drc_verify::repair::repair(&config, &options).await {
        Ok(r) => {
            if args.compare.json {
                match serde_json::to_string_pretty(&r) {
                    Ok(s) => println!("{s}"),
                    Err(e) => return could_not_run(&e),
                }
            } else {
                print!("{}", r.before.text());
                if args.dry_run {
                    print!("{}", drc_verify::repair::dry_run_text(&r.fixes));
                } else if !r.fixes.is_empty() {
                    println!(
                        "repair {run}: {} rows rewritten (logged in each center's repair table)",
                        r.fixes.len()
                    );
                }
                if r.skipped_unconfirmed > 0 {
                    println!(
                        "{} unconfirmed differences left alone; run drc repair again once they settle",
                        r.skipped_unconfirmed
                    );
                }
                if let Some(a) = &r.after {
                    println!(
                        "repaired chunks compared again: {} differing keys",
                        a.differences.len()
                    );
                    if !a.differences.is_empty() {
                        print!("{}", a.text());
                    }
                }
            }
            ExitCode::from(r.exit_code())
        }
        Err(e) => could_not_run(&e),
    }
}
