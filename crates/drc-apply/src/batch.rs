//! Batching: many source transactions become one target transaction per worker.
//!
//! A batch always ends at a transaction boundary (a `Commit` or a `Ddl`), so its end is a
//! position the source can resume from. A DDL that is not simply passed ([`crate::ddl`]) ends
//! the batch before it and then forms a batch of its own ([`Batch::ddl`]), so that everything
//! before it is applied and checkpointed before the link decides about it. DDL that drc itself
//! applied in the source (loopback, [`LinkFilter::is_loopback_ddl`]) and DDL that is passed only
//! move the position. It closes when it holds `batch_rows` changes, or when
//! the source has been quiet for `batch_delay` after at least one complete transaction (with the
//! default 0: as soon as no event is ready, so an idle link applies each transaction at once
//! and batches grow under load with what arrives while the previous one is applied; while the
//! reader is catching up on a backlog, it had half its channel filled, and the batch waits one
//! timer tick for the next transaction instead of closing small); a batch
//! that only moves the position (dropped or filtered transactions) closes after
//! [`IDLE_CHECKPOINT`], so the stored position keeps up without a write per transaction.
//!
//! Memory: a single source transaction is never split, so it is held in memory whole before it
//! is applied. A transaction of more than `[applier] max_transaction_rows` row changes stops the
//! link before any of it is applied ([`LinkError::TransactionTooLarge`], naming its GTID and
//! the position before it), so a batch never holds more than `batch_rows +
//! max_transaction_rows` changes. The operator raises the bound (and gives the daemon the
//! memory) to let such a transaction pass (docs/operations.md, "Oversized rows and
//! transactions").
//!
//! Skips: a source transaction whose GTID an operator listed (`drc link skip`,
//! [`Batcher::set_skips`]) is passed without applying it, whatever its size; its rows are kept
//! (as JSON, the first [`SKIP_CONTENT_ROWS`]) in [`Batch::skipped`] for the record the link
//! writes with its checkpoint.
//!
//! Idle: with no event at all for [`IDLE_RETURN`], [`Batcher::next`] returns an empty batch
//! (no transaction), so that the link can look at its control (pause, skips) while the source
//! is quiet; such a batch is not applied.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use drc_core::change::DdlEvent;
use drc_core::change::{RowChange, SourceEvent};
use drc_core::position::Position;
use drc_source::SourceError;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::ddl::{decide, Action, Decision};
use crate::filter::LinkFilter;
use crate::origin::{filter_event, OriginLookup};
use crate::LinkError;

/// How long a batch without changes may wait before it is closed to advance the checkpoint.
pub const IDLE_CHECKPOINT: Duration = Duration::from_secs(1);

/// How long [`Batcher::next`] waits for a first event before it returns an empty batch.
pub const IDLE_RETURN: Duration = Duration::from_secs(1);

/// Rows of a skipped transaction kept in its record (the row count is always exact).
pub const SKIP_CONTENT_ROWS: usize = 1000;

/// Bytes of JSON of a skipped transaction kept in its record (rows after it are left out).
pub const SKIP_CONTENT_BYTES: usize = 1 << 20;

/// A source transaction passed without applying it, on an operator's request.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// Its GTID, as the operator named it.
    pub gtid: String,
    /// Its row changes (of the tables the link replicates).
    pub rows: u64,
    /// The first [`SKIP_CONTENT_ROWS`] of them (at most about [`SKIP_CONTENT_BYTES`]) as a
    /// JSON array of `{table, kind, before, after}`.
    pub content: String,
}

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
    /// A DDL statement to stop at or replicate: then the batch holds only it (no changes,
    /// one transaction) and `end` is the position after it.
    pub ddl: Option<(DdlEvent, Decision)>,
    /// Transactions passed on an operator's request ([`Batcher::set_skips`]).
    pub skipped: Vec<Skipped>,
    /// When the batch's first source event was received (`drc_apply_latency_seconds` counts
    /// from here); `None` for a batch that received nothing.
    pub received: Option<Instant>,
}

impl Batch {
    /// True when the batch covers no transaction (an idle return): nothing to apply.
    pub fn is_idle(&self) -> bool {
        self.transactions == 0 && self.ddl.is_none()
    }
}

