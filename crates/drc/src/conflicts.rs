//! `drc conflicts`: lists the writes that lost to conflict resolution, from every center's
//! `<meta>.conflict` table (docs/conflicts.md).

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use drc_config::Config;
use drc_meta::conflict::{ConflictRow, Since};

type BoxError = Box<dyn std::error::Error>;

/// `drc conflicts`.
#[derive(Debug, Args)]
pub struct ConflictsArgs {
    /// The topology file.
    #[arg(long)]
    pub config: std::path::PathBuf,
    /// Only this center's records (default: every center).
    #[arg(long)]
    pub center: Option<String>,
    /// Only records since this time: UTC `2026-11-26 10:00:00` / `2026-11-26T10:00:00Z`, or
    /// an age such as `90s`, `30m`, `2h`, `7d`.
    #[arg(long)]
    pub since: Option<String>,
    /// At most this many records per center, oldest first.
    #[arg(long, default_value_t = 1000)]
    pub limit: u64,
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Parses `--since`; the error says what is accepted.
pub fn parse_since(s: &str) -> Result<Since, String> {
    let t = s.trim();
    let unit = t.chars().last().unwrap_or(' ');
    if let Some(n) = t
        .strip_suffix(unit)
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    {
        let secs = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => 0,
        };
        if let (Ok(n), true) = (n.parse::<u64>(), secs > 0) {
            return Ok(Since::Ago(Duration::from_secs(n.saturating_mul(secs))));
        }
    }
    let at = t.trim_end_matches('Z').replacen('T', " ", 1);
    let b = at.as_bytes();
    let shape = b.len() >= 19
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b' ',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            _ => c.is_ascii_digit(),
        });
    if shape {
        Ok(Since::At(at))
    } else {
        Err(format!(
            "--since {s:?}: give a UTC time like \"2026-11-26 10:00:00\" or \"2026-11-26T10:00:00Z\", or an age like 30m, 2h, 7d"
        ))
    }
}

/// Runs `drc conflicts`.
pub async fn run(args: ConflictsArgs) -> Result<ExitCode, BoxError> {
    let config = Config::load(&args.config)?;
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let centers: Vec<_> = match &args.center {
        Some(name) => vec![config.center(name).ok_or_else(|| {
            format!(
                "center {name:?} is not in {} (centers: {})",
                args.config.display(),
                config.center_names().join(", ")
            )
        })?],
        None => config.centers.iter().collect(),
    };
    let meta = &config.replication.meta_database;
    let mut failed = false;
    let mut total = 0usize;
    for c in centers {
        let rows: Result<Vec<ConflictRow>, String> = async {
            let mut conn = drc_mysql::connect(c.url(), Duration::from_secs(5))
                .await
                .map_err(|e| e.to_string())?;
            drc_meta::conflict::list(&mut conn, meta, since.as_ref(), args.limit)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        match rows {
            Ok(rows) => {
                total += rows.len();
                for r in rows {
                    if args.json {
                        let parse = |s: &str| {
                            serde_json::from_str::<serde_json::Value>(s)
                                .unwrap_or(serde_json::Value::String(s.to_string()))
                        };
                        println!(
                            "{}",
                            serde_json::json!({
                                "center": c.name, "at": format!("{}Z", r.at), "link": r.link,
                                "table": r.table, "key": parse(&r.key), "rule": r.rule,
                                "resolution": r.resolution, "loser": parse(&r.loser),
                                "winner": parse(&r.winner),
                            })
                        );
                    } else {
                        println!(
                            "{}Z  center {}  link {}  {} {}  {} ({})\n  lost: {}\n  kept: {}",
                            r.at,
                            c.name,
                            r.link,
                            r.table,
                            r.key,
                            r.resolution,
                            r.rule,
                            r.loser,
                            r.winner
                        );
                    }
                }
            }
            Err(e) => {
                failed = true;
                eprintln!(
                    "center {}: cannot read conflicts: {}",
                    c.name,
                    drc_mysql::redact_url(&e)
                );
            }
        }
    }
    if !args.json {
        eprintln!("{total} conflict record(s)");
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_times_and_ages() {
        assert_eq!(
            parse_since("30m"),
            Ok(Since::Ago(Duration::from_secs(1800)))
        );
        assert_eq!(
            parse_since("7d"),
            Ok(Since::Ago(Duration::from_secs(604_800)))
        );
        assert_eq!(
            parse_since("2026-11-26T10:00:00Z"),
            Ok(Since::At("2026-11-26 10:00:00".into()))
        );
        assert_eq!(
            parse_since("2026-11-26 10:00:00.5"),
            Ok(Since::At("2026-11-26 10:00:00.5".into()))
        );
        for bad in [
            "",
            "yesterday",
            "10x",
            "2026-11-26",
            "2026-11-26 10:00:00'; DROP",
        ] {
            assert!(parse_since(bad).is_err(), "{bad}");
        }
    }
}
