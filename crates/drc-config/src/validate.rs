//! The second step of loading: every rule, all problems reported at once.
//!
//! Defaults (documented in docs/configuration.md): loopback `auto`, meta database `drc_meta`,
//! applier parallelism 4, batch 2,000 rows, batch delay 0 ms (close when the source has nothing
//! more to give), 200 rows per statement, query
//! timeout 120 s, source heartbeat 1 s, idle timeout 10 s, replica server id base 3,900,000,000,
//! heartbeat every 1 s, DDL mode `stop` ([`crate::ddl`]).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use crate::raw::{RawCenter, RawConfig};
use crate::{
    Applier, Center, Config, ConfigError, ConfigErrors, Conflict, Heartbeat, Loopback, Replication,
    Secret, SourceSettings, TablePattern,
};

struct Errors(Vec<ConfigError>);

impl Errors {
    fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            key: key.into(),
            message: message.into(),
        });
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn valid_identifier(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && !s.contains('`') && !s.contains('\0') && s.trim() == s
}

fn center(
    i: usize,
    raw: RawCenter,
    env: &dyn Fn(&str) -> Option<String>,
    e: &mut Errors,
) -> Option<Center> {
    let key = |k: &str| format!("center[{i}].{k}");
    let tls = tls(i, &raw, e);
    let raft_secret = raft_secret(i, &raw, env, e);
    let name = match raw.name {
        Some(n) if valid_name(&n) => Some(n),
        Some(n) => {
            e.add(key("name"), format!("{n:?} is not a valid center name: use 1-32 characters of a-z, 0-9, '_' and '-'"));
            None
        }
        None => {
            e.add(key("name"), "missing: every [[center]] needs a name");
            None
        }
    };
    let url = match raw.mysql {
        Some(u) => Some(u),
        None => {
            e.add(
                key("mysql"),
                "missing: give the center's server, e.g. mysql://drc@10.0.1.5:3306",
            );
            None
        }
    };
    let password = match (&raw.password_env, &raw.password_file) {
        (Some(_), Some(_)) => {
            e.add(
                key("password_env"),
                "give password_env or password_file, not both",
            );
            None
        }
        (Some(var), None) => match env(var) {
            Some(p) => Some(p),
            None => {
                e.add(
                    key("password_env"),
                    format!("environment variable {var} is not set"),
                );
                None
            }
        },
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(p) => Some(p.trim_end_matches(['\n', '\r']).to_string()),
            Err(err) => {
                e.add(key("password_file"), format!("cannot read {path}: {err}"));
                None
            }
        },
        (None, None) => None,
    };
    let url = url.and_then(|u| {
        let full = match &password {
            None => u.clone(),
            Some(p) => match drc_mysql::url_with_password(&u, p) {
                Ok(full) => full,
                Err(drc_mysql::PasswordSlot::AlreadySet) => {
                    e.add(key("mysql"), "the URL already has a password; remove it or drop password_env/password_file");
                    return None;
                }
                Err(drc_mysql::PasswordSlot::NoUser) => {
                    e.add(key("mysql"), "a password is configured but the URL has no user: use mysql://user@host:port");
                    return None;
                }
            },
        };
        match mysql_async::Opts::from_url(&full) {
            Ok(_) => Some((full, drc_mysql::redact_url(&u))),
            Err(err) => {
                e.add(
                    key("mysql"),
                    format!(
                        "{}: {err} (expected mysql://user[:password]@host:port)",
                        drc_mysql::redact_url(&u)
                    ),
                );
                None
            }
        }
    });
    let metrics_listen = match raw.metrics_listen {
        Some(s) => match s.parse::<SocketAddr>() {
            Ok(a) => Some(Some(a)),
            Err(_) => {
                e.add(
                    key("metrics_listen"),
                    format!("{s:?} is not an address: use host:port, e.g. 127.0.0.1:9401"),
                );
                None
            }
        },
        None => Some(None),
    };
    let replicas = crate::election::replicas(i, raw.replicas, &mut e.0);
    if !replicas.is_empty()
        && raft_secret.is_none()
        && !e.0.iter().any(|x| x.key.starts_with(&key("raft_secret")))
    {
        e.add(
            key("raft_secret_file"),
            "a center with replicas needs a Raft secret, or its Raft port would take any peer's vote: give raft_secret_file (a file of at least 16 random bytes, e.g. `openssl rand -base64 32 > /etc/drc/raft.key`) or raft_secret_env, the same in every replica of the center",
        );
    }
    let (name, (url, display_url), metrics_listen, tls) = (name?, url?, metrics_listen?, tls?);
    Some(Center {
        name,
        url: Secret::new(drc_mysql::url_with_tls(&url, &tls)),
        display_url,
        metrics_listen,
        replicas,
        tls,
        raft_secret: raft_secret.map(Secret::new),
    })
}

