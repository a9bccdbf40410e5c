//! The net effect of a folded chain ([`crate::plan::lww_levels`]): the changes of one key that
//! share a level are decided one after another against the level's overlay
//! ([`super::decide::Overlay`]), which gives a sequence of writes at that key (say an update, a
//! delete and an insert). Sent as they are, they would keep the table's writes in decision
//! order and out of the multi-row merge ([`super::merge::free_tables`] wants distinct keys), so
//! each key's writes are replaced by the one write that leaves the same row:
//!
//! | the key when the level read it | the chain's last data write | net write |
//! |---|---|---|
//! | row present (the first write is an update or a delete) | insert or update to `a` | update to `a` |
//! | row present | delete | delete |
//! | missing (the first write is an insert) | insert or update to `a` | insert of `a` |
//! | missing | delete | none |
//!
//! A present row was locked by the lookup, so it is this transaction's until the commit
//! whatever the chain did to it; an update to the full image `a` leaves what deleting and
//! inserting `a` would. A chain's tombstones at the key are raise-only, so only the highest is
//! kept. A chain whose images lack a column (not a full row image) is left as it is: its
//! table then keeps the decision order.
//!
//! Which writes are checked again after the write ([`super::verify`]) is computed from the
//! decided writes, not the net ones: every insert of the chain at a key that was missing, with
//! the chain's own highest tombstone there, which the check does not count against it.

use std::collections::HashMap;

use drc_core::change::Image;
use drc_core::schema::TableSchema;

use super::decide::{image_pk_hash, Tomb, Write};
use super::merge::table_id;

/// A primary key of a level: the table's identity ([`table_id`]) and the key's hash.
pub(super) type KeyId = (usize, [u8; 32]);

/// One change's decided writes, as [`net_writes`] takes them.
pub(super) struct ChangeWrites<'w, 'a> {
    /// The change's table.
    pub(super) table: &'w TableSchema,
    /// The change is part of a folded chain.
    pub(super) chained: bool,
    /// Its writes, in decision order.
    pub(super) writes: &'w [Write<'a>],
}

/// The writes to send for a level, and the highest tombstone each chain raised at its key.
#[derive(Debug, Default)]
pub(super) struct Net<'a> {
    /// `(change index, write)` in decision order, each chain's writes replaced by its net write
    /// at the place of its last data write, the chains' tombstones last (each with the change
    /// that first raised one at its key: a write's table is its change's).
    pub(super) writes: Vec<(usize, Write<'a>)>,
    /// A chain's highest tombstone at its key.
    pub(super) own: HashMap<KeyId, Tomb>,
}

/// What one chain's data writes add up to so far.
struct Chain {
    /// The row was there when the level read it.
    existed: bool,
    /// `(change index, write index)` of the last data write.
    last: (usize, usize),
    /// Every image of the chain names every column.
    full: bool,
}

fn data_image<'a>(w: &Write<'a>) -> Option<&'a Image> {
    match w {
        Write::Insert(img) | Write::Update(img) | Write::Delete(img) => Some(img),
        Write::Evict(..) | Write::Tombstone(..) => None,
    }
}

/// The level's writes with every folded chain replaced by its net effect (module docs).
pub(super) fn net_writes<'a>(changes: &[ChangeWrites<'_, 'a>]) -> Net<'a> {
    let mut chains: HashMap<KeyId, Chain> = HashMap::new();
    // The key of each chained data write, by `(change index, write index)`: hashed once.
    let mut keys: HashMap<(usize, usize), KeyId> = HashMap::new();
    // Tombstones of chains, in first-seen order (deterministic statements), each with the
    // index of the change that first raised one at its key (a write names its table by its
    // change).
    let mut tombs: Vec<(usize, KeyId)> = Vec::new();
    let mut own: HashMap<KeyId, Tomb> = HashMap::new();
    for (i, c) in changes.iter().enumerate().filter(|(_, c)| c.chained) {
        let t = c.table;
        for (j, w) in c.writes.iter().enumerate() {
            if let Write::Tombstone(key, tomb) = w {
                let id = (table_id(t), *key);
                if !own.contains_key(&id) {
                    tombs.push((i, id));
                }
                tomb.clone().raise_in(&mut own, id);
            }
            let Some(img) = data_image(w) else { continue };
            let full = img.0.len() == t.columns.len() && img.0.iter().all(Option::is_some);
            let id = (table_id(t), image_pk_hash(t, img));
            keys.insert((i, j), id);
            chains
                .entry(id)
                .and_modify(|ch| {
                    ch.last = (i, j);
                    ch.full &= full;
                })
                .or_insert(Chain {
                    existed: !matches!(w, Write::Insert(_)),
                    last: (i, j),
                    full,
                });
        }
    }
    let mut writes = Vec::new();
    for (i, c) in changes.iter().enumerate() {
        for (j, w) in c.writes.iter().enumerate() {
            if !c.chained {
                writes.push((i, w.clone()));
                continue;
            }
            let Some(img) = data_image(w) else {
                // Tombstones: the highest per key, below. (A foldable table has no other
                // unique key, so it never evicts.)
                if !matches!(w, Write::Tombstone(..)) {
                    writes.push((i, w.clone()));
                }
                continue;
            };
            let chain = keys.get(&(i, j)).and_then(|id| chains.get(id));
            match chain {
                Some(ch) if ch.full => {
                    if ch.last != (i, j) {
                        continue;
                    }
                    let net = match (ch.existed, w) {
                        (true, Write::Delete(img)) => Some(Write::Delete(img)),
                        (false, Write::Delete(_)) => None,
                        (true, _) => Some(Write::Update(img)),
                        (false, _) => Some(Write::Insert(img)),
                    };
                    writes.extend(net.map(|w| (i, w)));
                }
                _ => writes.push((i, w.clone())),
            }
        }
    }
    for (i, id) in tombs {
        if let Some(tomb) = own.get(&id) {
            writes.push((i, Write::Tombstone(id.1, tomb.clone())));
        }
    }
    Net { writes, own }
}

