//! Leader election among the drc replicas of one center (openraft 0.9, pinned `=0.9.25`).
//!
//! Each replica is a Raft voter whose node id is its index in the center's `replicas` list.
//! The group carries no application data: Raft is used only to agree on one leader per term.
//! The caller watches [`Election::leadership`] and runs the center's links only while it sees
//! `Some(term)`.
//!
//! What Raft guarantees here, and what it does not:
//! - at most one replica is elected leader **per term**, and terms only grow;
//! - a leader does not learn at once that it was deposed (a paused or cut-off leader keeps
//!   believing it leads until it hears a higher term). That gap is closed in the database, not
//!   here: the leader stamps every apply transaction with its term, and a transaction whose
//!   term is older than the center's fence fails (drc-apply's `fence` module).
//!
//! Transport: every frame between replicas is authenticated with the center's Raft secret
//! (HMAC-SHA256), and bounded in size, count and time ([`network`]).
//!
//! Durability: votes and log are written with `fsync` before openraft proceeds ([`store`]).
//! Start-up: replica 0 initializes the cluster with every configured replica as a voter; on a
//! restart it finds its log non-empty and openraft refuses (`NotAllowed`), which is fine. The
//! other replicas never initialize; they join by being members.

pub mod network;
pub mod store;

/// Largest snapshot chunk openraft sends (far below [`network::MAX_FRAME`]; the election's
/// snapshots are a few KB).
pub const SNAPSHOT_CHUNK: u64 = 256 << 10;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use openraft::storage::Adaptor;
use openraft::{BasicNode, Raft, RaftMetrics, ServerState, SnapshotPolicy};
use tokio::sync::watch;
use tracing::info;

pub use store::{FileStore, StoreError};

openraft::declare_raft_types!(
    /// drc's Raft types: no application data (`()`), node ids are replica indexes.
    pub TypeConfig:
        D = (),
        R = (),
);

/// Raft timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// How often the leader sends heartbeats.
    pub heartbeat: Duration,
    /// A follower that heard no leader for a random time in `election_min..election_max`
    /// starts an election.
    pub election_min: Duration,
    /// See `election_min`.
    pub election_max: Duration,
}

/// Why the election could not start.
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    /// The data directory cannot hold the Raft state.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The timeouts are rejected by openraft.
    #[error("election timeouts: {0}")]
    Config(String),
    /// The Raft address cannot be bound.
    #[error("cannot listen on {addr} for Raft peers: {source}")]
    Listen {
        /// Address.
        addr: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// openraft stopped.
    #[error("raft: {0}")]
    Raft(String),
    /// The replica index is outside the replicas list.
    #[error("replica {index} does not exist: the center has {count} replicas (0..{count})")]
    NoSuchReplica {
        /// Given index.
        index: usize,
        /// Replicas configured.
        count: usize,
    },
}

/// A running Raft node. Dropping it does not stop it: call [`Election::shutdown`].
pub struct Election {
    raft: Raft<TypeConfig>,
    id: u64,
    server: tokio::task::JoinHandle<()>,
    stop_server: watch::Sender<bool>,
}

/// What this replica should do, read from openraft's metrics: `Some(term)` when it is the
/// leader of `term`, `None` when it must stand by.
pub fn leader_term(m: &RaftMetrics<u64, BasicNode>) -> Option<u64> {
    (m.state == ServerState::Leader && m.current_leader == Some(m.id)).then_some(m.current_term)
}

impl Election {
    /// Starts replica `index` of `replicas` (Raft addresses by index), keeping its state in
    /// `data_dir`, accepting peers on `listen` (usually `replicas[index]`), and authenticating
    /// every frame with `secret`, the center's Raft secret ([`network`]).
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        cluster_name: &str,
        replicas: &[String],
        index: usize,
        listen: SocketAddr,
        data_dir: &Path,
        timeouts: Timeouts,
        secret: &[u8],
    ) -> Result<Election, ElectionError> {
        let key = network::Key::new(secret);
        if index >= replicas.len() {
            return Err(ElectionError::NoSuchReplica {
                index,
                count: replicas.len(),
            });
        }
        let store = FileStore::open(data_dir)?;
        let config = openraft::Config {
            cluster_name: cluster_name.to_string(),
            heartbeat_interval: timeouts.heartbeat.as_millis() as u64,
            election_timeout_min: timeouts.election_min.as_millis() as u64,
            election_timeout_max: timeouts.election_max.as_millis() as u64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(store::SNAPSHOT_EVERY),
            snapshot_max_chunk_size: SNAPSHOT_CHUNK,
            max_in_snapshot_log_to_keep: 10,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ElectionError::Config(e.to_string()))?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| ElectionError::Listen {
                addr: listen.to_string(),
                source,
            })?;
        let (log, sm) = Adaptor::new(store);
        let id = index as u64;
        let raft = Raft::new(
            id,
            Arc::new(config),
            network::Network::new(replicas, key.clone()),
            log,
            sm,
        )
        .await
        .map_err(|e| ElectionError::Raft(e.to_string()))?;
        let (stop_server, rx) = watch::channel(false);
        let server = tokio::spawn(network::serve(listener, raft.clone(), key, rx));
        if index == 0 {
            let members: BTreeMap<u64, BasicNode> = replicas
                .iter()
                .enumerate()
                .map(|(i, a)| (i as u64, BasicNode::new(a)))
                .collect();
            match raft.initialize(members).await {
                Ok(()) => info!("raft cluster initialized by replica 0"),
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                    info!("raft cluster already initialized")
                }
                Err(e) => return Err(ElectionError::Raft(e.to_string())),
            }
        }
        Ok(Election {
            raft,
            id,
            server,
            stop_server,
        })
    }

    /// This replica's node id (its index).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// openraft's metrics; see [`leader_term`].
    pub fn leadership(&self) -> watch::Receiver<RaftMetrics<u64, BasicNode>> {
        self.raft.metrics()
    }

    /// Stops the node (and its RPC server).
    pub async fn shutdown(self) {
        let _ = self.stop_server.send(true);
        let _ = self.raft.shutdown().await;
        let _ = self.server.await;
    }
}

#[cfg(test)]
mod tests;
