//! Worker leases: two live processes never mint with the same (region, worker).
//!
//! A lease is a record per `(namespace, region, worker)` in a store (Redis or MySQL, see
//! [`LeaseStore`]) holding the holder's random token, the layout's fingerprint, and
//! `reserved_until`: the last tick (in the layout's own ticks) that the holder may mint.
//!
//! Protocol:
//! 1. **Acquire.** A process may take the record when it is free (released) or expired:
//!    `reserved_until < now` *by the acquirer's clock*. It then sets
//!    `reserved_until = max(now, previous reserved_until) + lease length` and starts minting at
//!    tick `previous reserved_until + 1`, never before. The store does the check and the write
//!    atomically (a Lua script; a conditional `UPDATE` in a transaction).
//! 2. **Mint.** The generator never mints a tick past its local copy of `reserved_until`; it
//!    only raises that copy after the store confirmed a renewal.
//! 3. **Renew.** A background task extends `reserved_until` to `now + length` every
//!    [`LeaseConfig::renew_every`] (a third of the length by default), *conditionally on still
//!    holding the token*. If the token changed, the lease was taken over: the generator closes
//!    ([`IdError::LeaseLost`]). If the store is unreachable, minting goes on up to the old
//!    `reserved_until` and then fails with [`IdError::LeaseExpired`] until a renewal succeeds.
//! 4. **Release.** [`LeasedGenerator::release`] closes the generator, then stores
//!    `reserved_until = tick of the last id minted` and clears the token, so the next holder can
//!    start at once, after the last id.
//!
//! Why this is safe: every tick a holder mints is at most its store-confirmed `reserved_until`,
//! and every later holder starts after the largest `reserved_until` ever stored. So ids of two
//! holders of one worker can never be equal, **whatever the clocks say**: a holder that was
//! paused (GC, `SIGSTOP`, a VM migration) past its lease finds that it can neither renew nor mint
//! beyond its old `reserved_until`, and a process restarted after a crash starts after the last
//! timestamp the crashed one could have used. Clocks only decide *when* an abandoned lease can be
//! taken over (liveness): the acquirer's clock against the stored `reserved_until`. A store that
//! loses its data (Redis without persistence) loses this memory: use Redis with AOF, or MySQL.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use drc_mysql::retry::{sleep_unless_shutdown, Policy};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::clock::duration_ms;
use crate::error::IdError;
use crate::generator::{CloseReason, Generator, GeneratorOptions};
use crate::layout::Layout;

/// Which worker a lease is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseKey {
    /// Namespace: one per id space (table, service); one namespace keeps one layout.
    pub namespace: String,
    /// Region number.
    pub region: u32,
    /// Worker number within the region.
    pub worker: u32,
}

/// What a store answers to an acquire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcquireOutcome {
    /// The lease is ours.
    Granted {
        /// The previous holder's `reserved_until` (tick), if there was a record.
        previous_until: Option<u64>,
        /// Our `reserved_until` (tick).
        reserved_until: u64,
    },
    /// Another live holder has it.
    Held {
        /// The holder's token.
        owner: String,
        /// Its `reserved_until` (tick).
        reserved_until: u64,
    },
}

/// Where leases live. Every method is one atomic operation in the store.
///
/// Ticks are the layout's ticks; `layout` is [`Layout::fingerprint`]. Implementations:
/// [`crate::RedisStore`], [`crate::MysqlStore`].
pub trait LeaseStore: Send + Sync + 'static {
    /// Takes the lease for `token` if it is free, released, or expired (`reserved_until < now`);
    /// then `reserved_until = max(now, previous) + len`. Refuses a record of another layout
    /// ([`IdError::Mismatch`]).
    fn acquire(
        &self,
        key: &LeaseKey,
        token: &str,
        layout: &str,
        now: u64,
        len: u64,
    ) -> impl Future<Output = Result<AcquireOutcome, IdError>> + Send;

    /// If `token` still holds the lease, sets `reserved_until = max(reserved_until, now + len)`
    /// and returns `Some(now + len)`; `None` if another token holds it now.
    fn renew(
        &self,
        key: &LeaseKey,
        token: &str,
        now: u64,
        len: u64,
    ) -> impl Future<Output = Result<Option<u64>, IdError>> + Send;

    /// If `token` still holds the lease, clears the token and lowers `reserved_until` to
    /// `last_tick` (the tick of the last id minted). Does nothing otherwise.
    fn release(
        &self,
        key: &LeaseKey,
        token: &str,
        last_tick: u64,
    ) -> impl Future<Output = Result<(), IdError>> + Send;
}

