//! Batching: many source transactions become one target transaction per worker.
//!
//! A batch always ends at a transaction boundary (a `Commit` or a `Ddl`), so its end is a
//! position the source can resume from. It closes when it holds `batch_rows` changes, or when
//! the source has been quiet for `batch_delay` after at least one complete transaction; a batch
//! that only moves the position (dropped or filtered transactions) closes after
//! [`IDLE_CHECKPOINT`], so the stored position keeps up without a write per transaction.
//!
//! Known limit: a single source transaction is never split, so one very large transaction is
//! held in memory whole before it is applied.

use std::time::{Duration, Instant};

use drc_core::change::{RowChange, SourceEvent};
use drc_core::position::Position;
use drc_source::SourceError;
use tokio::sync::mpsc;
use tracing::info;

use crate::filter::LinkFilter;
use crate::origin::{filter_event, OriginLookup};
use crate::LinkError;

/// How long a batch without changes may wait before it is closed to advance the checkpoint.
pub const IDLE_CHECKPOINT: Duration = Duration::from_secs(1);

/// A batch of changes between two source positions.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Position before the first transaction.
    pub start: Position,
    /// Position after the last transaction.
    pub end: Position,
    /// The changes to apply, in source order.
    pub changes: Vec<RowChange>,
    /// Source transactions covered (including dropped ones).
    pub transactions: u64,
    /// Source transactions dropped as drc's own (loopback).
    pub loopback_dropped: u64,
}

/// Forms batches from a link's source events.
pub struct Batcher {
    rx: mpsc::Receiver<Result<SourceEvent, SourceError>>,
    filter: LinkFilter,
    batch_rows: usize,
    batch_delay: Duration,
    lookup: Option<OriginLookup>,
}

impl Batcher {
    /// A batcher reading source events from `rx`.
    pub fn new(
        rx: mpsc::Receiver<Result<SourceEvent, SourceError>>,
        filter: LinkFilter,
        batch_rows: usize,
        batch_delay: Duration,
    ) -> Self {
        Batcher {
            rx,
            filter,
            batch_rows,
            batch_delay,
            lookup: None,
        }
    }

    /// Looks up `server_id`s the filter does not know in the source ([`crate::origin`]);
    /// without it, such an id stops the batcher with an error.
    pub fn with_lookup(mut self, lookup: OriginLookup) -> Self {
        self.lookup = Some(lookup);
        self
    }

    async fn recv(&mut self) -> Result<SourceEvent, LinkError> {
        match self.rx.recv().await {
            Some(Ok(ev)) => Ok(ev),
            Some(Err(e)) => Err(LinkError::Source(e)),
            None => Err(LinkError::SourceStopped),
        }
    }

    /// The next batch starting at `start`. With `until`, the batch ends exactly at that
    /// position (crash recovery re-forms a batch that was partly applied) and no other rule
    /// closes it.
    pub async fn next(
        &mut self,
        start: Position,
        until: Option<&Position>,
    ) -> Result<Batch, LinkError> {
        let mut b = Batch {
            end: start.clone(),
            start,
            changes: Vec::new(),
            transactions: 0,
            loopback_dropped: 0,
        };
        let began = Instant::now();
        let mut in_txn = false;
        loop {
            let ev = if until.is_none() && !in_txn && b.transactions > 0 {
                let wait = if b.changes.is_empty() {
                    IDLE_CHECKPOINT.saturating_sub(began.elapsed())
                } else {
                    self.batch_delay
                };
                match tokio::time::timeout(wait, self.recv()).await {
                    Ok(ev) => ev?,
                    Err(_) => return Ok(b),
                }
            } else {
                self.recv().await?
            };
            let ev = filter_event(&mut self.filter, self.lookup.as_mut(), ev, &b.end).await?;
            let boundary = match ev {
                SourceEvent::Begin(_) => {
                    in_txn = true;
                    None
                }
                SourceEvent::Rows(rows) => {
                    b.changes.extend(rows);
                    None
                }
                SourceEvent::Commit(c) => {
                    in_txn = false;
                    b.transactions += 1;
                    if self.filter.dropped_current() {
                        b.loopback_dropped += 1;
                    }
                    Some(c.position)
                }
                SourceEvent::Ddl(d) => {
                    info!(statement = %d.statement, database = %d.database, kind = ?d.ddl.kind,
                        "DDL in the source binlog (not replicated; schema cache refreshed)");
                    b.transactions += 1;
                    Some(d.position)
                }
            };
            if let Some(end) = boundary {
                b.end = end;
                match until {
                    Some(u) if *u == b.end => return Ok(b),
                    Some(_) => {}
                    None if b.changes.len() >= self.batch_rows => return Ok(b),
                    None => {}
                }
            }
        }
    }
}