/// The Raft secret of a center (file or environment), at least 16 bytes.
fn raft_secret(
    i: usize,
    raw: &RawCenter,
    env: &dyn Fn(&str) -> Option<String>,
    e: &mut Errors,
) -> Option<String> {
    let key = |k: &str| format!("center[{i}].{k}");
    let (k, secret) = match (&raw.raft_secret_env, &raw.raft_secret_file) {
        (Some(_), Some(_)) => {
            e.add(
                key("raft_secret_env"),
                "give raft_secret_env or raft_secret_file, not both",
            );
            return None;
        }
        (Some(var), None) => match env(var) {
            Some(s) => ("raft_secret_env", s),
            None => {
                e.add(
                    key("raft_secret_env"),
                    format!("environment variable {var} is not set"),
                );
                return None;
            }
        },
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(s) => (
                "raft_secret_file",
                s.trim_end_matches(['\n', '\r']).to_string(),
            ),
            Err(err) => {
                e.add(
                    key("raft_secret_file"),
                    format!("cannot read {path}: {err}"),
                );
                return None;
            }
        },
        (None, None) => return None,
    };
    if secret.len() < 16 {
        e.add(
            key(k),
            format!("the Raft secret has {} bytes: use at least 16 random bytes (e.g. `openssl rand -base64 32`)", secret.len()),
        );
        return None;
    }
    Some(secret)
}

/// A center's TLS keys: the mode (default `preferred`) and readable PEM files.
fn tls(i: usize, raw: &RawCenter, e: &mut Errors) -> Option<drc_mysql::Tls> {
    let key = |k: &str| format!("center[{i}].{k}");
    let before = e.0.len();
    let mode = match raw.tls.as_deref() {
        None => drc_mysql::TlsMode::Preferred,
        Some(m) => drc_mysql::TlsMode::parse(m).unwrap_or_else(|| {
            e.add(
                key("tls"),
                format!(
                    "{m:?} is not a TLS mode: use one of {}",
                    drc_mysql::TlsMode::NAMES
                ),
            );
            drc_mysql::TlsMode::Preferred
        }),
    };
    let mut file = |k: &str, v: &Option<String>| -> Option<std::path::PathBuf> {
        let path = v.as_ref()?;
        match std::fs::read(path) {
            Ok(bytes) if bytes.windows(10).any(|w| w == b"-----BEGIN") => Some(path.into()),
            Ok(_) => {
                e.add(
                    key(k),
                    format!("{path} holds no PEM block (-----BEGIN ...): give a PEM file"),
                );
                None
            }
            Err(err) => {
                e.add(key(k), format!("cannot read {path}: {err}"));
                None
            }
        }
    };
    let ca = file("tls_ca", &raw.tls_ca);
    let cert = file("tls_cert", &raw.tls_cert);
    let tls_key = file("tls_key", &raw.tls_key);
    if raw.tls_cert.is_some() != raw.tls_key.is_some() {
        e.add(
            key("tls_cert"),
            "a client certificate needs both tls_cert and tls_key",
        );
    }
    if mode == drc_mysql::TlsMode::Disabled
        && (raw.tls_ca.is_some() || raw.tls_cert.is_some() || raw.tls_key.is_some())
    {
        e.add(
            key("tls"),
            "\"disabled\" with TLS files configured: remove the files or choose a TLS mode",
        );
    }
    if e.0.len() > before {
        return None;
    }
    Some(drc_mysql::Tls {
        mode,
        ca,
        cert,
        key: tls_key,
    })
}

