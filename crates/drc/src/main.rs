//! The `drc` command: wires the crates together; no replication logic lives here.
//!
//! `main` -> `try_main` -> `ExitCode`: errors are printed once, to stderr, with their causes,
//! and turn into a non-zero exit code.

mod bootstrap;
mod check;
mod cli;
mod conflicts;
mod ddl;
mod id;
mod link;
mod route;
mod run;
mod tail;
mod verify;

use std::process::ExitCode;

/// jemalloc: the data path allocates and frees a value per column of every row; jemalloc's
/// thread caches cut the reader's CPU time by 12-17% against glibc malloc (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_tracing(cli.log.as_deref(), cli.log_format);
    match try_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("drc: error: {e}");
            let mut source = std::error::Error::source(&*e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::from(1)
        }
    }
}

/// Sets up logging on stderr. The filter: DRC_LOG, else `--log`, else RUST_LOG, else `warn`.
fn init_tracing(level: Option<&str>, format: cli::LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("DRC_LOG")
        .ok()
        .or_else(|| level.and_then(|l| EnvFilter::try_new(l).ok()))
        .or_else(|| EnvFilter::try_from_env("RUST_LOG").ok())
        .unwrap_or_else(|| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        cli::LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        cli::LogFormat::Json => builder.json().init(),
    }
}

fn try_main(cli: cli::Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        cli::Command::Tail(args) => rt.block_on(tail::run(args)),
        cli::Command::Id(args) => rt.block_on(id::run(args)),
        cli::Command::Run(args) => rt.block_on(run::run(args)),
        cli::Command::Status(args) => rt.block_on(run::status(args)),
        cli::Command::Check(args) => rt.block_on(check::run(args)),
        cli::Command::Conflicts(args) => rt.block_on(conflicts::run(args)),
        cli::Command::Ddl(args) => rt.block_on(ddl::run(args)),
        cli::Command::Link(args) => rt.block_on(link::run(args)),
        cli::Command::Completions(args) => {
            let mut cmd = <cli::Cli as clap::CommandFactory>::command();
            clap_complete::generate(args.shell, &mut cmd, "drc", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        cli::Command::Man => {
            let cmd = <cli::Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        cli::Command::Bootstrap(args) => rt.block_on(bootstrap::run(args)),
        cli::Command::Route(args) => rt.block_on(route::route(args)),
        cli::Command::Cutover(args) => rt.block_on(route::cutover(args)),
        cli::Command::Verify(args) => Ok(rt.block_on(verify::verify(args))),
        cli::Command::Repair(args) => Ok(rt.block_on(verify::repair(args))),
    }
}
