//! Keeping verify light on production servers: a load limit on a global status counter of
//! every center (`--max-load Threads_running=25`, checked before each chunk; verify waits while
//! any center is above it), and a cap on rows compared per second (`--max-rows-per-sec`,
//! enforced by pausing after a chunk until the average rate is back under the cap).

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use crate::centers::Centers;
use crate::error::VerifyError;

/// How often a center above the load limit is checked again.
pub const LOAD_POLL: Duration = Duration::from_millis(250);

/// A `--max-load` limit: a global status variable and the most it may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaxLoad {
    /// The status variable (`Threads_running`).
    pub variable: String,
    /// The limit.
    pub limit: u64,
}

impl std::str::FromStr for MaxLoad {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("--max-load {s:?}: expected VARIABLE=NUMBER, e.g. Threads_running=25");
        let (var, n) = s.split_once('=').ok_or_else(bad)?;
        let var = var.trim();
        if var.is_empty() || !var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(bad());
        }
        let limit = n.trim().parse::<u64>().map_err(|_| bad())?;
        Ok(MaxLoad {
            variable: var.to_string(),
            limit,
        })
    }
}

/// The throttle of one run.
#[derive(Debug)]
pub struct Throttle {
    max_load: Option<MaxLoad>,
    max_rows_per_sec: Option<u64>,
    started: Instant,
    rows: u64,
    /// Time spent waiting for load or rate, for the report.
    pub waited: Duration,
}

impl Throttle {
    /// A throttle with these limits.
    pub fn new(max_load: Option<MaxLoad>, max_rows_per_sec: Option<u64>) -> Throttle {
        Throttle {
            max_load,
            max_rows_per_sec,
            started: Instant::now(),
            rows: 0,
            waited: Duration::ZERO,
        }
    }

    /// Waits until every center is under the load limit. `note` is told (once per wait) which
    /// center is above it.
    pub async fn before_chunk(
        &mut self,
        centers: &mut Centers,
        note: &mut dyn FnMut(&str),
    ) -> Result<(), VerifyError> {
        let Some(m) = self.max_load.clone() else {
            return Ok(());
        };
        let start = Instant::now();
        let mut told = false;
        loop {
            let mut over = None;
            for c in centers.list.iter_mut() {
                let name = c.name.clone();
                let row: Option<(String, u64)> = c
                    .conn()
                    .query_first(format!("SHOW GLOBAL STATUS LIKE '{}'", m.variable))
                    .await
                    .map_err(VerifyError::query(&name, "reading the load"))?;
                let Some((_, v)) = row else {
                    return Err(VerifyError::Input(format!(
                        "--max-load: center {name} has no global status variable {}",
                        m.variable
                    )));
                };
                if v > m.limit {
                    over = Some((name, v));
                    break;
                }
            }
            match over {
                None => break,
                Some((name, v)) => {
                    if !told {
                        note(&format!(
                            "center {name}: {} = {v} > {}; waiting",
                            m.variable, m.limit
                        ));
                        told = true;
                    }
                    tokio::time::sleep(LOAD_POLL).await;
                }
            }
        }
        self.waited += start.elapsed();
        Ok(())
    }

    /// Counts `rows` compared, and pauses while the average rate is above the cap.
    pub async fn after_chunk(&mut self, rows: u64) {
        self.rows += rows;
        let Some(cap) = self.max_rows_per_sec.filter(|c| *c > 0) else {
            return;
        };
        let due = Duration::from_secs_f64(self.rows as f64 / cap as f64);
        let spent = self.started.elapsed();
        if due > spent {
            self.waited += due - spent;
            tokio::time::sleep(due - spent).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_load_parses() {
        assert_eq!(
            "Threads_running=25".parse::<MaxLoad>(),
            Ok(MaxLoad {
                variable: "Threads_running".into(),
                limit: 25
            })
        );
        assert!("Threads_running".parse::<MaxLoad>().is_err());
        assert!("x';drop=1".parse::<MaxLoad>().is_err());
        assert!("Threads_running=many".parse::<MaxLoad>().is_err());
    }
}
