//! TLS to MySQL/MariaDB (rustls, through mysql_async's `rustls-tls` backend with the `ring`
//! provider). docs/security.md has the setup.
//!
//! A center's TLS settings travel with its connection URL, as drc's own query parameters
//! (`drc-tls`, `drc-tls-ca`, `drc-tls-cert`, `drc-tls-key`; [`url_with_tls`]), so that every
//! place that connects — links, appliers, the daemon, every command — gets them without passing
//! a second value along. [`crate::connect`] takes them out of the URL before the driver sees it.
//!
//! Modes ([`TlsMode`]), as MySQL's `--ssl-mode` names them:
//! - `disabled`: plain TCP;
//! - `preferred` (the default): TLS when the server offers it, without checking its
//!   certificate, else plain (protects against listening, not against an active attacker);
//! - `required`: TLS or no connection, certificate not checked;
//! - `verify_ca`: TLS, the server's certificate must chain to `tls_ca` (or, without it, to the
//!   public web roots);
//! - `verify_identity`: as `verify_ca`, and the certificate must name the host of the URL.
//!
//! `tls_cert` and `tls_key` (PEM) give a client certificate, for servers that require one
//! (`REQUIRE X509`).

use std::fmt;
use std::path::PathBuf;

use mysql_async::{ClientIdentity, SslOpts};

/// How a connection uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Plain TCP.
    Disabled,
    /// TLS when the server offers it (certificate not checked), else plain.
    #[default]
    Preferred,
    /// TLS, certificate not checked.
    Required,
    /// TLS, certificate chained to the CA.
    VerifyCa,
    /// TLS, certificate chained to the CA and naming the host.
    VerifyIdentity,
}

impl TlsMode {
    /// Every mode, as configured.
    pub const NAMES: &'static str =
        "\"disabled\", \"preferred\", \"required\", \"verify_ca\", \"verify_identity\"";

    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Disabled => "disabled",
            TlsMode::Preferred => "preferred",
            TlsMode::Required => "required",
            TlsMode::VerifyCa => "verify_ca",
            TlsMode::VerifyIdentity => "verify_identity",
        }
    }

    /// Parses the configuration spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "disabled" => TlsMode::Disabled,
            "preferred" => TlsMode::Preferred,
            "required" => TlsMode::Required,
            "verify_ca" => TlsMode::VerifyCa,
            "verify_identity" => TlsMode::VerifyIdentity,
            _ => return None,
        })
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A connection's TLS settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// The mode.
    pub mode: TlsMode,
    /// CA certificate(s), PEM, to verify the server with.
    pub ca: Option<PathBuf>,
    /// Client certificate chain, PEM.
    pub cert: Option<PathBuf>,
    /// Client private key, PEM.
    pub key: Option<PathBuf>,
}

const MODE: &str = "drc-tls";
const CA: &str = "drc-tls-ca";
const CERT: &str = "drc-tls-cert";
const KEY: &str = "drc-tls-key";

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `url` with `tls` as drc's query parameters (replacing any it had; none for the default,
/// `preferred` without files, so that a default URL stays as written).
pub fn url_with_tls(url: &str, tls: &Tls) -> String {
    let (base, _) = split_url(url).unwrap_or_else(|_| (url.to_string(), Tls::default()));
    if *tls == Tls::default() {
        return base;
    }
    let mut params = vec![format!("{MODE}={}", tls.mode)];
    for (name, path) in [(CA, &tls.ca), (CERT, &tls.cert), (KEY, &tls.key)] {
        if let Some(p) = path {
            params.push(format!(
                "{name}={}",
                crate::percent_encode(&p.to_string_lossy())
            ));
        }
    }
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{}", params.join("&"))
}

/// Splits drc's TLS parameters off `url`: the URL for the driver, and the settings (the
/// default, `preferred`, when the URL has none).
pub fn split_url(url: &str) -> Result<(String, Tls), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), Tls::default()));
    };
    let mut tls = Tls::default();
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            MODE => {
                tls.mode = TlsMode::parse(&decode(v)).ok_or_else(|| {
                    format!(
                        "{MODE}={v:?} is not a TLS mode: use one of {}",
                        TlsMode::NAMES
                    )
                })?;
            }
            CA => tls.ca = Some(PathBuf::from(decode(v))),
            CERT => tls.cert = Some(PathBuf::from(decode(v))),
            KEY => tls.key = Some(PathBuf::from(decode(v))),
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((url, tls))
}

/// The driver's TLS options for `tls` (`None`: plain).
pub(crate) fn ssl_opts(tls: &Tls) -> Option<SslOpts> {
    let check = match tls.mode {
        TlsMode::Disabled => return None,
        TlsMode::Preferred | TlsMode::Required => None,
        TlsMode::VerifyCa => Some(false),
        TlsMode::VerifyIdentity => Some(true),
    };
    let mut opts = SslOpts::default();
    match check {
        None => {
            opts = opts
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true);
        }
        Some(identity) => {
            opts = opts.with_danger_skip_domain_validation(!identity);
            if let Some(ca) = &tls.ca {
                opts = opts
                    .with_root_certs(vec![ca.clone().into()])
                    .with_disable_built_in_roots(true);
            }
        }
    }
    if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
        opts = opts.with_client_identity(Some(ClientIdentity::new(
            cert.clone().into(),
            key.clone().into(),
        )));
    }
    Some(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_through_the_url() {
        let tls = Tls {
            mode: TlsMode::VerifyCa,
            ca: Some("/etc/drc/ca dir/ca.pem".into()),
            cert: None,
            key: Some("/k&y.pem".into()),
        };
        let url = url_with_tls("mysql://u:p@h:3306/db?prefer_socket=true", &tls);
        let (base, back) = split_url(&url).expect("parses");
        assert_eq!(base, "mysql://u:p@h:3306/db?prefer_socket=true");
        assert_eq!(back, tls);
        // Replacing keeps one set.
        let again = url_with_tls(&url, &Tls::default());
        assert_eq!(again, "mysql://u:p@h:3306/db?prefer_socket=true");
        let required = Tls {
            mode: TlsMode::Required,
            ..Tls::default()
        };
        let twice = url_with_tls(&url_with_tls(&url, &required), &required);
        assert_eq!(twice.matches("drc-tls=").count(), 1, "{twice}");
        assert_eq!(split_url("mysql://h").expect("plain").1, Tls::default());
        assert!(split_url("mysql://h?drc-tls=maybe")
            .expect_err("bad mode")
            .contains("verify_identity"));
    }
}
