//! Connections and the crate's error type.
//!
//! URLs may carry a password; [`redact_url`] must be used whenever a URL is logged or shown.
//!
//! Every connection drc opens goes through [`connect`], which turns on TCP keepalive
//! ([`TCP_KEEPALIVE`]): a peer that vanished without FIN or RST (a half-open connection) is
//! noticed by the kernel instead of hanging a read forever. Keepalive alone takes minutes
//! (idle time + the system's probe interval x count), so callers also bound every round trip
//! with [`bounded`]: a timed-out connection is in an unknown state and must be dropped.
//! Connections go where the URL says: the driver's switch from TCP on 127.0.0.1 to the
//! server's Unix socket is off unless the URL asks for it (`?prefer_socket=true`).
//!
//! Every session starts with `SET NAMES utf8mb4` and drc's [`SESSION_SQL_MODE`], and uses the
//! URL's TLS settings ([`crate::tls`]).

use std::time::Duration;

use mysql_async::{Conn, Opts, OptsBuilder};

/// Idle time before the kernel sends the first keepalive probe on drc's connections.
pub const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum MysqlError {
    /// The URL could not be parsed.
    #[error("invalid MySQL URL {url}: {source} (expected mysql://user[:password]@host:port[/db])")]
    BadUrl {
        /// The URL with its password removed.
        url: String,
        /// Parser error.
        #[source]
        source: mysql_async::UrlError,
    },
    /// The URL's TLS settings are not valid.
    #[error("invalid TLS settings in {url}: {detail}")]
    BadTls {
        /// The URL with its password removed.
        url: String,
        /// What is wrong.
        detail: String,
    },
    /// Connecting failed.
    #[error("cannot connect to {url}: {source}{hint}")]
    Connect {
        /// The URL with its password removed.
        url: String,
        /// Driver error.
        #[source]
        source: mysql_async::Error,
        /// What may be the cause, when drc can tell more than the server said.
        hint: ConnectHint,
    },
    /// Connecting did not finish in time.
    #[error("connecting to {url} timed out after {secs} s")]
    ConnectTimeout {
        /// The URL with its password removed.
        url: String,
        /// Timeout.
        secs: u64,
    },
    /// A query did not answer in time; its connection is in an unknown state (dropped).
    #[error("{what}: no answer within {secs} s (connection dropped; the server or the network between is unreachable or stalled)")]
    Timeout {
        /// What was being done.
        what: &'static str,
        /// Timeout.
        secs: u64,
    },
    /// A query failed.
    #[error("query failed ({what}): {source}")]
    Query {
        /// What was being done.
        what: &'static str,
        /// Driver error.
        #[source]
        source: mysql_async::Error,
    },
    /// The server answered something drc cannot interpret.
    #[error("unexpected answer from server ({what}): {detail}")]
    Unexpected {
        /// What was being done.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
}

impl MysqlError {
    /// True when retrying later can succeed (network trouble, server restarting); false when an
    /// operator must change something first (bad URL, access denied, bad answer).
    pub fn is_transient(&self) -> bool {
        match self {
            MysqlError::BadUrl { .. }
            | MysqlError::BadTls { .. }
            | MysqlError::Unexpected { .. } => false,
            MysqlError::ConnectTimeout { .. } | MysqlError::Timeout { .. } => true,
            MysqlError::Connect { source, .. } | MysqlError::Query { source, .. } => {
                crate::codes::is_transient_driver_error(source)
            }
        }
    }
}

/// Removes the password from a `mysql://user:password@host/...` URL for display.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// Why a password cannot be put into a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordSlot {
    /// The URL already carries a password.
    AlreadySet,
    /// The URL has no `user@` part to attach a password to.
    NoUser,
}

/// Puts `password` (percent-encoded) into `mysql://user@host...`, so that secrets kept outside
/// the URL (environment, files) reach the driver.
pub fn url_with_password(url: &str, password: &str) -> Result<String, PasswordSlot> {
    let (scheme, rest) = url.split_once("://").ok_or(PasswordSlot::NoUser)?;
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let at = rest[..authority_end]
        .rfind('@')
        .ok_or(PasswordSlot::NoUser)?;
    let (user, host) = (&rest[..at], &rest[at + 1..]);
    if user.contains(':') {
        return Err(PasswordSlot::AlreadySet);
    }
    let encoded = percent_encode(password);
    Ok(format!("{scheme}://{user}:{encoded}@{host}"))
}

/// Percent-encodes everything but the URL's unreserved characters (`A-Z a-z 0-9 - . _ ~`), for
/// a password or a path put into a URL.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The driver's options of a URL that may carry drc's TLS parameters (they are taken out).
pub fn parse_opts(url: &str) -> Result<Opts, MysqlError> {
    let (driver_url, _) = crate::tls::split_url(url).map_err(|detail| MysqlError::BadTls {
        url: redact_url(url),
        detail,
    })?;
    Opts::from_url(&driver_url).map_err(|source| MysqlError::BadUrl {
        url: redact_url(url),
        source,
    })
}

/// Options for a connection pool on `url`, with its TLS settings and drc's session settings.
/// A pool cannot fall back per connection, so `preferred` connects plain here: give
/// `required` or stronger for TLS.
pub fn pool_opts(url: &str) -> Result<OptsBuilder, MysqlError> {
    let (_, tls) = crate::tls::split_url(url).map_err(|detail| MysqlError::BadTls {
        url: redact_url(url),
        detail,
    })?;
    let ssl = match tls.mode {
        crate::tls::TlsMode::Preferred => None,
        _ => crate::tls::ssl_opts(&tls),
    };
    Ok(OptsBuilder::from_opts(parse_opts(url)?)
        .tcp_keepalive(Some(TCP_KEEPALIVE))
        .init(vec![format!(
            "SET NAMES utf8mb4, sql_mode = '{SESSION_SQL_MODE}'"
        )])
        .ssl_opts(ssl))
}

