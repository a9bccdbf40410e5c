//! A link's externally visible state, shared with `/health`, `drc status` and the metrics: its
//! status (set by the link and its supervisor), the last applied position, and its binlog
//! source's connection ([`drc_source::Liveness`]): a running link whose source reconnects shows
//! as `reconnecting`, with the time since the source last received anything and the last error.
//! It also keeps when the link last committed a checkpoint (`drc_link_checkpoint_age_seconds`)
//! and the lag it measured at its last applied heartbeat ([`HeartbeatLag`], read by the
//! daemon's lag gauge).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use drc_core::position::Position;
use drc_source::{Liveness, LivenessView};

/// The externally visible state of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkStatus {
    /// Connecting, checking, recovering.
    Starting,
    /// Applying.
    Running,
    /// Stopped by an error (it will be restarted by the daemon).
    Failed(String),
    /// Not run by this replica: another replica of the center is the leader.
    Standby,
    /// Paused by the operator (`drc link pause`): applies nothing until resumed.
    Paused,
}

/// The lag a link measured when it committed its source center's heartbeat row: the target's
/// `NOW(6)` right after the commit minus the heartbeat's stamp by the source's clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeartbeatLag {
    /// The heartbeat's `seq` (its write count in the source center).
    pub seq: u64,
    /// Seconds from the heartbeat's write in the source to its commit in the target, off by the
    /// clock skew between the two servers (negative when the source's clock is ahead by more).
    pub lag: f64,
}

/// Shared state of a link, read by `/health` and `drc status`.
#[derive(Debug)]
pub struct LinkState {
    inner: Mutex<(LinkStatus, Option<String>)>,
    source: Mutex<Option<Liveness>>,
    /// When this process last committed a checkpoint of the link; until the first one, when
    /// the state was created (the daemon's start).
    checkpointed: Mutex<Instant>,
    /// The lag measured at the newest heartbeat this process applied.
    heartbeat: Mutex<Option<HeartbeatLag>>,
}

impl Default for LinkState {
    fn default() -> Self {
        LinkState {
            inner: Mutex::new((LinkStatus::Starting, None)),
            source: Mutex::new(None),
            checkpointed: Mutex::new(Instant::now()),
            heartbeat: Mutex::new(None),
        }
    }
}

/// What a link shows: its status, last applied position, and its binlog source's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkReport {
    /// The link's status.
    pub status: LinkStatus,
    /// Last applied position.
    pub position: Option<String>,
    /// The source's connection, once the link opened its binlog stream.
    pub source: Option<LivenessView>,
}

impl LinkReport {
    /// The state's name: `starting`, `running`, `reconnecting` (running, but the binlog source
    /// lost its server and is reconnecting: nothing arrives), `failed`, `standby` or `paused`.
    pub fn state_name(&self) -> &'static str {
        match &self.status {
            LinkStatus::Starting => "starting",
            LinkStatus::Running if self.reconnecting() => "reconnecting",
            LinkStatus::Running => "running",
            LinkStatus::Failed(_) => "failed",
            LinkStatus::Standby => "standby",
            LinkStatus::Paused => "paused",
        }
    }

    /// True while the link runs and its source reconnects.
    pub fn reconnecting(&self) -> bool {
        self.status == LinkStatus::Running && self.source.as_ref().is_some_and(|s| s.reconnecting)
    }
}

impl LinkState {
    /// Status and last applied position.
    pub fn get(&self) -> (LinkStatus, Option<String>) {
        match self.inner.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Status, position and the source's connection.
    pub fn report(&self) -> LinkReport {
        let (status, position) = self.get();
        let source = match self.source.lock() {
            Ok(g) => g.as_ref().map(Liveness::view),
            Err(p) => p.into_inner().as_ref().map(Liveness::view),
        };
        LinkReport {
            status,
            position,
            source,
        }
    }

    /// Sets the status.
    pub fn set_status(&self, s: LinkStatus) {
        match self.inner.lock() {
            Ok(mut g) => g.0 = s,
            Err(p) => p.into_inner().0 = s,
        }
    }

    pub(crate) fn set_source(&self, l: Option<Liveness>) {
        match self.source.lock() {
            Ok(mut g) => *g = l,
            Err(p) => *p.into_inner() = l,
        }
    }

    /// Records a committed batch: its end position, and that a checkpoint was just written.
    pub(crate) fn set_position(&self, p: &Position) {
        match self.inner.lock() {
            Ok(mut g) => g.1 = Some(p.to_string()),
            Err(p2) => p2.into_inner().1 = Some(p.to_string()),
        }
        match self.checkpointed.lock() {
            Ok(mut g) => *g = Instant::now(),
            Err(p2) => *p2.into_inner() = Instant::now(),
        }
    }

    /// Records the lag measured at an applied heartbeat.
    pub(crate) fn set_heartbeat(&self, h: HeartbeatLag) {
        match self.heartbeat.lock() {
            Ok(mut g) => *g = Some(h),
            Err(p) => *p.into_inner() = Some(h),
        }
    }

    /// The lag measured at the newest heartbeat this process applied, if any.
    pub fn heartbeat(&self) -> Option<HeartbeatLag> {
        match self.heartbeat.lock() {
            Ok(g) => *g,
            Err(p) => *p.into_inner(),
        }
    }

    /// How long ago this process last committed a checkpoint of the link (since the state was
    /// created, when it committed none yet).
    pub fn checkpoint_age(&self) -> Duration {
        match self.checkpointed.lock() {
            Ok(g) => g.elapsed(),
            Err(p) => p.into_inner().elapsed(),
        }
    }
}
