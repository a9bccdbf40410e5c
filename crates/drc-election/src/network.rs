//! Raft RPCs between the replicas of one center: length-prefixed JSON over TCP, every frame
//! authenticated with HMAC-SHA256 under the center's Raft secret (docs/security.md).
//!
//! Connection: the server sends a fresh random 16-byte nonce first. Then each frame is a 4-byte
//! big-endian length, a 32-byte tag, and that many bytes of JSON; the tag is
//! `HMAC(secret, nonce || "req"|"rsp" || sequence number || payload)`, so a frame only verifies
//! on the connection it was made for, in its place, in its direction. A frame that does not
//! verify closes the connection before anything of it reaches openraft. A client sends one
//! [`Request`] and reads one [`Response`] on a connection it keeps open; requests on one
//! connection never overlap (openraft drives each peer's client from one task). Any I/O error,
//! timeout (openraft's per-RPC TTL) or oversized frame drops the connection; the next RPC
//! reconnects. A peer that cannot be reached is reported as `Unreachable`, so openraft backs
//! off instead of spinning.
//!
//! Limits, so that anyone who can reach the port cannot stop the election: frames of at most
//! [`MAX_FRAME`] bytes, read as they arrive (never allocated up front from the length);
//! at most [`MAX_CONNECTIONS`] connections waiting to authenticate (a new one closes the
//! oldest), and the first frame must verify within [`FRAME_TIMEOUT`]; a frame
//! must arrive whole within [`FRAME_TIMEOUT`] once its length is read, and a connection that
//! sends nothing for [`IDLE_TIMEOUT`] is closed.
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

use hmac::{Hmac, Mac};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::TypeConfig;

/// Largest accepted frame. openraft's messages here are small (a few log entries, snapshots of
/// a few KB sent in chunks of at most [`crate::SNAPSHOT_CHUNK`]).
pub const MAX_FRAME: u32 = 1 << 20;
/// Most inbound connections kept before they authenticate (a center has a handful of replicas,
/// each keeping one connection to each peer); see [`serve`].
pub const MAX_CONNECTIONS: usize = 32;
/// Longest time a frame may take to arrive once its length was read.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection with nothing received for this long is closed (peers send heartbeats far more
/// often).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes of the connection nonce.
const NONCE: usize = 16;
/// Bytes of a frame's tag.
const TAG: usize = 32;

/// The center's Raft secret, shared by its replicas.
#[derive(Clone)]
pub struct Key(Arc<Vec<u8>>);

impl Key {
    /// A key from the secret's bytes.
    pub fn new(secret: &[u8]) -> Self {
        Key(Arc::new(secret.to_vec()))
    }

    fn tag(&self, nonce: &[u8], dir: &[u8], seq: u64, payload: &[u8]) -> [u8; TAG] {
        // HMAC takes keys of any length; this cannot fail.
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => return [0; TAG],
        };
        mac.update(nonce);
        mac.update(dir);
        mac.update(&seq.to_be_bytes());
        mac.update(payload);
        mac.finalize().into_bytes().into()
    }

    fn verify(&self, nonce: &[u8], dir: &[u8], seq: u64, payload: &[u8], tag: &[u8]) -> bool {
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&self.0) else {
            return false;
        };
        mac.update(nonce);
        mac.update(dir);
        mac.update(&seq.to_be_bytes());
        mac.update(payload);
        mac.verify_slice(tag).is_ok()
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(***)")
    }
}

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

/// Writes one authenticated frame.
pub async fn write_frame(
    s: &mut TcpStream,
    key: &Key,
    nonce: &[u8],
    dir: &[u8],
    seq: u64,
    bytes: &[u8],
) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len())
        .ok()
        .filter(|&l| l <= MAX_FRAME)
        .ok_or_else(|| std::io::Error::other("frame too large"))?;
    let mut out = Vec::with_capacity(4 + TAG + bytes.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&key.tag(nonce, dir, seq, bytes));
    out.extend_from_slice(bytes);
    s.write_all(&out).await?;
    s.flush().await
}

/// Reads one frame and checks its tag; waits at most `idle` for it to start.
async fn read_frame(
    s: &mut TcpStream,
    key: &Key,
    nonce: &[u8],
    dir: &[u8],
    seq: u64,
    idle: Duration,
) -> std::io::Result<Vec<u8>> {
    let len = tokio::time::timeout(idle, s.read_u32())
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "idle"))??;
    if len > MAX_FRAME {
        return Err(std::io::Error::other(format!(
            "frame of {len} bytes is over the limit"
        )));
    }
    let body = async {
        let mut tag = [0u8; TAG];
        s.read_exact(&mut tag).await?;
        // Grown as bytes arrive, not allocated from the announced length.
        let mut buf = Vec::with_capacity((len as usize).min(64 << 10));
        (&mut *s).take(u64::from(len)).read_to_end(&mut buf).await?;
        if buf.len() != len as usize {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "frame cut short",
            ));
        }
        Ok((tag, buf))
    };
    let (tag, buf) = tokio::time::timeout(FRAME_TIMEOUT, body)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "frame too slow"))??;
    if !key.verify(nonce, dir, seq, &buf, &tag) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "frame does not verify under this center's Raft secret",
        ));
    }
    Ok(buf)
}

