//! Raft RPCs between the replicas of one center: length-prefixed JSON over plain TCP.
//!
//! Frame: a 4-byte big-endian length, then that many bytes of JSON. A client sends one
//! [`Request`] and reads one [`Response`] on a connection it keeps open; requests on one
//! connection never overlap (openraft drives each peer's client from one task). Any I/O error,
//! timeout (openraft's per-RPC TTL) or oversized frame drops the connection; the next RPC
//! reconnects. A peer that cannot be reached is reported as `Unreachable`, so openraft backs
//! off instead of spinning.
//!
//! Addresses come from the local configuration (`[[center]] replicas`, by index = node id), not
//! from the membership stored in the Raft log: replacing a replica's host only needs the
//! configuration changed and the replicas restarted one at a time.
//!
//! Why not HTTP: no HTTP client is in the dependency tree, the three message kinds need no
//! routing, and a test can cut and heal plain TCP through a proxy it controls.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::debug;

use crate::TypeConfig;

/// Largest accepted frame (snapshots are a few KB; this only guards against garbage).
const MAX_FRAME: u32 = 64 << 20;

/// One RPC.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// AppendEntries (also the heartbeat).
    Append(AppendEntriesRequest<TypeConfig>),
    /// RequestVote.
    Vote(VoteRequest<u64>),
    /// InstallSnapshot (one chunk).
    Snapshot(InstallSnapshotRequest<TypeConfig>),
}

/// The answer to one [`Request`]; `Error` carries the peer's refusal as text.
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    /// Answer to `Append`.
    Append(AppendEntriesResponse<u64>),
    /// Answer to `Vote`.
    Vote(VoteResponse<u64>),
    /// Answer to `Snapshot`.
    Snapshot(InstallSnapshotResponse<u64>),
    /// The peer could not handle the request (e.g. it is shutting down).
    Error(String),
}

async fn write_frame(s: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len())
        .ok()
        .filter(|&l| l <= MAX_FRAME)
        .ok_or_else(|| std::io::Error::other("frame too large"))?;
    s.write_all(&len.to_be_bytes()).await?;
    s.write_all(bytes).await?;
    s.flush().await
}

async fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let len = s.read_u32().await?;
    if len > MAX_FRAME {
        return Err(std::io::Error::other(format!(
            "frame of {len} bytes is over the limit"
        )));
    }
    let mut buf = vec![0; len as usize];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Creates one [`Client`] per peer.
#[derive(Clone)]
pub struct Network {
    addrs: Arc<BTreeMap<u64, String>>,
}

