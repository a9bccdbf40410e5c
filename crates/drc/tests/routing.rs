//! Center closure (issue #14): the route API of the running daemons, `drc route`, and
//! `drc cutover` under load — a writer that routes every write by the route API, while a whole
//! center moves away and a unit moves back; forced while the old home's server is down.
//! Asserted on the data: every acknowledged write present in every center, per-key counters
//! equal to the acknowledged increments, no conflict, refused writes while moving.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drc_testkit::{MariaDb, ServerOptions};
use mysql_async::prelude::Queryable;

use crate::cluster::{Cluster, CONVERGE, NAMES};

/// Keys (user ids) the writers use.
const USERS: u64 = 300;

const SCHEMA: &str = "CREATE TABLE ledger (token VARCHAR(64) PRIMARY KEY, user_id BIGINT NOT NULL, \
     amount INT NOT NULL, updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)); \
     CREATE TABLE counter (user_id BIGINT PRIMARY KEY, n BIGINT NOT NULL, \
     updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))";

const ROUTING: &str = "[routing]\nbuckets = 64\nkey_column = \"user_id\"\n\
     [[routing.unit]]\nname = \"u-a\"\nbuckets = \"0-20\"\nhome = \"a\"\n\
     [[routing.unit]]\nname = \"u-b\"\nbuckets = \"21-41\"\nhome = \"b\"\n\
     [[routing.unit]]\nname = \"u-c\"\nbuckets = \"42-63\"\nhome = \"c\"\n";

fn drc(cl: &Cluster, args: &[&str]) -> (Option<i32>, String) {
    cl.drc(args)
}

/// `drc ARGS` fails and says `what`.
fn refused(cl: &Cluster, args: &[&str], what: &str) {
    let (code, out) = cl.drc(args);
    assert_ne!(code, Some(0), "drc {args:?} must fail: {out}");
    assert!(out.contains(what), "drc {args:?} must say {what:?}: {out}");
}

/// A GET of a daemon's JSON endpoint.
async fn get(cl: &Cluster, i: usize, path: &str) -> Option<serde_json::Value> {
    drc_route::centers::http_get_json(&format!("127.0.0.1:{}", cl.ports[i]), path)
        .await
        .ok()
}

/// Creates the application user (no SUPER: `read_only` applies to it).
async fn prepare(cl: &Cluster, urls: &[String]) {
    for url in urls {
        let mut c = drc_testkit::connect(url).await;
        c.query_drop(format!(
            "CREATE USER IF NOT EXISTS 'drc_app'@'%'; GRANT SELECT, INSERT, UPDATE, DELETE ON `{}`.* TO 'drc_app'@'%'",
            cl.db
        ))
        .await
        .expect("app user");
    }
}

/// Inserts every counter in its key's home center (as the application would) and waits until
/// every center has them.
async fn counters(cl: &Cluster) {
    for (i, range) in [(0, 0..=20), (1, 21..=41), (2, 42..=63)] {
        let values: Vec<String> = (0..USERS)
            .filter(|u| range.contains(&drc_route::bucket_of(&u.to_string(), 64)))
            .map(|u| format!("({u}, 0)"))
            .collect();
        cl.conn(i)
            .await
            .query_drop(format!(
                "INSERT INTO counter (user_id, n) VALUES {}",
                values.join(",")
            ))
            .await
            .expect("counters");
    }
    assert_eq!(cl.wait_converged("counter").await, USERS);
}

/// What the writers saw.
#[derive(Default)]
struct Ledger {
    /// Acknowledged tokens and their user.
    acked: Vec<(String, u64)>,
    /// Tokens whose commit may or may not have happened (connection lost mid-write).
    ambiguous: Vec<(String, u64)>,
    /// Writes the route API answered not writable for.
    refused_route: u64,
    /// Writes the database refused (read_only).
    refused_db: u64,
}

