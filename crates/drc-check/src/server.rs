//! Checks of one center's server and user: binlog settings, privileges, loopback strategy.
//!
//! - `binlog`: drc-mysql's source preflight (`log_bin`, `binlog_format`, `binlog_row_image`,
//!   `binlog_row_metadata`, `log_bin_compress` on MariaDB, `binlog_row_value_options` on MySQL,
//!   `REPLICATION SLAVE`). Every problem is an error: peers could not read this center's binlog,
//!   or would read changes without their rows.
//! - `privileges`: read and write on every replicated database, and what drc needs in its meta
//!   database (it creates the database and its tables when missing), judged from the grants
//!   (see `grants`). An error when nothing grants it, a warning when table-level grants or
//!   unexpanded roles might.
//! - `loopback`: with `"server_id"`, the user must be allowed to set its session `server_id`
//!   (tested, see `facts`); with `"auto"`, which strategy this center's daemon will pick.
//! - `tls`: a center reached without TLS on an address other than loopback is a warning: every
//!   replicated row crosses the network in clear. Loopback addresses are not reported (the
//!   traffic does not leave the host).

use drc_config::{Loopback, Replication};
use drc_mysql::Flavor;

use crate::facts::CenterFacts;
use crate::{account, Finding, Severity};

/// What drc's applier does in replicated tables.
const READ_WRITE: &[&str] = &["SELECT", "INSERT", "UPDATE", "DELETE"];
/// What drc does in its meta database (`CREATE DATABASE/TABLE IF NOT EXISTS`, checkpoints...).
const META: &[&str] = &["SELECT", "INSERT", "UPDATE", "DELETE", "CREATE"];

/// The binlog source preflight, one error per problem.
pub(crate) fn binlog(center: &str, facts: &CenterFacts) -> Vec<Finding> {
    facts
        .preflight
        .iter()
        .map(|p| {
            Finding::new(
                Severity::Error,
                Some(center),
                p.check,
                format!("{}; {}", p.found, p.fix),
            )
        })
        .collect()
}

/// Privileges on the replicated databases and the meta database.
pub(crate) fn privileges(
    center: &str,
    facts: &CenterFacts,
    replication: &Replication,
) -> Vec<Finding> {
    let user = account(&facts.user);
    let unexpanded_roles = facts.grants.has_roles && facts.info.flavor == Flavor::MySql;
    let mut out = Vec::new();
    let mut need = |db: &str, required: &[&str], purpose: &str, grant: String| {
        let missing = facts.grants.missing_on_db(db, required);
        if missing.is_empty() {
            return;
        }
        let uncertain = facts.grants.has_table_grants_on(db) || unexpanded_roles;
        let (severity, hedge) = if uncertain {
            (
                Severity::Warning,
                " (no database-level grant gives it; table-level grants or roles might — make sure they cover every table)",
            )
        } else {
            (Severity::Error, "")
        };
        out.push(Finding::new(
            severity,
            Some(center),
            "privileges",
            format!(
                "user {user} lacks {} on `{db}`.*{hedge}; {purpose}: GRANT {grant} ON `{db}`.* TO {user}",
                missing.join(", ")
            ),
        ));
    };
    for db in &replication.databases {
        need(
            db,
            READ_WRITE,
            "drc reads and writes every replicated table",
            READ_WRITE.join(", "),
        );
    }
    need(
        &replication.meta_database,
        META,
        "drc creates and writes its own tables there",
        "ALL PRIVILEGES".into(),
    );
    for db in &facts.schema.databases {
        if !facts.grants.missing_on_db(db, &["TRIGGER"]).is_empty() {
            out.push(Finding::new(
                Severity::Info,
                Some(center),
                "trigger",
                format!(
                    "triggers in `{db}` were not checked: information_schema lists them only to users with TRIGGER on the table; run drc check as a user with it, or GRANT TRIGGER ON `{db}`.* TO {user}"
                ),
            ));
        }
    }
    out
}