fn duration_ms(
    v: Option<i64>,
    default: u64,
    min: i64,
    max: i64,
    key: &str,
    e: &mut Errors,
) -> Duration {
    match v {
        None => Duration::from_millis(default),
        Some(x) if (min..=max).contains(&x) => Duration::from_millis(x as u64),
        Some(x) => {
            e.add(
                key,
                format!("{x} is out of range: use {min}..={max} milliseconds"),
            );
            Duration::from_millis(default)
        }
    }
}

fn count(v: Option<i64>, default: usize, min: i64, max: i64, key: &str, e: &mut Errors) -> usize {
    match v {
        None => default,
        Some(x) if (min..=max).contains(&x) => x as usize,
        Some(x) => {
            e.add(key, format!("{x} is out of range: use {min}..={max}"));
            default
        }
    }
}

/// Checks every rule of a raw configuration and builds the validated [`Config`].
pub fn validate(
    raw: RawConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut e = Errors(Vec::new());
    if raw.center.len() < 2 {
        e.add(
            "center",
            format!(
                "{} center(s) configured: drc needs at least two [[center]] tables",
                raw.center.len()
            ),
        );
    }
    // Keys name a center by its position in the file, also when an earlier one was invalid.
    let indexed: Vec<(usize, Center)> = raw
        .center
        .into_iter()
        .enumerate()
        .filter_map(|(i, c)| center(i, c, env, &mut e).map(|c| (i, c)))
        .collect();
    let mut names = HashSet::new();
    let mut listens = HashSet::new();
    for (i, c) in &indexed {
        if !names.insert(c.name.clone()) {
            e.add(
                format!("center[{i}].name"),
                format!("{:?} is used by two centers; names must be unique", c.name),
            );
        }
        if let Some(a) = c.metrics_listen {
            if !listens.insert(a) {
                e.add(
                    format!("center[{i}].metrics_listen"),
                    format!("{a} is used by two centers"),
                );
            }
        }
    }

    let centers: Vec<Center> = indexed.into_iter().map(|(_, c)| c).collect();
    crate::election::distinct_across_centers(&centers, &mut e.0);
    let election = crate::election::election(raw.election, &mut e.0);

    let replication = match raw.replication {
        None => {
            e.add(
                "replication",
                "missing: add [replication] with databases = [\"...\"]",
            );
            None
        }
        Some(r) => {
            if r.databases.is_empty() {
                e.add(
                    "replication.databases",
                    "empty: name the databases to replicate, e.g. [\"shop\"]",
                );
            }
            for (i, d) in r.databases.iter().enumerate() {
                if !valid_identifier(d) {
                    e.add(
                        format!("replication.databases[{i}]"),
                        format!("{d:?} is not a valid database name"),
                    );
                }
            }
            let meta = r.meta_database.unwrap_or_else(|| "drc_meta".into());
            if !valid_identifier(&meta) {
                e.add(
                    "replication.meta_database",
                    format!("{meta:?} is not a valid database name"),
                );
            }
            if r.databases.contains(&meta) {
                e.add(
                    "replication.meta_database",
                    format!("{meta:?} is drc's own database and cannot also be replicated"),
                );
            }
            let mut pats = |list: Vec<String>, key: &str| -> Vec<TablePattern> {
                list.into_iter()
                    .enumerate()
                    .filter_map(|(i, p)| match TablePattern::parse(&p) {
                        Ok(p) => Some(p),
                        Err(m) => {
                            e.add(format!("replication.{key}[{i}]"), m);
                            None
                        }
                    })
                    .collect()
            };
            let include_tables = pats(r.include_tables, "include_tables");
            let exclude_tables = pats(r.exclude_tables, "exclude_tables");
            let loopback = match r.loopback.as_deref() {
                None | Some("auto") => Loopback::Auto,
                Some("server_id") => Loopback::ServerId,
                Some("marker") => Loopback::Marker,
                Some(other) => {
                    e.add("replication.loopback", format!("{other:?} is not a strategy: use \"auto\", \"server_id\" or \"marker\""));
                    Loopback::Auto
                }
            };
            Some(Replication {
                databases: r.databases,
                include_tables,
                exclude_tables,
                loopback,
                meta_database: meta,
            })
        }
    };

    let applier = Applier {
        parallelism: count(
            raw.applier.parallelism,
            4,
            1,
            64,
            "applier.parallelism",
            &mut e,
        ),
        batch_rows: count(
            raw.applier.batch_rows,
            2000,
            1,
            1_000_000,
            "applier.batch_rows",
            &mut e,
        ),
        share_rows: count(
            raw.applier.share_rows,
            256,
            1,
            1_000_000,
            "applier.share_rows",
            &mut e,
        ),
        batch_delay: duration_ms(
            raw.applier.batch_delay_ms,
            0,
            0,
            60_000,
            "applier.batch_delay_ms",
            &mut e,
        ),
        statement_rows: count(
            raw.applier.statement_rows,
            200,
            1,
            10_000,
            "applier.statement_rows",
            &mut e,
        ),
        query_timeout: duration_ms(
            raw.applier.query_timeout_ms,
            120_000,
            1000,
            3_600_000,
            "applier.query_timeout_ms",
            &mut e,
        ),
        max_transaction_rows: count(
            raw.applier.max_transaction_rows,
            1_000_000,
            1,
            1_000_000_000,
            "applier.max_transaction_rows",
            &mut e,
        ),
    };
    let source = SourceSettings {
        heartbeat: duration_ms(
            raw.source.heartbeat_ms,
            1000,
            100,
            60_000,
            "source.heartbeat_ms",
            &mut e,
        ),
        idle_timeout: duration_ms(
            raw.source.idle_timeout_ms,
            10_000,
            1000,
            600_000,
            "source.idle_timeout_ms",
            &mut e,
        ),
        replica_server_id_base: count(
            raw.source.replica_server_id_base,
            3_900_000_000,
            1,
            4_294_000_000,
            "source.replica_server_id_base",
            &mut e,
        ) as u32,
    };
    if source.idle_timeout <= source.heartbeat * 2 {
        e.add(
            "source.idle_timeout_ms",
            "must be more than twice source.heartbeat_ms, or idle links reconnect needlessly",
        );
    }
    let heartbeat = Heartbeat {
        interval: duration_ms(
            raw.heartbeat.interval_ms,
            1000,
            100,
            60_000,
            "heartbeat.interval_ms",
            &mut e,
        ),
    };
    let conflict = conflict(&raw.conflict, &mut e);
    let ddl = crate::ddl::ddl(&raw.ddl, replication.as_ref().map(|r| r.loopback), &mut e.0);
    let http = http(&raw.http, env, &mut e);
    let names: Vec<&str> = centers.iter().map(|c| c.name.as_str()).collect();
    let routing = raw
        .routing
        .as_ref()
        .and_then(|r| crate::routing::routing(r, &names, &mut e.0));
    match replication {
        Some(replication) if e.0.is_empty() => Ok(Config {
            centers,
            replication,
            applier,
            source,
            heartbeat,
            conflict,
            election,
            ddl,
            routing,
            http,
        }),
        _ => Err(ConfigErrors(e.0)),
    }
}

