//! HTTPS for the daemon's listener (`[http] tls_cert`, `tls_key`): rustls with the `ring`
//! provider, the same TLS stack as drc's MySQL connections. Handshakes run in tasks of their own
//! (bounded by [`HANDSHAKE_TIMEOUT`]), so a client that connects and sends nothing cannot hold
//! up anyone else's accept.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::debug;

/// Longest TLS handshake accepted.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the HTTPS listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HttpsError {
    /// A PEM file could not be read or parsed.
    #[error("http.{key}: {path}: {detail}")]
    Pem {
        /// The configuration key.
        key: &'static str,
        /// The file.
        path: String,
        /// What was wrong.
        detail: String,
    },
    /// rustls refused the certificate and key.
    #[error("http.tls_cert/tls_key: {0}")]
    Config(String),
}

/// The acceptor for a certificate chain and key in PEM files.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, HttpsError> {
    let pem = |k: &'static str, p: &Path, detail: String| HttpsError::Pem {
        key: k,
        path: p.display().to_string(),
        detail,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem("tls_cert", cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem("tls_cert", cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(pem("tls_cert", cert, "no certificate in the file".into()));
    }
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| pem("tls_key", key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| HttpsError::Config(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A listener that yields connections whose TLS handshake finished.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    _accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Accepts on `tcp`, handshaking with `acceptor`.
    pub fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let accepting = tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        debug!(error = %e, "https accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => debug!(%peer, error = %e, "https handshake failed"),
                        Err(_) => debug!(%peer, "https handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            local,
            ready,
            _accepting: accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self._accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            if let Some(c) = self.ready.recv().await {
                return c;
            }
            // The accepting task ended (it never does on its own); wait for shutdown.
            std::future::pending::<()>().await;
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
