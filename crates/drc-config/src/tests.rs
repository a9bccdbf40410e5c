//! Tests of loading and validation.

use super::*;

const MINIMAL: &str = r#"
[[center]]
name = "a"
mysql = "mysql://root@127.0.0.1:3311"
metrics_listen = "127.0.0.1:9401"

[[center]]
name = "b"
mysql = "mysql://root@127.0.0.1:3312"
metrics_listen = "127.0.0.1:9402"

[[center]]
name = "c"
mysql = "mysql://root@127.0.0.1:3313"
metrics_listen = "127.0.0.1:9403"

[replication]
databases = ["shop"]
"#;

fn no_env(_: &str) -> Option<String> {
    None
}

fn errors(text: &str) -> Vec<String> {
    match Config::parse(text, &no_env) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn the_minimal_file_works_with_defaults() {
    let c = Config::parse(MINIMAL, &no_env).expect("valid");
    assert_eq!(c.center_names(), ["a", "b", "c"]);
    assert_eq!(c.centers[1].url(), "mysql://root@127.0.0.1:3312");
    assert_eq!(c.replication.loopback, Loopback::Auto);
    assert_eq!(c.replication.meta_database, "drc_meta");
    assert_eq!(c.applier.parallelism, 4);
    assert_eq!(c.applier.batch_rows, 2000);
    assert_eq!(c.applier.share_rows, 256);
    assert_eq!(c.applier.max_transaction_rows, 1_000_000);
    assert!(c.replication.replicates("shop", "orders"));
    assert!(!c.replication.replicates("other", "orders"));
}

#[test]
fn unknown_keys_are_refused_with_their_location() {
    let text = MINIMAL.replace("[replication]", "[replication]\ndatabase = [\"x\"]");
    let e = errors(&text).join("\n");
    assert!(e.contains("unknown field `database`"), "{e}");
    assert!(e.contains("databases"), "names the expected keys: {e}");
    assert!(e.contains("line"), "says where: {e}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"
[[center]]
name = "A b"
mysql = "postgres://x"
metrics_listen = "nowhere"

[[center]]
name = "b"

[replication]
databases = []
include_tables = ["noshape"]
loopback = "magic"

[applier]
parallelism = 0
share_rows = 0
"#;
    let e = errors(text);
    let all = e.join("\n");
    for needle in [
        "center[0].name",
        "center[0].mysql",
        "center[0].metrics_listen",
        "center[1].mysql: missing",
        "replication.databases: empty",
        "replication.include_tables[0]",
        "replication.loopback",
        "applier.parallelism: 0 is out of range",
        "applier.share_rows: 0 is out of range",
    ] {
        assert!(all.contains(needle), "lacks {needle:?}:\n{all}");
    }
    assert!(e.len() >= 8);
}

#[test]
fn passwords_come_from_env_or_file_and_never_print() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("pw");
    std::fs::write(&file, "f1le:pw@\n").expect("write");
    let text = MINIMAL
        .replacen(
            "metrics_listen = \"127.0.0.1:9401\"",
            "metrics_listen = \"127.0.0.1:9401\"\npassword_env = \"A_PW\"",
            1,
        )
        .replacen(
            "metrics_listen = \"127.0.0.1:9402\"",
            &format!(
                "metrics_listen = \"127.0.0.1:9402\"\npassword_file = \"{}\"",
                file.display()
            ),
            1,
        );
    let env = |k: &str| (k == "A_PW").then(|| "s3cret".to_string());
    let c = Config::parse(&text, &env).expect("valid");
    assert_eq!(c.centers[0].url(), "mysql://root:s3cret@127.0.0.1:3311");
    assert_eq!(
        c.centers[1].url(),
        "mysql://root:f1le%3Apw%40@127.0.0.1:3312"
    );
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("s3cret") && !shown.contains("f1le"),
        "{shown}"
    );
    // A missing variable is an error naming it.
    let e = errors(&text).join("\n");
    assert!(e.contains("environment variable A_PW is not set"), "{e}");
}

#[test]
fn include_and_exclude_patterns() {
    let text = MINIMAL.replace(
        "databases = [\"shop\"]",
        "databases = [\"shop\", \"crm\"]\ninclude_tables = [\"shop.*\", \"crm.contacts\"]\nexclude_tables = [\"shop.tmp_*\"]",
    );
    let c = Config::parse(&text, &no_env).expect("valid");
    let r = &c.replication;
    assert!(r.replicates("shop", "orders"));
    assert!(!r.replicates("shop", "tmp_x"));
    assert!(r.replicates("crm", "contacts"));
    assert!(!r.replicates("crm", "leads"));
}

