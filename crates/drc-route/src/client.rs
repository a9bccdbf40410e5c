//! drc's own HTTP client for its daemons' endpoints (`drc status`, `drc cutover` asking which
//! map epoch a daemon serves): HTTP/1.0 GET of a JSON body, with the `[http]` bearer token and,
//! when the daemons serve HTTPS, TLS verified against `[http] tls_ca` (or the public web roots
//! without it). One request per connection; bounded by [`TIMEOUT`].

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsConnector;

/// Longest time one request may take.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// A client configured from `[http]`.
#[derive(Clone, Default)]
pub struct HttpClient {
    token: Option<String>,
    tls: Option<TlsConnector>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl HttpClient {
    /// A client for daemons configured with `http`.
    pub fn new(http: &drc_config::Http) -> Result<Self, String> {
        let tls = match &http.tls {
            None => None,
            Some(_) => {
                let mut roots = rustls::RootCertStore::empty();
                match &http.tls_ca {
                    Some(ca) => {
                        for c in CertificateDer::pem_file_iter(ca)
                            .map_err(|e| format!("http.tls_ca: {}: {e}", ca.display()))?
                        {
                            let c = c.map_err(|e| format!("http.tls_ca: {}: {e}", ca.display()))?;
                            roots
                                .add(c)
                                .map_err(|e| format!("http.tls_ca: {}: {e}", ca.display()))?;
                        }
                    }
                    None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
                }
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Some(TlsConnector::from(Arc::new(config)))
            }
        };
        Ok(HttpClient {
            token: http.token.as_ref().map(|t| t.expose().to_string()),
            tls,
        })
    }

    /// `GET path` on `addr` (`host:port`): the status code and the JSON body.
    pub async fn get_json(
        &self,
        addr: &str,
        path: &str,
    ) -> Result<(u16, serde_json::Value), String> {
        let io = async {
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| e.to_string())?;
            match &self.tls {
                None => self.exchange(tcp, addr, path).await,
                Some(connector) => {
                    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
                    let host = host.trim_start_matches('[').trim_end_matches(']');
                    let name = ServerName::try_from(host.to_string())
                        .map_err(|e| format!("{host}: {e}"))?;
                    let tls = connector
                        .connect(name, tcp)
                        .await
                        .map_err(|e| format!("TLS to {addr}: {e}"))?;
                    self.exchange(tls, addr, path).await
                }
            }
        };
        tokio::time::timeout(TIMEOUT, io)
            .await
            .map_err(|_| format!("no answer within {} s", TIMEOUT.as_secs()))?
    }

    async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut s: S,
        addr: &str,
        path: &str,
    ) -> Result<(u16, serde_json::Value), String> {
        let auth = self
            .token
            .as_ref()
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        // A TLS peer may close without close_notify after the body: keep what arrived.
        if let Err(e) = s.read_to_end(&mut buf).await {
            if buf.is_empty() {
                return Err(e.to_string());
            }
        }
        let text = String::from_utf8_lossy(&buf);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| "not an HTTP answer".to_string())?;
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| "not an HTTP answer".to_string())?;
        let json = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
        Ok((code, json))
    }
}
