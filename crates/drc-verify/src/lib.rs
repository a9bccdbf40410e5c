//! `drc verify` and `drc repair`: prove online that every center holds the same rows of every
//! replicated table, and rewrite the rows that differ.
//!
//! Protocol of a verify (docs/verify.md has the operator's view):
//! 1. Every center is reached; the replicated tables of the first center (narrowed by
//!    `--tables`) are compared with every other center's definitions ([`tables`]); tables whose
//!    definitions differ are reported, not compared.
//! 2. Each table is walked in primary-key chunks: the first center gives each chunk's upper
//!    key (`n` rows after the lower one); the last chunk is open above. `n` adapts after every
//!    chunk so that the slowest center's checksum takes about `chunk_time` (default 50 ms).
//! 3. Each chunk is compared by checksums computed in every server at once ([`sql`]); a chunk
//!    that differs is told apart from changes in flight through the links' checkpoints and
//!    narrowed down to keys ([`chunk`]); differing keys are read whole from every center for
//!    the report ([`report`]).
//! 4. Before each chunk the throttle waits while a center is above `--max-load`; after it,
//!    while the rows/s cap is exceeded ([`throttle`]).
//!
//! Verify only reads; it holds no snapshot and no lock beyond one statement. Repair
//! ([`repair`]) runs a verify, picks a winner per confirmed differing key, writes it in the
//! losing centers with drc's origin tag and a log row in their meta database, and compares the
//! repaired chunks again.

pub mod catchup;
pub mod centers;
pub mod chunk;
pub mod error;
pub mod progress;
pub mod repair;
pub mod report;
pub mod sql;
pub mod tables;
pub mod throttle;
pub mod values;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use drc_config::{Config, TablePattern};

use centers::Centers;
pub use error::VerifyError;
use progress::{Display, Progress};
pub use report::Report;
use report::{Detail, Difference, SchemaDifference, TableReport};
use sql::Range;
use tables::Table;
pub use throttle::MaxLoad;
use throttle::Throttle;

/// What to compare and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// Only tables matching one of these (`db.table` globs); empty: every replicated table.
    pub tables: Vec<TablePattern>,
    /// The time one chunk's checksum should take in the slowest center.
    pub chunk_time: Duration,
    /// Rows in the first chunk of each table.
    pub chunk_rows: u64,
    /// The most rows in one chunk.
    pub max_chunk_rows: u64,
    /// Listings of a differing chunk after the first ([`chunk`]).
    pub tries: u32,
    /// How long to wait for the links to catch up past a read.
    pub catch_up_timeout: Duration,
    /// Wait while a center's status variable is above this.
    pub max_load: Option<MaxLoad>,
    /// Compare at most this many rows per second.
    pub max_rows_per_sec: Option<u64>,
    /// Progress display.
    pub display: Display,
    /// Seconds between plain progress lines.
    pub interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tables: Vec::new(),
            chunk_time: Duration::from_millis(50),
            chunk_rows: 1000,
            max_chunk_rows: 1_000_000,
            tries: 5,
            catch_up_timeout: Duration::from_secs(30),
            max_load: None,
            max_rows_per_sec: None,
            display: Display::Auto,
            interval: Duration::from_secs(5),
        }
    }
}

/// Connections and tables of one run (shared by verify and repair).
pub struct Session {
    /// Every center.
    pub centers: Centers,
    /// The comparable tables.
    pub tables: Vec<Table>,
    schema_differences: Vec<SchemaDifference>,
    /// Links known to lag (not waited for again).
    lagging: Vec<String>,
}

impl Session {
    /// Connects to every center and discovers the tables.
    pub async fn open(config: &Config, options: &Options) -> Result<Session, VerifyError> {
        if config.centers.len() < 2 {
            return Err(VerifyError::Input(
                "the topology has fewer than two centers: there is nothing to compare".into(),
            ));
        }
        let mut centers = Centers::open(config).await?;
        let names = centers.names();
        let mut conns = Vec::new();
        for c in centers.list.iter_mut() {
            conns.push(
                drc_mysql::connect(&c.url, centers::CONNECT_TIMEOUT)
                    .await
                    .map_err(VerifyError::server(&c.name))?,
            );
        }
        let found = tables::discover(config, &names, &mut conns, &options.tables).await?;
        if found.tables.is_empty() && found.schema_differences.is_empty() {
            return Err(VerifyError::Input(if options.tables.is_empty() {
                "no replicated table found: check [replication] databases and include_tables".into()
            } else {
                "no replicated table matches --tables".into()
            }));
        }
        Ok(Session {
            centers,
            tables: found.tables,
            schema_differences: found
                .schema_differences
                .into_iter()
                .map(|(table, detail)| SchemaDifference { table, detail })
                .collect(),
            lagging: Vec::new(),
        })
    }

    fn settings(options: &Options) -> chunk::Settings {
        chunk::Settings {
            tries: options.tries,
            catch_up_timeout: options.catch_up_timeout,
        }
    }

