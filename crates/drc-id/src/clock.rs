//! Clocks: where a generator reads the time.
//!
//! A [`Clock`] reads wall-clock milliseconds since the Unix epoch. Nothing here assumes the
//! reading is monotonic: a wall clock steps back when NTP corrects it, and the generator is built
//! to survive that. Tests inject a [`ManualClock`] to step time forwards and backwards at will.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time.
///
/// Contract: `now_ms` is cheap (it is called once per minted id) and never blocks. It may go
/// backwards.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since 1970-01-01T00:00:00Z.
    fn now_ms(&self) -> u64;
}

/// The system's wall clock (`SystemTime::now`). A clock set before 1970 reads 0.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to: for tests, and for replaying time.
#[derive(Debug, Default)]
pub struct ManualClock {
    ms: AtomicU64,
}

impl ManualClock {
    /// A clock reading `ms` milliseconds since 1970.
    pub fn new(ms: u64) -> ManualClock {
        ManualClock {
            ms: AtomicU64::new(ms),
        }
    }

    /// A clock that starts at the system clock's current reading.
    pub fn starting_now() -> ManualClock {
        ManualClock::new(SystemClock.now_ms())
    }

    /// Sets the reading.
    pub fn set(&self, ms: u64) {
        self.ms.store(ms, Ordering::SeqCst);
    }

    /// Moves the reading forwards by `d`.
    pub fn advance(&self, d: Duration) {
        self.ms.fetch_add(duration_ms(d), Ordering::SeqCst);
    }

    /// Moves the reading backwards by `d` (as NTP does when it steps a fast clock back).
    pub fn step_back(&self, d: Duration) {
        let back = duration_ms(d);
        let _ = self
            .ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |ms| {
                Some(ms.saturating_sub(back))
            });
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.ms.load(Ordering::SeqCst)
    }
}

pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
