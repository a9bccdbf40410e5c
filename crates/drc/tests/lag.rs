//! Lag between two centers through the real daemons (issue #16).
//!
//! - The lag metric resolves milliseconds: `drc_link_lag_seconds` (`/health` `lag_seconds`) is
//!   measured when the link applies its source's heartbeat, not from the age of the newest row
//!   polled once per heartbeat period. Asserted on the values' resolution only (never on a
//!   duration: timings on a shared machine are not assertions).
//! - Commit-to-visible lag, an insert committed in a and polled for in b: a benchmark, not a
//!   pass/fail test. `bash bench/lag.sh` runs it and prints p50/p90/p99/max for each
//!   `[applier] batch_delay_ms` it is given in `DRC_LAG_DELAYS` (default `10,0`), in one run.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use crate::cluster::Cluster;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Heartbeat period of the resolution test, in milliseconds.
const INTERVAL_MS: i64 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lag_metric_resolves_milliseconds() {
    let mut cl = Cluster::new(
        "lagres",
        "CREATE TABLE t (id INT PRIMARY KEY)",
        "auto",
        &format!("[heartbeat]\ninterval_ms = {INTERVAL_MS}\n"),
    )
    .await;
    cl.start_all();
    cl.wait_running().await;
    // Distinct values of b's lag behind a and c, as /health shows them, one per heartbeat
    // measured (the value changes with each heartbeat the link applies).
    let mut seen: Vec<f64> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.len() < 12 {
        assert!(
            Instant::now() < deadline,
            "only {} distinct lag values within the deadline: {seen:?}\n{}",
            seen.len(),
            cl.log(1)
        );
        if let Some(h) = cl.health(1).await {
            for l in h["links"].as_array().into_iter().flatten() {
                if let Some(v) = l["lag_seconds"].as_f64() {
                    assert!(v.is_finite(), "{h}");
                    if !seen.contains(&v) {
                        seen.push(v);
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("lag_seconds samples: {seen:?}");
    // Resolution: the figure is not a count of heartbeat periods or of whole seconds. Each
    // sample is microseconds (TIMESTAMPDIFF) of a stamp by one server's clock against another
    // reading; at least one of twelve has a millisecond part that is neither a multiple of
    // the heartbeat period nor zero.
    let fine = seen.iter().any(|v| {
        let ms = (v * 1000.0).round() as i64;
        ms % INTERVAL_MS != 0 && ms % 1000 != 0
    });
    assert!(fine, "lag values in heartbeat steps only: {seen:?}");
    // drc status prints the same figure in milliseconds.
    let (code, text) = cl.drc(&["status"]);
    assert!(code.is_some(), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("a->b"))
        .unwrap_or_else(|| panic!("{text}"));
    let lag = line
        .split_whitespace()
        .nth(2)
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        lag.ends_with('s') && lag.split('.').nth(1).map(str::len) == Some(4),
        "{line}"
    );
    cl.kill9(0);
    cl.kill9(1);
    cl.kill9(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: bench/lag.sh"]
async fn commit_to_visible_lag_idle() {
    let probes: usize = std::env::var("DRC_LAG_PROBES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let delays = std::env::var("DRC_LAG_DELAYS").unwrap_or_else(|_| "10,0".into());
    for delay in delays.split(',').map(str::trim) {
        let mut cl = Cluster::new(
            "lag",
            "CREATE TABLE t (id INT PRIMARY KEY, at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))",
            "auto",
            &format!("[applier]\nbatch_delay_ms = {delay}\n"),
        )
        .await;
        cl.start_all();
        cl.wait_running().await;
        let mut a = cl.conn(0).await;
        let mut b = cl.conn(1).await;
        let mut lags = Vec::with_capacity(probes);
        for i in 0..probes as i32 {
            let t0 = Instant::now();
            a.exec_drop("INSERT INTO t (id) VALUES (?)", (i,))
                .await
                .expect("insert");
            loop {
                let seen: Option<i32> = b
                    .exec_first("SELECT id FROM t WHERE id = ?", (i,))
                    .await
                    .expect("poll");
                if seen.is_some() {
                    break;
                }
                assert!(
                    t0.elapsed() < Duration::from_secs(30),
                    "probe {i} never arrived"
                );
            }
            lags.push(t0.elapsed().as_secs_f64() * 1000.0);
            // Idle between probes: the link waits with nothing to read.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        lags.sort_by(f64::total_cmp);
        println!(
            "batch_delay_ms = {delay}: {probes} probes, commit in a to visible in b: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            percentile(&lags, 0.5),
            percentile(&lags, 0.9),
            percentile(&lags, 0.99),
            lags[lags.len() - 1]
        );
        cl.kill9(0);
        cl.kill9(1);
        cl.kill9(2);
    }
}

/// The probe of `bench/lag.sh`: servers and daemons are the script's. Inserts a row into
/// `DRC_LAG_TABLE` (default `sbtest.lagprobe (id INT PRIMARY KEY)`) of `DRC_LAG_SOURCE` and
/// polls every target of `DRC_LAG_TARGETS` (`name=url,...`) for it at once, each on its own
/// connection, `DRC_LAG_PROBES` times (default 300), 20 ms apart; ids start at `DRC_LAG_BASE`.
/// Prints one line per target: p50/p90/p99/max, and the mean of the first and the last tenth
/// of the probes (growth under load shows as the second far above the first). Skips when
/// `DRC_LAG_SOURCE` is unset. A target that does not show a probe within `DRC_LAG_CAP_SECS`
/// (default 120) is reported as fallen behind and polled no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: bench/lag.sh"]
async fn commit_to_visible_probe() {
    let Ok(source) = std::env::var("DRC_LAG_SOURCE") else {
        println!("DRC_LAG_SOURCE is unset: nothing to probe (bench/lag.sh sets it)");
        return;
    };
    let env_num = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let probes = env_num("DRC_LAG_PROBES", 300);
    let base = env_num("DRC_LAG_BASE", 0);
    let table = std::env::var("DRC_LAG_TABLE").unwrap_or_else(|_| "sbtest.lagprobe".into());
    let label = std::env::var("DRC_LAG_LABEL").unwrap_or_default();
    let targets: Vec<(String, String)> = std::env::var("DRC_LAG_TARGETS")
        .expect("DRC_LAG_TARGETS=name=url,...")
        .split(',')
        .map(|t| {
            let (n, u) = t.split_once('=').expect("name=url");
            (n.to_string(), u.to_string())
        })
        .collect();
    let mut a = drc_testkit::connect(&source).await;
    let mut conns = Vec::new();
    for (_, url) in &targets {
        conns.push(drc_testkit::connect(url).await);
    }
    let select = format!("SELECT id FROM {table} WHERE id = ?");
    let cap = Duration::from_secs(env_num("DRC_LAG_CAP_SECS", 120) as u64);
    let mut lags: Vec<Vec<f64>> = vec![Vec::with_capacity(probes); targets.len()];
    // Per target, the probe it fell behind at: it never showed within `cap`, and the target is
    // polled no more.
    let mut behind: Vec<Option<usize>> = vec![None; targets.len()];
    for i in 0..probes {
        if behind.iter().all(Option::is_some) {
            break;
        }
        let id = (base + i) as i64;
        let t0 = Instant::now();
        a.exec_drop(format!("INSERT INTO {table} (id) VALUES (?)"), (id,))
            .await
            .expect("insert");
        let polls = conns.iter_mut().zip(&behind).map(|(c, b)| {
            let select = select.clone();
            let skip = b.is_some();
            async move {
                while !skip && t0.elapsed() < cap {
                    let seen: Option<i64> = c.exec_first(&select, (id,)).await.expect("poll");
                    if seen.is_some() {
                        return Some(t0.elapsed().as_secs_f64() * 1000.0);
                    }
                }
                None
            }
        });
        for (n, ms) in futures_util::future::join_all(polls)
            .await
            .into_iter()
            .enumerate()
        {
            match ms {
                Some(ms) => lags[n].push(ms),
                None if behind[n].is_none() => behind[n] = Some(i),
                None => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (((name, _), l), behind) in targets.iter().zip(lags).zip(behind) {
        if let Some(i) = behind {
            println!(
                "lag {label} {name}: fell behind: probe {i} was not visible within {} s",
                cap.as_secs()
            );
            continue;
        }
        let tenth = (l.len() / 10).max(1);
        let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
        let (first, last) = (mean(&l[..tenth]), mean(&l[l.len() - tenth..]));
        let mut sorted = l.clone();
        sorted.sort_by(f64::total_cmp);
        println!(
            "lag {label} {name}: {probes} probes, p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms; mean of the first tenth {first:.1} ms, of the last tenth {last:.1} ms",
            percentile(&sorted, 0.5),
            percentile(&sorted, 0.9),
            percentile(&sorted, 0.99),
            sorted[sorted.len() - 1]
        );
    }
}
