//! Unit cases of the decision table, on hand-made rows (the end-to-end cases run against real
//! servers in crates/drc/tests/conflicts.rs).

use std::sync::Arc;

use drc_core::change::{ChangeKind, Image, RowChange};
use drc_core::schema::{ColumnSchema, SqlType, TableSchema, UniqueKey};
use drc_core::value::{Text, Value};

use super::*;

fn users() -> Arc<TableSchema> {
    let col = |n: &str, t| ColumnSchema {
        name: n.into(),
        sql_type: t,
        unsigned: false,
        collation: None,
    };
    Arc::new(TableSchema {
        database: "shop".into(),
        table: "users".into(),
        columns: vec![
            col("id", SqlType::Int),
            col("email", SqlType::String),
            col("version", SqlType::BigInt),
        ],
        primary_key: vec![0],
        unique_keys: vec![UniqueKey {
            name: "email".into(),
            columns: vec![1],
        }],
        unique_keys_known: true,
    })
}

fn img(id: i64, email: &str, version: i64) -> Image {
    Image(vec![
        Some(Value::Int(id)),
        Some(Value::Text(Text::utf8(email))),
        Some(Value::Int(version)),
    ])
}

fn change(kind: ChangeKind, before: Option<Image>, after: Option<Image>) -> RowChange {
    RowChange {
        table: users(),
        kind,
        before,
        after,
    }
}

fn row(i: &Image) -> Row {
    Row::from_image(&users(), i)
}

/// The claim hashes of every image of `c`.
fn claim_keys(c: &RowChange) -> Vec<[u8; 32]> {
    [&c.before, &c.after]
        .into_iter()
        .flatten()
        .flat_map(|img| (0..c.table.unique_keys.len()).filter_map(|n| claim_hash(&c.table, n, img)))
        .collect()
}

/// `out` without its claim writes (the primary-key rules' writes only).
fn without_claims<'a>(c: &RowChange, mut out: Outcome<'a>) -> Outcome<'a> {
    let claims = claim_keys(c);
    out.writes
        .retain(|w| !matches!(w, Write::Tombstone(h, _) if claims.contains(h)));
    out
}

fn decide_pk<'a>(c: &'a RowChange, found: Vec<Vec<Row>>, tombs: Vec<Option<Tomb>>) -> Outcome<'a> {
    without_claims(
        c,
        decide(c, 2, found, tombs, Vec::new(), &mut Overlay::default()),
    )
}

fn run(c: &RowChange, found: Vec<Vec<Row>>) -> Outcome<'_> {
    decide_pk(c, found, Vec::new())
}

#[test]
fn an_insert_of_a_missing_row_inserts_it() {
    let a = img(1, "x", 5);
    let c = change(ChangeKind::Insert, None, Some(a.clone()));
    assert_eq!(lookups(&c).len(), 2, "by key and by email");
    let out = run(&c, vec![vec![], vec![]]);
    assert_eq!(out.writes, vec![Write::Insert(&a)]);
    assert!(out.records.is_empty());
}

#[test]
fn insert_on_an_existing_key_is_last_writer_wins_both_ways() {
    let c = change(ChangeKind::Insert, None, Some(img(1, "new", 7)));
    let out = run(&c, vec![vec![row(&img(1, "old", 5))], vec![]]);
    assert!(matches!(out.writes[..], [Write::Update(_)]));
    assert_eq!(out.records[0].resolution, Resolution::IncomingWon);
    assert_eq!(out.records[0].loser["email"], "old");

    let c = change(ChangeKind::Insert, None, Some(img(1, "late", 3)));
    let out = run(&c, vec![vec![row(&img(1, "kept", 5))], vec![]]);
    assert!(out.writes.is_empty());
    assert_eq!(out.records[0].resolution, Resolution::LocalWon);
    assert_eq!(out.records[0].rule, Rule::NewerVersion);
    assert_eq!(out.records[0].loser["email"], "late");
}

