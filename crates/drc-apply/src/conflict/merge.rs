//! Multi-row writes of one dependency level (the **write** step of the protocol in [`super`]).
//!
//! The writes a level decided are sent as few statements as the rules allow, instead of one
//! statement (and one warning count) per row; the server's cost is mostly per statement (parse,
//! open and lock the table, a binlog rows event each).
//!
//! - Writes of one kind, table and column set merge into one statement: `INSERT INTO t (..)
//!   VALUES (..), (..)` for inserts of missing rows, `DELETE FROM t WHERE pk IN (..)` for
//!   deletes by primary key, and, for a table whose only unique key is its primary key,
//!   `INSERT INTO t (..) VALUES (..), (..) ON DUPLICATE KEY UPDATE c = VALUES(c), ..` for
//!   updates. A merged statement does what its rows' single statements do in that order: the
//!   changes of a level touch disjoint key values, every update's row exists and is locked by
//!   the read (`FOR UPDATE`, so the upsert always takes its update branch at the primary key:
//!   no other unique key can route it to another row), and a statement that fails fails the
//!   whole share, which is rolled back and decided again, as a failing single statement does. Evictions (`DELETE .. WHERE <unique key> AND NOT <pk>`) and
//!   updates of tables with other unique keys stay single statements in their place.
//! - **Which writes merge.** Writes of different tables never meet (each statement touches one
//!   table, the session runs with `foreign_key_checks = 0`), so each table has statements of
//!   its own open at once. Within a table, writes keep their decision order — a write of another
//!   kind closes what is open for that table first — unless the table is *free* in this level
//!   ([`free_tables`]): its only unique key is an integer primary key and every write of the
//!   level hits another primary-key value. Writes of distinct rows of such a table commute
//!   (no second unique key can make one row's write collide with another's), so all its
//!   inserts, all its upserts and all its deletes each merge into one statement. This matters
//!   where a level's changes alternate between tables and kinds (sysbench's transactions):
//!   merging only consecutive writes sent about one statement per row there.
//! - **Tombstones** (and claims) of the level go last, merged into multi-row raise-only upserts
//!   of `<meta>.tombstone` ([`drc_meta::tombstone::write_many_statement`]): nothing in a level
//!   reads them (its reads ran before its writes, the verify step reads after them), and a
//!   tombstone is only ever raised, so their order among themselves does not matter either.
//! - Every merged insert or upsert is followed by one [`crate::strict::CHECK_WARNINGS`]: the
//!   warning count of a statement covers all its rows. A refused or warned share is diagnosed
//!   with each write sent alone (`checked` in [`super::run_levels`]), which does not merge.
//!
//! Each statement closes before a row would push it past [`MERGE_ROWS`] rows or the query
//! budget ([`crate::size::budget`]); a row whose statement alone is longer than the budget is
//! [`crate::sql::RewriteError::RowTooLarge`].

use std::collections::{HashMap, HashSet};

use drc_core::change::Image;
use drc_core::schema::TableSchema;
use drc_core::value::Value;
use mysql_async::Conn;

use super::decide::{image_pk_hash, Tomb, Write};
use super::sql::integer_key;
use super::tombstone;
use crate::size::Joiner;
use crate::sql::{ident, literal, table_name};
use crate::LinkError;

/// At most this many rows per merged statement.
pub(super) const MERGE_ROWS: usize = 200;

/// The kind of a merged statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `INSERT` of rows found missing.
    Insert,
    /// Updates of locked rows, as an upsert that always updates.
    Update,
    /// `DELETE` by primary key.
    Delete,
}

/// True when updates of `t` may merge into one upsert: the primary key is the table's only
/// unique key (known), so the duplicate that turns each row into an update is its own row.
pub(super) fn updates_merge(t: &TableSchema) -> bool {
    t.unique_keys_known && t.unique_keys.is_empty() && !t.primary_key.is_empty()
}

/// A table's identity within one level: its schema's address (schemas are shared and
/// immutable within a batch).
pub(super) fn table_id(t: &TableSchema) -> usize {
    t as *const TableSchema as usize
}

