//! `drc run` and `drc status`: load the topology, then hand over to `drc-daemon`.

use std::process::ExitCode;

use drc_config::Config;
use tokio::sync::watch;
use tracing::info;

use crate::cli::{RunArgs, StatusArgs};

type BoxError = Box<dyn std::error::Error>;

/// Runs the daemon until Ctrl-C or SIGTERM.
pub async fn run(args: RunArgs) -> Result<ExitCode, BoxError> {
    let config = Config::load(&args.config)?;
    let (tx, rx) = watch::channel(false);
    let start = drc_daemon::StartOption::parse(&args.start, &config, &args.center)?;
    let opts = drc_daemon::RunOptions {
        start,
        center: args.center,
        metrics_listen: args.metrics_listen,
        replica: args.replica,
        data_dir: args.data_dir,
        raft_listen: args.raft_listen,
    };
    let daemon = drc_daemon::run(config, opts, rx);
    tokio::pin!(daemon);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = &mut daemon => { r?; return Ok(ExitCode::SUCCESS); }
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    info!("shutting down");
    let _ = tx.send(true);
    daemon.await?;
    Ok(ExitCode::SUCCESS)
}

/// Prints one line per link.
pub async fn status(args: StatusArgs) -> Result<ExitCode, BoxError> {
    let config = Config::load(&args.config)?;
    let rows = drc_daemon::link_status_lines(&config).await;
    if args.json {
        let healthy = rows.iter().all(|r| r.state == "running");
        let limit = config.conflict.max_clock_skew.as_secs_f64();
        let skews: Vec<serde_json::Value> = drc_daemon::clock_skews(&config)
            .await
            .into_iter()
            .map(|(center, s)| match s {
                Some(s) => serde_json::json!({
                    "center": center, "seconds": s.seconds, "error_seconds": s.error,
                    "above_max_clock_skew": s.exceeds(limit),
                }),
                None => serde_json::json!({ "center": center, "seconds": null }),
            })
            .collect();
        let links: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "link": r.link, "state": r.state, "position": r.position,
                    "lag_seconds": r.lag,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "links": links, "clock_skew": skews, "healthy": healthy })
        );
        return Ok(if healthy {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        });
    }
    let width = rows.iter().map(|r| r.link.len()).max().unwrap_or(4).max(4);
    println!("{:width$}  {:10}  {:>9}  POSITION", "LINK", "STATE", "LAG");
    let mut healthy = true;
    for r in &rows {
        let lag = r
            .lag
            .map(|l| format!("{l:.3}s"))
            .unwrap_or_else(|| "-".into());
        healthy &= r.state == "running";
        println!(
            "{:width$}  {:10}  {:>9}  {}",
            r.link,
            r.state,
            lag,
            r.position.as_deref().unwrap_or("-")
        );
    }
    let skews = drc_daemon::clock_skews(&config).await;
    if let Some((base, _)) = skews.iter().find(|(_, s)| s.is_some()) {
        println!();
        println!("{:width$}  CLOCK SKEW vs {base}", "CENTER");
        let limit = config.conflict.max_clock_skew.as_secs_f64();
        for (name, s) in &skews {
            let text = match s {
                Some(s) if s.exceeds(limit) => format!(
                    "{:+.3}s ±{:.3}s  above conflict.max_clock_skew_ms",
                    s.seconds, s.error
                ),
                Some(s) => format!("{:+.3}s ±{:.3}s", s.seconds, s.error),
                None => "- (cannot read its clock)".into(),
            };
            println!("{name:width$}  {text}");
        }
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
