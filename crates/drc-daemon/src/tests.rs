//! `--replica` against the center's `replicas`.

use super::*;

fn config(replicas: &str) -> Config {
    let text = format!(
        "[[center]]\nname = \"a\"\nmysql = \"mysql://root@127.0.0.1:3311\"\n\n\
         [[center]]\nname = \"b\"\nmysql = \"mysql://root@127.0.0.1:3312\"\n{replicas}\n\n\
         [replication]\ndatabases = [\"shop\"]\n"
    );
    let env = |name: &str| (name == "RAFT").then(|| "a test secret of 32 characters..".to_string());
    Config::parse(&text, &env).expect("valid config")
}

#[test]
fn replica_flag_must_fit_the_replicas_list() {
    let three =
        config("replicas = [\"h1:9501\", \"h2:9501\", \"h3:9501\"]\nraft_secret_env = \"RAFT\"");
    let b = three.center("b").expect("b");
    assert_eq!(replica_index(b, Some(2)).expect("ok"), Some(2));
    let e = replica_index(b, None).expect_err("missing").to_string();
    assert!(e.contains("pass --replica INDEX (0..=2)"), "{e}");
    let e = replica_index(b, Some(3)).expect_err("range").to_string();
    assert!(e.contains("--replica 3 is out of range"), "{e}");
    let none = config("");
    let b = none.center("b").expect("b");
    assert_eq!(replica_index(b, None).expect("ok"), None);
    let e = replica_index(b, Some(0))
        .expect_err("no replicas")
        .to_string();
    assert!(e.contains("has no `replicas`"), "{e}");
}

#[test]
fn replicas_register_under_distinct_server_ids() {
    let base = 3_900_000_000;
    let ids: Vec<u32> = (0..3u32)
        .map(|r| replica_server_id(base, 1, 0).wrapping_add(REPLICA_SERVER_ID_STRIDE * r))
        .collect();
    assert_eq!(ids, [3_900_000_200, 3_900_020_200, 3_900_040_200]);
    // The largest per-replica offset stays below the stride.
    assert!(replica_server_id(0, 99, 99) + 1 < REPLICA_SERVER_ID_STRIDE);
}
