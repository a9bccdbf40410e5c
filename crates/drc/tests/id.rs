//! `drc id`: several real processes minting at once, decoding, and bad input.
//!
//! Tests that need Redis (127.0.0.1:6379) are skipped with a message when none answers, unless
//! `CI` is set: then they fail (`.ci/run` starts redis-server).

use std::collections::HashSet;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use drc_id::{region_of, Layout};
use serde_json::Value as Json;

const DEADLINE: Duration = Duration::from_secs(60);
const REDIS_ADDR: &str = "127.0.0.1:6379";

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_drc"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("drc starts")
}

/// Waits for `child`, reading its output meanwhile (ids fill a pipe buffer quickly), failing
/// the test if it does not end within [`DEADLINE`] of `began`.
fn finish(mut child: Child, began: Instant, what: &str) -> Output {
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let (out, err) = (read(Box::new(stdout)), read(Box::new(stderr)));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if began.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            let err = err.join().expect("stderr reader");
            panic!(
                "{what} did not finish within {DEADLINE:?}; stderr: {}",
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

fn drc(args: &[&str]) -> Output {
    finish(spawn(args), Instant::now(), &format!("drc {args:?}"))
}

/// The ids printed by a successful run.
fn ids(out: &Output, what: &str) -> Vec<u64> {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            l.parse()
                .unwrap_or_else(|e| panic!("not an id ({e}): {l:?}"))
        })
        .collect()
}

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The Redis URL, or `None` after printing why the test is skipped (never under CI).
fn redis(test: &str) -> Option<String> {
    let addr: SocketAddr = REDIS_ADDR.parse().expect("address");
    if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
        return Some(format!("redis://{REDIS_ADDR}"));
    }
    assert!(
        !under_ci(),
        "{test}: no Redis answers on {REDIS_ADDR}, and CI is set (.ci/run starts redis-server)"
    );
    eprintln!("SKIPPED {test}: no Redis answers on {REDIS_ADDR}; under CI this fails instead");
    None
}

fn namespace(prefix: &str) -> String {
    format!(
        "{}_{:08x}",
        drc_testkit::unique_db_name(prefix),
        fastrand::u32(..)
    )
}

/// Runs `drc id next ARGS --region R` for R = 0, 1, 2 at the same time; returns each region's
/// ids.
fn three_regions(args: &[&str]) -> Vec<Vec<u64>> {
    let began = Instant::now();
    let children: Vec<(Child, String)> = (0..3)
        .map(|r| {
            let region = r.to_string();
            let mut all = vec!["id", "next"];
            all.extend_from_slice(args);
            all.extend_from_slice(&["--region", &region]);
            (spawn(&all), format!("drc {all:?}"))
        })
        .collect();
    children
        .into_iter()
        .map(|(child, what)| {
            let out = finish(child, began, &what);
            ids(&out, &what)
        })
        .collect()
}

fn assert_unique(per_region: &[Vec<u64>], count: usize) {
    let mut all = HashSet::new();
    for ids in per_region {
        assert_eq!(ids.len(), count);
        all.extend(ids.iter().copied());
    }
    assert_eq!(all.len(), 3 * count, "no id minted twice");
}

#[test]
fn three_processes_in_three_regions_mint_disjoint_segment_ids_through_redis() {
    let Some(url) = redis("three_processes_..._segment_ids_through_redis") else {
        return;
    };
    let ns = namespace("cli_seg");
    let per = three_regions(&[
        "--kind",
        "segment",
        "--regions",
        "3",
        "--count",
        "20000",
        "--step",
        "500",
        "--redis",
        &url,
        "--namespace",
        &ns,
    ]);
    assert_unique(&per, 20000);
    for (r, ids) in per.iter().enumerate() {
        assert!(ids.iter().all(|&id| region_of(id, 3) == r as u32));
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }
}

#[test]
fn three_processes_in_three_regions_mint_disjoint_segment_ids_through_mysql() {
    let srv = &drc_testkit::shared_servers(3)[0];
    let db = drc_testkit::unique_db_name("idcli");
    let per = three_regions(&[
        "--kind",
        "segment",
        "--regions",
        "3",
        "--count",
        "5000",
        "--step",
        "500",
        "--mysql",
        &srv.url(),
        "--meta-db",
        &db,
    ]);
    assert_unique(&per, 5000);
    for (r, ids) in per.iter().enumerate() {
        assert!(ids.iter().all(|&id| region_of(id, 3) == r as u32));
    }
}

#[test]
fn three_processes_in_three_regions_mint_disjoint_snowflakes_with_leased_workers() {
    let Some(url) = redis("three_processes_..._snowflakes_with_leased_workers") else {
        return;
    };
    let ns = namespace("cli_sf");
    // Same worker number in every region: the region bits keep them apart.
    let per = three_regions(&[
        "--kind",
        "snowflake",
        "--worker",
        "1",
        "--count",
        "50000",
        "--redis",
        &url,
        "--namespace",
        &ns,
    ]);
    assert_unique(&per, 50000);
    let l = Layout::snowflake();
    for (r, ids) in per.iter().enumerate() {
        for &id in ids {
            let d = l.decode(id).expect("decode");
            assert_eq!((d.region, d.worker), (r as u32, 1));
        }
    }
}

