//! What the parent checks in a child's output, and how a child reports.

#[allow(unused_imports)]
use super::*;

/// What a measuring child must find between the start and end positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// `inserts` rows with ids 1..=inserts, then `updates` updates (k+1) of ids 1..=updates, then
    /// `deletes` deletes of the last `deletes` ids.
    Sbtest {
        inserts: u64,
        updates: u64,
        deletes: u64,
    },
    /// One insert of (1, blob of `len` bytes from [`blob_bytes`]).
    Blob { len: usize },
}

impl Check {
    pub(crate) fn encode(self) -> String {
        match self {
            Check::Sbtest {
                inserts,
                updates,
                deletes,
            } => format!("sbtest:{inserts}:{updates}:{deletes}"),
            Check::Blob { len } => format!("blob:{len}"),
        }
    }

    pub(crate) fn decode(s: &str) -> Check {
        let parts: Vec<&str> = s.split(':').collect();
        let n = |i: usize| -> u64 {
            parts
                .get(i)
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("bad check spec {s:?}"))
        };
        match parts.first() {
            Some(&"sbtest") => Check::Sbtest {
                inserts: n(1),
                updates: n(2),
                deletes: n(3),
            },
            Some(&"blob") => Check::Blob {
                len: usize::try_from(n(1)).expect("blob length fits usize"),
            },
            _ => panic!("bad check spec {s:?}"),
        }
    }

    pub(crate) fn total_rows(self) -> u64 {
        match self {
            Check::Sbtest {
                inserts,
                updates,
                deletes,
            } => inserts + updates + deletes,
            Check::Blob { .. } => 1,
        }
    }
}

/// What a child measured.
#[derive(Debug, Clone)]
pub(crate) struct Measured {
    pub(crate) secs: f64,
    pub(crate) cpu_secs: f64,
    pub(crate) rows: u64,
    pub(crate) rows_events: u64,
    pub(crate) commits: u64,
    pub(crate) max_batch: usize,
    pub(crate) base_hwm_kb: u64,
    pub(crate) hwm_kb: u64,
}

/// The deterministic bytes of the blob scenario (splitmix64 stream).
pub(crate) fn blob_bytes(len: usize) -> impl Iterator<Item = u8> {
    let mut state: u64 = 0x5EED_F00D_B10B;
    std::iter::repeat_with(move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)).to_le_bytes()
    })
    .flatten()
    .take(len)
}

/// CPU time (user + system) the calling thread has used, in seconds. The measuring children
/// run everything on one thread (current-thread runtime), so this is the reader's CPU cost,
/// unaffected by other processes competing for the cores (unlike wall time).
pub(crate) fn thread_cpu_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat")
        .expect("read /proc/thread-self/schedstat");
    let ns: u64 = s
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("run time in /proc/thread-self/schedstat");
    ns as f64 / 1e9
}

/// `VmHWM` (peak resident set size) of this process, in KiB.
pub(crate) fn vm_hwm_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}