fn column_name(name: &str) -> Result<Option<String>, &'static str> {
    let n = name.trim();
    if n.is_empty() {
        return Ok(None);
    }
    if n.len() > 64 {
        return Err("is longer than 64 characters, which no MySQL column name can be");
    }
    Ok(Some(n.to_string()))
}

fn conflict(raw: &crate::raw::RawConflict, e: &mut Errors) -> Conflict {
    let version_column = match &raw.version_column {
        None => Some("updated_at".to_string()),
        Some(v) => column_name(v).unwrap_or_else(|m| {
            e.add("conflict.version_column", m);
            None
        }),
    };
    let mut tables = std::collections::BTreeMap::new();
    for (name, column) in &raw.tables {
        let key = format!("conflict.tables.{name:?}");
        let Some((db, table)) = name.split_once('.').filter(|(d, t)| {
            !d.is_empty() && !t.is_empty() && !t.contains('.') && !name.contains('*')
        }) else {
            e.add(
                &key,
                "must name one table as \"database.table\" (no wildcards)",
            );
            continue;
        };
        match column_name(column) {
            Ok(c) => {
                tables.insert((db.to_string(), table.to_string()), c);
            }
            Err(m) => e.add(&key, m),
        }
    }
    let hours = count(
        raw.tombstone_retention_hours,
        168,
        1,
        87_600,
        "conflict.tombstone_retention_hours",
        e,
    );
    let skew_ms = count(
        raw.max_clock_skew_ms,
        500,
        1,
        3_600_000,
        "conflict.max_clock_skew_ms",
        e,
    );
    Conflict {
        version_column,
        tables,
        tombstone_retention: std::time::Duration::from_secs(hours as u64 * 3600),
        max_clock_skew: std::time::Duration::from_millis(skew_ms as u64),
    }
}

