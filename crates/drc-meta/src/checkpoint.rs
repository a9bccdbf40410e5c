//! Checkpoints (`<meta>.checkpoint`): per link and applier worker, the last batch committed and
//! its start and end source positions, written in the apply transaction of the changes it
//! covers (design invariant 2), and where a link resumes from them ([`recovery`]).

use std::fmt::Write as _;

use drc_core::position::Position;
use drc_core::sqltext::quoted;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::{table, MetaError};

/// One worker's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Applier worker index.
    pub worker: u32,
    /// Sequence number of the last batch this worker committed.
    pub batch: u64,
    /// Worker count when that batch was planned.
    pub workers: u32,
    /// The batch's start position.
    pub start: Position,
    /// The batch's end position.
    pub end: Position,
}

/// Reads every worker checkpoint of `link`.
pub async fn load_checkpoints(
    conn: &mut Conn,
    meta: &str,
    link: &str,
) -> Result<Vec<Checkpoint>, MetaError> {
    let mut q =
        String::from("SELECT `worker`, `batch`, `workers`, `start_position`, `end_position` FROM ");
    table(&mut q, meta, "checkpoint");
    q.push_str(" WHERE `link` = ");
    quoted(&mut q, link);
    q.push_str(" ORDER BY `worker`");
    let rows: Vec<(u32, u64, u32, String, String)> = conn
        .query(q)
        .await
        .map_err(MetaError::query("reading checkpoints"))?;
    rows.into_iter()
        .map(|(worker, batch, workers, start, end)| {
            let parse = |s: &str| {
                s.parse::<Position>().map_err(|e| {
                    MetaError::Corrupt(format!(
                        "link {link} worker {worker}: stored position {s:?} does not parse: {e}"
                    ))
                })
            };
            Ok(Checkpoint {
                worker,
                batch,
                workers,
                start: parse(&start)?,
                end: parse(&end)?,
            })
        })
        .collect()
}

/// The statement that records a worker's checkpoint (run inside the apply transaction).
pub fn checkpoint_statement(meta: &str, link: &str, c: &Checkpoint) -> String {
    stamped_checkpoint_statement(meta, link, c, None)
}

/// [`checkpoint_statement`] that also stamps the row with the fence `term` the transaction
/// writes under (`drc_apply::fence`), in the same statement rather than a second one.
pub fn stamped_checkpoint_statement(
    meta: &str,
    link: &str,
    c: &Checkpoint,
    term: Option<u64>,
) -> String {
    let mut q = String::from("INSERT INTO ");
    table(&mut q, meta, "checkpoint");
    q.push_str(" (`link`, `worker`, `batch`, `workers`, `start_position`, `end_position`");
    if term.is_some() {
        q.push_str(", `term`");
    }
    q.push_str(") VALUES (");
    quoted(&mut q, link);
    let _ = write!(q, ", {}, {}, {}, ", c.worker, c.batch, c.workers);
    quoted(&mut q, &c.start.to_string());
    q.push_str(", ");
    quoted(&mut q, &c.end.to_string());
    if let Some(term) = term {
        let _ = write!(q, ", {term}");
    }
    q.push_str(") ON DUPLICATE KEY UPDATE `batch` = VALUES(`batch`), `workers` = VALUES(`workers`), \
                `start_position` = VALUES(`start_position`), `end_position` = VALUES(`end_position`)");
    if term.is_some() {
        q.push_str(", `term` = VALUES(`term`)");
    }
    q
}

/// Where a link resumes after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// No checkpoint yet: the link starts fresh.
    Fresh,
    /// Every worker finished the last batch: resume after it.
    Clean {
        /// Last batch sequence number.
        batch: u64,
        /// Resume here.
        position: Position,
    },
    /// The last batch was committed by some workers only (a crash between their commits): it
    /// is re-formed exactly (`start`..`end`), re-planned for `workers`, and applied by the
    /// workers not in `done`.
    Partial {
        /// Batch sequence number.
        batch: u64,
        /// Its start.
        start: Position,
        /// Its end.
        end: Position,
        /// Worker count it was planned for.
        workers: u32,
        /// Workers that committed it.
        done: Vec<u32>,
    },
}

/// Decides how to resume from the stored checkpoints.
///
/// Batches are applied strictly one after another, so every batch before the newest one was
/// finished by all workers; only the newest can be partial. A worker whose row is older than the
/// newest batch either had nothing to do in it or crashed before committing; re-planning the
/// batch tells which, and applying its (possibly empty) share again is exact.
pub fn recovery(rows: &[Checkpoint]) -> Recovery {
    let Some(newest) = rows.iter().max_by_key(|c| c.batch) else {
        return Recovery::Fresh;
    };
    let done: Vec<u32> = rows
        .iter()
        .filter(|c| c.batch == newest.batch)
        .map(|c| c.worker)
        .collect();
    if newest.workers <= 1 || done.len() as u32 >= newest.workers || newest.start == newest.end {
        return Recovery::Clean {
            batch: newest.batch,
            position: newest.end.clone(),
        };
    }
    Recovery::Partial {
        batch: newest.batch,
        start: newest.start.clone(),
        end: newest.end.clone(),
        workers: newest.workers,
        done,
    }
}

/// The statement that deletes every worker checkpoint of `link` (before `drc bootstrap` writes
/// the link's new starting point: a stale row of a higher batch would win [`recovery`]).
pub fn clear_checkpoints_statement(meta: &str, link: &str) -> String {
    let mut q = String::from("DELETE FROM ");
    table(&mut q, meta, "checkpoint");
    q.push_str(" WHERE `link` = ");
    quoted(&mut q, link);
    q
}