/// Opens one connection, bounded by `timeout`.
pub async fn connect(url: &str, timeout: Duration) -> Result<Conn, MysqlError> {
    connect_with(url, timeout, None).await
}

/// [`connect`] for a binlog stream: the client accepts packets up to 1 GiB (the most a server
/// sends), not only up to the server's `max_allowed_packet`. A binlog event can be larger than
/// that setting (an UPDATE carries a row's before and after images), and the server's dump
/// thread sends it anyway.
pub async fn connect_stream(url: &str, timeout: Duration) -> Result<Conn, MysqlError> {
    connect_with(url, timeout, Some(1 << 30)).await
}

/// The `sql_mode` of every session drc opens (appliers included): strict, values exactly as the
/// source stored them (an id 0 stays 0), and, above all, without `NO_BACKSLASH_ESCAPES` or
/// `ANSI_QUOTES`, so that drc's escaping (`drc_core::sqltext`) never depends on a server's
/// global settings.
pub const SESSION_SQL_MODE: &str = "STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION";

async fn connect_with(
    url: &str,
    timeout: Duration,
    max_allowed_packet: Option<usize>,
) -> Result<Conn, MysqlError> {
    let (_, tls) = crate::tls::split_url(url).map_err(|detail| MysqlError::BadTls {
        url: redact_url(url),
        detail,
    })?;
    let mut opts = OptsBuilder::from_opts(parse_opts(url)?)
        .tcp_keepalive(Some(TCP_KEEPALIVE))
        .init(vec![format!(
            "SET NAMES utf8mb4, sql_mode = '{SESSION_SQL_MODE}'"
        )]);
    if !url.contains("prefer_socket=") {
        // The driver would otherwise switch a TCP connection to 127.0.0.1 over to the server's
        // Unix socket: around a local proxy (or a tunnel) the operator put in the URL, and
        // without keepalive or the proxy's view of the network.
        opts = opts.prefer_socket(false);
    }
    if let Some(m) = max_allowed_packet {
        opts = opts.max_allowed_packet(Some(m));
    }
    let plain = opts.clone();
    let opts = opts.ssl_opts(crate::tls::ssl_opts(&tls));
    let attempt = async {
        match Conn::new(opts).await {
            // `preferred`: the server offers no TLS, so plain it is.
            Err(mysql_async::Error::Driver(
                mysql_async::DriverError::NoClientSslFlagFromServer,
            )) if tls.mode == crate::tls::TlsMode::Preferred => Conn::new(plain).await,
            other => other,
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(source)) => Err(MysqlError::Connect {
            url: redact_url(url),
            hint: plain_hint(&source, tls.mode),
            source,
        }),
        Err(_) => Err(MysqlError::ConnectTimeout {
            url: redact_url(url),
            secs: timeout.as_secs(),
        }),
    }
}

/// What drc can add to a failed connection's error (shown after the server's message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectHint {
    /// Nothing to add.
    None,
    /// A plain connection refused with "access denied": MariaDB answers so when it requires
    /// secure transport (`require_secure_transport=ON`, or `REQUIRE SSL` for the user), without
    /// saying so.
    PlainRefused,
}

impl std::fmt::Display for ConnectHint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectHint::None => Ok(()),
            ConnectHint::PlainRefused => f.write_str(
                " (this connection was plain, tls = \"disabled\": if the server requires secure transport (require_secure_transport=ON, or REQUIRE SSL for the user) it refuses plain connections this way; set tls = \"verify_ca\" with tls_ca)",
            ),
        }
    }
}

fn plain_hint(e: &mysql_async::Error, mode: crate::tls::TlsMode) -> ConnectHint {
    let denied = crate::codes::server_code(e) == Some(1045);
    match mode {
        crate::tls::TlsMode::Disabled if denied => ConnectHint::PlainRefused,
        _ => ConnectHint::None,
    }
}

/// Runs one round trip (or a few) bounded by `timeout`; [`MysqlError::Timeout`] when it does
/// not finish. The caller must drop the connection after a timeout.
pub async fn bounded<T, E>(
    timeout: Duration,
    what: &'static str,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E>
where
    E: From<MysqlError>,
{
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(MysqlError::Timeout {
            what,
            secs: timeout.as_secs(),
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_shown() {
        assert_eq!(
            redact_url("mysql://repl:s3cr:et@db1:3306/shop"),
            "mysql://repl:***@db1:3306/shop"
        );
        assert_eq!(
            redact_url("mysql://root@127.0.0.1:3306"),
            "mysql://root@127.0.0.1:3306"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn passwords_are_inserted_encoded() {
        assert_eq!(
            url_with_password("mysql://repl@db1:3306/shop", "p@ss:w/rd"),
            Ok("mysql://repl:p%40ss%3Aw%2Frd@db1:3306/shop".to_string())
        );
        assert_eq!(
            url_with_password("mysql://a:b@h", "x"),
            Err(PasswordSlot::AlreadySet)
        );
        assert_eq!(
            url_with_password("mysql://h:1", "x"),
            Err(PasswordSlot::NoUser)
        );
    }
}