#[test]
fn a_tie_goes_the_same_way_from_both_sides() {
    let (x, y) = (img(1, "x", 5), img(1, "y", 5));
    let cx = change(ChangeKind::Insert, None, Some(x.clone()));
    let cy = change(ChangeKind::Insert, None, Some(y.clone()));
    // Center holding y receives x, and the center holding x receives y.
    let at_y = run(&cx, vec![vec![row(&y)], vec![]]);
    let at_x = run(&cy, vec![vec![row(&x)], vec![]]);
    let x_wins_at_y = !at_y.writes.is_empty();
    let y_wins_at_x = !at_x.writes.is_empty();
    assert_ne!(
        x_wins_at_y, y_wins_at_x,
        "exactly one side replaces its row"
    );
    assert!(at_y
        .records
        .iter()
        .chain(&at_x.records)
        .all(|r| r.rule == Rule::TieHash));
}

#[test]
fn an_update_of_the_exact_before_image_applies_even_with_an_older_version() {
    // A skewed clock: the source's new version is older than the row it changed.
    let (b, a) = (img(1, "x", 9), img(1, "y", 4));
    let c = change(ChangeKind::Update, Some(b.clone()), Some(a));
    let out = run(&c, vec![vec![row(&b)], vec![]]);
    assert!(matches!(out.writes[..], [Write::Update(_)]));
    assert!(out.records.is_empty());
}

#[test]
fn an_update_of_a_missing_row_inserts_it() {
    let c = change(
        ChangeKind::Update,
        Some(img(1, "x", 1)),
        Some(img(1, "y", 2)),
    );
    let out = run(&c, vec![vec![], vec![]]);
    assert!(matches!(out.writes[..], [Write::Insert(_)]));
}

#[test]
fn a_delete_applies_only_to_the_row_it_saw() {
    let b = img(1, "x", 5);
    let c = change(ChangeKind::Delete, Some(b.clone()), None);
    assert_eq!(lookups(&c).len(), 1);
    let out = run(&c, vec![vec![row(&b)]]);
    assert!(matches!(
        out.writes[..],
        [Write::Delete(_), Write::Tombstone(..)]
    ));

    let out = run(&c, vec![vec![row(&img(1, "x2", 6))]]);
    assert!(out.writes.is_empty());
    assert_eq!(out.records[0].rule, Rule::UpdateWinsOverDelete);
    assert_eq!(out.records[0].resolution, Resolution::DeleteSkipped);

    // The target is behind (an older version): the delete removes it.
    let out = run(&c, vec![vec![row(&img(1, "x0", 4))]]);
    assert!(matches!(
        out.writes[..],
        [Write::Delete(_), Write::Tombstone(..)]
    ));

    // Missing: delete/delete, or the row has not arrived yet; a tombstone remembers it.
    let out = run(&c, vec![vec![]]);
    assert!(
        matches!(out.writes[..], [Write::Tombstone(..)]),
        "{:?}",
        out.writes
    );
    assert!(out.records.is_empty());
}

#[test]
fn unique_key_rivals_are_evicted_or_win() {
    // Incoming id 2 takes email x, held by id 1 with an older version: id 1 is evicted.
    let c = change(ChangeKind::Insert, None, Some(img(2, "x", 7)));
    let out = run(&c, vec![vec![], vec![row(&img(1, "x", 5))]]);
    assert!(matches!(
        out.writes[..],
        [Write::Evict(_, 0), Write::Tombstone(..), Write::Insert(_)]
    ));
    assert_eq!(out.records[0].resolution, Resolution::EvictedLocal);

    // Newer rival: the incoming row is dropped; a plain update also removes its old row.
    let c = change(
        ChangeKind::Update,
        Some(img(2, "w", 1)),
        Some(img(2, "x", 3)),
    );
    let out = run(
        &c,
        vec![vec![row(&img(2, "w", 1))], vec![row(&img(1, "x", 5))]],
    );
    assert!(matches!(
        out.writes[..],
        [Write::Delete(_), Write::Tombstone(..)]
    ));
    let res: Vec<Resolution> = out.records.iter().map(|r| r.resolution).collect();
    assert_eq!(
        res,
        vec![Resolution::LocalWonUnique, Resolution::RemovedUnique]
    );
}

#[test]
fn a_replay_is_no_conflict() {
    let a = img(1, "x", 5);
    let c = change(ChangeKind::Update, Some(img(1, "w", 4)), Some(a.clone()));
    let out = run(&c, vec![vec![row(&a)], vec![]]);
    assert!(out.writes.is_empty() && out.records.is_empty());
}

