//! Picking a TCP port for a new server.
//!
//! A port is "free" if we can bind `127.0.0.1:port` right now; nothing stops another process from
//! taking it before `mariadbd` binds it, so the caller must retry with another port when the server
//! reports "Address already in use" (see `server.rs`).
//!
//! Ports are drawn at random from *below* the kernel's ephemeral range
//! (`/proc/sys/net/ipv4/ip_local_port_range`, usually 32768-60999). The kernel hands out ephemeral
//! ports to every outgoing connection, and tests open many; a server port from that range could be
//! taken by a client socket between `stop()` and `start_again()`, which must reuse the same port.
//! If the range cannot be read, or leaves no room below it, the kernel picks (`bind 127.0.0.1:0`).
//!
//! A port handed out once is never handed out again by this process, so two servers started at
//! the same moment cannot get the same port.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::BuildHasher;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::sync::Mutex;

use crate::error::TestkitError;

/// Lowest port drawn from (above the usual registered services).
const LOWEST: u16 = 15000;

/// How many random candidates to try before asking the kernel.
const CANDIDATES: u32 = 200;

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port for a process a test starts (a daemon's metrics or Raft listener): free a moment ago,
/// below the ephemeral range, and never handed out before by this process, so that two picks
/// in a row cannot return the same port (binding `127.0.0.1:0` twice can). The caller must
/// still expect "address in use" from another process.
pub fn free_port() -> u16 {
    pick_free_port().unwrap_or_else(|e| panic!("no free port for a test: {e}"))
}

/// Returns a port that was free a moment ago and that this process has not used before.
pub(crate) fn pick_free_port() -> Result<u16, TestkitError> {
    let mut guard = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let used = guard.get_or_insert_with(HashSet::new);
    let port = pick(used)?;
    used.insert(port);
    Ok(port)
}

fn pick(used: &HashSet<u16>) -> Result<u16, TestkitError> {
    if let Some(upper) = ephemeral_low().filter(|&low| low > LOWEST + 1000) {
        let hasher = RandomState::new();
        for i in 0..CANDIDATES {
            let span = u64::from(upper - LOWEST);
            let offset = hasher.hash_one((std::process::id(), i)) % span;
            let port = LOWEST + u16::try_from(offset).unwrap_or(0);
            if !used.contains(&port) && bindable(port) {
                return Ok(port);
            }
        }
    }
    for _ in 0..CANDIDATES {
        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| TestkitError::io("bind 127.0.0.1:0 to find a free port", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| TestkitError::io("read the port of a bound socket", e))?
            .port();
        if !used.contains(&port) {
            return Ok(port);
        }
    }
    Err(TestkitError::NoFreePort {
        attempts: CANDIDATES,
        log_tail: String::new(),
    })
}

fn bindable(port: u16) -> bool {
    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// The first port of the kernel's ephemeral range, if readable.
fn ephemeral_low() -> Option<u16> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    range.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_never_handed_out_twice() {
        let ports: Vec<u16> = (0..50)
            .map(|_| pick_free_port().expect("free port"))
            .collect();
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
        if let Some(low) = ephemeral_low().filter(|&low| low > LOWEST + 1000) {
            assert!(
                ports.iter().all(|&p| (LOWEST..low).contains(&p)),
                "{ports:?}"
            );
        }
    }
}
