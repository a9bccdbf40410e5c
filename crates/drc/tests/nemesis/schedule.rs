//! The nemesis's fault schedule: generated from the seed alone (so a seed replays the same
//! schedule), printed with every run, and carried out against the cluster by [`execute`].
//!
//! Faults may overlap (several at a time) but never two on the same resource (a daemon, c's
//! active replica, a link, a server, a center's clock).

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use crate::net::{Run, Servers, NAMES};
use crate::proxy::Mode;

/// One fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL of center a's or b's daemon (0 or 1), restarted when the fault ends.
    KillDaemon(usize),
    /// SIGKILL of c's active replica, restarted when the fault ends.
    KillActive,
    /// SIGSTOP of c's active replica, SIGCONT when the fault ends.
    PauseActive,
    /// The link between two centers stalled (`Pause`) or refused (`Refuse`), both directions.
    Cut(usize, usize, Mode),
    /// A center's MariaDB server stopped (`true`: cleanly; `false`: SIGKILL), started again
    /// when the fault ends.
    StopDb(usize, bool),
    /// A center's writers stamp their versions this many seconds behind.
    Skew(usize, i64),
}

impl Fault {
    /// The resource the fault holds.
    fn resource(&self) -> String {
        match self {
            Fault::KillDaemon(i) => format!("daemon-{i}"),
            Fault::KillActive | Fault::PauseActive => "c-active".into(),
            Fault::Cut(x, y, _) => format!("link-{}-{}", x.min(y), x.max(y)),
            Fault::StopDb(i, _) => format!("db-{i}"),
            Fault::Skew(i, _) => format!("clock-{i}"),
        }
    }

    /// A short name for the summary.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::KillDaemon(_) => "kill daemon",
            Fault::KillActive => "kill active replica",
            Fault::PauseActive => "pause active replica",
            Fault::Cut(_, _, Mode::Pause) => "stall link",
            Fault::Cut(..) => "refuse link",
            Fault::StopDb(_, true) => "stop server",
            Fault::StopDb(_, false) => "kill server",
            Fault::Skew(..) => "clock skew",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::KillDaemon(i) => write!(f, "SIGKILL daemon {}", NAMES[*i]),
            Fault::KillActive => write!(f, "SIGKILL c's active replica"),
            Fault::PauseActive => write!(f, "SIGSTOP c's active replica"),
            Fault::Cut(x, y, m) => write!(f, "{m:?} link {}<->{}", NAMES[*x], NAMES[*y]),
            Fault::StopDb(i, clean) => write!(
                f,
                "{} server {}",
                if *clean { "stop" } else { "SIGKILL" },
                NAMES[*i]
            ),
            Fault::Skew(i, s) => write!(f, "clock of {}'s writers {s:+} s", NAMES[*i]),
        }
    }
}

/// A fault, when it starts and how long it lasts (milliseconds from the start of the writes).
#[derive(Debug, Clone, Copy)]
pub struct Event {
    pub at_ms: u64,
    pub dur_ms: u64,
    pub fault: Fault,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>7.1}s +{:>4.1}s  {}",
            self.at_ms as f64 / 1000.0,
            self.dur_ms as f64 / 1000.0,
            self.fault
        )
    }
}

/// The schedule of a seed over `secs` seconds of writes (the last faults end at least 2 s before
/// the writes stop).
pub fn generate(seed: u64, secs: u64) -> Vec<Event> {
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x006e_656d_6573_6973);
    let end = secs * 1000;
    let mut busy: Vec<(String, u64)> = Vec::new();
    let mut out = Vec::new();
    let mut t = 1500;
    while t + 2500 < end {
        let fault = match rng.u8(0..12) {
            0 | 1 => Fault::KillDaemon(rng.usize(0..2)),
            2 => Fault::KillActive,
            3 => Fault::PauseActive,
            4..=6 => {
                let x = rng.usize(0..3);
                let y = (x + 1 + rng.usize(0..2)) % 3;
                let mode = if rng.bool() {
                    Mode::Pause
                } else {
                    Mode::Refuse
                };
                Fault::Cut(x, y, mode)
            }
            7..=9 => Fault::StopDb(rng.usize(0..3), rng.bool()),
            _ => {
                // Behind only: see the writer module on what a skewed center writes.
                let secs = [-30, -3, -1][rng.usize(0..3)];
                Fault::Skew(rng.usize(0..3), secs)
            }
        };
        let res = fault.resource();
        if busy.iter().any(|(r, until)| *r == res && *until > t) {
            t += rng.u64(100..600);
            continue;
        }
        let max = match fault {
            Fault::Cut(..) | Fault::Skew(..) => 12_000,
            _ => 6_000,
        };
        let dur = rng.u64(400..=max).min(end - 2000 - t);
        busy.retain(|(r, _)| *r != res);
        busy.push((res, t + dur));
        out.push(Event {
            at_ms: t,
            dur_ms: dur,
            fault,
        });
        t += rng.u64(300..3500);
    }
    out
}

