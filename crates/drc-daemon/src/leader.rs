//! Which replica of a center runs its links, and under which term.
//!
//! - **Standalone** (the center has no `replicas`): this daemon takes the fence with term 0
//!   and runs the links. It refuses to apply when the fence holds a replica term (> 0): the
//!   center now runs replicas, and a forgotten standalone daemon must not write.
//! - **Replica**: openraft's metrics are watched. When this replica becomes leader of term T it
//!   takes the fence for T (waiting for in-flight transactions of older terms, see
//!   `drc_apply::fence`), writes the term's history row, and only then starts the links, every
//!   apply transaction stamped with T. When it stops being leader, or the term changes, the
//!   links are cancelled at once (their tasks are aborted; an interrupted transaction is rolled
//!   back by the server, or committed under T before a newer fence could be taken). A replica
//!   that lost leadership without noticing (paused, cut off) is stopped by the fence: its next
//!   transaction fails with `Fenced`, which stops the link without retry.
//!
//! Metrics: [`ELECTION_IS_LEADER`], [`ELECTION_TERM`], [`ELECTION_LEADER_CHANGES`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use drc_apply::fence::{self, Fence};
use drc_apply::{LinkError, LinkSpec, LinkStatus, Metrics};
use drc_election::{leader_term, Election};
use drc_mysql::retry::Policy;
use prometheus::{IntCounter, IntGauge, Opts};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::LinkHandle;

/// 1 while this replica is the center's leader (or a standalone daemon), else 0.
pub const ELECTION_IS_LEADER: &str = "drc_election_is_leader";
/// The current Raft term seen by this replica (0 for a standalone daemon).
pub const ELECTION_TERM: &str = "drc_election_term";
/// How many times this replica saw the leader change (a new leader or a new term).
pub const ELECTION_LEADER_CHANGES: &str = "drc_election_leader_changes_total";

/// Election metric handles.
#[derive(Clone)]
pub struct ElectionMetrics {
    is_leader: IntGauge,
    term: IntGauge,
    changes: IntCounter,
}

impl ElectionMetrics {
    /// Registers the election metrics, labelled with the center, in `m`'s registry.
    pub fn register(m: &Metrics, center: &str) -> Result<Self, prometheus::Error> {
        let opts = |name: &str, help: &str| {
            Opts::new(name, help).const_label("center", center.to_string())
        };
        let is_leader = IntGauge::with_opts(opts(
            ELECTION_IS_LEADER,
            "1 while this replica runs the center's links",
        ))?;
        let term = IntGauge::with_opts(opts(ELECTION_TERM, "Current Raft term"))?;
        let changes = IntCounter::with_opts(opts(
            ELECTION_LEADER_CHANGES,
            "Leader changes seen by this replica",
        ))?;
        m.registry.register(Box::new(is_leader.clone()))?;
        m.registry.register(Box::new(term.clone()))?;
        m.registry.register(Box::new(changes.clone()))?;
        Ok(ElectionMetrics {
            is_leader,
            term,
            changes,
        })
    }
}

/// This replica's role, shown in `/health`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Role {
    /// `standalone`, `leader` or `standby`.
    pub mode: &'static str,
    /// This replica's index (0 when standalone).
    pub replica: u32,
    /// Current term.
    pub term: u64,
    /// The leader's replica index, when known.
    pub leader: Option<u64>,
    /// Index of the last entry in this replica's Raft log (replicas only): equal on all
    /// replicas once a follower has caught up.
    pub log_index: Option<u64>,
}

/// Shared role, read by `/health`.
pub type SharedRole = Arc<Mutex<Role>>;

fn set_role(shared: &SharedRole, role: Role) {
    match shared.lock() {
        Ok(mut g) => *g = role,
        Err(p) => *p.into_inner() = role,
    }
}

/// What the links of this daemon need, whoever runs them.
#[derive(Clone)]
pub(crate) struct Links {
    pub specs: Vec<LinkSpec>,
    pub handles: Vec<LinkHandle>,
    pub metrics: Metrics,
    pub target_url: String,
    pub center: String,
    pub meta: String,
    pub slots: u64,
}

impl Links {
    fn fence(&self, replica: u32, term: u64) -> Fence {
        Fence {
            meta: self.meta.clone(),
            center: self.center.clone(),
            replica,
            term,
            slots: self.slots,
        }
    }

    fn set_all(&self, s: LinkStatus) {
        for h in &self.handles {
            h.state.set_status(s.clone());
            if s != LinkStatus::Running {
                self.metrics.up.with_label_values(&[h.name.as_str()]).set(0);
            }
        }
    }
}