impl Network {
    /// A network whose node `i` is at `addrs[i]`.
    pub fn new(addrs: &[String]) -> Self {
        Network {
            addrs: Arc::new(
                addrs
                    .iter()
                    .enumerate()
                    .map(|(i, a)| (i as u64, a.clone()))
                    .collect(),
            ),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Client;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Client {
        Client {
            target,
            addr: self.addrs.get(&target).cloned(),
            conn: None,
        }
    }
}

/// The RPC client for one peer. See the module docs.
pub struct Client {
    target: u64,
    addr: Option<String>,
    conn: Option<TcpStream>,
}

/// Why one RPC failed, before it is mapped to openraft's error.
enum CallError {
    Unreachable(std::io::Error),
    Network(std::io::Error),
}

impl Client {
    async fn call(&mut self, req: &Request, ttl: Duration) -> Result<Response, CallError> {
        let bytes = serde_json::to_vec(req).map_err(|e| CallError::Network(e.into()))?;
        let result = tokio::time::timeout(ttl, async {
            if self.conn.is_none() {
                let addr = self.addr.as_deref().ok_or_else(|| {
                    CallError::Unreachable(std::io::Error::other(format!(
                        "replica {} is not in this replica's configuration",
                        self.target
                    )))
                })?;
                let s = TcpStream::connect(addr)
                    .await
                    .map_err(CallError::Unreachable)?;
                let _ = s.set_nodelay(true);
                self.conn = Some(s);
            }
            let Some(s) = self.conn.as_mut() else {
                return Err(CallError::Network(std::io::Error::other("no connection")));
            };
            write_frame(s, &bytes).await.map_err(CallError::Network)?;
            let answer = read_frame(s).await.map_err(CallError::Network)?;
            serde_json::from_slice::<Response>(&answer).map_err(|e| CallError::Network(e.into()))
        })
        .await;
        let result = match result {
            Ok(r) => r,
            Err(_) => Err(CallError::Network(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer from replica {} within {ttl:?}", self.target),
            ))),
        };
        if result.is_err() {
            self.conn = None;
        }
        result
    }
}

/// Every transport failure is reported as `Unreachable`, so that openraft backs off
/// ([`RaftNetwork::backoff`]) instead of retrying a dead peer in a tight loop (through a proxy
/// or a load balancer, a dead peer looks like a reset, not a refused connection).
fn rpc_error<E: std::error::Error>(e: CallError) -> RPCError<u64, BasicNode, E> {
    match e {
        CallError::Unreachable(e) | CallError::Network(e) => {
            RPCError::Unreachable(Unreachable::new(&e))
        }
    }
}

fn refused<E: std::error::Error>(what: &str, got: Response) -> RPCError<u64, BasicNode, E> {
    let msg = match got {
        Response::Error(m) => format!("{what}: the peer refused: {m}"),
        other => format!("{what}: unexpected answer {other:?}"),
    };
    RPCError::Network(NetworkError::new(&std::io::Error::other(msg)))
}

/// Pause before retrying a peer that was unreachable (openraft's default is 500 ms): short, so
/// that a restarted or healed replica catches up quickly; long enough not to spin.
const BACKOFF: Duration = Duration::from_millis(200);

impl RaftNetwork<TypeConfig> for Client {
    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(BACKOFF))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        match self
            .call(&Request::Append(rpc), option.hard_ttl())
            .await
            .map_err(rpc_error)?
        {
            Response::Append(r) => Ok(r),
            other => Err(refused("append_entries", other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        match self
            .call(&Request::Snapshot(rpc), option.hard_ttl())
            .await
            .map_err(rpc_error)?
        {
            Response::Snapshot(r) => Ok(r),
            other => Err(refused("install_snapshot", other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        match self
            .call(&Request::Vote(rpc), option.hard_ttl())
            .await
            .map_err(rpc_error)?
        {
            Response::Vote(r) => Ok(r),
            other => Err(refused("vote", other)),
        }
    }
}

async fn handle(raft: &Raft<TypeConfig>, req: Request) -> Response {
    match req {
        Request::Append(r) => match raft.append_entries(r).await {
            Ok(a) => Response::Append(a),
            Err(e) => Response::Error(e.to_string()),
        },
        Request::Vote(r) => match raft.vote(r).await {
            Ok(a) => Response::Vote(a),
            Err(e) => Response::Error(e.to_string()),
        },
        Request::Snapshot(r) => match raft.install_snapshot(r).await {
            Ok(a) => Response::Snapshot(a),
            Err(e) => Response::Error(e.to_string()),
        },
    }
}

async fn serve_conn(raft: Raft<TypeConfig>, mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    loop {
        let frame = match read_frame(&mut s).await {
            Ok(f) => f,
            Err(_) => return,
        };
        let resp = match serde_json::from_slice::<Request>(&frame) {
            Ok(req) => handle(&raft, req).await,
            Err(e) => Response::Error(format!("malformed request: {e}")),
        };
        let Ok(bytes) = serde_json::to_vec(&resp) else {
            return;
        };
        if write_frame(&mut s, &bytes).await.is_err() {
            return;
        }
    }
}

/// Serves peers' RPCs on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    raft: Raft<TypeConfig>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            a = listener.accept() => match a {
                Ok((s, peer)) => {
                    debug!(%peer, "raft peer connected");
                    conns.spawn(serve_conn(raft.clone(), s));
                }
                Err(e) => {
                    debug!(error = %e, "raft accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = shutdown.changed() => return,
        }
    }
}
