//! The copy: one reader in the source's snapshot, several tagged writers into the target, and
//! the progress kept in the target's meta database.
//!
//! Protocol:
//! - The reader walks each table in primary-key order, `chunk_rows` rows at a time (keyset
//!   pagination: `WHERE <key after the last one> ORDER BY <key> LIMIT n`), all in the one
//!   snapshot transaction ([`crate::snapshot`]). A chunk covers the key range from after the
//!   previous chunk's last key up to its own last key; a table's last chunk (fewer rows than
//!   `chunk_rows`) covers everything after, so the ranges of a table's chunks cover every key.
//! - Writers take chunks from a channel of `writers` slots (memory stays bounded by about
//!   `2 * writers` chunks) and write each as one transaction that replaces the chunk's range
//!   ([`crate::target`]).
//! - Chunks of one table commit in any order; a table's stored progress (its last key) moves
//!   only over the contiguous prefix of committed chunks, after they committed. A crash leaves
//!   the stored key at or before what is written, and writing a range again is exact.

use std::collections::BTreeMap;
use std::sync::Arc;

use drc_meta::bootstrap::{table_statement, TableProgress};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value};
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinSet;

use crate::error::BootstrapError;
use crate::progress::Progress;
use crate::render;
use crate::snapshot::Snapshot;
use crate::tables::TableDef;
use crate::target::{Tag, Writer};

/// The largest query a writer sends, below the target's `max_allowed_packet`.
const MAX_QUERY: u64 = 8 << 20;

/// How the copy runs.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Rows per chunk.
    pub chunk_rows: usize,
    /// Writing connections.
    pub writers: usize,
}

struct Chunk {
    table: usize,
    seq: u64,
    lower: Option<Vec<Vec<u8>>>,
    upper: Option<Vec<Vec<u8>>>,
    rows: Vec<Vec<Value>>,
    bytes: u64,
}

struct Written {
    table: usize,
    seq: u64,
    upper: Option<Vec<Vec<u8>>>,
    rows: u64,
    bytes: u64,
}

/// Where the copy writes and records its progress.
pub struct Target<'a> {
    /// The target's URL.
    pub url: &'a str,
    /// The target center.
    pub center: &'a str,
    /// Its meta database.
    pub meta: &'a str,
    /// The source center (named in the progress rows).
    pub source: &'a str,
    /// The writers' tag.
    pub tag: &'a Tag,
    /// A connection for the progress rows.
    pub state: &'a mut Conn,
}

fn value_bytes(v: &Value) -> u64 {
    match v {
        Value::Bytes(b) => b.len() as u64,
        Value::NULL => 1,
        _ => 8,
    }
}

/// The statements that write `chunk` of table `t`.
fn statements(t: &TableDef, chunk: &Chunk, limit: u64) -> Result<Vec<String>, BootstrapError> {
    let mut del = format!("DELETE FROM {}", t.sql_name());
    if chunk.lower.is_some() || chunk.upper.is_some() {
        del.push_str(" WHERE ");
    }
    if let Some(k) = &chunk.lower {
        render::key_condition(&mut del, t, k, true)?;
    }
    if let Some(k) = &chunk.upper {
        if chunk.lower.is_some() {
            del.push_str(" AND ");
        }
        render::key_condition(&mut del, t, k, false)?;
    }
    let mut out = vec![del];
    let head = format!("INSERT INTO {} ({}) VALUES ", t.sql_name(), t.column_list());
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut q = String::with_capacity(limit.min(1 << 20));
    let mut row_text = String::new();
    for row in &chunk.rows {
        row_text.clear();
        row_text.push('(');
        for (i, (v, c)) in row.iter().zip(&t.columns).enumerate() {
            if i > 0 {
                row_text.push(',');
            }
            render::value(&mut row_text, v, &c.kind).map_err(|e| {
                BootstrapError::Unsupported(format!("{}, column {}: {e}", t.name(), c.name))
            })?;
        }
        row_text.push(')');
        if head.len() + row_text.len() > limit {
            return Err(BootstrapError::Unsupported(format!(
                "{}: a row needs a statement of {} bytes, over the target's max_allowed_packet ({limit}); raise max_allowed_packet in the target",
                t.name(),
                head.len() + row_text.len()
            )));
        }
        if !q.is_empty() && q.len() + 1 + row_text.len() > limit {
            out.push(std::mem::take(&mut q));
        }
        if q.is_empty() {
            q.push_str(&head);
        } else {
            q.push(',');
        }
        q.push_str(&row_text);
    }
    if !q.is_empty() {
        out.push(q);
    }
    Ok(out)
}