/// Retries of taking the fence: 100 ms doubling to 5 s, less up to 20 % jitter, until it is
/// taken, refused (`Fenced`), or the term ends.
const FENCE_RETRY: Policy =
    Policy::new(Duration::from_millis(100), Duration::from_secs(5)).with_jitter(20);

async fn take_fence(url: &str, f: &Fence) -> Result<(), LinkError> {
    let mut c = drc_mysql::connect(url, Duration::from_secs(10)).await?;
    fence::take(&mut c, url, f).await
}

/// Takes the fence for `f` (retrying transient failures), then runs every link under it
/// until `stop` turns true. Returns early when the fence belongs to another term.
async fn lead(links: Links, f: Fence, stop: watch::Receiver<bool>) {
    let mut backoff = FENCE_RETRY.start();
    loop {
        match take_fence(&links.target_url, &f).await {
            Ok(()) => break,
            Err(e @ LinkError::Fenced { .. }) => {
                error!(term = f.term, error = %e, "cannot take the fence; not applying");
                links.set_all(LinkStatus::Failed(e.to_string()));
                return;
            }
            Err(e) => {
                warn!(term = f.term, error = %e, "taking the fence failed; retrying");
                links.set_all(LinkStatus::Failed(format!("taking the fence: {e}")));
            }
        }
        if !backoff.wait(Some(&stop)).await {
            return;
        }
    }
    info!(
        term = f.term,
        replica = f.replica,
        "took the fence; starting the links"
    );
    let mut tasks = JoinSet::new();
    for (spec, h) in links.specs.iter().zip(&links.handles) {
        let mut spec = spec.clone();
        spec.fence = Some(f.clone());
        tasks.spawn(crate::supervise::link(
            spec,
            links.metrics.clone(),
            h.state.clone(),
            stop.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
}

/// Runs the links of a center without replicas (term 0) until `shutdown`.
pub(crate) async fn standalone(
    links: Links,
    metrics: ElectionMetrics,
    role: SharedRole,
    shutdown: watch::Receiver<bool>,
) {
    metrics.is_leader.set(1);
    metrics.term.set(0);
    set_role(
        &role,
        Role {
            mode: "standalone",
            replica: 0,
            term: 0,
            leader: Some(0),
            log_index: None,
        },
    );
    let f = links.fence(0, 0);
    lead(links, f, shutdown).await;
}

/// The links while this replica leads one term.
struct Active {
    term: u64,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Active {
    fn stop(self, links: &Links) {
        let _ = self.stop.send(true);
        self.task.abort();
        links.set_all(LinkStatus::Standby);
        info!(
            term = self.term,
            "stopped the links: no longer the leader of this term"
        );
    }
}

/// Follows the election until `shutdown`: runs the links exactly while this replica leads.
/// Returns an error when the Raft node stopped by itself (a fatal storage error).
pub(crate) async fn follow(
    links: Links,
    election: &Election,
    metrics: ElectionMetrics,
    role: SharedRole,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let mut rx = election.leadership();
    let replica = election.id() as u32;
    let mut active: Option<Active> = None;
    let mut seen: Option<(u64, Option<u64>)> = None;
    links.set_all(LinkStatus::Standby);
    let result = loop {
        let m = rx.borrow_and_update().clone();
        if let Err(e) = &m.running_state {
            break Err(format!("the raft node stopped: {e}"));
        }
        let want = leader_term(&m);
        let now = (m.current_term, m.current_leader);
        if seen != Some(now) && m.current_leader.is_some() {
            if seen.is_some_and(|(_, l)| l.is_some()) {
                metrics.changes.inc();
            }
            info!(term = m.current_term, leader = ?m.current_leader, "leader");
            seen = Some(now);
        }
        metrics.term.set(m.current_term as i64);
        metrics.is_leader.set(i64::from(want.is_some()));
        set_role(
            &role,
            Role {
                mode: if want.is_some() { "leader" } else { "standby" },
                replica,
                term: m.current_term,
                leader: m.current_leader,
                log_index: m.last_log_index,
            },
        );
        if active.as_ref().map(|a| a.term) != want {
            if let Some(a) = active.take() {
                a.stop(&links);
            }
            if let Some(term) = want {
                info!(term, "elected leader of the center");
                let (stop, stop_rx) = watch::channel(false);
                let task = tokio::spawn(lead(links.clone(), links.fence(replica, term), stop_rx));
                active = Some(Active { term, stop, task });
            }
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { break Err("the raft node stopped".to_string()) },
            _ = shutdown.changed() => break Ok(()),
        }
    };
    if let Some(a) = active.take() {
        a.stop(&links);
    }
    metrics.is_leader.set(0);
    result
}
