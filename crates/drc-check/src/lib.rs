//! `drc check`: everything that would stop or endanger replication, found before any data
//! moves, for every center at once.
//!
//! [`run_checks`] visits every center of a topology in parallel (one read-only visit each, see
//! `facts`), then judges the facts with named checks, each a pure function:
//!
//! | module | checks | scope |
//! |---|---|---|
//! | `server` | binlog settings and replication grant (drc-mysql's preflight), privileges on the replicated and meta databases, the loopback strategy | per center |
//! | `identity` | `server_id`, `gtid_domain_id`, `server_uuid` clashes, `auto_increment_increment`/`offset` collisions | across centers |
//! | `schema` | missing databases and tables, tables without primary key, differing columns and keys, triggers | per center and across centers |
//! | `clock` | skew between the centers' database clocks above `[conflict] max_clock_skew_ms` | across centers |
//! | `topology` | the topology file alone, without connecting (`drc check --offline`) | the file |
//!
//! Every problem becomes a [`Finding`]; nothing stops at the first one, so an operator fixes a
//! cluster in one round. A center that cannot be reached (or stops answering) is one error
//! finding and is left out of the cross-center checks — those then cover the other centers
//! only. Severities: [`Severity::Error`] means replication would fail, loop, lose or double
//! changes, or let centers overwrite each other; [`Severity::Warning`] means it would run but
//! something is probably wrong; [`Severity::Info`] says what drc will do.
//!
//! Passwords never appear in findings: servers are named by `Center::display_url`, and any
//! driver message that would contain the password has it replaced by `***`.

mod clock;
mod facts;
mod grants;
mod identity;
mod schema;
mod server;
pub mod topology;

use std::fmt;

use drc_config::{Center, Config};
use serde::Serialize;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Replication would fail, loop, lose or double changes, or centers would overwrite each
    /// other's rows. `drc check` exits with 1.
    Error,
    /// Replication would run, but something is probably wrong.
    Warning,
    /// What drc will do (e.g. which loopback strategy it will pick); not a problem.
    Info,
}

impl Severity {
    /// `error`, `warning` or `info`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing found by a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How bad it is.
    pub severity: Severity,
    /// The center concerned; `None` for a finding about several centers (the message names
    /// them).
    pub center: Option<String>,
    /// The check's name, e.g. `binlog_format`, `primary_key`, `auto_increment`.
    pub check: &'static str,
    /// What was found and what to change.
    pub message: String,
}

impl Finding {
    fn new(
        severity: Severity,
        center: Option<&str>,
        check: &'static str,
        message: impl Into<String>,
    ) -> Finding {
        Finding {
            severity,
            center: center.map(str::to_string),
            check,
            message: message.into(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}: {}",
            self.severity,
            self.center.as_deref().unwrap_or("*"),
            self.check,
            self.message
        )
    }
}

/// Counts of errors and warnings (infos are not counted).
pub fn counts(findings: &[Finding]) -> (usize, usize) {
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let warnings = findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .count();
    (errors, warnings)
}

/// Runs every check against every center of `config` and returns all findings, ordered by
/// center (file order; findings about several centers last), then severity, then check order.
/// Never fails: an unreachable center is itself a finding.
pub async fn run_checks(config: &Config) -> Vec<Finding> {
    let replication = &config.replication;
    let gathered = futures_util::future::join_all(
        config.centers.iter().map(|c| facts::gather(c, replication)),
    )
    .await;
    let mut findings = Vec::new();
    let mut reachable = Vec::new();
    for (center, result) in config.centers.iter().zip(gathered) {
        match result {
            Ok(f) => {
                findings.extend(server::binlog(&center.name, &f));
                findings.extend(server::privileges(&center.name, &f, replication));
                findings.extend(server::loopback(&center.name, &f, replication));
                findings.extend(server::tls(center, &f));
                reachable.push((center.name.as_str(), f));
            }
            Err(e) => findings.push(Finding::new(
                Severity::Error,
                Some(&center.name),
                e.check(),
                scrub(center, &unreachable_message(center, &e)),
            )),
        }
    }
    let unreachable = config.centers.len() - reachable.len();
    findings.extend(identity::ids(&reachable));
    findings.extend(identity::auto_increment(
        &reachable,
        config.centers.len(),
        unreachable,
    ));
    findings.extend(schema::check(&reachable, replication, &config.conflict));
    findings.extend(clock::skew(&reachable, config.conflict.max_clock_skew));
    sort(&mut findings, config);
    findings
}

