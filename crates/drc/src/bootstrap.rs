//! `drc bootstrap`: flags, then `drc_bootstrap::bootstrap`, then a summary on stdout.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use drc_bootstrap::progress::Display;
use drc_config::Config;

type BoxError = Box<dyn std::error::Error>;

/// How progress is shown.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProgressArg {
    /// A bar on a terminal, lines otherwise.
    Auto,
    /// Lines (every --progress-interval).
    Plain,
    /// None.
    Quiet,
}

/// `drc bootstrap`.
#[derive(Debug, Args)]
pub struct BootstrapArgs {
    /// The topology file (the new center must be in it).
    #[arg(long)]
    pub config: std::path::PathBuf,
    /// The center to fill (its daemon must not run).
    #[arg(long)]
    pub center: String,
    /// The live center to copy from (MariaDB).
    #[arg(long)]
    pub from: String,
    /// Empty the center's replicated tables first when they hold rows (their rows are lost);
    /// without it such tables are refused, listed.
    #[arg(long)]
    pub truncate: bool,
    /// Forget an interrupted bootstrap of this center and copy every table again.
    #[arg(long)]
    pub restart: bool,
    /// Rows per chunk (one read in the snapshot, one write transaction).
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub chunk_rows: u32,
    /// Connections writing into the center in parallel.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub writers: u32,
    /// Progress display.
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    pub progress: ProgressArg,
    /// Seconds between plain progress lines.
    #[arg(long, default_value_t = 5.0)]
    pub progress_interval: f64,
}

/// Runs `drc bootstrap`.
pub async fn run(args: BootstrapArgs) -> Result<ExitCode, BoxError> {
    let config = Config::load(&args.config)?;
    let interval = Duration::try_from_secs_f64(args.progress_interval).map_err(|_| {
        format!(
            "--progress-interval {}: not a duration in seconds",
            args.progress_interval
        )
    })?;
    let options = drc_bootstrap::Options {
        center: args.center,
        from: args.from,
        truncate: args.truncate,
        restart: args.restart,
        chunk_rows: args.chunk_rows as usize,
        writers: args.writers as usize,
        display: match args.progress {
            ProgressArg::Auto => Display::Auto,
            ProgressArg::Plain => Display::Plain,
            ProgressArg::Quiet => Display::Quiet,
        },
        interval,
    };
    let s = drc_bootstrap::bootstrap(&config, &options).await?;
    println!(
        "bootstrap of {} from {} done{}: {} tables, {} rows copied in this run ({:.0} rows/s, {:.1} MB), {} tombstones",
        options.center,
        options.from,
        if s.resumed { " (resumed)" } else { "" },
        s.tables,
        s.rows,
        s.rows_per_sec,
        s.bytes as f64 / 1e6,
        s.tombstones
    );
    if !s.created.is_empty() {
        println!("created tables: {}", s.created.join(", "));
    }
    for l in &s.links {
        println!("link {} starts at {}", l.link, l.position);
    }
    Ok(ExitCode::SUCCESS)
}
