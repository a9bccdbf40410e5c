//! The one retry policy of drc: how long to wait between attempts, and a wait that ends at
//! shutdown.
//!
//! A [`Policy`] is a set of numbers, fixed where it is used (each retry site keeps its own):
//! - the first wait is `initial`; each later wait doubles, up to `cap`;
//! - **jitter** (`percent`, 0 by default) shortens each wait by a random amount of at most that
//!   share, so retries of many tasks (every link of a restarted server, parallel appliers after
//!   a deadlock) do not stay in step; `initial` and `cap` stay upper bounds;
//! - **reset**: [`Backoff::reset`] returns to `initial`; a policy with `reset_after` also
//!   resets when the run that just failed lasted longer than that ([`Backoff::ran_for`]);
//! - **attempt limit** (`max_attempts`, none by default): [`Backoff::failed`] counts failed
//!   attempts and says whether another is allowed.
//!
//! Which errors are worth another attempt is not decided here: each site asks its error's
//! `is_transient()` (server codes are classified in [`crate::codes`]) before it waits.
//!
//! Shutdown: [`sleep_unless_shutdown`] and [`Backoff::wait`] return `false` as soon as the
//! shutdown signal is (or turns) `true`, or when its sender is gone (nobody could end the task
//! any more, its owner is gone); the caller then stops instead of retrying. Without a signal
//! (`None`) they simply sleep.

use std::time::Duration;

use tokio::sync::watch;

/// The numbers of one retry site (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    initial: Duration,
    cap: Duration,
    jitter_percent: u32,
    reset_after: Option<Duration>,
    max_attempts: Option<u32>,
}

impl Policy {
    /// Waits of `initial`, doubling up to `cap`; no jitter, no reset, no attempt limit.
    pub const fn new(initial: Duration, cap: Duration) -> Policy {
        Policy {
            initial,
            cap,
            jitter_percent: 0,
            reset_after: None,
            max_attempts: None,
        }
    }

    /// Each wait is shortened by a random amount of up to `percent` % of it (at most 100).
    pub const fn with_jitter(mut self, percent: u32) -> Policy {
        self.jitter_percent = if percent > 100 { 100 } else { percent };
        self
    }

    /// Back to `initial` after a run that lasted longer than `run` ([`Backoff::ran_for`]).
    pub const fn with_reset_after(mut self, run: Duration) -> Policy {
        self.reset_after = Some(run);
        self
    }

    /// At most `attempts` attempts in all (`None`: no limit); see [`Backoff::failed`].
    pub const fn with_max_attempts(mut self, attempts: Option<u32>) -> Policy {
        self.max_attempts = attempts;
        self
    }

    /// The first wait.
    pub const fn initial(&self) -> Duration {
        self.initial
    }

    /// The longest wait.
    pub const fn cap(&self) -> Duration {
        self.cap
    }

    /// The attempt limit, if any.
    pub const fn max_attempts(&self) -> Option<u32> {
        self.max_attempts
    }

    /// A fresh backoff under this policy.
    pub fn start(&self) -> Backoff {
        Backoff {
            policy: *self,
            delay: self.initial,
            failures: 0,
        }
    }
}

/// The state of one retry loop under a [`Policy`].
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: Policy,
    delay: Duration,
    failures: u32,
}

impl Backoff {
    /// The next wait before jitter.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// Failed attempts recorded with [`Backoff::failed`] since the start or the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records one failed attempt; true when the policy allows another attempt (fewer than
    /// `max_attempts` have failed).
    pub fn failed(&mut self) -> bool {
        self.failures = self.failures.saturating_add(1);
        self.policy.max_attempts.is_none_or(|m| self.failures < m)
    }

    /// Back to the first wait, with no failures recorded.
    pub fn reset(&mut self) {
        self.delay = self.policy.initial;
        self.failures = 0;
    }

    /// Resets when a run that lasted `ran` outlived the policy's `reset_after`.
    pub fn ran_for(&mut self, ran: Duration) {
        if self.policy.reset_after.is_some_and(|r| ran > r) {
            self.reset();
        }
    }

    /// The length of the next wait (the delay less jitter), and advances: the wait after it is
    /// twice as long, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let d = jittered(self.delay, self.policy.jitter_percent);
        self.delay = self.delay.saturating_mul(2).min(self.policy.cap);
        d
    }

    /// Sleeps [`Backoff::next_delay`]; false when `shutdown` is or turns true (see the module
    /// docs).
    pub async fn wait(&mut self, shutdown: Option<&watch::Receiver<bool>>) -> bool {
        let d = self.next_delay();
        sleep_unless_shutdown(d, shutdown).await
    }
}

/// `delay` shortened by a random amount of at most `percent` % of it.
fn jittered(delay: Duration, percent: u32) -> Duration {
    if percent == 0 || delay.is_zero() {
        return delay;
    }
    let most = delay.as_nanos() * u128::from(percent.min(100)) / 100;
    let most = u64::try_from(most).unwrap_or(u64::MAX);
    delay.saturating_sub(Duration::from_nanos(fastrand::u64(0..=most)))
}

