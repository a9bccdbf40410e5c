//! Checks across centers of what must differ between them: server identities and the
//! AUTO_INCREMENT sequences.
//!
//! - `server_id`: each center's server needs its own. drc's `server_id` loopback strategy and
//!   every binlog reader tell origins apart by it; two centers with one id would drop each
//!   other's changes as their own.
//! - `gtid_domain_id` (MariaDB): each center needs its own domain. drc applies a peer's changes
//!   under the peer's domain; if two centers shared one, their sequence numbers would interleave
//!   in one domain and positions could no longer be compared (nor resumed from).
//! - `server_uuid` (MySQL): a cloned data directory keeps the uuid; GTIDs would clash.
//! - `auto_increment`: center `i` generates values `v ≡ offset_i (mod increment_i)`. Two such
//!   sequences share values exactly when `offset_i ≡ offset_j (mod gcd(increment_i,
//!   increment_j))` — then both centers can insert the same key at once, and one row silently
//!   replaces or blocks the other. An error when some replicated table has an AUTO_INCREMENT
//!   column, a warning otherwise (a table added later would have the problem).

use std::collections::{BTreeMap, BTreeSet};

use drc_mysql::Flavor;

use crate::facts::CenterFacts;
use crate::{and_list, Finding, Severity};

/// `server_id`, `gtid_domain_id` and `server_uuid` clashes.
pub(crate) fn ids(centers: &[(&str, CenterFacts)]) -> Vec<Finding> {
    let mut out = Vec::new();
    let clashes = |key: &dyn Fn(&CenterFacts) -> Option<String>| {
        let mut groups: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for (name, f) in centers {
            if let Some(k) = key(f) {
                groups.entry(k).or_default().push(name);
            }
        }
        groups
            .into_iter()
            .filter(|(_, names)| names.len() > 1)
            .collect::<Vec<_>>()
    };
    let suggestion = centers
        .iter()
        .enumerate()
        .map(|(i, (n, _))| format!("{n}={}", i + 1))
        .collect::<Vec<_>>()
        .join(", ");
    for (id, names) in clashes(&|f| Some(f.info.server_id.to_string())) {
        out.push(Finding::new(
            Severity::Error,
            None,
            "server_id",
            format!(
                "centers {} have the same server_id {id}, so drc cannot tell their changes apart; give every center its own (server-id in the server config and SET GLOBAL server_id), e.g. {suggestion}",
                and_list(&names)
            ),
        ));
    }
    for (domain, names) in
        clashes(&|f| (f.info.flavor == Flavor::MariaDb).then(|| f.info.gtid_domain_id.to_string()))
    {
        out.push(Finding::new(
            Severity::Error,
            None,
            "gtid_domain_id",
            format!(
                "centers {} share gtid_domain_id {domain}; each center needs its own GTID domain (gtid-domain-id in the server config and SET GLOBAL gtid_domain_id), e.g. {suggestion}",
                and_list(&names)
            ),
        ));
    }
    for (uuid, names) in clashes(&|f| {
        (f.info.flavor == Flavor::MySql && !f.info.server_uuid.is_empty())
            .then(|| f.info.server_uuid.clone())
    }) {
        out.push(Finding::new(
            Severity::Error,
            None,
            "server_uuid",
            format!(
                "centers {} have the same server_uuid {uuid} (a cloned data directory?); delete auto.cnf in all but one and restart them",
                and_list(&names)
            ),
        ));
    }
    out
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Whether two `(increment, offset)` sequences generate a common value.
fn collide(a: (u64, u64), b: (u64, u64)) -> bool {
    let g = gcd(a.0.max(1), b.0.max(1));
    a.1 % g == b.1 % g
}

/// Collisions between the AUTO_INCREMENT sequences of the reachable centers. `total` is the
/// number of configured centers (the suggested increment), `unreachable` how many of them could
/// not be checked.
pub(crate) fn auto_increment(
    centers: &[(&str, CenterFacts)],
    total: usize,
    unreachable: usize,
) -> Vec<Finding> {
    let seq: Vec<(&str, (u64, u64))> = centers
        .iter()
        .map(|(n, f)| (*n, (f.auto_increment_increment, f.auto_increment_offset)))
        .collect();
    let mut pairs = Vec::new();
    for (i, (a, sa)) in seq.iter().enumerate() {
        for (b, sb) in &seq[i + 1..] {
            if collide(*sa, *sb) {
                pairs.push(format!("{a}/{b}"));
            }
        }
    }
    if pairs.is_empty() {
        return Vec::new();
    }
    let used_by: Vec<String> = centers
        .iter()
        .flat_map(|(_, f)| {
            f.schema
                .tables
                .iter()
                .filter(|(_, t)| t.auto_increment)
                .map(|(name, _)| name.to_string())
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // Keep a common increment that is already large enough (room planned for more centers).
    let increment = match seq.first() {
        Some((_, (inc, _))) if *inc as usize >= total && seq.iter().all(|(_, (i, _))| i == inc) => {
            *inc as usize
        }
        _ => total,
    };
    let offsets = (1..=total).map(|o| o.to_string()).collect::<Vec<_>>();
    let now = seq
        .iter()
        .map(|(n, (i, o))| format!("{n}: increment {i}, offset {o}"))
        .collect::<Vec<_>>()
        .join("; ");
    let (severity, why) = match used_by.first() {
        Some(example) => (
            Severity::Error,
            format!(
                "two centers can insert the same AUTO_INCREMENT value in {example}{}",
                if used_by.len() > 1 {
                    format!(" and {} more table(s)", used_by.len() - 1)
                } else {
                    String::new()
                }
            ),
        ),
        None => (
            Severity::Warning,
            "no replicated table has an AUTO_INCREMENT column yet, but one added later would collide"
                .to_string(),
        ),
    };
    let partial = if unreachable > 0 {
        format!(" ({unreachable} unreachable center(s) not compared)")
    } else {
        String::new()
    };
    vec![Finding::new(
        severity,
        None,
        "auto_increment",
        format!(
            "the AUTO_INCREMENT sequences of {} overlap{partial} ({now}): {why}; set auto_increment_increment={increment} on every center and auto_increment_offset={} (in order of the topology file), in the server config and with SET GLOBAL",
            and_list(&pairs),
            offsets.join(",")
        ),
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{Schema, Table, TableName};
    use crate::grants::Grants;
    use drc_mysql::ServerInfo;

    fn center(server_id: u32, domain: u32, inc: u64, off: u64) -> CenterFacts {
        CenterFacts {
            info: ServerInfo {
                flavor: Flavor::MariaDb,
                version: "10.11".into(),
                server_id,
                gtid_domain_id: domain,
                server_uuid: String::new(),
                gtid_enabled: true,
            },
            user: "root@localhost".into(),
            preflight: vec![],
            auto_increment_increment: inc,
            auto_increment_offset: off,
            grants: Grants::default(),
            server_id_probe: None,
            schema: Schema::default(),
            clock: Default::default(),
            tls_cipher: String::new(),
        }
    }

    #[test]
    fn sequences_collide_when_offsets_agree_modulo_the_gcd() {
        assert!(collide((1, 1), (1, 1)));
        assert!(!collide((3, 1), (3, 2)));
        assert!(collide((3, 1), (3, 1)));
        // 2 and 4 share a divisor: 1,3,5.. and 3,7,11.. meet at 3.
        assert!(collide((2, 1), (4, 3)));
        assert!(!collide((2, 1), (4, 2)));
        // An offset above the increment is taken modulo it.
        assert!(collide((3, 4), (3, 1)));
    }

    #[test]
    fn overlapping_sequences_name_the_fix() {
        let mut a = center(1, 1, 1, 1);
        a.schema.tables.insert(
            TableName {
                db: "shop".into(),
                table: "orders".into(),
            },
            Table {
                auto_increment: true,
                ..Table::default()
            },
        );
        let cs = vec![
            ("a", a),
            ("b", center(2, 2, 1, 1)),
            ("c", center(3, 3, 3, 3)),
        ];
        let f = auto_increment(&cs, 3, 0);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].severity, Severity::Error);
        let m = &f[0].message;
        assert!(m.contains("a/b, a/c and b/c"), "{m}");
        assert!(
            m.contains("the same AUTO_INCREMENT value in shop.orders;"),
            "{m}"
        );
        assert!(
            m.contains(
                "set auto_increment_increment=3 on every center and auto_increment_offset=1,2,3"
            ),
            "{m}"
        );
        // Well set: nothing. Without AUTO_INCREMENT tables: a warning.
        let good = vec![
            ("a", center(1, 1, 3, 1)),
            ("b", center(2, 2, 3, 2)),
            ("c", center(3, 3, 3, 3)),
        ];
        assert!(auto_increment(&good, 3, 0).is_empty());
        let bad = vec![("a", center(1, 1, 3, 1)), ("b", center(2, 2, 3, 1))];
        assert_eq!(auto_increment(&bad, 2, 1)[0].severity, Severity::Warning);
        assert!(auto_increment(&bad, 2, 1)[0]
            .message
            .contains("increment=3"));
    }

    #[test]
    fn identity_clashes() {
        let cs = vec![
            ("a", center(7, 1, 3, 1)),
            ("b", center(7, 1, 3, 2)),
            ("c", center(9, 3, 3, 3)),
        ];
        let f = ids(&cs);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].check, "server_id");
        assert!(f[0]
            .message
            .starts_with("centers a and b have the same server_id 7"));
        assert_eq!(f[1].check, "gtid_domain_id");
        assert!(f[1]
            .message
            .starts_with("centers a and b share gtid_domain_id 1"));
        assert!(ids(&[("a", center(1, 1, 1, 1)), ("b", center(2, 2, 1, 1))]).is_empty());
    }
}
