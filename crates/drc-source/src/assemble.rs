//! From binlog events to [`SourceEvent`]s: transaction boundaries, GTIDs, positions, DDL.
//!
//! The [`Assembler`] is the one place that understands the event sequence of both server
//! families, shared by the live stream and the offline file reader:
//!
//! - MariaDB: `GTID` (0xA2; it *is* the BEGIN unless flagged standalone) -> rows -> `XID` or a
//!   `COMMIT` query. A standalone GTID is followed by one DDL query.
//! - MySQL: `GTID`/`GTID_TAGGED`/`ANONYMOUS_GTID` -> `BEGIN` query -> rows -> `XID`/`COMMIT`, or a
//!   GTID followed directly by a DDL query. Compressed transaction payloads are expanded by the
//!   caller before they get here.
//!
//! Positions: the file name comes from ROTATE events; the offset is the header `log_pos` of the
//! last event read from the outer stream (events inside a transaction payload carry 0). The GTID
//! state (MariaDB list or MySQL set) advances at each commit and DDL.
//!
//! Refused with an error, never skipped: statement-based DML (`binlog_format` not ROW in some
//! session), compressed MariaDB events, incident events, XA transactions, partial JSON updates.

use std::collections::HashMap;
use std::sync::Arc;

use drc_core::change::{
    ChangeKind, DdlEvent, RowChange, SourceEvent, TxnBegin, TxnCommit, TxnGtid,
};
use drc_core::collation::Collation;
use drc_core::ddl::{self, DdlKind};
use drc_core::position::{FilePos, MariaGtid, MariaGtidList, MysqlGtidSet, Position};
use drc_core::schema::{TableSchema, UniqueKey};
use drc_mysql::IndexColumns;
use mysql_common::binlog::events::{Event, EventData, RotateEvent, TableMapEvent};

use crate::decode::TableDecoder;
use crate::SourceError;

const MARIA_GTID: u8 = 0xA2;
const MARIA_GTID_LIST: u8 = 0xA3;
const MARIA_BINLOG_CHECKPOINT: u8 = 0xA1;
const MARIA_ANNOTATE_ROWS: u8 = 0xA0;
const MARIA_START_ENCRYPTION: u8 = 0xA4;
const MARIA_COMPRESSED_FIRST: u8 = 0xA5;
const MARIA_COMPRESSED_LAST: u8 = 0xAB;
/// MariaDB GTID flag: the event group has no BEGIN/COMMIT (DDL, non-transactional).
const FL_STANDALONE: u8 = 1;

/// Which GTID state a source tracks, decided by the start position.
#[derive(Debug, Clone)]
enum GtidState {
    Maria(MariaGtidList),
    Mysql(MysqlGtidSet),
    /// Positions are file:offset only.
    None,
}

#[derive(Debug)]
struct CachedDecoder {
    tme: TableMapEvent<'static>,
    decoder: TableDecoder,
    /// Row changes in the last rows event of this table (capacity hint).
    last_rows: usize,
}

/// Turns binlog events into [`SourceEvent`]s. See the module docs.
#[derive(Debug)]
pub struct Assembler {
    gtid: GtidState,
    file: String,
    last_log_pos: u64,
    in_txn: bool,
    /// GTID seen, BEGIN not yet (MySQL), or standalone GTID waiting for its DDL (MariaDB).
    pending_gtid: Option<TxnGtid>,
    current_gtid: Option<TxnGtid>,
    decoders: HashMap<u64, CachedDecoder>,
    /// Unique keys by `db.table`, from information_schema (absent: not known).
    keys: HashMap<String, Vec<IndexColumns>>,
    fde_seen: bool,
}

fn qualified(db: &str, table: &str) -> String {
    format!("{db}.{table}")
}

impl Assembler {
    /// A new assembler starting at `start` (which decides the kind of positions it reports).
    pub fn new(start: &Position) -> Self {
        let (gtid, file, pos) = match start {
            Position::MariaGtid(l) => (GtidState::Maria(l.clone()), String::new(), 0),
            Position::MysqlGtid(s) => (GtidState::Mysql(s.clone()), String::new(), 0),
            Position::File(f) => (GtidState::None, f.file.clone(), f.offset),
        };
        Assembler {
            gtid,
            file,
            last_log_pos: pos,
            in_txn: false,
            pending_gtid: None,
            current_gtid: None,
            decoders: HashMap::new(),
            keys: HashMap::new(),
            fde_seen: false,
        }
    }

    /// The position after the last commit or DDL (what a reconnect resumes from).
    pub fn resume_position(&self) -> Position {
        match &self.gtid {
            GtidState::Maria(l) => Position::MariaGtid(l.clone()),
            GtidState::Mysql(s) => Position::MysqlGtid(s.clone()),
            GtidState::None => Position::File(self.file_pos()),
        }
    }

