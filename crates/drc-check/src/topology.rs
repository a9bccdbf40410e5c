//! `drc check --offline`: the topology file alone, no server contacted. Every problem the
//! configuration's validation finds becomes an error finding (check `topology`; the message
//! names the key, e.g. `center[1].mysql`), all at once; a file that loads gets one info finding
//! that says what it describes. Used where the servers are not reachable yet: a CI job, a
//! container build, before `docker compose up` (docs/deploy.md).

use drc_config::{Config, ConfigErrors};

use crate::{Finding, Severity};

/// The check name of every finding of [`offline`].
pub const CHECK: &str = "topology";

/// Findings of a topology file that was loaded into `loaded`.
pub fn offline(loaded: Result<&Config, &ConfigErrors>) -> Vec<Finding> {
    match loaded {
        Err(errors) => errors
            .0
            .iter()
            .map(|e| Finding::new(Severity::Error, None, CHECK, e.to_string()))
            .collect(),
        Ok(config) => {
            let n = config.centers.len();
            let replicas: usize = config.centers.iter().map(|c| c.replicas.len()).sum();
            let mut message = format!(
                "{n} centers ({}), {} links, replicating {}; valid (offline: no server was contacted)",
                crate::and_list(&config.center_names()),
                n * n.saturating_sub(1),
                crate::and_list(&config.replication.databases),
            );
            if replicas > 0 {
                message.push_str(&format!("; {replicas} drc replicas with Raft addresses"));
            }
            vec![Finding::new(Severity::Info, None, CHECK, message)]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[center]]
name = "a"
mysql = "mysql://root@db-a:3306"
[[center]]
name = "b"
mysql = "mysql://root@db-b:3306"
[replication]
databases = ["shop"]
"#;

    #[test]
    fn a_valid_file_is_one_info_finding() {
        let config = Config::parse(GOOD, &|_| None).expect("valid");
        let f = offline(Ok(&config));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].severity, Severity::Info);
        assert_eq!(
            f[0].message,
            "2 centers (a and b), 2 links, replicating shop; valid (offline: no server was contacted)"
        );
    }

    #[test]
    fn every_problem_is_an_error_finding() {
        let bad = GOOD
            .replace("mysql://root@db-b:3306", "postgres://x")
            .replace("[\"shop\"]", "[]");
        let errors = Config::parse(&bad, &|_| None).expect_err("invalid");
        let f = offline(Err(&errors));
        assert_eq!(f.len(), errors.0.len());
        assert!(f.len() >= 2, "both problems reported: {f:?}");
        assert!(f
            .iter()
            .all(|f| f.severity == Severity::Error && f.check == CHECK));
        assert!(
            f.iter().any(|f| f.message.starts_with("center[1].mysql")),
            "{f:?}"
        );
        assert!(
            f.iter()
                .any(|f| f.message.starts_with("replication.databases")),
            "{f:?}"
        );
    }
}
