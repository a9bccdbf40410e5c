//! The `clock_skew` check: the database clocks of every two centers agree within
//! `[conflict] max_clock_skew_ms` (default 500).
//!
//! Last-writer-wins compares version columns stamped by each center's server clock
//! (`ON UPDATE CURRENT_TIMESTAMP(6)`), so a center whose clock runs ahead wins conflicts it
//! should lose, for as long as it is ahead; the lag of a link is also read across two clocks.
//! Each center's clock is read once during its visit against this process's clock
//! ([`drc_mysql::clock`]), and the skew of a pair is the difference of the two offsets, exact up
//! to half of each round trip (shown in the message). A pair whose skew is beyond the limit is
//! a warning: replication still runs, but conflicts may be decided against the real order.

use std::time::Duration;

use crate::facts::CenterFacts;
use crate::{Finding, Severity};

/// One warning per pair of centers whose clocks differ by more than `limit`.
pub(crate) fn skew(centers: &[(&str, CenterFacts)], limit: Duration) -> Vec<Finding> {
    let limit_s = limit.as_secs_f64();
    let mut out = Vec::new();
    for (i, (a, fa)) in centers.iter().enumerate() {
        for (b, fb) in &centers[i + 1..] {
            let s = fb.clock.skew_against(&fa.clock);
            if !s.exceeds(limit_s) {
                continue;
            }
            let (ahead, behind) = if s.seconds > 0.0 { (b, a) } else { (a, b) };
            out.push(Finding::new(
                Severity::Warning,
                None,
                "clock_skew",
                format!(
                    "the database clocks of {a} and {b} differ by {:.3} s (± {:.3} s; {ahead} is ahead of {behind}), more than conflict.max_clock_skew_ms = {}: last-writer-wins compares versions stamped by these clocks, so writes in {ahead} win over later writes in {behind} made up to that long after them; synchronise the servers' clocks (NTP, e.g. chrony) and check again",
                    s.seconds.abs(),
                    s.error,
                    limit.as_millis()
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use drc_mysql::clock::ClockReading;
    use drc_mysql::{Flavor, ServerInfo};

    use super::*;
    use crate::facts::Schema;
    use crate::grants::Grants;

    fn at(offset: f64) -> CenterFacts {
        CenterFacts {
            info: ServerInfo {
                flavor: Flavor::MariaDb,
                version: "10.11".into(),
                server_id: 1,
                gtid_domain_id: 1,
                server_uuid: String::new(),
                gtid_enabled: true,
            },
            user: "drc@%".into(),
            preflight: vec![],
            auto_increment_increment: 1,
            auto_increment_offset: 1,
            grants: Grants::default(),
            server_id_probe: None,
            schema: Schema::default(),
            clock: ClockReading {
                offset,
                round_trip: 0.002,
            },
            tls_cipher: String::new(),
        }
    }

    #[test]
    fn pairs_beyond_the_limit_are_warned_about() {
        let limit = Duration::from_millis(500);
        // a and c agree; b runs 2 s ahead of both (the reader's own clock is 10 s off).
        let cs = vec![("a", at(-10.0)), ("b", at(-8.0)), ("c", at(-10.3))];
        let found = skew(&cs, limit);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(found.iter().all(|f| f.check == "clock_skew"
            && f.severity == Severity::Warning
            && f.center.is_none()));
        assert!(
            found[0].message.starts_with(
                "the database clocks of a and b differ by 2.000 s (± 0.002 s; b is ahead of a)"
            ),
            "{}",
            found[0].message
        );
        assert!(
            found[1].message.contains("b and c differ by 2.300 s"),
            "{}",
            found[1].message
        );
        assert!(found[1].message.contains("b is ahead of c"));
        assert!(found[0].message.contains("max_clock_skew_ms = 500"));
        // Within the limit: nothing to say.
        assert!(skew(&cs, Duration::from_secs(3)).is_empty());
    }
}