/// Per table: committed chunks not yet contiguous, and the next expected one.
struct Tracker {
    progress: Vec<TableProgress>,
    next: Vec<u64>,
    pending: Vec<BTreeMap<u64, Written>>,
}

impl Tracker {
    /// Records `w`; returns the tables whose stored progress moved.
    fn commit(&mut self, w: Written) -> Option<usize> {
        let t = w.table;
        self.pending[t].insert(w.seq, w);
        let mut moved = false;
        while let Some(w) = self.pending[t].remove(&self.next[t]) {
            self.next[t] += 1;
            let p = &mut self.progress[t];
            p.copied_rows += w.rows;
            match w.upper {
                Some(k) => p.last_key = Some(k),
                None => p.done = true,
            }
            moved = true;
        }
        moved.then_some(t)
    }
}

/// Copies every table of `tables` not done in `progress` (same order) from the snapshot into
/// the target.
pub async fn copy(
    snapshot: &mut Snapshot,
    tables: &[TableDef],
    progress: Vec<TableProgress>,
    target: Target<'_>,
    options: &CopyOptions,
    shown: &mut Progress,
) -> Result<Vec<TableProgress>, BootstrapError> {
    let tables_arc: Arc<Vec<TableDef>> = Arc::new(tables.to_vec());
    let (chunk_tx, chunk_rx) = mpsc::channel::<Chunk>(options.writers.max(1));
    let chunk_rx = Arc::new(Mutex::new(chunk_rx));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Result<Written, BootstrapError>>();
    let mut writers = JoinSet::new();
    for w in 0..options.writers.max(1) {
        let mut writer = Writer::new(target.url, target.center, target.tag, w as u32);
        let limit = writer.connect().await?.saturating_sub(4096).min(MAX_QUERY);
        let rx = chunk_rx.clone();
        let tx = done_tx.clone();
        let tables = tables_arc.clone();
        writers.spawn(async move {
            loop {
                let next = rx.lock().await.recv().await;
                let Some(chunk) = next else { break };
                let t = &tables[chunk.table];
                let r = match statements(t, &chunk, limit) {
                    Ok(s) => writer.transaction(&s).await,
                    Err(e) => Err(e),
                };
                let msg = r.map(|()| Written {
                    table: chunk.table,
                    seq: chunk.seq,
                    upper: chunk.upper,
                    rows: chunk.rows.len() as u64,
                    bytes: chunk.bytes,
                });
                let failed = msg.is_err();
                if tx.send(msg).is_err() || failed {
                    break;
                }
            }
        });
    }
    drop(done_tx);
    let mut tracker = Tracker {
        next: vec![0; tables.len()],
        pending: (0..tables.len()).map(|_| BTreeMap::new()).collect(),
        progress,
    };
    let Target {
        center,
        meta,
        source,
        state,
        ..
    } = target;
    let handle = |w: Result<Written, BootstrapError>,
                  tracker: &mut Tracker,
                  shown: &mut Progress|
     -> Result<Option<String>, BootstrapError> {
        let w = w?;
        let (rows, bytes) = (w.rows, w.bytes);
        let moved = tracker.commit(w);
        shown.advance(rows, bytes);
        Ok(moved.map(|t| table_statement(meta, source, &tracker.progress[t])))
    };
    let chunk_rows = options.chunk_rows.max(1);
    for (ti, t) in tables.iter().enumerate() {
        if tracker.progress[ti].done {
            continue;
        }
        let mut lower = tracker.progress[ti].last_key.clone();
        let mut seq = 0;
        let order =
            t.pk.iter()
                .map(|&i| {
                    let mut s = String::new();
                    drc_core::sqltext::ident(&mut s, &t.columns[i].name);
                    s
                })
                .collect::<Vec<_>>()
                .join(", ");
        loop {
            let mut q = format!("SELECT {} FROM {}", t.column_list(), t.sql_name());
            if let Some(k) = &lower {
                q.push_str(" WHERE ");
                render::key_condition(&mut q, t, k, true)?;
            }
            q.push_str(&format!(" ORDER BY {order} LIMIT {chunk_rows}"));
            let rows: Vec<Row> = snapshot
                .conn
                .exec(q, ())
                .await
                .map_err(BootstrapError::query(
                    &snapshot.center,
                    format!("reading {}", t.name()),
                ))?;
            let full = rows.len() == chunk_rows;
            let rows: Vec<Vec<Value>> = rows.into_iter().map(Row::unwrap).collect();
            let upper = match rows.last() {
                Some(last) if full => Some(
                    t.pk.iter()
                        .map(|&i| render::raw(&last[i], &t.columns[i].kind))
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            };
            let bytes = rows.iter().flatten().map(value_bytes).sum();
            let chunk = Chunk {
                table: ti,
                seq,
                lower: lower.clone(),
                upper: upper.clone(),
                rows,
                bytes,
            };
            seq += 1;
            if chunk_tx.send(chunk).await.is_err() {
                break; // every writer stopped: their error is in `done_rx`
            }
            while let Ok(w) = done_rx.try_recv() {
                if let Some(s) = handle(w, &mut tracker, shown)? {
                    state.query_drop(s).await.map_err(BootstrapError::query(
                        center,
                        "recording the copy's progress",
                    ))?;
                }
            }
            if upper.is_none() {
                break;
            }
            lower = upper;
        }
    }
    drop(chunk_tx);
    while let Some(w) = done_rx.recv().await {
        if let Some(s) = handle(w, &mut tracker, shown)? {
            state.query_drop(s).await.map_err(BootstrapError::query(
                center,
                "recording the copy's progress",
            ))?;
        }
    }
    while writers.join_next().await.is_some() {}
    if let Some(p) = tracker.progress.iter().find(|p| !p.done) {
        return Err(BootstrapError::Unsupported(format!(
            "{}.{}: the copy ended before the table was complete (a writer stopped)",
            p.db, p.table
        )));
    }
    Ok(tracker.progress)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::{Column, Kind};

    fn table() -> TableDef {
        TableDef {
            db: "d".into(),
            table: "t".into(),
            columns: vec![
                Column {
                    name: "id".into(),
                    kind: Kind::Number,
                },
                Column {
                    name: "v".into(),
                    kind: Kind::Text("utf8mb4".into()),
                },
            ],
            pk: vec![0],
            secondary_unique: false,
            estimated_rows: 0,
        }
    }

    fn chunk(lower: Option<&str>, upper: Option<&str>, n: i64) -> Chunk {
        Chunk {
            table: 0,
            seq: 0,
            lower: lower.map(|k| vec![k.as_bytes().to_vec()]),
            upper: upper.map(|k| vec![k.as_bytes().to_vec()]),
            rows: (1..=n)
                .map(|i| vec![Value::Int(i), Value::Bytes(b"xyz".to_vec())])
                .collect(),
            bytes: 0,
        }
    }

    #[test]
    fn a_chunk_replaces_its_key_range() {
        let t = table();
        let s = statements(&t, &chunk(Some("10"), Some("20"), 2), 1 << 20).unwrap_or_default();
        assert_eq!(
            s,
            [
                "DELETE FROM `d`.`t` WHERE ((`id`>10)) AND ((`id`<20) OR (`id`=20))",
                "INSERT INTO `d`.`t` (`id`, `v`) VALUES (1,_utf8mb4'xyz'),(2,_utf8mb4'xyz')",
            ]
        );
        // The first chunk has no lower bound, a table's last one no upper bound; an empty
        // table's only chunk empties the target's table.
        let s = statements(&t, &chunk(None, None, 0), 1 << 20).unwrap_or_default();
        assert_eq!(s, ["DELETE FROM `d`.`t`"]);
        let s = statements(&t, &chunk(Some("5"), None, 0), 1 << 20).unwrap_or_default();
        assert_eq!(s, ["DELETE FROM `d`.`t` WHERE ((`id`>5))"]);
    }

    #[test]
    fn inserts_are_split_below_the_limit_and_oversized_rows_refused() {
        let t = table();
        let s = statements(&t, &chunk(None, Some("100"), 100), 200).unwrap_or_default();
        assert!(s.len() > 2, "{s:?}");
        assert!(s.iter().all(|q| q.len() <= 200), "{s:?}");
        let rows: usize = s[1..].iter().map(|q| q.matches("),(").count() + 1).sum();
        assert_eq!(rows, 100);
        assert!(statements(&t, &chunk(None, None, 1), 20).is_err());
    }
}