#[cfg(test)]
mod tests {
    use drc_core::value::Value;

    use super::*;
    use crate::conflict::canon::Canon;
    use crate::conflict::fixtures::table;

    fn img(id: i64, v: i64) -> Image {
        Image(vec![Some(Value::Int(id)), Some(Value::Int(v))])
    }

    fn tomb(v: i128) -> Tomb {
        Tomb {
            version: Canon::Int(v),
            hash: [0; 32],
        }
    }

    fn net<'a>(t: &TableSchema, chains: &[(bool, Vec<Write<'a>>)]) -> Net<'a> {
        let changes: Vec<ChangeWrites<'_, 'a>> = chains
            .iter()
            .map(|(chained, writes)| ChangeWrites {
                table: t,
                chained: *chained,
                writes,
            })
            .collect();
        net_writes(&changes)
    }

    #[test]
    fn a_chain_leaves_one_write_per_key_by_what_the_level_read() {
        let t = table();
        let (a1, a2, b1, b2, c1, d1) = (
            img(1, 5),
            img(1, 6),
            img(2, 5),
            img(2, 6),
            img(3, 5),
            img(4, 5),
        );
        let k = |i: &Image| image_pk_hash(&t, i);
        let n = net(
            &t,
            &[
                // Key 1 existed: update, delete, insert -> update to the last image.
                (true, vec![Write::Update(&a1)]),
                // Key 2 missing: insert, update -> insert of the last image.
                (true, vec![Write::Insert(&b1)]),
                (
                    true,
                    vec![Write::Delete(&a1), Write::Tombstone(k(&a1), tomb(5))],
                ),
                (true, vec![Write::Update(&b2)]),
                (true, vec![Write::Insert(&a2)]),
                // Key 3 missing: insert, delete -> nothing but its tombstone.
                (true, vec![Write::Insert(&c1)]),
                (
                    true,
                    vec![Write::Delete(&c1), Write::Tombstone(k(&c1), tomb(5))],
                ),
                (true, vec![Write::Tombstone(k(&c1), tomb(7))]),
                // Not chained: as it is.
                (false, vec![Write::Insert(&d1)]),
            ],
        );
        assert_eq!(
            n.writes,
            [
                (3, Write::Insert(&b2)),
                (4, Write::Update(&a2)),
                (8, Write::Insert(&d1)),
                (2, Write::Tombstone(k(&a1), tomb(5))),
                (6, Write::Tombstone(k(&c1), tomb(7))),
            ]
        );
        assert_eq!(n.own.get(&(table_id(&t), k(&c1))), Some(&tomb(7)));
        assert_eq!(n.own.get(&(table_id(&t), k(&a1))), Some(&tomb(5)));
    }

    #[test]
    fn a_chain_of_a_present_row_that_ends_deleted_deletes_it_once() {
        let t = table();
        let (a1, a2) = (img(1, 5), img(1, 6));
        let n = net(
            &t,
            &[
                (true, vec![Write::Update(&a2)]),
                (true, vec![Write::Delete(&a2)]),
            ],
        );
        assert_eq!(n.writes, [(1, Write::Delete(&a2))]);
        // An image without every column: the chain's writes stay as they are.
        let partial = Image(vec![Some(Value::Int(1)), None]);
        let n = net(
            &t,
            &[
                (true, vec![Write::Delete(&a1)]),
                (true, vec![Write::Insert(&partial)]),
            ],
        );
        assert_eq!(
            n.writes,
            [(0, Write::Delete(&a1)), (1, Write::Insert(&partial))]
        );
    }
}