    /// Compares `range` of table `ti` and turns its differences into report entries.
    pub(crate) async fn compare_range(
        &mut self,
        ti: usize,
        range: &Range,
        options: &Options,
    ) -> Result<(chunk::Outcome, Vec<Difference>), VerifyError> {
        let t = self.tables[ti].clone();
        let o = chunk::compare(
            &mut self.centers,
            &t,
            range,
            &Self::settings(options),
            &self.lagging,
        )
        .await?;
        for l in &o.lagging {
            if !self.lagging.contains(l) {
                self.lagging.push(l.clone());
            }
        }
        let mut out = Vec::new();
        if o.diffs.is_empty() {
            return Ok((o, out));
        }
        let keys: Vec<sql::Key> = o.diffs.iter().map(|d| d.key.clone()).collect();
        let vals = chunk::values(&mut self.centers, &t, &keys).await?;
        let names = self.centers.names();
        for d in &o.diffs {
            let values = vals
                .get(&d.key)
                .cloned()
                .unwrap_or_else(|| vec![None; names.len()]);
            let rows: BTreeMap<String, serde_json::Value> = names
                .iter()
                .zip(&values)
                .map(|(n, v)| {
                    (
                        n.clone(),
                        v.as_ref()
                            .map(|v| values::row_json(&t, v))
                            .unwrap_or(serde_json::Value::Null),
                    )
                })
                .collect();
            out.push(Difference {
                table: t.name(),
                key: values::key_json(&t, &d.key),
                centers: report::odd_ones(&names, &d.hashes),
                rows,
                confirmed: d.confirmed,
                detail: Detail {
                    table: ti,
                    key: d.key.clone(),
                    range: range.clone(),
                    values,
                },
            });
        }
        Ok((o, out))
    }

    /// Compares every table.
    pub async fn verify(&mut self, options: &Options) -> Result<Report, VerifyError> {
        let started = Instant::now();
        let total: u64 = self.tables.iter().map(|t| t.def.estimated_rows).sum();
        let mut progress =
            Progress::new(options.display, self.tables.len(), total, options.interval);
        let mut throttle = Throttle::new(options.max_load.clone(), options.max_rows_per_sec);
        let mut report = Report {
            centers: self.centers.names(),
            tables: Vec::new(),
            schema_differences: self.schema_differences.clone(),
            differences: Vec::new(),
            warnings: Vec::new(),
            rows: 0,
            chunks: 0,
            rechecked_chunks: 0,
            seconds: 0.0,
            rows_per_sec: 0.0,
        };
        for ti in 0..self.tables.len() {
            let t = self.tables[ti].clone();
            progress.table(&t.name());
            let table_started = Instant::now();
            let mut tr = TableReport {
                table: t.name(),
                rows: 0,
                chunks: 0,
                differing_keys: 0,
                seconds: 0.0,
                rows_per_sec: 0.0,
            };
            // The next chunk's upper key is read on a session of its own while the current
            // chunk is compared (the boundary scan overlaps the checksums).
            let mut bounds = self.centers.list[0].reopen().await?;
            let mut n = options.chunk_rows.max(1);
            let mut lower: Option<sql::Key> = None;
            let mut upper = boundary(&mut bounds, &t, None, n).await?;
            loop {
                throttle
                    .before_chunk(&mut self.centers, &mut |m| progress.note(m))
                    .await?;
                let range = Range {
                    lower: lower.take(),
                    upper: upper.clone(),
                };
                let next = async {
                    match &upper {
                        Some(u) => boundary(&mut bounds, &t, Some(u), n).await,
                        None => Ok(None),
                    }
                };
                let (compared, next) =
                    futures_util::join!(self.compare_range(ti, &range, options), next);
                let (o, diffs) = compared?;
                let next = next?;
                if !o.waited && o.slowest > Duration::ZERO {
                    // Aim at chunk_time, moving at most 2x per chunk.
                    let scaled = (n as f64 * options.chunk_time.as_secs_f64()
                        / o.slowest.as_secs_f64()) as u64;
                    n = scaled
                        .clamp(n / 2, n.saturating_mul(2))
                        .clamp(100, options.max_chunk_rows.max(100));
                }
                tr.rows += o.rows;
                tr.chunks += 1;
                report.rechecked_chunks += u64::from(o.waited);
                tr.differing_keys += diffs.len() as u64;
                report.differences.extend(diffs);
                progress.chunk(o.rows);
                throttle.after_chunk(o.rows).await;
                match upper {
                    Some(u) => {
                        lower = Some(u);
                        upper = next;
                    }
                    None => break,
                }
            }
            progress.table_done();
            tr.seconds = table_started.elapsed().as_secs_f64();
            tr.rows_per_sec = tr.rows as f64 / tr.seconds.max(0.001);
            report.rows += tr.rows;
            report.chunks += tr.chunks;
            report.tables.push(tr);
        }
        progress.finish();
        report.seconds = started.elapsed().as_secs_f64();
        report.rows_per_sec = report.rows as f64 / report.seconds.max(0.001);
        report.warnings = self.lag_warnings(options);
        Ok(report)
    }

    fn lag_warnings(&self, options: &Options) -> Vec<String> {
        self.lagging
            .iter()
            .map(|l| {
                format!(
                    "link {l} has no checkpoint or did not catch up within {} s: differences seen while it lagged are unconfirmed (check drc status)",
                    options.catch_up_timeout.as_secs()
                )
            })
            .collect()
    }
}

/// The primary key `n` rows after `lower` in the reference center (`None`: fewer remain).
async fn boundary(
    c: &mut centers::Center,
    t: &Table,
    lower: Option<&sql::Key>,
    n: u64,
) -> Result<Option<sql::Key>, VerifyError> {
    let q = sql::boundary(t, lower, n)?;
    let what = format!("reading a chunk boundary of {}", t.name());
    let rows = c.rows(&q, &what).await?;
    Ok(rows.first().map(|r| chunk::key_of(t, r)))
}

/// Runs `drc verify`.
pub async fn verify(config: &Config, options: &Options) -> Result<Report, VerifyError> {
    let mut s = Session::open(config, options).await?;
    s.verify(options).await
}
