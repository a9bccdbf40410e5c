//! `drc route` and `drc cutover` (docs/routing.md): where keys live, and moving units between
//! centers. Both read the live map from every reachable center (the newest row of each unit
//! wins), so they answer like the daemons do.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use drc_config::Config;
use drc_route::{CutoverRequest, Selection};

type BoxError = Box<dyn std::error::Error>;

/// `drc route`.
#[derive(Debug, Args)]
pub struct RouteArgs {
    /// The topology file (with a `[routing]` table).
    #[arg(long)]
    pub config: std::path::PathBuf,
    /// Print where this key lives: its bucket, unit, home center, the map's epoch and whether
    /// it is writable. Without it, print the whole map.
    #[arg(long)]
    pub key: Option<String>,
    /// Print JSON (the same objects as the daemons' /v1/route and /v1/routes).
    #[arg(long)]
    pub json: bool,
    /// Print the journal of the last cutovers instead (newest first).
    #[arg(long, conflicts_with = "key")]
    pub history: bool,
}

/// `drc cutover`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["from", "unit"])))]
pub struct CutoverArgs {
    /// The topology file (with a `[routing]` table).
    #[arg(long)]
    pub config: std::path::PathBuf,
    /// Move every unit whose home is this center (the center is fenced: `read_only` for
    /// application users until a cutover moves units back to it).
    #[arg(long)]
    pub from: Option<String>,
    /// Move one unit (its old home stays writable for its other units; the route state is the
    /// fence).
    #[arg(long)]
    pub unit: Option<String>,
    /// The new home center.
    #[arg(long)]
    pub to: String,
    /// The old home is unreachable: skip its fence and the wait for the others to catch up
    /// with it, flip at once, and record the window of its writes that may arrive later.
    #[arg(long)]
    pub force: bool,
    /// The longest wait, in seconds, for every center to apply what the old home committed.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub catch_up_timeout: u64,
    /// With --unit: milliseconds to wait after the daemons serve the unit as moving, for writes
    /// routed before to commit in the old home (the old home is not fenced for one unit).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub drain_ms: u64,
    /// Print the report as JSON at the end (the step lines still go to stderr).
    #[arg(long)]
    pub json: bool,
}

fn load(path: &std::path::Path) -> Result<Config, BoxError> {
    let config = Config::load(path)?;
    if config.routing.is_none() {
        return Err(drc_route::RouteError::NotConfigured.into());
    }
    Ok(config)
}

/// Runs `drc route`.
pub async fn route(args: RouteArgs) -> Result<ExitCode, BoxError> {
    let config = load(&args.config)?;
    if args.history {
        let mut conn = None;
        for c in &config.centers {
            if let Ok(x) = drc_mysql::connect(c.url(), Duration::from_secs(3)).await {
                conn = Some(x);
                break;
            }
        }
        let mut conn = conn.ok_or("no center answers")?;
        let rows =
            drc_meta::route::cutovers(&mut conn, &config.replication.meta_database, 20).await?;
        for r in rows {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "id": r.id, "units": r.units, "from": r.from, "to": r.to,
                        "forced": r.forced, "step": r.step, "window": r.window,
                        "unwritable_ms": r.unwritable_ms,
                    })
                );
            } else {
                println!(
                    "{}  {} -> {}  units {}  step {}{}{}",
                    r.id,
                    r.from,
                    r.to,
                    r.units,
                    r.step,
                    if r.forced { "  forced" } else { "" },
                    r.window
                        .map(|w| format!("  window after {w}"))
                        .unwrap_or_default()
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (map, notes) = drc_route::cutover::newest_map(&config).await?;
    for n in &notes {
        eprintln!("note: {n}");
    }
    match &args.key {
        Some(key) => {
            let r = map
                .route(key)
                .ok_or("the map has no unit for this key's bucket")?;
            if args.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "key {}: bucket {}, unit {}, home {}, epoch {}, {}",
                    r.key,
                    r.bucket,
                    r.unit,
                    r.home,
                    r.epoch,
                    match &r.moving_to {
                        None => "writable".to_string(),
                        Some(t) => format!("not writable (moving to {t})"),
                    }
                );
            }
        }
        None => {
            let v = map.view();
            if args.json {
                println!("{}", serde_json::to_string(&v)?);
            } else {
                println!("{} buckets, epoch {}", v.buckets, v.epoch);
                for u in v.units {
                    println!(
                        "{:<16} buckets {:<20} home {:<10} {}{} (epoch {})",
                        u.unit,
                        u.buckets,
                        u.home,
                        u.state,
                        u.moving_to.map(|t| format!(" to {t}")).unwrap_or_default(),
                        u.epoch
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `drc cutover`.
pub async fn cutover(args: CutoverArgs) -> Result<ExitCode, BoxError> {
    let config = load(&args.config)?;
    let selection = match (&args.from, &args.unit) {
        (Some(f), None) => Selection::Center(f.clone()),
        (None, Some(u)) => Selection::Unit(u.clone()),
        _ => return Err("give either --from CENTER or --unit UNIT".into()),
    };
    let req = CutoverRequest {
        selection,
        to: args.to.clone(),
        force: args.force,
        catch_up_timeout: Duration::from_secs(args.catch_up_timeout),
        drain: Duration::from_millis(args.drain_ms),
    };
    let json = args.json;
    let mut out = |line: String| {
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    let report = drc_route::cutover(&config, &req, &mut out).await?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "id": report.id,
                "units": report.units,
                "from": report.from,
                "to": args.to,
                "forced": args.force,
                "window": report.window,
                "unwritable_ms": report.unwritable_ms,
                "total_ms": report.total_ms,
                "steps": report.steps.iter().map(|(n, ms)| serde_json::json!({"step": n, "ms": ms})).collect::<Vec<_>>(),
            })
        );
    }
    Ok(ExitCode::SUCCESS)
}
