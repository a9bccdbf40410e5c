//! A database server's clock, read against this process's clock the way NTP does, and the skew
//! between two servers' clocks.
//!
//! Method: note this process's wall clock `t0` and start a monotonic timer, ask the server for
//! its current UTC time `s` ([`CLOCK_QUERY`]), and stop the timer when the answer arrives
//! (round trip `r`). The server read its clock at some instant between sending and receiving,
//! so, taking the midpoint, the server's clock is ahead of this process's by
//! `offset = s - (t0 + r / 2)`, give or take `r / 2` (the error bound, half the round trip;
//! an asymmetric network path can use all of it, never more).
//!
//! The skew between servers A and B is `offset_A - offset_B`: this process's own clock cancels
//! out (it only has to run steadily for the milliseconds between the two readings), and the
//! error bound is the sum of both halves, `r_A / 2 + r_B / 2`. So `drc check` compares any two
//! centers from wherever it runs, and the daemon compares each peer with its own center; a
//! positive skew means the first server's clock is ahead.
//!
//! `UTC_TIMESTAMP(6)` is the statement's start time, like `NOW(6)`: it does not depend on the
//! session's time zone, and it follows a session's `timestamp` variable (as every value the
//! server stamps does, so it is the clock that decides last-writer-wins).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::MysqlError;

/// The server's current time in microseconds since the Unix epoch (UTC).
pub const CLOCK_QUERY: &str =
    "SELECT TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6))";

/// One reading of a server's clock against this process's.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ClockReading {
    /// Seconds the server's clock is ahead of this process's (negative: behind).
    pub offset: f64,
    /// Seconds the query took, there and back.
    pub round_trip: f64,
}

impl ClockReading {
    /// The reading of a query sent at `sent_at` (this process's clock, seconds since the
    /// epoch) that the server answered with `server` (seconds since the epoch) after
    /// `round_trip` seconds.
    pub fn new(sent_at: f64, server: f64, round_trip: f64) -> ClockReading {
        let round_trip = round_trip.max(0.0);
        ClockReading {
            offset: server - (sent_at + round_trip / 2.0),
            round_trip,
        }
    }

    /// The error bound of [`ClockReading::offset`]: half the round trip.
    pub fn error(&self) -> f64 {
        self.round_trip / 2.0
    }

    /// How far this server's clock is ahead of `other`'s (negative: behind).
    pub fn skew_against(&self, other: &ClockReading) -> Skew {
        Skew {
            seconds: self.offset - other.offset,
            error: self.error() + other.error(),
        }
    }
}

/// The difference between two servers' clocks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Skew {
    /// Seconds the first clock is ahead of the second (negative: behind).
    pub seconds: f64,
    /// The error bound in seconds: the true skew lies within `seconds ± error`.
    pub error: f64,
}

impl Skew {
    /// True when the skew is beyond `limit` seconds either way.
    pub fn exceeds(&self, limit: f64) -> bool {
        self.seconds.abs() > limit
    }
}

/// Reads the server's clock on `conn` (one query).
pub async fn read_clock(conn: &mut Conn) -> Result<ClockReading, MysqlError> {
    let sent_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let timer = Instant::now();
    let micros: Option<Option<i64>> =
        conn.query_first(CLOCK_QUERY)
            .await
            .map_err(|source| MysqlError::Query {
                what: "reading the server's clock",
                source,
            })?;
    let round_trip = timer.elapsed().as_secs_f64();
    match micros.flatten() {
        Some(us) => Ok(ClockReading::new(sent_at, us as f64 / 1e6, round_trip)),
        None => Err(MysqlError::Unexpected {
            what: "reading the server's clock",
            detail: "UTC_TIMESTAMP(6) returned nothing".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn the_offset_is_taken_at_the_midpoint_of_the_round_trip() {
        // Sent at 1000.0, answered 0.2 s later; the server said 1000.6: it read its clock at
        // 1000.1 of ours (the midpoint), so it is 0.5 s ahead, give or take 0.1 s.
        let r = ClockReading::new(1000.0, 1000.6, 0.2);
        assert!(close(r.offset, 0.5), "{r:?}");
        assert!(close(r.error(), 0.1));
        // A server behind us.
        let behind = ClockReading::new(1000.0, 997.0, 0.0);
        assert!(close(behind.offset, -3.0));
        // A negative round trip (a clock that went backwards) counts as none.
        assert!(close(
            ClockReading::new(1000.0, 1000.0, -1.0).round_trip,
            0.0
        ));
    }

    #[test]
    fn skew_cancels_the_readers_clock_and_adds_the_error_bounds() {
        // The reader's clock is 100 s off; A is 2 s ahead of B whatever it is.
        let a = ClockReading::new(5000.0, 5000.0 - 100.0 + 2.0 + 0.05, 0.1);
        let b = ClockReading::new(5000.2, 5000.2 - 100.0 + 0.01, 0.02);
        let s = a.skew_against(&b);
        assert!(close(s.seconds, 2.0), "{s:?}");
        assert!(close(s.error, 0.06), "{s:?}");
        let back = b.skew_against(&a);
        assert!(close(back.seconds, -2.0));
        assert!(s.exceeds(0.5) && back.exceeds(0.5));
        assert!(!s.exceeds(2.5));
    }
}