/// Writers that route every write by the route API of a random daemon, and write in the home
/// center as the application user, until `stop`.
fn writers(
    cl: &Cluster,
    urls: &[String],
    n: usize,
    stop: Arc<AtomicBool>,
    seed: u64,
) -> (Arc<Mutex<Ledger>>, Vec<tokio::task::JoinHandle<()>>) {
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let seq = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..n {
        let app_urls: Vec<String> = urls
            .iter()
            .map(|u| {
                format!(
                    "{}/{}",
                    u.replace("mysql://root@", "mysql://drc_app@"),
                    cl.db
                )
            })
            .collect();
        let ports = cl.ports.clone();
        let (stop, ledger, seq) = (stop.clone(), ledger.clone(), seq.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(seed.wrapping_add(w as u64));
            let mut conns: HashMap<String, mysql_async::Conn> = HashMap::new();
            while !stop.load(Ordering::Relaxed) {
                let user = rng.u64(0..USERS);
                let daemon = rng.usize(0..3);
                let addr = format!("127.0.0.1:{}", ports[daemon]);
                let Ok(route) =
                    drc_route::centers::http_get_json(&addr, &format!("/v1/route?key={user}")).await
                else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                if route["writable"] != true {
                    ledger.lock().expect("ledger").refused_route += 1;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    continue;
                }
                let home = route["home"].as_str().unwrap_or_default().to_string();
                let Some(i) = NAMES.iter().position(|n| *n == home) else {
                    panic!("route without a known home: {route}");
                };
                if !conns.contains_key(&home) {
                    match mysql_async::Conn::from_url(&app_urls[i]).await {
                        Ok(c) => {
                            conns.insert(home.clone(), c);
                        }
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                    }
                }
                let Some(conn) = conns.get_mut(&home) else {
                    continue;
                };
                let token = format!("w{w}-{}", seq.fetch_add(1, Ordering::Relaxed));
                let q = format!(
                    "START TRANSACTION; INSERT INTO ledger (token, user_id, amount) VALUES ('{token}', {user}, 1); \
                     UPDATE counter SET n = n + 1 WHERE user_id = {user}; COMMIT"
                );
                match conn.query_drop(q).await {
                    Ok(()) => ledger.lock().expect("ledger").acked.push((token, user)),
                    Err(mysql_async::Error::Server(e)) if e.code == 1290 => {
                        ledger.lock().expect("ledger").refused_db += 1;
                        let _ = conn.query_drop("ROLLBACK").await;
                    }
                    Err(_) => {
                        // Connection lost or ended by the fence: the commit may have happened.
                        ledger.lock().expect("ledger").ambiguous.push((token, user));
                        conns.remove(&home);
                    }
                }
            }
        }));
    }
    (ledger, tasks)
}

async fn count(cl: &Cluster, i: usize, q: &str) -> u64 {
    cl.conn(i)
        .await
        .query_first::<u64, _>(q)
        .await
        .expect("count")
        .unwrap_or(0)
}

/// Every acknowledged write is in every center once, nothing unacknowledged beyond the
/// ambiguous ones, and (when `exact_counters`) each counter equals its acknowledged increments.
async fn assert_writes(cl: &Cluster, l: &Ledger, exact_counters: bool) {
    let acked: HashMap<&str, u64> = l.acked.iter().map(|(t, u)| (t.as_str(), *u)).collect();
    let ambiguous: HashMap<&str, u64> = l.ambiguous.iter().map(|(t, u)| (t.as_str(), *u)).collect();
    for (i, name) in NAMES.iter().enumerate() {
        let mut c = cl.conn(i).await;
        let rows: Vec<(String, u64)> = c
            .query("SELECT token, user_id FROM ledger")
            .await
            .expect("ledger");
        let present: HashMap<&str, u64> = rows.iter().map(|(t, u)| (t.as_str(), *u)).collect();
        let missing: Vec<&&str> = acked
            .keys()
            .filter(|t| !present.contains_key(**t))
            .collect();
        assert!(
            missing.is_empty(),
            "center {}: {} acknowledged writes missing, e.g. {:?}",
            name,
            missing.len(),
            missing.iter().take(5).collect::<Vec<_>>()
        );
        let unknown: Vec<&&str> = present
            .keys()
            .filter(|t| !acked.contains_key(**t) && !ambiguous.contains_key(**t))
            .collect();
        assert!(
            unknown.is_empty(),
            "center {}: writes nobody made: {unknown:?}",
            name
        );
        if exact_counters {
            let counters: Vec<(u64, u64)> = c
                .query("SELECT user_id, n FROM counter")
                .await
                .expect("counters");
            let mut per_user: HashMap<u64, u64> = HashMap::new();
            for (_, u) in &rows {
                *per_user.entry(*u).or_default() += 1;
            }
            for (u, n) in counters {
                let in_ledger = per_user.get(&u).copied().unwrap_or(0);
                assert_eq!(
                    n, in_ledger,
                    "center {}: user {u}'s counter is {n} but {in_ledger} increments of it are in the ledger (a lost or doubled write)",
                    name
                );
            }
        }
    }
}

