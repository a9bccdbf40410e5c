//! The loopback and table filter of a link S -> T: which changes read from S's binlog are
//! applied to T.
//!
//! - **Origin** (no loops): with the `server_id` strategy, only transactions whose binlog header
//!   names one of S's own `server_id`s are kept: drc's appliers write under the origin's id, so
//!   everything drc applied in S carries another center's id and is dropped. S's own ids are its
//!   current `server_id` and every earlier one the link recorded ([`OwnIds`]): after a failover
//!   or a restart with a new `server_id`, the binlog still holds S's older local writes under
//!   the old id, and they must not be taken for drc's. A transaction is dropped only under an id
//!   that drc's appliers write under in S ([`OriginIds::foreign`], recorded in S before any such
//!   write); an id the filter knows neither way is looked up again, never guessed
//!   ([`crate::origin`]). With the `marker`
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

use drc_config::{Loopback, Replication};
use drc_core::change::{DdlEvent, RowChange, SourceEvent};

/// The `server_id`s under which a source center's own (local) writes appear in its binlog: the
/// server's current id first, then every earlier id recorded for the reader
/// (`<meta>.source_identity`, see [`drc_meta::record_identity`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnIds(Vec<u32>);

impl OwnIds {
    /// The current id and the earlier ones (duplicates are dropped).
    pub fn new(current: u32, earlier: impl IntoIterator<Item = u32>) -> Self {
        let mut ids = vec![current];
        for id in earlier {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        OwnIds(ids)
    }

    /// True when a transaction with header `server_id` is the source's own.
    pub fn contains(&self, server_id: u32) -> bool {
        self.0.contains(&server_id)
    }

    /// Adds an id (the server's id changed while the reader ran).
    pub fn add(&mut self, server_id: u32) {
        if !self.contains(server_id) {
            self.0.push(server_id);
        }
    }

    /// Every id, current first.
    pub fn all(&self) -> &[u32] {
        &self.0
    }
}

impl From<u32> for OwnIds {
    fn from(id: u32) -> Self {
        OwnIds(vec![id])
    }
}

/// What a reader knows of the `server_id`s in its source's binlog: the source's own ids, and
/// the ids drc's appliers write under in the source center (every id recorded there by a link
/// into it, [`crate::origin`]). An id in neither set is *unknown*: the reader looks it up
/// again before it decides ([`crate::origin::filter_event`]), never guesses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginIds {
    /// The source's own ids.
    pub own: OwnIds,
    /// The ids drc tags its writes with in the source center.
    pub foreign: Vec<u32>,
}

impl OriginIds {
    /// Only `own` is known (no tag recorded yet).
    pub fn own(own: impl Into<OwnIds>) -> Self {
        OriginIds {
            own: own.into(),
            foreign: Vec::new(),
        }
    }

    /// `Some(true)`: drc wrote it (drop); `Some(false)`: the source's own (keep); `None`:
    /// unknown. An id in both sets counts as the source's own (see [`crate::origin`], which
    /// refuses such a configuration before it is used).
    pub fn classify(&self, server_id: u32) -> Option<bool> {
        if self.own.contains(server_id) {
            Some(false)
        } else if self.foreign.contains(&server_id) {
            Some(true)
        } else {
            None
        }
    }
}

/// How the filter recognises transactions that drc itself applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Keep only transactions whose header `server_id` is one of the source's own ids, drop
    /// those under an id drc writes under.
    ServerId(OriginIds),
    /// Drop transactions whose first rows touch `<meta>.origin`.
    Marker,
    /// Both rules (`loopback = "auto"`: each center's daemon picks its own strategy, so a
    /// reader must recognise either).
    Both(OriginIds),
}

impl Origin {
    /// True when a transaction (or DDL) whose binlog header names `server_id` was written by
    /// drc, by the `server_id` rule (the marker rule looks at rows).
    pub fn foreign_server_id(&self, server_id: u32) -> bool {
        match self {
            Origin::ServerId(ids) | Origin::Both(ids) => ids.classify(server_id) == Some(true),
            Origin::Marker => false,
        }
    }