/// What the writers read of the nemesis: each center's clock offset for versions.
#[derive(Default)]
pub struct Clocks {
    /// Seconds, per center.
    pub offset: [AtomicI64; 3],
}

/// What the executor did, for the summary.
#[derive(Default)]
pub struct Done {
    pub applied: AtomicU64,
}

/// Carries out `events` against the cluster, in time order, from now; every fault is undone
/// when its time is up, and all at the latest when this returns. Lines of what happened go to
/// `log` (replica choices, e.g. which replica was active).
pub async fn execute(
    events: &[Event],
    run: Arc<Mutex<Run>>,
    servers: &Servers,
    clocks: &Clocks,
    done: &Done,
    log: &mut Vec<String>,
) {
    // (time, start?, index)
    let mut steps: Vec<(u64, bool, usize)> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        steps.push((e.at_ms, true, i));
        steps.push((e.at_ms + e.dur_ms, false, i));
    }
    steps.sort_by_key(|s| (s.0, s.1));
    // For faults on c's active replica: the replica chosen when the fault started.
    let mut chosen: Vec<Option<usize>> = vec![None; events.len()];
    let began = tokio::time::Instant::now();
    for (at, start, i) in steps {
        tokio::time::sleep_until(began + Duration::from_millis(at)).await;
        let e = events[i];
        let late = began.elapsed().as_millis() as u64;
        if start {
            done.applied.fetch_add(1, Ordering::Relaxed);
            log.push(format!("{late:>7}ms start {}", e.fault));
        } else {
            log.push(format!("{late:>7}ms end   {}", e.fault));
        }
        match (e.fault, start) {
            (Fault::KillDaemon(c), true) => run.lock().await.kill9(c),
            (Fault::KillDaemon(c), false) => run.lock().await.start(c),
            (Fault::KillActive | Fault::PauseActive, true) => {
                let r = run.lock().await.active_replica().await;
                let r = match r {
                    Some(r) => r,
                    None => run.lock().await.leader_by_health().await,
                };
                log.push(format!("{late:>7}ms       -> replica c{r}"));
                chosen[i] = Some(r);
                let mut g = run.lock().await;
                if e.fault == Fault::KillActive {
                    g.kill9(2 + r);
                } else {
                    g.pause(2 + r, true);
                }
            }
            (Fault::KillActive, false) => {
                if let Some(r) = chosen[i] {
                    run.lock().await.start(2 + r);
                }
            }
            (Fault::PauseActive, false) => {
                if let Some(r) = chosen[i] {
                    run.lock().await.pause(2 + r, false);
                }
            }
            (Fault::Cut(x, y, m), true) => run.lock().await.link(x, y, m),
            (Fault::Cut(x, y, _), false) => run.lock().await.link(x, y, Mode::Forward),
            (Fault::StopDb(c, clean), true) => servers.stop(c, clean).await,
            (Fault::StopDb(c, _), false) => servers.ensure_running(c).await,
            (Fault::Skew(c, s), true) => clocks.offset[c].store(s, Ordering::Relaxed),
            (Fault::Skew(c, _), false) => clocks.offset[c].store(0, Ordering::Relaxed),
        }
    }
}

#[test]
fn a_seed_gives_the_same_schedule_and_faults_never_share_a_resource() {
    let a = generate(42, 60);
    let b = generate(42, 60);
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
    assert!(a.len() > 5, "{a:?}");
    for (i, x) in a.iter().enumerate() {
        assert!(x.at_ms + x.dur_ms + 2000 <= 60_000, "{x}");
        for y in &a[i + 1..] {
            if x.fault.resource() == y.fault.resource() {
                assert!(y.at_ms >= x.at_ms + x.dur_ms, "{x} overlaps {y}");
            }
        }
    }
}
