//! Three replicas in one process over loopback TCP: one leader, and a new one with a higher
//! term after the leader stops; votes survive a restart from the same data directory.

use std::time::Duration;

use super::*;

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

const TIMEOUTS: Timeouts = Timeouts {
    heartbeat: Duration::from_millis(100),
    election_min: Duration::from_millis(300),
    election_max: Duration::from_millis(600),
};

/// Waits until exactly one of `nodes` leads, with a term above `above`; returns (index, term).
async fn one_leader(nodes: &[Option<Election>], above: u64) -> (usize, u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let leaders: Vec<(usize, u64)> = nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                let n = n.as_ref()?;
                leader_term(&n.leadership().borrow()).map(|t| (i, t))
            })
            .filter(|&(_, t)| t > above)
            .collect();
        if leaders.len() == 1 {
            return leaders[0];
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no single leader: {leaders:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elects_and_fails_over() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let addrs: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
    let names: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(Some(
            Election::start("t", &names, i, addrs[i], dirs[i].path(), TIMEOUTS)
                .await
                .expect("start"),
        ));
    }
    let (leader, term) = one_leader(&nodes, 0).await;
    if let Some(n) = nodes[leader].take() {
        n.shutdown().await;
    }
    let (next, term2) = one_leader(&nodes, term).await;
    assert_ne!(next, leader);
    assert!(term2 > term);
    // The old leader restarts from its data directory, rejoins as a follower.
    nodes[leader] = Some(
        Election::start(
            "t",
            &names,
            leader,
            addrs[leader],
            dirs[leader].path(),
            TIMEOUTS,
        )
        .await
        .expect("restart"),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let m = nodes[leader]
            .as_ref()
            .expect("node")
            .leadership()
            .borrow()
            .clone();
        if m.current_term >= term2 && m.current_leader.is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "restarted node never followed: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for n in nodes.into_iter().flatten() {
        n.shutdown().await;
    }
}

#[tokio::test]
async fn replica_index_is_checked() {
    let dir = tempfile::tempdir().expect("dir");
    let e = Election::start(
        "t",
        &["127.0.0.1:1".into()],
        1,
        free_addr(),
        dir.path(),
        TIMEOUTS,
    )
    .await
    .err()
    .expect("error");
    assert!(e.to_string().contains("replica 1 does not exist"), "{e}");
}
