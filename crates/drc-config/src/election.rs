//! `[[center]] replicas` and `[election]`: which drc replicas of a center take part in its
//! Raft election, and the election's timing. Part of the second loading step (see
//! [`crate::validate`]); problems are added to the common list, never returned early.
//!
//! Defaults: heartbeat 100 ms, election timeout 300-600 ms (a follower that hears no leader for
//! a random time in that range starts an election), apply log of 1,024 slots per link worker.

use std::collections::HashMap;
use std::time::Duration;

use crate::raw::RawElection;
use crate::{Center, ConfigError};

/// Raft timing and the fence's audit log size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Election {
    /// How often the leader sends heartbeats to the other replicas.
    pub heartbeat: Duration,
    /// Lower bound of the election timeout.
    pub election_timeout_min: Duration,
    /// Upper bound of the election timeout.
    pub election_timeout_max: Duration,
    /// Rows kept per link worker in `<meta>.apply_log` (one per committed apply transaction,
    /// in a ring: slot = batch mod this).
    pub apply_log_slots: u64,
}

fn push(e: &mut Vec<ConfigError>, key: impl Into<String>, message: impl Into<String>) {
    e.push(ConfigError {
        key: key.into(),
        message: message.into(),
    });
}

/// Whether `s` looks like `host:port` (a name or an IP address, and a port 1-65535).
fn valid_address(s: &str) -> bool {
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    !host.is_empty()
        && !host.contains(char::is_whitespace)
        && port.parse::<u16>().is_ok_and(|p| p > 0)
}

/// Checks center `i`'s `replicas` list.
pub(crate) fn replicas(
    i: usize,
    raw: Option<Vec<String>>,
    e: &mut Vec<ConfigError>,
) -> Vec<String> {
    let list = raw.unwrap_or_default();
    for (j, a) in list.iter().enumerate() {
        if !valid_address(a) {
            push(
                e,
                format!("center[{i}].replicas[{j}]"),
                format!("{a:?} is not an address: use host:port, e.g. 10.0.1.5:9501"),
            );
        }
        if list[..j].contains(a) {
            push(
                e,
                format!("center[{i}].replicas[{j}]"),
                format!("{a:?} is listed twice: every replica needs its own Raft address"),
            );
        }
    }
    if list.len() == 2 {
        push(
            e,
            format!("center[{i}].replicas"),
            "2 replicas cannot elect a leader when one of them is down (a majority of 2 is 2): use 3 (or 5), or remove `replicas` to run one daemon",
        );
    }
    if list.len() > 9 {
        push(
            e,
            format!("center[{i}].replicas"),
            format!("{} replicas: use at most 9 (3 or 5 is usual)", list.len()),
        );
    }
    list
}

/// Checks that no Raft address is used by two centers.
pub(crate) fn distinct_across_centers(centers: &[Center], e: &mut Vec<ConfigError>) {
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for (i, c) in centers.iter().enumerate() {
        for (j, a) in c.replicas.iter().enumerate() {
            match seen.get(a.as_str()) {
                Some(other) if *other != c.name => push(
                    e,
                    format!("center[{i}].replicas[{j}]"),
                    format!("{a:?} is also a replica of center {other:?}"),
                ),
                _ => {
                    seen.insert(a, &c.name);
                }
            }
        }
    }
}

fn ms(
    v: Option<i64>,
    default: u64,
    min: i64,
    max: i64,
    key: &str,
    e: &mut Vec<ConfigError>,
) -> Duration {
    match v {
        None => Duration::from_millis(default),
        Some(x) if (min..=max).contains(&x) => Duration::from_millis(x as u64),
        Some(x) => {
            push(
                e,
                key,
                format!("{x} is out of range: use {min}..={max} milliseconds"),
            );
            Duration::from_millis(default)
        }
    }
}

/// Checks `[election]`.
pub(crate) fn election(raw: RawElection, e: &mut Vec<ConfigError>) -> Election {
    let heartbeat = ms(
        raw.heartbeat_ms,
        100,
        10,
        10_000,
        "election.heartbeat_ms",
        e,
    );
    let election_timeout_min = ms(
        raw.election_timeout_min_ms,
        300,
        20,
        60_000,
        "election.election_timeout_min_ms",
        e,
    );
    let election_timeout_max = ms(
        raw.election_timeout_max_ms,
        600,
        21,
        120_000,
        "election.election_timeout_max_ms",
        e,
    );
    if election_timeout_min <= heartbeat {
        push(
            e,
            "election.election_timeout_min_ms",
            "must be more than election.heartbeat_ms (3x or more is usual), or followers start elections while the leader is healthy",
        );
    }
    if election_timeout_max <= election_timeout_min {
        push(
            e,
            "election.election_timeout_max_ms",
            "must be more than election.election_timeout_min_ms (the randomized range keeps replicas from splitting the vote)",
        );
    }
    let apply_log_slots = match raw.apply_log_slots {
        None => 1024,
        Some(x) if (1..=10_000_000).contains(&x) => x as u64,
        Some(x) => {
            push(
                e,
                "election.apply_log_slots",
                format!("{x} is out of range: use 1..=10000000"),
            );
            1024
        }
    };
    Election {
        heartbeat,
        election_timeout_min,
        election_timeout_max,
        apply_log_slots,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        for ok in [
            "10.0.0.1:9501",
            "drc-b-1.internal:9501",
            "[::1]:9501",
            "localhost:1",
        ] {
            assert!(valid_address(ok), "{ok}");
        }
        for bad in [
            "",
            "host",
            "host:",
            ":9501",
            "host:0",
            "host:70000",
            "a b:1",
        ] {
            assert!(!valid_address(bad), "{bad}");
        }
    }
}