fn unreachable_message(center: &Center, e: &facts::GatherError) -> String {
    use drc_mysql::MysqlError;
    match e {
        facts::GatherError::Mysql(MysqlError::Connect { source, hint, .. }) => format!(
            "cannot connect to {}: {source}{hint}; start the server or fix `mysql` (or `tls`) in the topology file",
            center.display_url
        ),
        facts::GatherError::Mysql(MysqlError::ConnectTimeout { secs, .. }) => format!(
            "cannot connect to {}: no answer within {secs} s; check the address and the network",
            center.display_url
        ),
        other => format!("{}: {other}", center.display_url),
    }
}

/// Replaces the center's password in `message` with `***` (driver messages could quote it).
/// Passwords shorter than 3 characters are left alone: replacing them would garble the text
/// while hiding next to nothing.
fn scrub(center: &Center, message: &str) -> String {
    let password = drc_mysql::parse_opts(center.url())
        .ok()
        .and_then(|o| o.pass().map(str::to_string));
    match password {
        Some(p) if p.len() >= 3 => message.replace(&p, "***"),
        _ => message.to_string(),
    }
}

fn sort(findings: &mut [Finding], config: &Config) {
    let rank = |f: &Finding| {
        f.center
            .as_deref()
            .and_then(|c| config.centers.iter().position(|x| x.name == c))
            .unwrap_or(usize::MAX)
    };
    findings.sort_by_key(|f| (rank(f), f.severity));
}

/// `a`, `a and b`, `a, b and c`.
pub(crate) fn and_list<S: AsRef<str>>(items: &[S]) -> String {
    match items {
        [] => String::new(),
        [one] => one.as_ref().to_string(),
        [init @ .., last] => format!(
            "{} and {}",
            init.iter()
                .map(|s| s.as_ref())
                .collect::<Vec<_>>()
                .join(", "),
            last.as_ref()
        ),
    }
}

/// `'user'@'host'` from `CURRENT_USER()`'s `user@host`.
pub(crate) fn account(current_user: &str) -> String {
    match current_user.rsplit_once('@') {
        Some((u, h)) => format!("'{u}'@'{h}'"),
        None => format!("'{current_user}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_read_like_english() {
        assert_eq!(and_list::<&str>(&[]), "");
        assert_eq!(and_list(&["a"]), "a");
        assert_eq!(and_list(&["a", "b"]), "a and b");
        assert_eq!(and_list(&["a", "b", "c"]), "a, b and c");
        assert_eq!(account("drc@%"), "'drc'@'%'");
        assert_eq!(account("we@ird@h"), "'we@ird'@'h'");
    }

    #[test]
    fn findings_serialize_for_tools() {
        let f = Finding::new(Severity::Warning, Some("b"), "trigger", "x");
        let json = serde_json::to_value(&f).expect("serializable");
        assert_eq!(
            json,
            serde_json::json!({"severity": "warning", "center": "b", "check": "trigger", "message": "x"})
        );
        assert_eq!(f.to_string(), "warning b trigger: x");
        let none = Finding::new(Severity::Error, None, "server_id", "y");
        assert_eq!(
            serde_json::to_value(&none).expect("json")["center"],
            serde_json::Value::Null
        );
        assert_eq!(none.to_string(), "error * server_id: y");
    }
}