#[test]
fn replicas_and_election_defaults() {
    let text = MINIMAL.replace(
        "metrics_listen = \"127.0.0.1:9402\"",
        "metrics_listen = \"127.0.0.1:9402\"\nreplicas = [\"10.0.2.1:9501\", \"10.0.2.2:9501\", \"drc-b-3:9501\"]",
    );
    // Replicas need the center's Raft secret.
    let e = Config::parse(&text, &no_env).expect_err("no secret");
    assert!(
        e.to_string()
            .contains("center[1].raft_secret_file: a center with replicas needs a Raft secret"),
        "{e}"
    );
    let short = text.replace("replicas = [", "raft_secret_env = \"S\"\nreplicas = [");
    let e = Config::parse(&short, &|_| Some("too short".into())).expect_err("short");
    assert!(e.to_string().contains("the Raft secret has 9 bytes"), "{e}");
    let c = Config::parse(&short, &|_| Some("0123456789abcdef".into())).expect("valid");
    assert_eq!(
        c.centers[1].raft_secret.as_ref().map(|s| s.expose()),
        Some("0123456789abcdef")
    );
    assert_eq!(format!("{:?}", c.centers[1].raft_secret), "Some(***)");
    assert!(c.centers[0].replicas.is_empty());
    assert_eq!(c.centers[1].replicas.len(), 3);
    assert_eq!(c.election.heartbeat, Duration::from_millis(100));
    assert_eq!(c.election.election_timeout_min, Duration::from_millis(300));
    assert_eq!(c.election.election_timeout_max, Duration::from_millis(600));
    assert_eq!(c.election.apply_log_slots, 1024);
}

#[test]
fn bad_replicas_and_timeouts_are_all_reported() {
    let text = MINIMAL
        .replace(
            "metrics_listen = \"127.0.0.1:9401\"",
            "metrics_listen = \"127.0.0.1:9401\"\nreplicas = [\"h1:9501\", \"h1:9501\", \"nohost\"]",
        )
        .replace(
            "metrics_listen = \"127.0.0.1:9402\"",
            "metrics_listen = \"127.0.0.1:9402\"\nreplicas = [\"h1:9501\", \"h2:9501\"]",
        )
        + "\n[election]\nheartbeat_ms = 500\nelection_timeout_min_ms = 400\nelection_timeout_max_ms = 300\n";
    let e = errors(&text).join("\n");
    assert!(
        e.contains("center[0].replicas[1]: \"h1:9501\" is listed twice"),
        "{e}"
    );
    assert!(
        e.contains("center[0].replicas[2]: \"nohost\" is not an address"),
        "{e}"
    );
    assert!(
        e.contains("center[1].replicas: 2 replicas cannot elect"),
        "{e}"
    );
    assert!(e.contains("is also a replica of center \"a\""), "{e}");
    assert!(
        e.contains("election.election_timeout_min_ms: must be more than election.heartbeat_ms"),
        "{e}"
    );
    assert!(
        e.contains("election.election_timeout_max_ms: must be more than"),
        "{e}"
    );
}

#[test]
fn unknown_election_keys_are_refused() {
    let e = errors(&(MINIMAL.to_string() + "\n[election]\nheartbeat = \"100ms\"\n")).join("\n");
    assert!(e.contains("unknown field `heartbeat`"), "{e}");
}

#[test]
fn conflict_defaults_and_overrides() {
    let c = Config::parse(MINIMAL, &no_env).expect("valid");
    assert_eq!(c.conflict.version_column("shop", "t"), Some("updated_at"));
    assert_eq!(
        c.conflict.tombstone_retention,
        std::time::Duration::from_secs(168 * 3600)
    );
    assert_eq!(
        c.conflict.max_clock_skew,
        std::time::Duration::from_millis(500)
    );
    let text = format!(
        "{MINIMAL}\n[conflict]\nversion_column = \"\"\ntombstone_retention_hours = 24\nmax_clock_skew_ms = 50\n\n[conflict.tables]\n\"shop.orders\" = \"modified\"\n\"shop.audit\" = \"\"\n"
    );
    let c = Config::parse(&text, &no_env).expect("valid");
    assert_eq!(c.conflict.version_column("shop", "t"), None);
    assert_eq!(
        c.conflict.version_column("shop", "orders"),
        Some("modified")
    );
    assert_eq!(c.conflict.version_column("shop", "audit"), None);
    assert_eq!(
        c.conflict.tombstone_retention,
        std::time::Duration::from_secs(24 * 3600)
    );
    assert_eq!(
        c.conflict.max_clock_skew,
        std::time::Duration::from_millis(50)
    );
}