/// The tables of a level whose writes may merge in any order ([`Merger`]): those whose only
/// unique key is an integer primary key ([`updates_merge`], [`integer_key`]: the server's
/// equality is the values' equality) and whose inserts, updates and deletes in `writes` each
/// hit another primary-key value. The level's construction already keeps changes of one key
/// apart; a table where two writes share a key anyway keeps its decision order.
pub(super) fn free_tables<'w, 'a: 'w>(
    writes: impl Iterator<Item = (&'w TableSchema, &'w Write<'a>)>,
) -> HashSet<usize> {
    let mut keys: HashMap<usize, HashSet<[u8; 32]>> = HashMap::new();
    let mut shared: HashSet<usize> = HashSet::new();
    for (t, w) in writes {
        let img = match w {
            Write::Insert(img) | Write::Update(img) | Write::Delete(img) => *img,
            Write::Evict(..) | Write::Tombstone(..) => continue,
        };
        if !(updates_merge(t) && integer_key(t)) {
            continue;
        }
        let id = table_id(t);
        if !keys.entry(id).or_default().insert(image_pk_hash(t, img)) {
            shared.insert(id);
        }
    }
    keys.into_keys().filter(|id| !shared.contains(id)).collect()
}

fn value(img: &Image, i: usize) -> &Value {
    img.get(i).unwrap_or(&Value::Null)
}

/// The statement being built.
struct Open {
    kind: Kind,
    /// The table's address (schemas are shared and immutable within a batch).
    table: usize,
    /// The columns named (inserts and updates: those the image has).
    cols: Vec<usize>,
    sql: String,
    rows: usize,
    /// What closes the statement (the upsert's update list, the `IN` list's parenthesis).
    tail: String,
}

/// Merges one level's writes into multi-row statements pushed into a [`Joiner`] (which ones
/// merge: the module docs), and gathers the level's tombstones for the end
/// ([`Merger::finish`]).
pub(super) struct Merger {
    budget: usize,
    /// The statements being built, at most one per kind, table and column set.
    open: Vec<Open>,
    /// The level's free tables ([`free_tables`]).
    free: HashSet<usize>,
    tombs: Vec<(String, [u8; 32], Tomb)>,
}

impl Merger {
    /// A merger for queries of at most `budget` bytes, for a level whose free tables are
    /// `free` ([`free_tables`]).
    pub(super) fn new(budget: usize, free: HashSet<usize>) -> Self {
        Merger {
            budget,
            open: Vec::new(),
            free,
            tombs: Vec::new(),
        }
    }

    /// Adds one row write of `kind` to table `t`. `Err(bytes)`: the row's statement alone is
    /// `bytes` long, over the budget (nothing was added).
    pub(super) async fn add(
        &mut self,
        conn: &mut Conn,
        pending: &mut Joiner,
        kind: Kind,
        t: &TableSchema,
        img: &Image,
    ) -> Result<Result<(), usize>, LinkError> {
        let cols: Vec<usize> = match kind {
            Kind::Delete => t.primary_key.clone(),
            Kind::Insert | Kind::Update => (0..t.columns.len())
                .filter(|&i| img.get(i).is_some())
                .collect(),
        };
        let mut row = String::with_capacity(128);
        render_row(&mut row, kind, t, &cols, img);
        let id = table_id(t);
        if !self.free.contains(&id) {
            // Decision order within the table: what is open of another kind goes first.
            self.close_where(conn, pending, |o| {
                o.table == id && (o.kind != kind || o.cols != cols)
            })
            .await?;
        }
        let same = |o: &Open| o.kind == kind && o.table == id && o.cols == cols;
        let fits = |o: &Open| {
            o.rows < MERGE_ROWS
                && o.sql.len() + separator(kind, t).len() + row.len() + o.tail.len() <= self.budget
        };
        if self.open.iter().any(|o| same(o) && !fits(o)) {
            self.close_where(conn, pending, same).await?;
        }
        let o = match self.open.iter().position(same) {
            Some(n) => &mut self.open[n],
            None => {
                let (head, tail) = head_tail(kind, t, &cols);
                if head.len() + row.len() + tail.len() > self.budget {
                    return Ok(Err(head.len() + row.len() + tail.len()));
                }
                self.open.push(Open {
                    kind,
                    table: id,
                    cols,
                    sql: head,
                    rows: 0,
                    tail,
                });
                let last = self.open.len() - 1;
                &mut self.open[last]
            }
        };
        if o.rows > 0 {
            o.sql.push_str(separator(kind, t));
        }
        o.sql.push_str(&row);
        o.rows += 1;
        Ok(Ok(()))
    }