    /// The ids, when the rule uses them.
    pub fn ids_mut(&mut self) -> Option<&mut OriginIds> {
        match self {
            Origin::ServerId(ids) | Origin::Both(ids) => Some(ids),
            Origin::Marker => None,
        }
    }
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
    /// The current transaction's `server_id`, while the filter knows it neither way.
    unknown: Option<u32>,
}

impl LinkFilter {
    /// A filter for a link whose source is recognised by `origin`.
    pub fn new(origin: Origin, replication: Replication) -> Self {
        LinkFilter {
            origin,
            replication,
            dropping: false,
            first_rows: true,
            unknown: None,
        }
    }

    fn keeps_table(&self, c: &RowChange) -> bool {
        let (db, table) = (&*c.table.database, &*c.table.table);
        if db == self.replication.meta_database {
            return table == HEARTBEAT_TABLE;
        }
        self.replication.replicates(db, table)
    }

    /// The `server_id` of the current transaction when `ev` holds changes to apply but the
    /// transaction's id is known neither as the source's nor as drc's; the caller looks it up
    /// ([`crate::origin::filter_event`]), then calls [`LinkFilter::settle_origin`] before it
    /// filters the event. A transaction that changes nothing this link applies (another drc
    /// cluster's tables on a shared server, say) is never looked up: its origin does not matter.
    pub fn unknown_origin(&self, ev: &SourceEvent) -> Option<u32> {
        let id = self.unknown?;
        let SourceEvent::Rows(rows) = ev else {
            return None;
        };
        if self.dropping || self.marked(rows) || !rows.iter().any(|c| self.keeps_table(c)) {
            return None;
        }
        Some(id)
    }

    /// True when a DDL's `server_id` is known neither way (see [`LinkFilter::unknown_origin`]).
    pub fn unknown_ddl_origin(&self, d: &DdlEvent) -> Option<u32> {
        match &self.origin {
            Origin::ServerId(ids) | Origin::Both(ids) if ids.classify(d.server_id).is_none() => {
                Some(d.server_id)
            }
            _ => None,
        }
    }

    /// Decides the current transaction again after its unknown id was learned.
    pub fn settle_origin(&mut self) {
        if let Some(id) = self.unknown {
            if let Origin::ServerId(ids) | Origin::Both(ids) = &self.origin {
                if let Some(drc) = ids.classify(id) {
                    self.dropping = drc;
                    self.unknown = None;
                }
            }
        }
    }

    /// True when `rows` are the first of a transaction and start with drc's marker row.
    fn marked(&self, rows: &[RowChange]) -> bool {
        if !self.first_rows || matches!(self.origin, Origin::ServerId(_)) {
            return false;
        }
        let meta = &self.replication.meta_database;
        rows.iter()
            .any(|c| &*c.table.database == meta.as_str() && &*c.table.table == ORIGIN_TABLE)
    }

    /// The origin rule (to learn ids found by a lookup).
    pub fn origin_mut(&mut self) -> &mut Origin {
        &mut self.origin
    }