#[test]
fn bad_conflict_keys_are_all_reported() {
    let text = format!(
        "{MINIMAL}\n[conflict]\ntombstone_retention_hours = 0\nmax_clock_skew_ms = 0\n\n[conflict.tables]\n\"orders\" = \"v\"\n\"shop.*\" = \"v\"\n\"shop.t\" = \"{}\"\n",
        "x".repeat(65)
    );
    let e = errors(&text);
    assert_eq!(e.len(), 5, "{e:#?}");
    assert!(e.iter().any(|m| m.contains("max_clock_skew_ms")), "{e:#?}");
    assert!(
        e.iter().any(|m| m.contains("tombstone_retention_hours")),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|m| m.contains("\"orders\"") && m.contains("database.table")),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|m| m.contains("\"shop.*\"") && m.contains("no wildcards")),
        "{e:#?}"
    );
    assert!(e.iter().any(|m| m.contains("64 characters")), "{e:#?}");
    let unknown = errors(&format!("{MINIMAL}\n[conflict]\nversion = \"x\"\n"));
    assert!(
        unknown.iter().any(|m| m.contains("version")),
        "{unknown:#?}"
    );
}

#[test]
fn ddl_defaults_to_stop_and_takes_table_overrides() {
    let c = Config::parse(MINIMAL, &no_env).expect("valid");
    assert_eq!(c.ddl.mode, DdlMode::Stop);
    assert_eq!(c.ddl.mode_of("shop", "t"), DdlMode::Stop);
    let text = format!(
        "{MINIMAL}\n[ddl]\nmode = \"replicate\"\n\n[ddl.tables]\n\"shop.audit_*\" = \"ignore\"\n"
    );
    let c = Config::parse(&text, &no_env).expect("valid");
    assert_eq!(c.ddl.mode_of("shop", "t"), DdlMode::Replicate);
    assert_eq!(c.ddl.mode_of("shop", "audit_1"), DdlMode::Ignore);
}

#[test]
fn bad_ddl_keys_are_all_reported() {
    let text = format!(
        "{MINIMAL}\n[ddl]\nmode = \"ignore\"\n\n[ddl.tables]\n\"shop.*\" = \"ignore\"\n\"orders\" = \"stop\"\n\"shop.t\" = \"skip\"\n"
    );
    let e = errors(&text);
    assert_eq!(e.len(), 4, "{e:#?}");
    assert!(
        e.iter()
            .any(|m| m.contains("ddl.mode") && m.contains("[ddl.tables]")),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|m| m.contains("\"shop.*\"") && m.contains("must name tables")),
        "{e:#?}"
    );
    assert!(e.iter().any(|m| m.contains("\"orders\"")), "{e:#?}");
    assert!(e.iter().any(|m| m.contains("\"skip\"")), "{e:#?}");
    let marker = errors(&MINIMAL.replace(
        "databases = [\"shop\"]",
        "databases = [\"shop\"]\nloopback = \"marker\"\n\n[ddl]\nmode = \"replicate\"",
    ));
    assert!(
        marker.iter().any(|m| m.contains("server_id")),
        "{marker:#?}"
    );
    let unknown = errors(&format!("{MINIMAL}\n[ddl]\nmodes = \"stop\"\n"));
    assert!(unknown.iter().any(|m| m.contains("modes")), "{unknown:#?}");
}

#[test]
fn keys_name_the_center_by_its_place_in_the_file_after_an_invalid_one() {
    let text = "[[center]]\nname = \"BAD NAME\"\nmysql = \"mysql://r@h:1\"\n\
                [[center]]\nname = \"b\"\nmysql = \"mysql://r@h:2\"\nmetrics_listen = \"127.0.0.1:9401\"\n\
                [[center]]\nname = \"c\"\nmysql = \"mysql://r@h:3\"\nmetrics_listen = \"127.0.0.1:9401\"\n\
                [replication]\ndatabases = [\"s\"]\n";
    let e = Config::parse(text, &no_env)
        .expect_err("invalid")
        .to_string();
    assert!(e.contains("center[0].name"), "{e}");
    assert!(
        e.contains("center[2].metrics_listen: 127.0.0.1:9401 is used by two centers"),
        "{e}"
    );
}