    /// File and offset after the last event read from the outer stream.
    pub fn file_pos(&self) -> FilePos {
        FilePos {
            file: self.file.clone(),
            offset: self.last_log_pos,
        }
    }

    /// Forgets per-connection state before a reconnect: a new stream restarts with a fake
    /// ROTATE and a FORMAT_DESCRIPTION, and table ids are re-announced.
    pub fn reset_connection_state(&mut self, resume: &Position) {
        *self = Assembler {
            keys: std::mem::take(&mut self.keys),
            ..Assembler::new(resume)
        };
    }

    /// Whether unique keys of `db.table` are cached (the live source fetches them when not).
    pub fn has_keys(&self, db: &str, table: &str) -> bool {
        self.keys.contains_key(&qualified(db, table))
    }

    /// Caches the unique keys of a table and rebuilds its decoders' schemas.
    pub fn set_keys(&mut self, db: &str, table: &str, keys: Vec<IndexColumns>) {
        self.keys.insert(qualified(db, table), keys);
        let ids: Vec<u64> = self
            .decoders
            .iter()
            .filter(|(_, d)| {
                &*d.decoder.schema().database == db && &*d.decoder.schema().table == table
            })
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let Some(base) = self.decoders.get(&id).map(|c| c.decoder.schema().clone()) else {
                continue;
            };
            let schema = self.with_keys_schema(&base);
            if let Some(cached) = self.decoders.get_mut(&id) {
                cached.decoder.set_schema(schema);
            }
        }
    }

    fn with_keys_schema(&self, base: &Arc<TableSchema>) -> Arc<TableSchema> {
        let Some(keys) = self.keys.get(&qualified(&base.database, &base.table)) else {
            return base.clone();
        };
        let mut schema = (**base).clone();
        schema.unique_keys.clear();
        let mut complete = true;
        for k in keys {
            let cols: Option<Vec<usize>> =
                k.columns.iter().map(|c| schema.column_index(c)).collect();
            // A key on a prefix or an expression: values that differ may collide; order the
            // whole table rather than guess.
            complete &= !k.partial;
            if let Some(cols) = &cols {
                for (&i, coll) in cols.iter().zip(&k.collations) {
                    if let (Some(col), Some(name)) = (schema.columns.get_mut(i), coll) {
                        col.collation = Some(Collation::new(name));
                    }
                }
            }
            match cols {
                Some(cols) if k.name == "PRIMARY" => {
                    if schema.primary_key.is_empty() {
                        schema.primary_key = cols;
                    }
                }
                Some(cols) => schema.unique_keys.push(UniqueKey {
                    name: k.name.clone(),
                    columns: cols,
                }),
                // The live table has a key on a column this binlog image lacks: the schema
                // changed since; do not claim to know the keys.
                None => complete = false,
            }
        }
        schema.unique_keys_known = complete;
        Arc::new(schema)
    }

    fn forget_table(&mut self, db: &str, table: &str) {
        self.keys.remove(&qualified(db, table));
        self.decoders.retain(|_, d| {
            !(&*d.decoder.schema().database == db && &*d.decoder.schema().table == table)
        });
    }

    /// Registers a table map (the caller got it from the stream reader).
    pub fn table_map(&mut self, tme: &TableMapEvent<'_>) -> Result<(), SourceError> {
        if let Some(c) = self.decoders.get(&tme.table_id()) {
            if c.tme == *tme {
                return Ok(());
            }
        }
        let decoder = TableDecoder::new(tme)?;
        let schema = self.with_keys_schema(decoder.schema());
        let mut decoder = decoder;
        decoder.set_schema(schema);
        self.decoders.insert(
            tme.table_id(),
            CachedDecoder {
                tme: tme.clone().into_owned(),
                decoder,
                last_rows: 0,
            },
        );
        Ok(())
    }

    fn gtid_of_maria(ev: &Event) -> Result<(MariaGtid, u8), SourceError> {
        let d = ev.data();
        if d.len() < 13 {
            return Err(SourceError::Protocol(format!(
                "MariaDB GTID event of {} bytes (expected at least 13)",
                d.len()
            )));
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&d[0..8]);
        let mut dom = [0u8; 4];
        dom.copy_from_slice(&d[8..12]);
        Ok((
            MariaGtid {
                domain: u32::from_le_bytes(dom),
                server_id: ev.header().server_id(),
                seq: u64::from_le_bytes(seq),
            },
            d[12],
        ))
    }

    fn advance_gtid(&mut self, gtid: Option<&TxnGtid>) -> Result<(), SourceError> {
        match (&mut self.gtid, gtid) {
            (GtidState::Maria(list), Some(TxnGtid::Maria(g))) => list.update(*g),
            (GtidState::Mysql(set), Some(TxnGtid::Mysql { sid, tag, gno })) => set
                .add(*sid, tag.as_deref(), *gno)
                .map_err(|e| SourceError::Protocol(format!("GTID {sid}:{gno}: {e}")))?,
            _ => {}
        }
        Ok(())
    }

    fn begin(&mut self, ev: &Event, gtid: Option<TxnGtid>) -> SourceEvent {
        self.in_txn = true;
        self.current_gtid = gtid.clone();
        SourceEvent::Begin(TxnBegin {
            server_id: ev.header().server_id(),
            gtid,
            timestamp: ev.header().timestamp(),
        })
    }

    fn commit(&mut self, ev: &Event) -> Result<SourceEvent, SourceError> {
        self.in_txn = false;
        let gtid = self.current_gtid.take();
        self.advance_gtid(gtid.as_ref())?;
        Ok(SourceEvent::Commit(TxnCommit {
            position: self.resume_position(),
            file_pos: self.file_pos(),
            timestamp: ev.header().timestamp(),
        }))
    }

    /// Handles one event read from the outer stream (`outer = true`) or from inside a
    /// transaction payload. Returns the source event it completes, if any.
    pub fn handle(&mut self, ev: &Event, outer: bool) -> Result<Option<SourceEvent>, SourceError> {
        let header = ev.header();
        let ty = header.event_type_raw();
        if outer && header.log_pos() != 0 && ty != 0x04 {
            self.last_log_pos = u64::from(header.log_pos());
        }
        match ty {
            MARIA_GTID => {
                let (g, flags) = Self::gtid_of_maria(ev)?;
                let gtid = TxnGtid::Maria(g);
                if flags & FL_STANDALONE != 0 {
                    self.pending_gtid = Some(gtid);
                    Ok(None)
                } else {
                    Ok(Some(self.begin(ev, Some(gtid))))
                }
            }
            MARIA_GTID_LIST | MARIA_BINLOG_CHECKPOINT | MARIA_ANNOTATE_ROWS
            | MARIA_START_ENCRYPTION => Ok(None),
            MARIA_COMPRESSED_FIRST..=MARIA_COMPRESSED_LAST => Err(SourceError::Unsupported(
                format!(
                    "compressed MariaDB binlog event (type {ty:#x}) at {}: the source wrote it with \
                     log_bin_compress=ON; set log_bin_compress=OFF and start from a position after it",
                    self.file_pos()
                ),
            )),
            0x04 => {
                let re: RotateEvent<'_> = ev.read_event().map_err(SourceError::event)?;
                self.file = rotate_name(&re, self.fde_seen);
                self.last_log_pos = re.position();
                Ok(None)
            }
            0x0f => {
                self.fde_seen = true;
                Ok(None)
            }
            0x13 => Ok(None), // table maps are registered by the caller via `table_map`
            0x10 => self.commit(ev).map(Some),
            0x02 => self.query(ev),
            0x17..=0x19 | 0x1e..=0x20 => self.rows(ev),
            0x27 => Err(SourceError::Unsupported(
                "partial JSON update event: set binlog_row_value_options='' on the source".into(),
            )),
            0x1a => Err(SourceError::Unsupported(format!(
                "the source wrote an INCIDENT event at {} (it lost changes, e.g. a failed \
                 non-transactional write); the centers must be verified and resynced",
                self.file_pos()
            ))),
            0x26 => Err(SourceError::Unsupported(
                "XA PREPARE event: XA transactions are not supported yet".into(),
            )),
            0x21 | 0x2a => {
                let Some(EventData::GtidEvent(g)) = ev.read_data().map_err(SourceError::event)?
                else {
                    return Err(SourceError::Protocol("unreadable GTID event".into()));
                };
                let sid = uuid::Uuid::from_bytes(g.sid());
                let tag = g.tag().map(|t| t.to_string().to_ascii_lowercase());
                self.pending_gtid = Some(TxnGtid::Mysql {
                    sid,
                    tag,
                    gno: g.gno(),
                });
                Ok(None)
            }
            0x22 => {
                self.pending_gtid = None;
                Ok(None)
            }
            // FDE-adjacent and statement-mode helpers carry nothing a row-based reader needs:
            // STOP, INTVAR, RAND, USER_VAR, HEARTBEAT, IGNORABLE, ROWS_QUERY, PREVIOUS_GTIDS,
            // TRANSACTION_CONTEXT, VIEW_CHANGE, payload (expanded by the caller), unknown.
            _ => Ok(None),
        }
    }

    fn query(&mut self, ev: &Event) -> Result<Option<SourceEvent>, SourceError> {
        let Some(EventData::QueryEvent(q)) = ev.read_data().map_err(SourceError::event)? else {
            return Err(SourceError::Protocol("unreadable QUERY event".into()));
        };
        let sql = q.query();
        let upper = sql.trim_start();
        if upper.eq_ignore_ascii_case("BEGIN") {
            if self.in_txn {
                return Ok(None);
            }
            let gtid = self.pending_gtid.take();
            return Ok(Some(self.begin(ev, gtid)));
        }
        if upper.eq_ignore_ascii_case("COMMIT") {
            return self.commit(ev).map(Some);
        }
        if ddl::is_transaction_control(&sql) {
            if upper.to_ascii_uppercase().starts_with("XA") {
                return Err(SourceError::Unsupported(format!(
                    "XA transaction statement `{sql}`: XA transactions are not supported yet"
                )));
            }
            return Ok(None);
        }
        let classified = ddl::classify(&sql);
        if classified.kind == DdlKind::Other && ddl::is_dml(&sql) {
            return Err(SourceError::Unsupported(format!(
                "statement-based DML at {} (`{}`): a session wrote with binlog_format other than \
                 ROW; set binlog_format=ROW globally and forbid SET SESSION binlog_format",
                self.file_pos(),
                truncate(&sql, 120)
            )));
        }
        if self.in_txn {
            // DDL-like statements inside a row transaction (temporary tables, SAVEPOINT) change
            // no replicated table; keep them out of the transaction.
            return Ok(None);
        }
        let database = q.schema().into_owned();
        for t in &classified.tables {
            let db = t.database.as_deref().unwrap_or(&database).to_string();
            self.forget_table(&db, &t.table);
        }
        let gtid = self.pending_gtid.take();
        self.advance_gtid(gtid.as_ref())?;
        Ok(Some(SourceEvent::Ddl(DdlEvent {
            server_id: ev.header().server_id(),
            database,
            statement: sql.into_owned(),
            ddl: classified,
            gtid,
            position: self.resume_position(),
            file_pos: self.file_pos(),
            timestamp: ev.header().timestamp(),
        })))
    }

    fn rows(&mut self, ev: &Event) -> Result<Option<SourceEvent>, SourceError> {
        let Some(EventData::RowsEvent(rows)) = ev.read_data().map_err(SourceError::event)? else {
            return Err(SourceError::Protocol("unreadable rows event".into()));
        };
        let kind = match ev.header().event_type_raw() {
            0x17 | 0x1e => ChangeKind::Insert,
            0x18 | 0x1f => ChangeKind::Update,
            _ => ChangeKind::Delete,
        };
        let Some(cached) = self.decoders.get_mut(&rows.table_id()) else {
            return Err(SourceError::Protocol(format!(
                "rows event for table id {} without a preceding table map",
                rows.table_id()
            )));
        };
        if !self.in_txn {
            return Err(SourceError::Protocol(format!(
                "rows event for {} outside a transaction",
                cached.decoder.schema().qualified_name()
            )));
        }
        let mut out: Vec<RowChange> = Vec::with_capacity(cached.last_rows.min(1024));
        cached.decoder.decode_rows(
            kind,
            rows.columns_before_image(),
            rows.columns_after_image(),
            rows.rows_data(),
            &mut out,
        )?;
        cached.last_rows = out.len();
        Ok(Some(SourceEvent::Rows(out)))
    }
}

/// The binlog file name of a ROTATE event. The first, synthetic ROTATE of a stream arrives
/// before the FORMAT_DESCRIPTION event and so is parsed without checksum handling: its name then
/// ends with the 4 checksum bytes (facts.md). Binlog names end in `.NNNNNN`; strip the 4 bytes
/// when that is what makes the name look like one.
fn rotate_name(re: &RotateEvent<'_>, fde_seen: bool) -> String {
    let raw = re.name_raw();
    let looks_like_binlog = |n: &[u8]| {
        let digits = n.iter().rev().take_while(|b| b.is_ascii_digit()).count();
        digits >= 6 && n.len() > digits && n[n.len() - digits - 1] == b'.'
    };
    if !fde_seen
        && raw.len() > 4
        && !looks_like_binlog(raw)
        && looks_like_binlog(&raw[..raw.len() - 4])
    {
        return String::from_utf8_lossy(&raw[..raw.len() - 4]).into_owned();
    }
    String::from_utf8_lossy(raw).into_owned()
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n).collect();
        t.push('…');
        t
    }
}