/// How a lease is held.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Which worker.
    pub key: LeaseKey,
    /// How far `reserved_until` reaches past the time of each renewal; 10 s by default. It is
    /// also how long a crashed holder's worker stays unusable.
    pub length: Duration,
    /// How often the background task renews; `None` = a third of `length`.
    pub renew_every: Option<Duration>,
    /// Renew in a background tokio task (default). Off, the caller renews with
    /// [`LeasedGenerator::renew`].
    pub background_renewal: bool,
    /// How long [`LeasedGenerator::acquire`] waits for a held lease to expire; zero (default)
    /// returns [`IdError::LeaseHeld`] at once.
    pub max_wait: Duration,
}

impl LeaseConfig {
    /// Defaults for `(namespace, region, worker)`.
    pub fn new(namespace: impl Into<String>, region: u32, worker: u32) -> LeaseConfig {
        LeaseConfig {
            key: LeaseKey {
                namespace: namespace.into(),
                region,
                worker,
            },
            length: Duration::from_secs(10),
            renew_every: None,
            background_renewal: true,
            max_wait: Duration::ZERO,
        }
    }
}

struct Shared<S> {
    store: S,
    key: LeaseKey,
    token: String,
    len_ticks: u64,
    generator: Arc<Generator>,
}

impl<S: LeaseStore> Shared<S> {
    async fn renew(&self) -> Result<u64, IdError> {
        self.generator.check_open()?;
        let now = self.generator.now_tick()?;
        match self
            .store
            .renew(&self.key, &self.token, now, self.len_ticks)
            .await?
        {
            Some(until) => {
                self.generator.raise_limit(until);
                Ok(until)
            }
            None => {
                self.generator.close(CloseReason::LeaseLost);
                Err(IdError::LeaseLost)
            }
        }
    }
}

/// A [`Generator`] whose (region, worker) is leased from a [`LeaseStore`].
///
/// Dropping it without [`LeasedGenerator::release`] stops the renewal and leaves the lease to
/// expire, like a crash: the worker can be taken over after `reserved_until`.
pub struct LeasedGenerator<S: LeaseStore> {
    shared: Arc<Shared<S>>,
    stop: watch::Sender<bool>,
    renewer: Option<JoinHandle<()>>,
}

impl<S: LeaseStore> std::fmt::Debug for LeasedGenerator<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeasedGenerator")
            .field("key", &self.shared.key)
            .field("reserved_until", &self.shared.generator.limit_tick())
            .finish_non_exhaustive()
    }
}

impl<S: LeaseStore> LeasedGenerator<S> {
    /// Acquires the lease of `lease.key` and returns a generator that mints after the previous
    /// holder's `reserved_until`. Waits up to [`LeaseConfig::max_wait`] for a held lease.
    /// Starts the background renewal if configured (needs a tokio runtime).
    pub async fn acquire(
        store: S,
        layout: Layout,
        lease: LeaseConfig,
        options: GeneratorOptions,
    ) -> Result<LeasedGenerator<S>, IdError> {
        layout.check_node(lease.key.region, lease.key.worker)?;
        let len_ticks = duration_ms(lease.length).div_ceil(layout.tick_ms()).max(2);
        let token = format!("{}-{:016x}", std::process::id(), fastrand::u64(..));
        let fingerprint = layout.fingerprint();
        let clock = options.clock.clone();
        let began = tokio::time::Instant::now();
        let (previous_until, reserved_until) = loop {
            let now = layout.tick_at(clock.now_ms())?;
            match store
                .acquire(&lease.key, &token, &fingerprint, now, len_ticks)
                .await?
            {
                AcquireOutcome::Granted {
                    previous_until,
                    reserved_until,
                } => break (previous_until, reserved_until),
                AcquireOutcome::Held {
                    owner,
                    reserved_until,
                } => {
                    let free_at = layout.ms_of_tick(reserved_until.saturating_add(1));
                    let now_ms = clock.now_ms();
                    let waited = began.elapsed();
                    if waited >= lease.max_wait {
                        return Err(IdError::LeaseHeld {
                            namespace: lease.key.namespace.clone(),
                            region: lease.key.region,
                            worker: lease.key.worker,
                            owner,
                            reserved_until_ms: free_at.saturating_sub(1),
                        });
                    }
                    let wait = Duration::from_millis(free_at.saturating_sub(now_ms))
                        .min(lease.max_wait - waited)
                        .clamp(Duration::from_millis(1), Duration::from_secs(1));
                    tokio::time::sleep(wait).await;
                }
            }
        };
        let floor = previous_until.map_or(0, |p| p.saturating_add(1));
        let generator = Generator::with_bounds(
            layout,
            lease.key.region,
            lease.key.worker,
            options,
            floor,
            reserved_until,
        )?;
        tracing::info!(
            namespace = %lease.key.namespace,
            region = lease.key.region,
            worker = lease.key.worker,
            floor,
            reserved_until,
            "worker lease acquired"
        );
        let shared = Arc::new(Shared {
            store,
            key: lease.key.clone(),
            token,
            len_ticks,
            generator: Arc::new(generator),
        });
        let (stop, stopped) = watch::channel(false);
        let mut leased = LeasedGenerator {
            shared,
            stop,
            renewer: None,
        };
        if lease.background_renewal {
            let every = lease.renew_every.unwrap_or(lease.length / 3);
            leased.renewer = Some(spawn_renewer(leased.shared.clone(), every, stopped));
        }
        Ok(leased)
    }