    /// Filters one event: `Begin`/`Commit`/`Ddl` pass unchanged; `Rows` keep only the changes to
    /// apply (possibly none).
    pub fn filter(&mut self, ev: SourceEvent) -> SourceEvent {
        match ev {
            SourceEvent::Begin(b) => {
                self.first_rows = true;
                self.dropping = self.origin.foreign_server_id(b.server_id);
                self.unknown = match &self.origin {
                    Origin::ServerId(ids) | Origin::Both(ids) => {
                        ids.classify(b.server_id).is_none().then_some(b.server_id)
                    }
                    Origin::Marker => None,
                };
                SourceEvent::Begin(b)
            }
            SourceEvent::Rows(rows) => {
                if !self.dropping && self.marked(&rows) {
                    self.dropping = true;
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
        self.origin.foreign_server_id(d.server_id)
    }

    /// The replication rules this filter applies.
    pub fn replication(&self) -> &Replication {
        &self.replication
    }
}

/// The origin rule of a link with loopback strategy `loopback`, for a source whose drc-applied
/// transactions carry `ids`.
pub fn origin_rule(loopback: Loopback, ids: OriginIds) -> Origin {
    match loopback {
        Loopback::ServerId => Origin::ServerId(ids),
        Loopback::Marker => Origin::Marker,
        Loopback::Auto => Origin::Both(ids),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use drc_core::change::{ChangeKind, Image, TxnBegin};
    use drc_core::schema::{ColumnSchema, SqlType, TableSchema};
    use drc_core::value::Value;

    use super::*;

    fn rows(db: &str) -> SourceEvent {
        let t = Arc::new(TableSchema {
            database: db.into(),
            table: "t".into(),
            columns: vec![ColumnSchema {
                name: "id".into(),
                sql_type: SqlType::Int,
                unsigned: false,
                collation: None,
            }],
            primary_key: vec![0],
            unique_keys: vec![],
            unique_keys_known: true,
        });
        SourceEvent::Rows(vec![RowChange {
            table: t,
            kind: ChangeKind::Insert,
            before: None,
            after: Some(Image(vec![Some(Value::Int(1))])),
        }])
    }

    fn begin(server_id: u32) -> SourceEvent {
        SourceEvent::Begin(TxnBegin {
            server_id,
            gtid: None,
            timestamp: 0,
        })
    }

    fn filter() -> LinkFilter {
        let replication = Replication {
            databases: vec!["shop".into()],
            include_tables: vec![],
            exclude_tables: vec![],
            loopback: drc_config::Loopback::ServerId,
            meta_database: "drc_meta".into(),
        };
        LinkFilter::new(
            Origin::ServerId(OriginIds {
                own: OwnIds::new(11, [1]),
                foreign: vec![2],
            }),
            replication,
        )
    }

    #[test]
    fn an_unknown_origin_is_looked_up_only_for_changes_the_link_applies() {
        let mut f = filter();
        f.filter(begin(7));
        // Another cluster's table on a shared server: its origin does not matter.
        assert_eq!(f.unknown_origin(&rows("other")), None);
        // A replicated table: the caller must look the id up first.
        assert_eq!(f.unknown_origin(&rows("shop")), Some(7));
        // Learned as drc's tag: the transaction is dropped.
        f.origin_mut().ids_mut().expect("ids").foreign.push(7);
        f.settle_origin();
        assert_eq!(f.unknown_origin(&rows("shop")), None);
        assert_eq!(f.filter(rows("shop")), SourceEvent::Rows(vec![]));
        assert!(f.dropped_current());
        // Known ids never need a lookup.
        f.filter(begin(1));
        assert_eq!(f.unknown_origin(&rows("shop")), None);
        assert!(!f.dropped_current());
    }

    #[test]
    fn own_ids_keep_the_current_id_first_and_drop_duplicates() {
        let own = OwnIds::new(7, [3, 7, 3, 9]);
        assert_eq!(own.all(), &[7, 3, 9]);
        assert!(own.contains(9) && !own.contains(1));
    }

    #[test]
    fn an_id_is_own_drc_or_unknown() {
        let ids = OriginIds {
            own: OwnIds::new(11, [1]),
            foreign: vec![2, 3],
        };
        // The source's current and earlier ids are its own writes.
        assert_eq!(ids.classify(11), Some(false));
        assert_eq!(ids.classify(1), Some(false));
        // drc's tags are dropped.
        assert_eq!(ids.classify(2), Some(true));
        // Anything else is looked up, never guessed.
        assert_eq!(ids.classify(4), None);
        let origin = Origin::Both(ids);
        assert!(origin.foreign_server_id(3));
        assert!(!origin.foreign_server_id(4));
        assert!(!Origin::Marker.foreign_server_id(3));
    }
}
