//! Three replicas in one process over loopback TCP: one leader, and a new one with a higher
//! term after the leader stops; votes survive a restart from the same data directory. The
//! transport refuses what is not signed with the center's secret, and a flood of connections
//! does not stop an election.

use std::time::Duration;

use super::*;

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

const SECRET: &[u8] = b"0123456789abcdef-test-secret";

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
            Election::start("t", &names, i, addrs[i], dirs[i].path(), TIMEOUTS, SECRET)
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
            SECRET,
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
        SECRET,
    )
    .await
    .err()
    .expect("error");
    assert!(e.to_string().contains("replica 1 does not exist"), "{e}");
}

async fn three(
    secret: &[u8],
) -> (
    Vec<tempfile::TempDir>,
    Vec<SocketAddr>,
    Vec<Option<Election>>,
) {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let addrs: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
    let names: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(Some(
            Election::start("t", &names, i, addrs[i], dirs[i].path(), TIMEOUTS, secret)
                .await
                .expect("start"),
        ));
    }
    (dirs, addrs, nodes)
}

/// Sends one vote request for `term` to `addr`, signed with `key`; the peer's answer, or `None`
/// when it closed the connection instead.
async fn forged_vote(addr: SocketAddr, key: &[u8], term: u64) -> Option<network::Response> {
    use tokio::io::AsyncReadExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut nonce = [0u8; 16];
    s.read_exact(&mut nonce).await.expect("nonce");
    let req = network::Request::Vote(openraft::raft::VoteRequest::new(
        openraft::Vote::new(term, 2),
        None,
    ));
    let bytes = serde_json::to_vec(&req).expect("json");
    network::write_frame(&mut s, &network::Key::new(key), &nonce, b"req", 0, &bytes)
        .await
        .expect("write");
    let answer = async {
        let len = s.read_u32().await.ok()?;
        let mut frame = vec![0u8; 32 + len as usize];
        s.read_exact(&mut frame).await.ok()?;
        serde_json::from_slice::<network::Response>(&frame[32..]).ok()
    };
    tokio::time::timeout(Duration::from_secs(5), answer)
        .await
        .expect("the peer answers or closes in time")
}

fn terms(nodes: &[Option<Election>]) -> Vec<u64> {
    nodes
        .iter()
        .flatten()
        .map(|n| n.leadership().borrow().current_term)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vote_not_signed_with_the_secret_changes_nothing() {
    let (_dirs, addrs, nodes) = three(SECRET).await;
    let (leader, term) = one_leader(&nodes, 0).await;
    let follower = (leader + 1) % 3;
    let before = terms(&nodes);
    // A well-formed vote with a much higher term, signed with another key: refused unread.
    let refused = forged_vote(addrs[follower], b"not-the-center-secret!!", term + 100).await;
    assert!(refused.is_none(), "{refused:?}");
    // And unsigned garbage of the old format (length + JSON): refused too.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addrs[follower])
            .await
            .expect("connect");
        let mut nonce = [0u8; 16];
        s.read_exact(&mut nonce).await.expect("nonce");
        let json = br#"{"Vote":{"vote":{"leader_id":{"term":999,"node_id":2},"committed":false},"last_log_id":null}}"#;
        s.write_all(&(json.len() as u32).to_be_bytes())
            .await
            .expect("len");
        s.write_all(json).await.expect("json");
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("closed in time")
            .unwrap_or(0);
        assert_eq!(n, 0, "the peer must close the connection");
    }
    // Nothing moved: same leader, same terms, over a few heartbeats.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(terms(&nodes), before);
        assert_eq!(
            leader_term(
                &nodes[leader]
                    .as_ref()
                    .expect("leader")
                    .leadership()
                    .borrow()
            ),
            Some(term)
        );
    }
    // The same vote signed with the secret reaches openraft, which answers it (the checks above
    // can fail; openraft itself may then refuse the vote while the leader's lease holds).
    let answered = forged_vote(addrs[follower], SECRET, term + 100).await;
    assert!(
        matches!(answered, Some(network::Response::Vote(_))),
        "{answered:?}"
    );
    for n in nodes.into_iter().flatten() {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_connections_does_not_stop_the_election() {
    let (_dirs, addrs, mut nodes) = three(SECRET).await;
    let (leader, term) = one_leader(&nodes, 0).await;
    // 300 idle connections to every replica, kept open, and more arriving during the election.
    let mut flood = Vec::new();
    for a in &addrs {
        for _ in 0..300 {
            if let Ok(s) = tokio::net::TcpStream::connect(a).await {
                flood.push(s);
            }
        }
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooder = {
        let (stop, addrs) = (stop.clone(), addrs.clone());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for a in &addrs {
                    if let Ok(s) = tokio::net::TcpStream::connect(a).await {
                        held.push(s);
                    }
                }
                if held.len() > 3000 {
                    held.clear();
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    if let Some(n) = nodes[leader].take() {
        n.shutdown().await;
    }
    let (next, term2) = one_leader(&nodes, term).await;
    assert_ne!(next, leader);
    assert!(term2 > term);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flooder.await.expect("flooder");
    drop(flood);
    for n in nodes.into_iter().flatten() {
        n.shutdown().await;
    }
}