    /// The generator (share it with `Arc::clone`). It stops minting when the lease is lost,
    /// expired, or released.
    pub fn generator(&self) -> &Arc<Generator> {
        &self.shared.generator
    }

    /// Mints one id ([`Generator::next`]).
    pub fn next(&self) -> Result<u64, IdError> {
        self.shared.generator.next()
    }

    /// Mints one id, waiting while ahead of the clock ([`Generator::next_wait`]).
    pub async fn next_wait(&self) -> Result<u64, IdError> {
        self.shared.generator.next_wait().await
    }

    /// The lease's key.
    pub fn key(&self) -> &LeaseKey {
        &self.shared.key
    }

    /// The last tick this holder may mint, as confirmed by the store.
    pub fn reserved_until(&self) -> u64 {
        self.shared.generator.limit_tick().unwrap_or(u64::MAX)
    }

    /// Renews the lease now; returns the new `reserved_until`. [`IdError::LeaseLost`] (and the
    /// generator closes) if another process took the lease over.
    pub async fn renew(&self) -> Result<u64, IdError> {
        self.shared.renew().await
    }

    /// Stops minting and renewing, then hands the worker back: the next holder may start at
    /// once, after the last id minted here.
    pub async fn release(mut self) -> Result<(), IdError> {
        let _ = self.stop.send(true);
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.await;
        }
        let Some(last_tick) = self.shared.generator.close(CloseReason::Released) else {
            return Ok(());
        };
        let s = &self.shared;
        s.store.release(&s.key, &s.token, last_tick).await?;
        tracing::info!(
            namespace = %s.key.namespace,
            region = s.key.region,
            worker = s.key.worker,
            last_tick,
            "worker lease released"
        );
        Ok(())
    }
}

impl<S: LeaseStore> Drop for LeasedGenerator<S> {
    fn drop(&mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
    }
}

/// Renews every `every`; sooner (a quarter of it, at least 50 ms, no doubling: a
/// [`drc_mysql::retry::Policy`] whose first wait is its cap) after a transient failure; stops
/// when told to or when the lease is lost.
fn spawn_renewer<S: LeaseStore>(
    shared: Arc<Shared<S>>,
    every: Duration,
    stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let span = tracing::info_span!(
        "id_lease_renewer",
        namespace = %shared.key.namespace,
        region = shared.key.region,
        worker = shared.key.worker
    );
    let every = every.max(Duration::from_millis(10));
    let retry = (every / 4).max(Duration::from_millis(50)).min(every);
    let mut backoff = Policy::new(retry, retry).start();
    tokio::spawn(
        async move {
            let mut failing = false;
            loop {
                let go_on = if failing {
                    backoff.wait(Some(&stopped)).await
                } else {
                    backoff.reset();
                    sleep_unless_shutdown(every, Some(&stopped)).await
                };
                if !go_on {
                    return;
                }
                match tokio::time::timeout(every, shared.renew()).await {
                    Ok(Ok(until)) => {
                        tracing::debug!(reserved_until = until, "worker lease renewed");
                        failing = false;
                    }
                    Ok(Err(e)) if e.is_transient() => {
                        tracing::warn!(error = %e, "worker lease renewal failed; retrying");
                        failing = true;
                    }
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "worker lease lost; minting stopped");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(after = ?every, "worker lease renewal timed out; retrying");
                        failing = true;
                    }
                }
            }
        }
        .instrument(span),
    )
}