#[test]
fn a_tombstone_drops_older_writes_and_lets_newer_ones_in() {
    let deleted = row(&img(1, "x", 5));
    let tomb = Some(Tomb::of(&deleted, 2));
    // A late, older insert of the deleted key is dropped.
    let c = change(ChangeKind::Insert, None, Some(img(1, "old", 4)));
    let out = decide_pk(&c, vec![vec![], vec![]], vec![tomb.clone()]);
    assert!(out.writes.is_empty());
    assert_eq!(out.records[0].resolution, Resolution::TombstoneWon);
    // A newer one is inserted.
    let c = change(ChangeKind::Insert, None, Some(img(1, "new", 6)));
    let out = decide_pk(&c, vec![vec![], vec![]], vec![tomb.clone()]);
    assert!(matches!(out.writes[..], [Write::Insert(_)]));
    // An update newer than the deleted row wins over the delete.
    let c = change(
        ChangeKind::Update,
        Some(img(1, "x", 5)),
        Some(img(1, "y", 7)),
    );
    assert_eq!(tomb_lookups(&c).first().map(|(i, _)| *i), Some(0));
    let out = decide_pk(&c, vec![vec![], vec![]], vec![tomb]);
    assert!(matches!(out.writes[..], [Write::Insert(_)]));
}

#[test]
fn a_value_claimed_by_a_higher_version_drops_the_row_and_its_key_ends_deleted() {
    // id 1 took email x at version 9 somewhere, then moved on; id 2 arrives with x at version 5.
    let claim = Some(Tomb::of(&row(&img(1, "x", 9)), 2));
    let c = change(ChangeKind::Insert, None, Some(img(2, "x", 5)));
    let out = decide(
        &c,
        2,
        vec![vec![], vec![]],
        vec![None],
        vec![claim],
        &mut Overlay::default(),
    );
    let res: Vec<Resolution> = out.records.iter().map(|r| r.resolution).collect();
    assert_eq!(res, vec![Resolution::LocalWonUnique]);
    assert!(!out.writes.iter().any(|w| matches!(w, Write::Insert(_))));
    // As if id 2 had been written and then evicted: its key's tombstone is at its rank.
    let a = row(&img(2, "x", 5));
    assert!(out
        .writes
        .contains(&Write::Tombstone(a.pk_hash(&users()), Tomb::of(&a, 2))));
}

#[test]
fn a_row_that_loses_its_key_still_evicts_lower_holders_of_its_values() {
    // id 2 arrives with x at version 5, but id 2 is already at version 8 (email y) here; id 1
    // holds x at version 3. Where id 2 @5 arrived first, it evicted id 1: so here too.
    let a = img(2, "x", 5);
    let c = change(ChangeKind::Insert, None, Some(a.clone()));
    let out = decide(
        &c,
        2,
        vec![vec![row(&img(2, "y", 8))], vec![row(&img(1, "x", 3))]],
        vec![None],
        vec![None],
        &mut Overlay::default(),
    );
    assert!(matches!(out.writes[0], Write::Evict(_, 0)));
    let res: Vec<Resolution> = out.records.iter().map(|r| r.resolution).collect();
    assert_eq!(res, vec![Resolution::EvictedLocal, Resolution::LocalWon]);
    // And x is claimed at id 2 @5's rank.
    let h = claim_hash(&users(), 0, &a).expect("x is not NULL");
    assert!(out
        .writes
        .contains(&Write::Tombstone(h, Tomb::of(&row(&a), 2))));
}

#[test]
fn deletes_and_updates_claim_the_values_of_their_before_images() {
    let b = img(1, "x", 5);
    let c = change(ChangeKind::Delete, Some(b.clone()), None);
    let out = run(&c, vec![vec![row(&b)]]);
    assert!(matches!(
        out.writes[..],
        [Write::Delete(_), Write::Tombstone(..)]
    ));
    let all = decide(
        &c,
        2,
        vec![vec![row(&b)]],
        vec![None],
        vec![],
        &mut Overlay::default(),
    );
    let h = claim_hash(&users(), 0, &b).expect("x is not NULL");
    assert!(all
        .writes
        .contains(&Write::Tombstone(h, Tomb::of(&row(&b), 2))));
    // NULL never claims.
    let mut n = img(1, "x", 5);
    n.0[1] = Some(Value::Null);
    assert!(claim_hash(&users(), 0, &n).is_none());
}
