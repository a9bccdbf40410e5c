//! The loopback and table filter of a link S -> T: which changes read from S's binlog are
//! applied to T.
//!
//! - **Origin** (no loops): with the `server_id` strategy, only transactions whose binlog header
//!   names S's own `server_id` are kept: drc's appliers write under the origin's id, so
//!   everything drc applied in S carries another center's id and is dropped. With the `marker`
//!   strategy, drc's appliers write a row in `<meta>.origin` as the *first* statement of every
//!   transaction; a transaction whose first rows touch that table is dropped whole.
//! - **Tables**: a change is kept when its table is replicated (databases, include/exclude
//!   patterns), plus `<meta>.heartbeat`, which is replicated on purpose so that each center can
//!   measure its lag behind each peer. Other `<meta>` tables (checkpoints, markers, canary) are
//!   local state and never leave their center.
//!
//! Transaction boundaries always pass (a dropped transaction still advances the position).
//! DDL passes [`LinkFilter::filter`] unchanged; [`LinkFilter::is_loopback_ddl`] tells the
//! batcher which DDL drc itself applied (same origin rule as transactions).

use drc_config::Replication;
use drc_core::change::{DdlEvent, RowChange, SourceEvent};

/// How the filter recognises transactions that drc itself applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Keep only transactions whose header `server_id` is this (the source center's own id).
    ServerId(u32),
    /// Drop transactions whose first rows touch `<meta>.origin`.
    Marker,
    /// Both rules (`loopback = "auto"`: each center's daemon picks its own strategy, so a
    /// reader must recognise either).
    Both(u32),
}

/// The name of the heartbeat table in the meta database.
pub const HEARTBEAT_TABLE: &str = "heartbeat";
/// The name of the origin-marker table in the meta database.
pub const ORIGIN_TABLE: &str = "origin";

/// Filters one link's source events. See the module docs.
#[derive(Debug, Clone)]
pub struct LinkFilter {
    origin: Origin,
    replication: Replication,
    /// The current transaction is drc's own (dropped).
    dropping: bool,
    /// No rows of the current transaction seen yet.
    first_rows: bool,
}

impl LinkFilter {
    /// A filter for a link whose source is recognised by `origin`.
    pub fn new(origin: Origin, replication: Replication) -> Self {
        LinkFilter {
            origin,
            replication,
            dropping: false,
            first_rows: true,
        }
    }

    fn keeps_table(&self, c: &RowChange) -> bool {
        let (db, table) = (&*c.table.database, &*c.table.table);
        if db == self.replication.meta_database {
            return table == HEARTBEAT_TABLE;
        }
        self.replication.replicates(db, table)
    }

    /// Filters one event: `Begin`/`Commit`/`Ddl` pass unchanged; `Rows` keep only the changes to
    /// apply (possibly none).
    pub fn filter(&mut self, ev: SourceEvent) -> SourceEvent {
        match ev {
            SourceEvent::Begin(b) => {
                self.first_rows = true;
                self.dropping = match self.origin {
                    Origin::ServerId(id) | Origin::Both(id) => b.server_id != id,
                    Origin::Marker => false,
                };
                SourceEvent::Begin(b)
            }
            SourceEvent::Rows(rows) => {
                if self.first_rows && !self.dropping && !matches!(self.origin, Origin::ServerId(_))
                {
                    let meta = &self.replication.meta_database;
                    self.dropping = rows.iter().any(|c| {
                        &*c.table.database == meta.as_str() && &*c.table.table == ORIGIN_TABLE
                    });
                }
                self.first_rows = false;
                if self.dropping {
                    return SourceEvent::Rows(Vec::new());
                }
                let kept = if rows.iter().all(|c| self.keeps_table(c)) {
                    rows
                } else {
                    rows.into_iter().filter(|c| self.keeps_table(c)).collect()
                };
                SourceEvent::Rows(kept)
            }
            other => other,
        }
    }

    /// True when the last transaction seen was dropped as drc's own.
    pub fn dropped_current(&self) -> bool {
        self.dropping
    }

    /// True when `d` is a DDL statement drc applied in the source (a link into S replicated it):
    /// with the `server_id` rule, its header names another server, exactly as for `Begin`. The
    /// marker rule cannot recognise DDL (no marker row), which is why `[ddl] mode =
    /// "replicate"` needs the `server_id` tag.
    pub fn is_loopback_ddl(&self, d: &DdlEvent) -> bool {
        match self.origin {
            Origin::ServerId(id) | Origin::Both(id) => d.server_id != id,
            Origin::Marker => false,
        }
    }

    /// The replication rules this filter applies.
    pub fn replication(&self) -> &Replication {
        &self.replication
    }
}
