//! A TCP proxy on loopback between drc and a MariaDB server, to make network incidents on
//! command: [`Mode::Pause`] stops forwarding in both directions without closing either side
//! (a half-open link: a partition, a peer that vanished without FIN or RST); connections
//! accepted meanwhile are held too. [`Mode::Refuse`] closes every connection and every new one
//! at once (an unreachable server). [`Mode::Forward`] forwards again, held data included.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward both ways.
    Forward,
    /// Hold everything; close nothing.
    Pause,
    /// Close every connection, accept none.
    Refuse,
}

/// A running proxy (stops with the test's runtime).
pub struct Proxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
}

impl Proxy {
    /// A proxy on a free loopback port to `upstream` (`127.0.0.1:port`), forwarding.
    pub async fn start(upstream_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (mode, rx) = watch::channel(Mode::Forward);
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if *rx.borrow() == Mode::Refuse {
                    continue; // dropped: closed at once
                }
                let rx = rx.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::spawn(pump(cr, sw, rx.clone()));
                    tokio::spawn(pump(sr, cw, rx));
                });
            }
        });
        Proxy { addr, mode }
    }

    /// `mysql://root@127.0.0.1:PORT` through the proxy.
    pub fn url(&self) -> String {
        format!("mysql://root@{}", self.addr)
    }

    /// Switches the mode.
    pub fn set(&self, m: Mode) {
        self.mode.send_replace(m);
    }
}

/// Waits until the mode is not `Pause`; false when the connection must close.
async fn may_forward(mode: &mut watch::Receiver<Mode>) -> bool {
    match mode.wait_for(|m| *m != Mode::Pause).await {
        Ok(m) => *m == Mode::Forward,
        Err(_) => false,
    }
}

async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut mode: watch::Receiver<Mode>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if !may_forward(&mut mode).await {
            return;
        }
        tokio::select! {
            n = from.read(&mut buf) => {
                let n = match n {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                // Read before a pause began: held until forwarding resumes.
                if !may_forward(&mut mode).await || to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            _ = mode.changed() => {}
        }
    }
}
