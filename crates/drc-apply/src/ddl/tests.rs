//! The decision table of [`super::decide`].

use super::*;
use drc_config::{Config, Ddl};
use drc_core::change::DdlEvent;
use drc_core::ddl::classify;
use drc_core::position::{FilePos, Position};

fn config(extra: &str) -> Config {
    let text = format!(
        "[[center]]\nname = \"a\"\nmysql = \"mysql://root@127.0.0.1:1\"\n\n\
         [[center]]\nname = \"b\"\nmysql = \"mysql://root@127.0.0.1:2\"\n\n\
         [replication]\ndatabases = [\"shop\"]\nexclude_tables = [\"shop.tmp_*\"]\n\n{extra}"
    );
    Config::parse(&text, &|_| None).expect("config")
}

fn event(database: &str, statement: &str) -> DdlEvent {
    let file_pos = FilePos {
        file: "bin.000001".into(),
        offset: 400,
    };
    DdlEvent {
        server_id: 1,
        database: database.into(),
        statement: statement.into(),
        ddl: classify(statement),
        gtid: None,
        position: Position::File(file_pos.clone()),
        file_pos,
        timestamp: 0,
    }
}

fn action(c: &Config, database: &str, statement: &str) -> Action {
    decide(&event(database, statement), &c.replication, &c.ddl).action
}

fn is_stop(a: &Action) -> bool {
    matches!(a, Action::Stop(_))
}

#[test]
fn the_default_stops_at_ddl_of_replicated_tables_only() {
    let c = config("");
    assert!(is_stop(&action(&c, "shop", "TRUNCATE TABLE t")));
    assert!(is_stop(&action(
        &c,
        "",
        "ALTER TABLE shop.t ADD COLUMN x INT"
    )));
    assert!(is_stop(&action(
        &c,
        "other",
        "RENAME TABLE shop.t TO shop.u"
    )));
    assert!(is_stop(&action(&c, "shop", "DROP DATABASE shop")));
    let d = decide(&event("shop", "TRUNCATE t"), &c.replication, &c.ddl);
    assert_eq!(d.tables, ["shop.t"]);
    for (db, passed) in [
        ("other", "TRUNCATE TABLE t"),
        ("shop", "CREATE TABLE tmp_1 (id INT PRIMARY KEY)"),
        ("shop", "ALTER TABLE drc_meta.checkpoint ADD COLUMN x INT"),
        ("shop", "CREATE USER 'u'@'%' IDENTIFIED BY 'p'"),
        ("shop", "GRANT SELECT ON shop.* TO 'u'@'%'"),
        ("shop", "OPTIMIZE TABLE t"),
        ("other", "DROP DATABASE other"),
        ("", "CREATE DATABASE other"),
    ] {
        assert!(
            matches!(action(&c, db, passed), Action::Pass(_)),
            "{passed}"
        );
    }
}

#[test]
fn unreadable_statements_naming_a_replicated_database_stop() {
    let c = config("[ddl]\nmode = \"replicate\"\n");
    // sqlparser rejects the DEFINER clause and the token reader finds no table.
    let s = "CREATE DEFINER=`root`@`%` TRIGGER trg BEFORE INSERT ON t FOR EACH ROW SET NEW.v = 1";
    let ev = event("shop", s);
    assert!(!ev.ddl.parsed && ev.ddl.tables.is_empty(), "{:?}", ev.ddl);
    assert!(is_stop(&action(&c, "shop", s)));
    assert!(is_stop(&action(&c, "", &s.replace(" t ", " shop.t "))));
    assert!(matches!(action(&c, "other", s), Action::Pass(_)));
}

#[test]
fn replicate_refuses_unsafe_statements() {
    let c = config("[ddl]\nmode = \"replicate\"\n\n[ddl.tables]\n\"shop.audit_*\" = \"ignore\"\n\"shop.keep\" = \"stop\"\n");
    assert_eq!(
        action(&c, "shop", "ALTER TABLE t ADD COLUMN x INT"),
        Action::Replicate
    );
    assert_eq!(
        action(&c, "shop", "CREATE TABLE n (id INT PRIMARY KEY)"),
        Action::Replicate
    );
    assert!(matches!(
        action(&c, "shop", "TRUNCATE audit_1"),
        Action::Pass(_)
    ));
    assert!(is_stop(&action(&c, "shop", "TRUNCATE keep")));
    assert!(is_stop(&action(&c, "shop", "DROP DATABASE shop")));
    assert!(is_stop(&action(&c, "shop", "RENAME TABLE t TO tmp_t")));
    assert!(is_stop(&action(&c, "shop", "DROP TABLE t, other.x")));
}

#[test]
fn statements_are_shortened_on_one_line() {
    assert_eq!(short_statement("ALTER  TABLE\n t"), "ALTER TABLE t");
    let long = format!("INSERT {}", "é".repeat(400));
    let s = short_statement(&long);
    assert!(s.chars().count() < 330 && s.ends_with("bytes)"), "{s}");
    let _ = Ddl::default();
}