    /// Sends a single statement of table `t` in its place: what is merged so far of `t` goes
    /// first.
    pub(super) async fn single(
        &mut self,
        conn: &mut Conn,
        pending: &mut Joiner,
        t: &TableSchema,
        sql: &str,
        count_warnings: bool,
    ) -> Result<(), LinkError> {
        let id = table_id(t);
        self.close_where(conn, pending, |o| o.table == id).await?;
        pending.push(conn, sql, "conflict resolution write").await?;
        if count_warnings {
            pending
                .push(conn, crate::strict::CHECK_WARNINGS, "warning check")
                .await?;
        }
        Ok(())
    }

    /// Keeps a tombstone (or claim) of `db_table` at `key` for the end of the level.
    pub(super) fn tombstone(&mut self, db_table: String, key: [u8; 32], t: Tomb) {
        self.tombs.push((db_table, key, t));
    }

    /// Pushes the open statements that `which` selects, in the order they were opened.
    async fn close_where(
        &mut self,
        conn: &mut Conn,
        pending: &mut Joiner,
        which: impl Fn(&Open) -> bool,
    ) -> Result<(), LinkError> {
        let (closing, open): (Vec<Open>, Vec<Open>) =
            std::mem::take(&mut self.open).into_iter().partition(which);
        self.open = open;
        for mut o in closing {
            o.sql.push_str(&o.tail);
            pending
                .push(conn, &o.sql, "conflict resolution write")
                .await?;
            if o.kind != Kind::Delete {
                pending
                    .push(conn, crate::strict::CHECK_WARNINGS, "warning check")
                    .await?;
            }
        }
        Ok(())
    }

    /// Pushes the open statements, then the level's tombstones as multi-row raise-only upserts.
    pub(super) async fn finish(
        mut self,
        conn: &mut Conn,
        pending: &mut Joiner,
        meta: &str,
    ) -> Result<(), LinkError> {
        self.close_where(conn, pending, |_| true).await?;
        for q in tombstone::write_many_sqls(meta, &self.tombs, self.budget, MERGE_ROWS) {
            pending.push(conn, &q, "tombstone write").await?;
        }
        Ok(())
    }
}

/// The text between two rows of a statement of `kind`.
fn separator(kind: Kind, t: &TableSchema) -> &'static str {
    match kind {
        Kind::Delete if t.primary_key.len() > 1 => " OR ",
        _ => ", ",
    }
}

/// One row of a statement of `kind`: `(v1, v2)` for inserts and upserts; the key for deletes
/// (`v` in an `IN` list for a one-column key, `(a = v AND b = w)` for a composite one).
fn render_row(out: &mut String, kind: Kind, t: &TableSchema, cols: &[usize], img: &Image) {
    match kind {
        Kind::Insert | Kind::Update => {
            out.push('(');
            for (n, &i) in cols.iter().enumerate() {
                if n > 0 {
                    out.push_str(", ");
                }
                literal(out, value(img, i));
            }
            out.push(')');
        }
        Kind::Delete if cols.len() == 1 => literal(out, value(img, cols[0])),
        Kind::Delete => {
            out.push('(');
            for (n, &i) in cols.iter().enumerate() {
                if n > 0 {
                    out.push_str(" AND ");
                }
                ident(out, &t.columns[i].name);
                out.push_str(" = ");
                literal(out, value(img, i));
            }
            out.push(')');
        }
    }
}

/// The head and tail of a statement of `kind` over `cols` of `t`.
fn head_tail(kind: Kind, t: &TableSchema, cols: &[usize]) -> (String, String) {
    let mut head = String::with_capacity(128);
    let mut tail = String::new();
    match kind {
        Kind::Insert | Kind::Update => {
            head.push_str("INSERT INTO ");
            table_name(&mut head, t);
            head.push_str(" (");
            for (n, &i) in cols.iter().enumerate() {
                if n > 0 {
                    head.push_str(", ");
                }
                ident(&mut head, &t.columns[i].name);
            }
            head.push_str(") VALUES ");
            if kind == Kind::Update {
                tail.push_str(" ON DUPLICATE KEY UPDATE ");
                for (n, &i) in cols.iter().enumerate() {
                    if n > 0 {
                        tail.push_str(", ");
                    }
                    ident(&mut tail, &t.columns[i].name);
                    tail.push_str(" = VALUES(");
                    ident(&mut tail, &t.columns[i].name);
                    tail.push(')');
                }
            }
        }
        Kind::Delete => {
            head.push_str("DELETE FROM ");
            table_name(&mut head, t);
            head.push_str(" WHERE ");
            if let [k] = cols {
                ident(&mut head, &t.columns[*k].name);
                head.push_str(" IN (");
                tail.push(')');
            }
        }
    }
    (head, tail)
}