/// The loopback strategy this center's applier can use.
pub(crate) fn loopback(
    center: &str,
    facts: &CenterFacts,
    replication: &Replication,
) -> Vec<Finding> {
    let user = account(&facts.user);
    let meta = &replication.meta_database;
    let finding = match (replication.loopback, facts.info.flavor, &facts.server_id_probe) {
        (Loopback::Marker, ..) => None,
        (Loopback::ServerId, Flavor::MySql, _) => Some(Finding::new(
            Severity::Error,
            Some(center),
            "loopback",
            "loopback = \"server_id\" needs MariaDB: a MySQL session cannot write under another server's server_id; use loopback = \"marker\" or \"auto\"",
        )),
        (Loopback::ServerId, _, Some(Err(refusal))) => Some(Finding::new(
            Severity::Error,
            Some(center),
            "loopback",
            format!(
                "loopback = \"server_id\" but user {user} may not set its session server_id ({refusal}); GRANT BINLOG REPLAY ON *.* TO {user} (SUPER before MariaDB 10.5.2), or use loopback = \"marker\""
            ),
        )),
        (Loopback::ServerId, ..) => None,
        (Loopback::Auto, Flavor::MySql, _) => Some(Finding::new(
            Severity::Info,
            Some(center),
            "loopback",
            format!("loopback = \"auto\" will use markers here (MySQL): every applied transaction also writes a row in `{meta}`.origin"),
        )),
        (Loopback::Auto, _, Some(Err(refusal))) => Some(Finding::new(
            Severity::Info,
            Some(center),
            "loopback",
            format!(
                "loopback = \"auto\" will use markers here: user {user} may not set its session server_id ({refusal}); GRANT BINLOG REPLAY ON *.* TO {user} to tag by server_id instead"
            ),
        )),
        (Loopback::Auto, ..) => Some(Finding::new(
            Severity::Info,
            Some(center),
            "loopback",
            "loopback = \"auto\" will tag by server_id here (the user may set its session server_id)",
        )),
    };
    finding.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::Schema;
    use crate::grants::Grants;
    use drc_mysql::{Problem, ServerInfo};

    fn facts(grants: &[&str], probe: Option<Result<(), String>>) -> CenterFacts {
        CenterFacts {
            info: ServerInfo {
                flavor: Flavor::MariaDb,
                version: "10.11.6-MariaDB".into(),
                server_id: 1,
                gtid_domain_id: 1,
                server_uuid: String::new(),
                gtid_enabled: true,
            },
            user: "drc@%".into(),
            preflight: vec![Problem {
                check: "binlog_format",
                found: "binlog_format is STATEMENT".into(),
                fix: "set binlog_format=ROW".into(),
            }],
            auto_increment_increment: 1,
            auto_increment_offset: 1,
            grants: Grants::parse(grants),
            server_id_probe: probe,
            schema: Schema::default(),
            clock: Default::default(),
            tls_cipher: String::new(),
        }
    }

    fn replication(loopback: Loopback) -> Replication {
        Replication {
            databases: vec!["shop".into()],
            include_tables: vec![],
            exclude_tables: vec![],
            loopback,
            meta_database: "drc_meta".into(),
        }
    }

    #[test]
    fn a_plain_connection_off_loopback_is_a_warning() {
        let text = "[[center]]\nname = \"a\"\nmysql = \"mysql://drc@10.0.0.5:3306\"\n\
                    [[center]]\nname = \"b\"\nmysql = \"mysql://drc@127.0.0.1:3306\"\n\
                    [replication]\ndatabases = [\"s\"]\n";
        let config = drc_config::Config::parse(text, &|_| None).expect("config");
        let mut f = facts(&[], None);
        let w = tls(&config.centers[0], &f).expect("warned");
        assert_eq!(w.severity, Severity::Warning);
        assert!(
            w.message
                .contains("reached without TLS (tls = \"preferred\")"),
            "{w:?}"
        );
        assert!(tls(&config.centers[1], &f).is_none(), "loopback");
        f.tls_cipher = "TLS_AES_256_GCM_SHA384".into();
        assert!(tls(&config.centers[0], &f).is_none(), "encrypted");
    }

    #[test]
    fn preflight_problems_are_errors() {
        let f = binlog("b", &facts(&[], None));
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].to_string(),
            "error b binlog_format: binlog_format is STATEMENT; set binlog_format=ROW"
        );
    }

    #[test]
    fn missing_privileges_name_the_grant_to_run() {
        let f = facts(&["GRANT SELECT ON `shop`.* TO `drc`@`%`"], None);
        let out = privileges("a", &f, &replication(Loopback::Marker));
        let errors: Vec<String> = out
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .map(|f| f.message.clone())
            .collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("user 'drc'@'%' lacks INSERT, UPDATE, DELETE on `shop`.*"));
        assert!(
            errors[0].ends_with("GRANT SELECT, INSERT, UPDATE, DELETE ON `shop`.* TO 'drc'@'%'")
        );
        assert!(errors[1].contains("GRANT ALL PRIVILEGES ON `drc_meta`.*"));
        let all = facts(&["GRANT ALL PRIVILEGES ON *.* TO `root`@`%`"], None);
        assert!(privileges("a", &all, &replication(Loopback::Marker)).is_empty());
    }

    #[test]
    fn table_level_grants_soften_to_a_warning() {
        let f = facts(
            &[
                "GRANT ALL PRIVILEGES ON `drc_meta`.* TO `drc`@`%`",
                "GRANT SELECT, INSERT, UPDATE, DELETE ON `shop`.`t` TO `drc`@`%`",
            ],
            None,
        );
        let out = privileges("a", &f, &replication(Loopback::Marker));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].severity, Severity::Warning);
    }

    #[test]
    fn loopback_strategies() {
        let refused = Some(Err("Access denied; you need SUPER".to_string()));
        let f = facts(&[], refused.clone());
        let e = loopback("c", &f, &replication(Loopback::ServerId));
        assert_eq!(e[0].severity, Severity::Error);
        assert!(e[0]
            .message
            .contains("GRANT BINLOG REPLAY ON *.* TO 'drc'@'%'"));
        assert!(e[0].message.contains("Access denied"));
        let i = loopback("c", &f, &replication(Loopback::Auto));
        assert_eq!(i[0].severity, Severity::Info);
        assert!(i[0].message.contains("will use markers"));
        let ok = facts(&[], Some(Ok(())));
        assert!(loopback("c", &ok, &replication(Loopback::ServerId)).is_empty());
        assert!(loopback("c", &ok, &replication(Loopback::Auto))[0]
            .message
            .contains("tag by server_id"));
        assert!(loopback("c", &f, &replication(Loopback::Marker)).is_empty());
    }
}

/// A center whose connection is plain, on a host other than loopback.
pub(crate) fn tls(center: &drc_config::Center, facts: &CenterFacts) -> Option<Finding> {
    if !facts.tls_cipher.is_empty() {
        return None;
    }
    let host = drc_mysql::parse_opts(center.url())
        .ok()
        .map(|o| o.ip_or_hostname().to_string())
        .unwrap_or_default();
    if is_loopback(&host) {
        return None;
    }
    Some(Finding::new(
        Severity::Warning,
        Some(&center.name),
        "tls",
        format!(
            "reached without TLS (tls = \"{}\"): every replicated row crosses the network in clear; give the server ssl_cert and ssl_key, and set tls = \"verify_ca\" with tls_ca for this center (docs/security.md)",
            center.tls.mode
        ),
    ))
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tls_tests {
    #[test]
    fn loopback_hosts_are_recognized() {
        for h in ["localhost", "127.0.0.1", "127.3.4.5", "::1", "[::1]"] {
            assert!(super::is_loopback(h), "{h}");
        }
        for h in ["10.0.0.1", "db.example.com", ""] {
            assert!(!super::is_loopback(h), "{h}");
        }
    }
}