const REQ: &[u8] = b"req";
const RSP: &[u8] = b"rsp";

/// Creates one [`Client`] per peer.
#[derive(Clone)]
pub struct Network {
    addrs: Arc<BTreeMap<u64, String>>,
    key: Key,
}

impl Network {
    /// A network whose node `i` is at `addrs[i]`, authenticating with `key`.
    pub fn new(addrs: &[String], key: Key) -> Self {
        Network {
            key,
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
            key: self.key.clone(),
            conn: None,
        }
    }
}

/// The RPC client for one peer. See the module docs.
pub struct Client {
    target: u64,
    addr: Option<String>,
    key: Key,
    /// The open connection, its nonce and the next sequence number.
    conn: Option<(TcpStream, [u8; NONCE], u64)>,
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
                let mut s = TcpStream::connect(addr)
                    .await
                    .map_err(CallError::Unreachable)?;
                let _ = s.set_nodelay(true);
                let mut nonce = [0u8; NONCE];
                s.read_exact(&mut nonce)
                    .await
                    .map_err(CallError::Unreachable)?;
                self.conn = Some((s, nonce, 0));
            }
            let Some((s, nonce, seq)) = self.conn.as_mut() else {
                return Err(CallError::Network(std::io::Error::other("no connection")));
            };
            let n = *seq;
            *seq += 1;
            write_frame(s, &self.key, nonce, REQ, n, &bytes)
                .await
                .map_err(CallError::Network)?;
            let answer = read_frame(s, &self.key, nonce, RSP, n, ttl)
                .await
                .map_err(CallError::Network)?;
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

/// Connections that have not sent a verified frame yet, oldest first.
type Pending = Arc<std::sync::Mutex<std::collections::VecDeque<(u64, tokio::task::AbortHandle)>>>;

async fn serve_conn(
    raft: Raft<TypeConfig>,
    key: Key,
    mut s: TcpStream,
    peer: std::net::SocketAddr,
    id: u64,
    pending: Pending,
) {
    let _ = s.set_nodelay(true);
    let mut nonce = [0u8; NONCE];
    if getrandom::fill(&mut nonce).is_err() || s.write_all(&nonce).await.is_err() {
        return;
    }
    let mut seq = 0u64;
    loop {
        // Before its first verified frame, a connection gets FRAME_TIMEOUT to send it.
        let idle = if seq == 0 {
            FRAME_TIMEOUT
        } else {
            IDLE_TIMEOUT
        };
        let frame = match read_frame(&mut s, &key, &nonce, REQ, seq, idle).await {
            Ok(f) => f,
            Err(e) => {
                if e.kind() == std::io::ErrorKind::PermissionDenied {
                    warn!(%peer, "raft: refused a frame that does not verify under this center's Raft secret (a replica with another raft secret, or not a replica)");
                }
                return;
            }
        };
        if seq == 0 {
            let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
            p.retain(|(i, _)| *i != id);
        }
        let resp = match serde_json::from_slice::<Request>(&frame) {
            Ok(req) => handle(&raft, req).await,
            Err(e) => Response::Error(format!("malformed request: {e}")),
        };
        let Ok(bytes) = serde_json::to_vec(&resp) else {
            return;
        };
        if write_frame(&mut s, &key, &nonce, RSP, seq, &bytes)
            .await
            .is_err()
        {
            return;
        }
        seq += 1;
    }
}

/// Serves peers' RPCs on `listener` until `shutdown` turns true.
///
/// At most [`MAX_CONNECTIONS`] connections that have not authenticated yet are kept: a new one
/// beyond that closes the oldest of them, so a flood of idle connections cannot lock the
/// replicas out (theirs authenticate within milliseconds of connecting). Authenticated
/// connections are not limited (only holders of the secret can make them).
pub async fn serve(
    listener: TcpListener,
    raft: Raft<TypeConfig>,
    key: Key,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = tokio::task::JoinSet::new();
    let pending: Pending = Arc::default();
    let mut next_id = 0u64;
    loop {
        tokio::select! {
            a = listener.accept() => match a {
                Ok((s, peer)) => {
                    debug!(%peer, "raft peer connected");
                    next_id += 1;
                    let handle = conns.spawn(serve_conn(
                        raft.clone(),
                        key.clone(),
                        s,
                        peer,
                        next_id,
                        pending.clone(),
                    ));
                    let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
                    p.push_back((next_id, handle));
                    while p.len() > MAX_CONNECTIONS {
                        if let Some((_, oldest)) = p.pop_front() {
                            oldest.abort();
                        }
                    }
                }
                Err(e) => {
                    debug!(error = %e, "raft accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {
                // Finished tasks leave `pending` by themselves once authenticated; the others
                // are dropped here lazily.
                let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
                p.retain(|(_, h)| !h.is_finished());
            }
            _ = shutdown.changed() => return,
        }
    }
}