#[cfg(test)]
mod tests {
    use drc_core::schema::{ColumnSchema, SqlType, UniqueKey};
    use drc_core::value::Text;

    use super::*;

    fn col(name: &str, sql_type: SqlType) -> ColumnSchema {
        ColumnSchema {
            name: name.into(),
            sql_type,
            unsigned: false,
            collation: None,
        }
    }

    fn table(unique: bool) -> TableSchema {
        TableSchema {
            database: "shop".into(),
            table: "t".into(),
            columns: vec![
                col("id", SqlType::Int),
                col("name", SqlType::String),
                col("v", SqlType::BigInt),
            ],
            primary_key: vec![0],
            unique_keys: if unique {
                vec![UniqueKey {
                    name: "u".into(),
                    columns: vec![1],
                }]
            } else {
                vec![]
            },
            unique_keys_known: true,
        }
    }

    fn img(id: i64, name: &str, v: i64) -> Image {
        Image(vec![
            Some(Value::Int(id)),
            Some(Value::Text(Text::utf8(name))),
            Some(Value::Int(v)),
        ])
    }

    /// The statement of `rows` merged, rendered as [`Merger`] does.
    fn merged(kind: Kind, t: &TableSchema, rows: &[Image]) -> String {
        let cols: Vec<usize> = match kind {
            Kind::Delete => t.primary_key.clone(),
            _ => (0..t.columns.len()).collect(),
        };
        let (mut sql, tail) = head_tail(kind, t, &cols);
        for (n, r) in rows.iter().enumerate() {
            if n > 0 {
                sql.push_str(separator(kind, t));
            }
            render_row(&mut sql, kind, t, &cols, r);
        }
        sql.push_str(&tail);
        sql
    }

    #[test]
    fn inserts_updates_and_deletes_render_as_multi_row_statements() {
        let t = table(false);
        let rows = [img(1, "a", 5), img(2, "b'", 6)];
        assert_eq!(
            merged(Kind::Insert, &t, &rows),
            "INSERT INTO `shop`.`t` (`id`, `name`, `v`) VALUES (1, _utf8mb4'a', 5), (2, _utf8mb4'b\\'', 6)"
        );
        assert_eq!(
            merged(Kind::Update, &t, &rows),
            "INSERT INTO `shop`.`t` (`id`, `name`, `v`) VALUES (1, _utf8mb4'a', 5), (2, _utf8mb4'b\\'', 6) \
             ON DUPLICATE KEY UPDATE `id` = VALUES(`id`), `name` = VALUES(`name`), `v` = VALUES(`v`)"
        );
        assert_eq!(
            merged(Kind::Delete, &t, &rows),
            "DELETE FROM `shop`.`t` WHERE `id` IN (1, 2)"
        );
    }

    #[test]
    fn deletes_of_a_composite_key_are_an_or_of_key_equalities() {
        let mut t = table(false);
        t.primary_key = vec![0, 1];
        assert_eq!(
            merged(Kind::Delete, &t, &[img(1, "a", 5), img(1, "b", 6)]),
            "DELETE FROM `shop`.`t` WHERE (`id` = 1 AND `name` = _utf8mb4'a') OR (`id` = 1 AND `name` = _utf8mb4'b')"
        );
    }

    #[test]
    fn free_tables_have_an_integer_primary_key_only_and_distinct_keys_in_the_level() {
        let t = table(false);
        let shared = table(false);
        let unique = table(true);
        let mut text_key = table(false);
        text_key.primary_key = vec![1];
        let (a, b, a2) = (img(1, "a", 5), img(2, "b", 5), img(1, "c", 6));
        let writes = [
            (&t, Write::Update(&a)),
            (&t, Write::Delete(&b)),
            (&shared, Write::Delete(&a)),
            (&shared, Write::Insert(&b)),
            (&shared, Write::Insert(&a2)),
            (&unique, Write::Insert(&a)),
            (&text_key, Write::Insert(&a)),
            (&text_key, Write::Insert(&b)),
        ];
        let free = free_tables(writes.iter().map(|(t, w)| (*t, w)));
        assert_eq!(free, HashSet::from([table_id(&t)]));
    }

    #[test]
    fn only_tables_whose_one_unique_key_is_the_primary_key_merge_updates() {
        assert!(updates_merge(&table(false)));
        assert!(!updates_merge(&table(true)));
        let mut unknown = table(false);
        unknown.unique_keys_known = false;
        assert!(!updates_merge(&unknown));
    }
}