/// Forms batches from a link's source events.
pub struct Batcher {
    rx: mpsc::Receiver<Result<SourceEvent, SourceError>>,
    filter: LinkFilter,
    batch_rows: usize,
    batch_delay: Duration,
    lookup: Option<OriginLookup>,
    ddl: drc_config::Ddl,
    /// A DDL met while a batch was open: the next batch.
    pending: Option<(DdlEvent, Decision)>,
    /// The link's name (for errors).
    link: String,
    /// At most this many row changes per source transaction.
    max_transaction_rows: usize,
    /// GTIDs of transactions to pass without applying them.
    skips: HashSet<String>,
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
            ddl: drc_config::Ddl::default(),
            pending: None,
            link: String::new(),
            max_transaction_rows: usize::MAX,
            skips: HashSet::new(),
        }
    }

    /// Passes, from now on, the source transactions with these GTIDs without applying them.
    pub fn set_skips(&mut self, gtids: HashSet<String>) {
        self.skips = gtids;
    }

    /// Stops at a source transaction of more than `rows` row changes (of the tables the link
    /// replicates) with [`LinkError::TransactionTooLarge`] naming `link`.
    pub fn with_max_transaction_rows(mut self, link: &str, rows: usize) -> Self {
        self.link = link.to_string();
        self.max_transaction_rows = rows;
        self
    }

    /// Decides about DDL with `policy` (default: [`drc_config::Ddl::default`], stop).
    pub fn with_ddl(mut self, policy: drc_config::Ddl) -> Self {
        self.ddl = policy;
        self
    }

    /// Looks up `server_id`s the filter does not know in the source ([`crate::origin`]);
    /// without it, such an id stops the batcher with an error.
    pub fn with_lookup(mut self, lookup: OriginLookup) -> Self {
        self.lookup = Some(lookup);
        self
    }

    /// Whether `d` was applied by drc; a DDL under an unknown `server_id` that would not just
    /// pass is looked up first ([`crate::origin`]).
    async fn is_loopback_ddl(&mut self, d: &DdlEvent) -> Result<bool, LinkError> {
        if let Some(id) = self.filter.unknown_ddl_origin(d) {
            let decision = decide(d, self.filter.replication(), &self.ddl);
            if matches!(decision.action, Action::Pass(_)) {
                return Ok(false);
            }
            match self.lookup.as_mut() {
                Some(l) => l.resolve(&mut self.filter, id, &d.position).await?,
                None => {
                    return Err(LinkError::UnknownOrigin {
                        reader: "reader".into(),
                        server_id: id,
                        position: d.position.to_string(),
                        own: "?".into(),
                        tags: "?".into(),
                    })
                }
            }
        }
        Ok(self.filter.is_loopback_ddl(d))
    }

    async fn recv(&mut self) -> Result<SourceEvent, LinkError> {
        match self.rx.recv().await {
            Some(Ok(ev)) => Ok(ev),
            Some(Err(e)) => Err(LinkError::Source(e)),
            None => Err(LinkError::SourceStopped),
        }
    }

    /// The next event if one is ready now (`None` when the reader has none waiting).
    fn ready(&mut self) -> Option<Result<SourceEvent, LinkError>> {
        match self.rx.try_recv() {
            Ok(Ok(ev)) => Some(Ok(ev)),
            Ok(Err(e)) => Some(Err(LinkError::Source(e))),
            Err(mpsc::error::TryRecvError::Empty) => None,
            Err(mpsc::error::TryRecvError::Disconnected) => Some(Err(LinkError::SourceStopped)),
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
            ddl: None,
            skipped: Vec::new(),
            received: None,
        };
        if until.is_none() {
            if let Some((d, decision)) = self.pending.take() {
                b.end = d.position.clone();
                b.transactions = 1;
                b.ddl = Some((d, decision));
                return Ok(b);
            }
        }
        let began = Instant::now();
        let mut in_txn = false;
        // The current transaction: its GTID, the position before it, where its rows start.
        let mut txn: (Option<String>, Position, usize) = (None, b.end.clone(), 0);
        // The current transaction when it is being skipped.
        let mut skipping: Option<Skipped> = None;
        let mut skip_rows: Vec<serde_json::Value> = Vec::new();
        let mut skip_bytes = 0usize;
        // The reader held at least half a channel of events for this batch: it is catching
        // up on a backlog, and an empty channel at a commit means only that it has not decoded
        // the next transaction yet. Such a batch waits `batch_delay` (at least one timer tick)
        // for more; a batch of a reader that keeps up closes as soon as nothing is ready.
        let mut catching_up = false;
        loop {
            let ev = if until.is_none() && !in_txn && b.transactions == 0 {
                // Cancel-safe: nothing of this batch was received yet.
                match tokio::time::timeout(IDLE_RETURN, self.recv()).await {
                    Ok(ev) => ev?,
                    Err(_) => return Ok(b),
                }
            } else if until.is_none() && !in_txn && b.transactions > 0 {
                let wait = if b.changes.is_empty() {
                    IDLE_CHECKPOINT.saturating_sub(began.elapsed())
                } else {
                    self.batch_delay
                };
                if wait.is_zero() && !catching_up {
                    // Not a timer of zero: tokio's timers tick in milliseconds, so a zero
                    // timeout over a pending receive would hold the batch up to a millisecond.
                    match self.ready() {
                        Some(ev) => ev?,
                        None => return Ok(b),
                    }
                } else {
                    match tokio::time::timeout(wait, self.recv()).await {
                        Ok(ev) => ev?,
                        Err(_) => return Ok(b),
                    }
                }
            } else {
                self.recv().await?
            };
            b.received.get_or_insert_with(Instant::now);
            catching_up |= self.rx.len() * 2 >= self.rx.max_capacity();
            let ev = filter_event(&mut self.filter, self.lookup.as_mut(), ev, &b.end).await?;
            let boundary = match ev {
                SourceEvent::Begin(begin) => {
                    in_txn = true;
                    txn = (
                        begin.gtid.as_ref().map(|g| g.to_string()),
                        b.end.clone(),
                        b.changes.len(),
                    );
                    skipping =
                        txn.0
                            .as_ref()
                            .filter(|g| self.skips.contains(*g))
                            .map(|g| Skipped {
                                gtid: g.clone(),
                                rows: 0,
                                content: String::new(),
                            });
                    skip_rows.clear();
                    skip_bytes = 0;
                    None
                }
                SourceEvent::Rows(rows) if skipping.is_some() => {
                    if let Some(s) = skipping.as_mut() {
                        s.rows += rows.len() as u64;
                    }
                    for r in rows.iter() {
                        if skip_rows.len() >= SKIP_CONTENT_ROWS || skip_bytes >= SKIP_CONTENT_BYTES
                        {
                            break;
                        }
                        let row = serde_json::json!({
                            "table": r.table.qualified_name(),
                            "kind": format!("{:?}", r.kind).to_lowercase(),
                            "before": r.before.as_ref().map(|i| i.to_json(&r.table)),
                            "after": r.after.as_ref().map(|i| i.to_json(&r.table)),
                        });
                        skip_bytes += row.to_string().len();
                        skip_rows.push(row);
                    }
                    None
                }
                SourceEvent::Rows(rows) => {
                    if b.changes.len() - txn.2 + rows.len() > self.max_transaction_rows {
                        return Err(LinkError::TransactionTooLarge {
                            link: self.link.clone(),
                            gtid: txn.0.map(|g| format!("GTID {g} ")).unwrap_or_default(),
                            position: txn.1.to_string(),
                            limit: self.max_transaction_rows,
                        });
                    }
                    b.changes.extend(rows);
                    None
                }
                SourceEvent::Commit(c) => {
                    in_txn = false;
                    b.transactions += 1;
                    if let Some(mut s) = skipping.take() {
                        s.content =
                            serde_json::Value::Array(std::mem::take(&mut skip_rows)).to_string();
                        info!(gtid = %s.gtid, rows = s.rows, "transaction skipped as the operator asked (drc link skip)");
                        self.skips.remove(&s.gtid);
                        b.skipped.push(s);
                    }
                    if self.filter.dropped_current() {
                        b.loopback_dropped += 1;
                    }
                    Some(c.position)
                }
                SourceEvent::Ddl(d) if self.is_loopback_ddl(&d).await? => {
                    debug!(statement = %d.statement, "DDL applied by drc (loopback); dropped");
                    b.transactions += 1;
                    b.loopback_dropped += 1;
                    Some(d.position)
                }
                SourceEvent::Ddl(d) => {
                    let decision = decide(&d, self.filter.replication(), &self.ddl);
                    match &decision.action {
                        Action::Pass(why) => {
                            info!(statement = %d.statement, database = %d.database, kind = ?d.ddl.kind,
                                reason = %why, "DDL in the source binlog passed (nothing drc replicates changes)");
                        }
                        _ if until.is_some() => {
                            // Only a batch formed by a drc that passed every DDL can hold one.
                            warn!(statement = %d.statement, "DDL inside a batch formed by an older drc; passed as it was then");
                        }
                        _ if b.transactions == 0 => {
                            b.end = d.position.clone();
                            b.transactions = 1;
                            b.ddl = Some((d, decision));
                            return Ok(b);
                        }
                        _ => {
                            self.pending = Some((d, decision));
                            return Ok(b);
                        }
                    }
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