/// `[http]`: a token of at least 16 characters from a file or the environment, and a readable
/// certificate with its key.
fn http(
    raw: &crate::raw::RawHttp,
    env: &dyn Fn(&str) -> Option<String>,
    e: &mut Errors,
) -> crate::Http {
    let token = match (&raw.token_file, &raw.token_env) {
        (Some(_), Some(_)) => {
            e.add("http.token_file", "give token_file or token_env, not both");
            None
        }
        (Some(path), None) => match std::fs::read_to_string(path) {
            Ok(t) => Some(("http.token_file", t.trim().to_string())),
            Err(err) => {
                e.add("http.token_file", format!("cannot read {path}: {err}"));
                None
            }
        },
        (None, Some(var)) => match env(var) {
            Some(t) => Some(("http.token_env", t.trim().to_string())),
            None => {
                e.add(
                    "http.token_env",
                    format!("environment variable {var} is not set"),
                );
                None
            }
        },
        (None, None) => None,
    };
    let token = match token {
        Some((key, t))
            if t.len() < 16 || t.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            e.add(key, "the token must have at least 16 characters and no spaces (e.g. `openssl rand -hex 32`)");
            None
        }
        Some((_, t)) => Some(Secret::new(t)),
        None => None,
    };
    let pem = |key: &str, path: &str, e: &mut Errors| -> Option<std::path::PathBuf> {
        match std::fs::read(path) {
            Ok(b) if b.windows(10).any(|w| w == b"-----BEGIN") => Some(path.into()),
            Ok(_) => {
                e.add(key, format!("{path} holds no PEM block (-----BEGIN ...)"));
                None
            }
            Err(err) => {
                e.add(key, format!("cannot read {path}: {err}"));
                None
            }
        }
    };
    let tls = match (&raw.tls_cert, &raw.tls_key) {
        (Some(c), Some(k)) => match (pem("http.tls_cert", c, e), pem("http.tls_key", k, e)) {
            (Some(c), Some(k)) => Some((c, k)),
            _ => None,
        },
        (None, None) => None,
        _ => {
            e.add("http.tls_cert", "HTTPS needs both tls_cert and tls_key");
            None
        }
    };
    let tls_ca = raw.tls_ca.as_deref().and_then(|p| pem("http.tls_ca", p, e));
    crate::Http { token, tls, tls_ca }
}