#[test]
fn three_processes_in_three_regions_mint_disjoint_raindrops_with_leased_workers_in_mysql() {
    let srv = &drc_testkit::shared_servers(3)[0];
    let db = drc_testkit::unique_db_name("idcli");
    let per = three_regions(&[
        "--kind",
        "raindrop",
        "--worker",
        "4",
        "--count",
        "3000",
        "--mysql",
        &srv.url(),
        "--meta-db",
        &db,
    ]);
    assert_unique(&per, 3000);
    let l = Layout::raindrop();
    for (r, ids) in per.iter().enumerate() {
        assert!(ids.iter().all(|&id| id < 1 << 53), "JavaScript-safe");
        assert!(ids
            .iter()
            .all(|&id| l.decode(id).expect("decode").region == r as u32));
    }
}

#[test]
fn a_released_worker_is_reused_at_once_and_continues_after_the_last_id() {
    let Some(url) = redis("a_released_worker_is_reused_at_once") else {
        return;
    };
    let ns = namespace("cli_reuse");
    let args = [
        "id",
        "next",
        "--kind",
        "snowflake",
        "--region",
        "2",
        "--worker",
        "9",
        "--count",
        "10000",
        "--redis",
        &url,
        "--namespace",
        &ns,
    ];
    let first = ids(&drc(&args), "first run");
    let second = ids(&drc(&args), "second run on the same worker");
    assert!(second[0] > *first.last().expect("ids"));
}

#[test]
fn decode_prints_timestamp_region_worker_and_sequence_as_json() {
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let minted = ids(
        &drc(&[
            "id",
            "next",
            "--kind",
            "snowflake",
            "--region",
            "2",
            "--worker",
            "3",
        ]),
        "drc id next",
    );
    let after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let id = minted[0].to_string();
    let out = drc(&["id", "decode", "--kind", "snowflake", &id]);
    assert!(out.status.success());
    let j: Json = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(j["region"], 2);
    assert_eq!(j["worker"], 3);
    assert!(j["sequence"].as_u64().expect("sequence") < 4096);
    let ts = j["timestamp"].as_u64().expect("timestamp");
    assert!(
        (before..=after + 1000).contains(&ts),
        "{ts} not in {before}..{after}"
    );
    assert!(j["time"].as_str().expect("time").ends_with('Z'));

    let out = drc(&["id", "decode", "--kind", "segment", "--regions", "3", "17"]);
    let j: Json = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(j["region"], 2);
    assert_eq!(j["sequence"], 5);
    assert_eq!(j["worker"], Json::Null);
    assert_eq!(j["timestamp"], Json::Null);
}

#[test]
fn bad_input_is_refused_with_what_to_change() {
    let cases: [(&[&str], &str); 4] = [
        (&["id", "next", "--kind", "segment"], "--redis"),
        (&["id", "next", "--kind", "snowflake"], "--worker"),
        (
            &[
                "id",
                "next",
                "--kind",
                "raindrop",
                "--worker",
                "0",
                "--region-bits",
                "8",
            ],
            "53-bit limit",
        ),
        (
            &["id", "next", "--kind", "snowflake", "--worker", "32"],
            "worker 32 does not fit",
        ),
    ];
    for (args, expected) in cases {
        let out = drc(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let out = drc(&["id", "decode", "--kind", "raindrop", "9007199254740992"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an id"));
}

/// A Redis server of the test's own with TLS only (a certificate from a test CA) and a
/// password: `drc id` mints through `rediss://` with the CA and the password from a file, and
/// refuses the server with another CA.
#[test]
fn ids_through_redis_over_tls_with_the_password_from_a_file() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    if std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("CI").is_err(),
            "redis-server is required under CI"
        );
        eprintln!("skipped: no redis-server");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = |name: &str| {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let pem = p.self_signed(&key).expect("ca").pem();
        (p, key, pem)
    };
    let (params, ca_key, ca_pem) = ca("redis test CA");
    let (_, _, other_pem) = ca("another CA");
    let issuer = Issuer::new(params, ca_key);
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("cert")
        .pem();
    let path = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.display().to_string()
    };
    let (ca_file, other_file) = (path("ca.pem", &ca_pem), path("other.pem", &other_pem));
    let (cert_file, key_file) = (
        path("redis.pem", &cert),
        path("redis-key.pem", &key.serialize_pem()),
    );
    let password = path("password", "s3cret pass\n");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let mut server = std::process::Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args([
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &cert_file,
        ])
        .args(["--tls-key-file", &key_file, "--tls-ca-cert-file", &ca_file])
        .args(["--tls-auth-clients", "no", "--requirepass", "s3cret pass"])
        .args(["--dir", &dir.path().display().to_string()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("rediss://127.0.0.1:{port}");
    let run = |ca: &str| {
        drc(&[
            "id",
            "next",
            "--kind",
            "segment",
            "--regions",
            "2",
            "--region",
            "1",
            "--count",
            "3",
            "--redis",
            &url,
            "--redis-ca",
            ca,
            "--password-file",
            &password,
        ])
    };
    let got = ids(&run(&ca_file), "drc id over rediss://");
    assert_eq!(got.len(), 3);
    assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
    let refused = run(&other_file);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr).to_lowercase();
    assert!(
        err.contains("certificate") || err.contains("unknownissuer"),
        "{err}"
    );
    let _ = server.kill();
    let _ = server.wait();
}