/// Sleeps `delay`; false when `shutdown` is or turns true first, or its sender is gone.
/// Shutdown wins over a sleep that ends at the same moment.
pub async fn sleep_unless_shutdown(
    delay: Duration,
    shutdown: Option<&watch::Receiver<bool>>,
) -> bool {
    let Some(rx) = shutdown else {
        tokio::time::sleep(delay).await;
        return true;
    };
    let mut rx = rx.clone();
    tokio::select! {
        biased;
        _ = rx.wait_for(|stop| *stop) => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn waits_double_up_to_the_cap() {
        let mut b = Policy::new(MS * 50, MS * 300).start();
        let waits: Vec<_> = (0..6).map(|_| b.next_delay()).collect();
        assert_eq!(waits, [50, 100, 200, 300, 300, 300].map(|m| MS * m));
    }

    #[test]
    fn reset_returns_to_the_first_wait() {
        let policy = Policy::new(MS * 100, MS * 1000).with_reset_after(MS * 60_000);
        let mut b = policy.start();
        b.next_delay();
        b.next_delay();
        assert!(b.failed());
        assert_eq!(b.delay(), MS * 400);
        b.ran_for(MS * 60_000);
        assert_eq!(
            b.delay(),
            MS * 400,
            "a run of exactly reset_after keeps the delay"
        );
        b.ran_for(MS * 60_001);
        assert_eq!((b.delay(), b.failures()), (MS * 100, 0));
        b.next_delay();
        b.reset();
        assert_eq!(b.delay(), MS * 100);
        let mut no_reset = Policy::new(MS, MS * 8).start();
        no_reset.next_delay();
        no_reset.ran_for(Duration::from_secs(3600));
        assert_eq!(no_reset.delay(), MS * 2, "no reset_after: runs never reset");
    }

    #[test]
    fn attempt_limit_counts_failures() {
        let mut b = Policy::new(MS, MS).with_max_attempts(Some(3)).start();
        assert!(b.failed());
        assert!(b.failed());
        assert!(!b.failed(), "the third failed attempt was the last allowed");
        assert_eq!(b.failures(), 3);
        let mut unlimited = Policy::new(MS, MS).start();
        assert!((0..10_000).all(|_| unlimited.failed()));
    }

    #[test]
    fn jitter_stays_within_its_share() {
        let mut b = Policy::new(MS * 1000, MS * 1000).with_jitter(20).start();
        let waits: Vec<_> = (0..2000).map(|_| b.next_delay()).collect();
        assert!(waits.iter().all(|w| *w >= MS * 800 && *w <= MS * 1000));
        assert!(
            waits.iter().any(|w| *w < MS * 990),
            "jitter shortens some waits"
        );
        assert_eq!(
            Policy::new(MS, MS).with_jitter(500),
            Policy::new(MS, MS).with_jitter(100)
        );
        assert!(jittered(MS * 10, 100) <= MS * 10);
        assert_eq!(jittered(MS * 10, 0), MS * 10);
        // Huge delays neither overflow nor panic.
        assert!(jittered(Duration::MAX, 50) >= Duration::MAX / 2);
    }

    #[tokio::test(start_paused = true)]
    async fn wait_sleeps_the_jittered_delay() {
        let (_tx, rx) = watch::channel(false);
        let mut b = Policy::new(MS * 1000, MS * 5000).with_jitter(10).start();
        for most in [1000, 2000, 4000, 5000] {
            let began = Instant::now();
            assert!(b.wait(Some(&rx)).await);
            let slept = began.elapsed();
            assert!(
                slept <= MS * most && slept >= MS * most * 9 / 10,
                "{slept:?}"
            );
        }
        let began = Instant::now();
        assert!(Policy::new(MS * 70, MS * 70).start().wait(None).await);
        assert_eq!(began.elapsed(), MS * 70);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_wakes_the_sleep() {
        let (tx, rx) = watch::channel(false);
        let began = Instant::now();
        let sleeper = tokio::spawn(async move {
            sleep_unless_shutdown(Duration::from_secs(3600), Some(&rx)).await
        });
        tokio::time::sleep(MS * 10).await;
        tx.send(true).expect("the sleeper listens");
        assert!(!sleeper.await.expect("the sleeper ends"));
        assert!(began.elapsed() < Duration::from_secs(3600));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_already_signalled_or_sender_gone_ends_at_once() {
        let (tx, rx) = watch::channel(true);
        let began = Instant::now();
        assert!(!sleep_unless_shutdown(Duration::from_secs(60), Some(&rx)).await);
        drop(tx);
        let (tx, rx) = watch::channel(false);
        drop(tx);
        assert!(
            !Policy::new(Duration::from_secs(60), Duration::from_secs(60))
                .start()
                .wait(Some(&rx))
                .await
        );
        assert_eq!(began.elapsed(), Duration::ZERO);
    }
}