fn not_writable_ms(out: &str) -> u64 {
    out.split("the keys were not writable for ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no unwritable time in the output:\n{out}"))
}

async fn conflicts(cl: &Cluster) -> u64 {
    let mut total = 0;
    for (i, name) in NAMES.iter().enumerate() {
        let rows: Vec<(String, String, String, String)> = cl
            .conn(i)
            .await
            .query(format!(
                "SELECT link, row_key, resolution, loser FROM `{}_meta`.conflict LIMIT 5",
                cl.db
            ))
            .await
            .expect("conflicts");
        for r in rows {
            println!("conflict in {}: {r:?}", name);
        }
        total += count(
            cl,
            i,
            &format!("SELECT COUNT(*) FROM `{}_meta`.conflict", cl.db),
        )
        .await;
    }
    total
}

async fn foreign_writes(cl: &Cluster) -> f64 {
    let mut total = 0.0;
    for i in 0..3 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", cl.ports[i]))
            .await
            .expect("daemon answers");
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
            .await
            .expect("write");
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.expect("read");
        total += buf
            .lines()
            .filter(|l| l.starts_with("drc_routing_foreign_writes_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    total
}

/// Waits until every daemon serves `unit` with home `home` and writable.
async fn wait_served(cl: &Cluster, unit: &str, home: &str) {
    for (i, name) in NAMES.iter().enumerate() {
        let what = format!("the daemon of {} serves {unit} at {home}", name);
        drc_testkit::wait_until(&what, CONVERGE, || async move {
            get(cl, i, "/v1/routes").await.is_some_and(|v| {
                v["units"].as_array().is_some_and(|us| {
                    us.iter()
                        .any(|u| u["unit"] == unit && u["home"] == home && u["state"] == "writable")
                })
            })
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_center_moves_away_and_a_unit_back_under_load_with_every_write_exactly_once() {
    let seed = std::env::var("DRC_ROUTE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("seed {seed} (DRC_ROUTE_SEED replays it)");
    let urls: Vec<String> = crate::cluster::servers().iter().map(MariaDb::url).collect();
    let mut cl = Cluster::new("route", SCHEMA, "auto", ROUTING).await;
    prepare(&cl, &urls).await;
    cl.start_all();
    cl.wait_running().await;
    counters(&cl).await;
    wait_served(&cl, "u-a", "a").await;
    let stop = Arc::new(AtomicBool::new(false));
    let (ledger, tasks) = writers(&cl, &urls, 6, stop.clone(), seed);
    let began = std::time::Instant::now();
    let writes_after = |n: usize| {
        let ledger = ledger.clone();
        async move {
            drc_testkit::wait_until("the writers acknowledge more writes", CONVERGE, || {
                let ledger = ledger.clone();
                async move { ledger.lock().expect("ledger").acked.len() >= n }
            })
            .await;
        }
    };
    writes_after(500).await;
    let (code, out) = drc(&cl, &["cutover", "--from", "a", "--to", "b"]);
    println!("{out}");
    assert_eq!(code, Some(0), "{out}");
    let away_ms = not_writable_ms(&out);
    wait_served(&cl, "u-a", "b").await;
    let before = ledger.lock().expect("ledger").acked.len();
    writes_after(before + 500).await;
    // a is read_only for the application now.
    let app_a = format!(
        "{}/{}",
        urls[0].replace("mysql://root@", "mysql://drc_app@"),
        cl.db
    );
    let mut c = mysql_async::Conn::from_url(&app_a)
        .await
        .expect("app connects");
    let refused = c
        .query_drop("UPDATE counter SET n = n + 1 WHERE user_id = 0")
        .await;
    assert!(
        matches!(&refused, Err(mysql_async::Error::Server(e)) if e.code == 1290),
        "a write in the fenced center: {refused:?}"
    );
    drop(c);
    let (code, out) = drc(&cl, &["cutover", "--unit", "u-a", "--to", "a"]);
    println!("{out}");
    assert_eq!(code, Some(0), "{out}");
    let back_ms = not_writable_ms(&out);
    assert!(out.contains("a is no longer read_only"), "{out}");
    wait_served(&cl, "u-a", "a").await;
    let before = ledger.lock().expect("ledger").acked.len();
    writes_after(before + 500).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("writer");
    }
    let ran = began.elapsed().as_secs_f64();
    cl.wait_converged("ledger").await;
    cl.wait_converged("counter").await;
    let l = std::mem::take(&mut *ledger.lock().expect("ledger"));
    println!(
        "routed load: {:.0} acknowledged writes/s over {ran:.1} s; acknowledged {}, ambiguous {}, refused by the route {} and by read_only {}; not writable: {away_ms} ms away, {back_ms} ms back",
        l.acked.len() as f64 / ran,
        l.acked.len(),
        l.ambiguous.len(),
        l.refused_route,
        l.refused_db
    );
    assert!(
        l.refused_route + l.refused_db > 0,
        "no write was refused while the units moved"
    );
    assert_writes(&cl, &l, true).await;
    assert_eq!(conflicts(&cl).await, 0, "a key was written in two centers");
    assert_eq!(foreign_writes(&cl).await, 0.0, "closure violations counted");
    // A write of a u-a key made in c is a closure violation, counted where it is applied.
    let mut c = cl.conn(2).await;
    c.query_drop("INSERT INTO ledger (token, user_id, amount) VALUES ('stray', 0, 1)")
        .await
        .expect("stray write");
    drc_testkit::wait_until(
        "the stray write is counted as foreign",
        CONVERGE,
        || async { foreign_writes(&cl).await >= 2.0 },
    )
    .await;
    // drc route agrees with the daemons.
    let (code, out) = drc(&cl, &["route", "--key", "0", "--json"]);
    assert_eq!(code, Some(0), "{out}");
    let cli: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    let api = get(&cl, 1, "/v1/route?key=0").await.expect("route api");
    assert_eq!(cli, api);
    assert_eq!(api["home"], "a");
    assert_eq!(api["unit"], "u-a");
    assert_eq!(api["bucket"], 0);
    assert_eq!(api["epoch"], 4, "two cutovers, two changes each");
    cl.kill9(0);
    cl.kill9(1);
    cl.kill9(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forced_cutover_flips_at_once_and_the_old_home_catches_up_when_back() {
    let seed = fastrand::u64(..);
    println!("seed {seed}");
    let mut servers: Vec<MariaDb> = std::thread::scope(|s| {
        let h: Vec<_> = (0..3)
            .map(|_| s.spawn(|| MariaDb::start(ServerOptions::default()).expect("server")))
            .collect();
        h.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let urls: Vec<String> = servers.iter().map(MariaDb::url).collect();
    let mut cl = Cluster::on(&urls, "forced", SCHEMA, "auto", ROUTING).await;
    prepare(&cl, &urls).await;
    cl.start_all();
    cl.wait_running().await;
    counters(&cl).await;
    wait_served(&cl, "u-a", "a").await;
    let stop = Arc::new(AtomicBool::new(false));
    let (ledger, tasks) = writers(&cl, &urls, 4, stop.clone(), seed);
    drc_testkit::wait_until("writes are acknowledged", CONVERGE, || async {
        ledger.lock().expect("ledger").acked.len() >= 300
    })
    .await;
    servers[0].stop().expect("a stops");
    let (code, out) = drc(&cl, &["cutover", "--from", "a", "--to", "b"]);
    assert_ne!(code, Some(0), "a cutover without a must refuse: {out}");
    assert!(out.contains("--force"), "{out}");
    let (code, out) = drc(&cl, &["cutover", "--from", "a", "--to", "b", "--force"]);
    println!("{out}");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("forced: writes of a after"), "{out}");
    let (_, history) = drc(&cl, &["route", "--history"]);
    assert!(
        history.contains("forced") && history.contains("window after"),
        "{history}"
    );
    // The daemons of b and c serve the flip (a's daemon has no database).
    let clr = &cl;
    for i in 1..3 {
        drc_testkit::wait_until("b and c serve u-a at b", CONVERGE, || async move {
            get(clr, i, "/v1/route?key=0")
                .await
                .is_some_and(|v| v["home"] == "b" && v["writable"] == true)
        })
        .await;
    }
    let before = ledger.lock().expect("ledger").acked.len();
    drc_testkit::wait_until("writes go on in b and c", CONVERGE, || async {
        ledger.lock().expect("ledger").acked.len() >= before + 300
    })
    .await;
    servers[0].start_again().expect("a is back");
    // a's daemon raises a's map to the newest epoch of its peers.
    let meta = format!("{}_meta", cl.db);
    drc_testkit::wait_until("a's own map converges on u-a at b", CONVERGE, || {
        let (cl, meta) = (&cl, meta.clone());
        async move {
            let mut c = cl.conn(0).await;
            let home: Option<String> = c
                .query_first(format!(
                    "SELECT home FROM `{meta}`.route_unit WHERE unit = 'u-a'"
                ))
                .await
                .ok()
                .flatten();
            home.as_deref() == Some("b")
        }
    })
    .await;
    let (code, out) = drc(&cl, &["cutover", "--unit", "u-a", "--to", "a"]);
    println!("{out}");
    assert_eq!(code, Some(0), "{out}");
    let before = ledger.lock().expect("ledger").acked.len();
    drc_testkit::wait_until("writes go on after the cutback", CONVERGE, || async {
        ledger.lock().expect("ledger").acked.len() >= before + 200
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("writer");
    }
    cl.wait_converged("ledger").await;
    cl.wait_converged("counter").await;
    let l = std::mem::take(&mut *ledger.lock().expect("ledger"));
    println!(
        "acknowledged {}, ambiguous {}, refused {} + {}",
        l.acked.len(),
        l.ambiguous.len(),
        l.refused_route,
        l.refused_db
    );
    // Forced: a's late writes may lose conflicts on counters, but no acknowledged write is lost.
    assert_writes(&cl, &l, false).await;
    cl.kill9(0);
    cl.kill9(1);
    cl.kill9(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutovers_refuse_what_they_cannot_do_and_resume_what_they_started() {
    let mut cl = Cluster::new("route_cli", SCHEMA, "auto", ROUTING).await;
    cl.start_all();
    cl.wait_running().await;
    wait_served(&cl, "u-c", "c").await;
    // Another cutover holds the lock: this one stops and says so.
    let meta = format!("{}_meta", cl.db);
    let mut holder = cl.conn(0).await;
    let got: Option<i64> = holder
        .query_first(format!("SELECT GET_LOCK('drc_cutover.{meta}', 0)"))
        .await
        .expect("lock");
    assert_eq!(got, Some(1));
    refused(
        &cl,
        &["cutover", "--unit", "u-c", "--to", "b"],
        "another drc cutover is running",
    );
    drop(holder);
    // A unit left moving to c (a crashed cutover): moving it elsewhere is refused, finishing it
    // resumes.
    for i in 0..3 {
        cl.conn(i)
            .await
            .query_drop(format!(
                "UPDATE `{meta}`.route_unit SET state = 'moving', target = 'c', epoch = 7, cutover = 'crashed' WHERE unit = 'u-b'"
            ))
            .await
            .expect("moving row");
    }
    refused(
        &cl,
        &["cutover", "--unit", "u-b", "--to", "a"],
        "unit u-b is moving to c",
    );
    let (code, out) = drc(
        &cl,
        &["cutover", "--unit", "u-b", "--to", "c", "--drain-ms", "0"],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("resumed"), "{out}");
    wait_served(&cl, "u-b", "c").await;
    // Run again: nothing to do.
    let (code, out) = drc(&cl, &["cutover", "--unit", "u-b", "--to", "c"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("nothing to move"), "{out}");
    // Unknown names are refused with the known ones.
    refused(
        &cl,
        &["cutover", "--unit", "nope", "--to", "c"],
        "units: u-a, u-b, u-c",
    );
    refused(
        &cl,
        &["cutover", "--from", "a", "--to", "zz"],
        "\"zz\" is not a center",
    );
    refused(
        &cl,
        &["cutover", "--unit", "u-a", "--to", "a"],
        "unit u-a already lives in a",
    );
    refused(
        &cl,
        &["cutover", "--from", "a", "--to", "a"],
        "--from and --to are both a",
    );
    refused(
        &cl,
        &["cutover", "--from", "zz", "--to", "a"],
        "--from \"zz\" is not a center",
    );
    // A map that leaves buckets out, with an unknown home: both reported, nothing run.
    let text = std::fs::read_to_string(&cl.config).expect("config");
    let bad = cl.config.with_file_name("bad.toml");
    std::fs::write(
        &bad,
        text.replace(
            "buckets = \"42-63\"\nhome = \"c\"",
            "buckets = \"42-60\"\nhome = \"x\"",
        ),
    )
    .expect("bad config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_drc"))
        .args(["route", "--key", "1", "--config"])
        .arg(&bad)
        .output()
        .expect("drc runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(err.contains("bucket(s) 61-63 belong to no unit"), "{err}");
    assert!(err.contains("home \"x\" is not a center"), "{err}");
    // The whole map, as text.
    let (code, out) = drc(&cl, &["route"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("u-b") && out.contains("home c"), "{out}");
    let missing = get(&cl, 0, "/v1/route").await.expect("answer");
    assert!(
        missing["error"]
            .as_str()
            .is_some_and(|e| e.contains("key=")),
        "{missing}"
    );
}
