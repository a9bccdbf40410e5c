//! The time-based id generator (SnowFlake, RainDrop, or any [`Layout`]).
//!
//! Protocol. The generator keeps one `AtomicU64` holding the last `(tick, sequence)` it handed
//! out, packed as `tick << sequence_bits | sequence`. Minting is one compare-and-swap of that
//! word (a batch of `n` ids is one CAS too):
//!
//! - if the clock's tick is past the stored tick, the next id takes the clock's tick and a
//!   pseudo-random starting sequence (different every tick, so that `id % n` spreads evenly over
//!   shards even at one id per tick);
//! - otherwise it takes the stored value + 1: the next sequence of the same tick, or, when the
//!   tick's sequence space is used up, sequence 0 of the *next* tick. That tick may be ahead of
//!   the clock: the generator *borrows* future ticks, up to [`GeneratorOptions::max_borrow`].
//!
//! Guarantees, whatever the clock does:
//! - **unique**: the stored word only grows, so no `(tick, sequence)` is handed out twice, and
//!   the node bits (region, worker) make ids of different generators differ;
//! - **never backwards**: an id's timestamp is never below a previously minted one's, and ids of
//!   one generator increase in the order they are minted;
//! - **bounded**: no id is more than `max_borrow` ahead of the clock and none is past the
//!   lease's `reserved_until` ([`crate::lease`]); past a bound, [`Generator::next`] returns a
//!   transient [`IdError::AheadOfClock`] naming when to retry (or [`IdError::LeaseExpired`]),
//!   and [`Generator::next_wait`] sleeps asynchronously (`tokio::time::sleep`) until then.
//!
//! Nothing here panics, takes a lock, or blocks a thread.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{duration_ms, Clock, SystemClock};
use crate::error::IdError;
use crate::layout::{Decoded, Layout};

/// The state word of a closed generator (never a valid packed state: ids use at most 63 bits).
const CLOSED: u64 = u64::MAX;
/// The limit of a generator without lease.
const NO_LIMIT: u64 = u64::MAX;
/// The longest single sleep of [`Generator::next_wait`]: a clock that jumps forward is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// Why a generator was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum CloseReason {
    Open = 0,
    Released = 1,
    LeaseLost = 2,
}

/// Options of a [`Generator`].
#[derive(Clone)]
pub struct GeneratorOptions {
    /// Where the time comes from; [`SystemClock`] by default.
    pub clock: Arc<dyn Clock>,
    /// How far ahead of the clock ids may be minted (after a clock step back, or above the
    /// layout's rate); 1 s by default. Rounded up to whole ticks.
    pub max_borrow: Duration,
    /// Seed of the per-tick starting sequence; random by default. Fix it to replay a test.
    pub seed: Option<u64>,
}

impl Default for GeneratorOptions {
    fn default() -> Self {
        GeneratorOptions {
            clock: Arc::new(SystemClock),
            max_borrow: Duration::from_secs(1),
            seed: None,
        }
    }
}

impl std::fmt::Debug for GeneratorOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratorOptions")
            .field("max_borrow", &self.max_borrow)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

/// A lock-free id generator for one (region, worker) of a layout. Share it by reference or
/// `Arc` between threads and tasks.
pub struct Generator {
    layout: Layout,
    region: u32,
    worker: u32,
    /// `(region << worker_bits | worker) << sequence_bits`.
    node: u64,
    seq_bits: u32,
    node_bits: u32,
    seq_mask: u64,
    max_tick: u64,
    clock: Arc<dyn Clock>,
    max_borrow_ticks: u64,
    seed: u64,
    /// Last `(tick, sequence)` handed out, packed; [`CLOSED`] once closed.
    state: AtomicU64,
    /// Last tick that may be minted (the lease's `reserved_until`); [`NO_LIMIT`] without lease.
    limit: AtomicU64,
    close_reason: AtomicU8,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("layout", &self.layout.fingerprint())
            .field("region", &self.region)
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

impl Generator {
    /// A generator for a fixed (region, worker), without lease. The caller guarantees that no
    /// other live generator uses the same node, and that a restarted one does not start within
    /// `max_borrow` of the old one's last id; leases ([`crate::LeasedGenerator`]) guarantee
    /// both.
    pub fn new(
        layout: Layout,
        region: u32,
        worker: u32,
        options: GeneratorOptions,
    ) -> Result<Generator, IdError> {
        Generator::with_bounds(layout, region, worker, options, 0, NO_LIMIT)
    }

    /// A generator whose first id has a tick of at least `floor` and whose ids never pass tick
    /// `limit` (until [`Generator::raise_limit`]).
    pub(crate) fn with_bounds(
        layout: Layout,
        region: u32,
        worker: u32,
        options: GeneratorOptions,
        floor: u64,
        limit: u64,
    ) -> Result<Generator, IdError> {
        layout.check_node(region, worker)?;
        let seq_bits = layout.sequence_bits();
        let node_bits = layout.node_bits();
        let node = ((u64::from(region) << layout.worker_bits()) | u64::from(worker)) << seq_bits;
        let tick_ms = layout.tick_ms();
        let max_borrow_ticks = duration_ms(options.max_borrow).div_ceil(tick_ms);
        // "Nothing handed out yet, next tick at least `floor`": the packed value just below
        // (floor, 0). Tick 0 sequence 0 is therefore never used; nobody mints at the epoch.
        let initial = (floor.min(layout.max_tick()) << seq_bits).saturating_sub(1);
        Ok(Generator {
            region,
            worker,
            node,
            seq_bits,
            node_bits,
            seq_mask: (1u64 << seq_bits) - 1,
            max_tick: layout.max_tick(),
            clock: options.clock,
            max_borrow_ticks,
            seed: options.seed.unwrap_or_else(|| fastrand::u64(..)),
            state: AtomicU64::new(initial),
            limit: AtomicU64::new(limit),
            close_reason: AtomicU8::new(CloseReason::Open as u8),
            layout,
        })
    }

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The region number embedded in every id.
    pub fn region(&self) -> u32 {
        self.region
    }

    /// The worker number embedded in every id.
    pub fn worker(&self) -> u32 {
        self.worker
    }

    /// How far ahead of the clock ids may be minted, in ticks.
    pub fn max_borrow_ticks(&self) -> u64 {
        self.max_borrow_ticks
    }

    /// The tick of the last id minted (or the tick before the first allowed one); `None` once
    /// closed.
    pub fn last_tick(&self) -> Option<u64> {
        match self.state.load(Ordering::Acquire) {
            CLOSED => None,
            s => Some(s >> self.seq_bits),
        }
    }

    /// The last tick this generator may mint (its lease's `reserved_until`); `None` without
    /// lease.
    pub fn limit_tick(&self) -> Option<u64> {
        match self.limit.load(Ordering::Acquire) {
            NO_LIMIT => None,
            l => Some(l),
        }
    }

    /// Reads the fields of an id of this generator's layout.
    pub fn decode(&self, id: u64) -> Result<Decoded, IdError> {
        self.layout.decode(id)
    }

    /// The clock's current tick.
    pub fn now_tick(&self) -> Result<u64, IdError> {
        self.layout.tick_at(self.clock.now_ms())
    }

    /// Mints one id, or says why not (see the module documentation). One CAS.
    pub fn next(&self) -> Result<u64, IdError> {
        let now = self.now_tick()?;
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            let (_, last) = self.reserve(cur, now, 1)?;
            match self
                .state
                .compare_exchange_weak(cur, last, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(self.compose(last)),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Mints `n` ids with one CAS. They are consecutive `(tick, sequence)` values, in increasing
    /// order, and may span several ticks. All or nothing: on error none is minted. A batch
    /// larger than the borrowing window (`ids_per_tick * max_borrow_ticks`, at least 1) could
    /// never be minted and is refused with a permanent error.
    pub fn next_batch(&self, n: u32) -> Result<IdBatch, IdError> {
        if n == 0 {
            return Ok(self.batch(0, 0));
        }
        let window = self
            .layout
            .ids_per_tick()
            .saturating_mul(self.max_borrow_ticks)
            .max(1);
        if u64::from(n) > window {
            return Err(IdError::invalid(
                "batch",
                vec![format!(
                    "{n} ids do not fit the borrowing window of {window} ids \
                     (ids per tick x max_borrow); ask for smaller batches"
                )],
            ));
        }
        let now = self.now_tick()?;
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            let (first, last) = self.reserve(cur, now, u64::from(n))?;
            match self
                .state
                .compare_exchange_weak(cur, last, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(self.batch(first, u64::from(n))),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Like [`Generator::next`], but when the generator is ahead of the clock it waits
    /// (asynchronously, `tokio::time::sleep`) until the clock catches up, instead of failing.
    /// Every other error is returned at once. Bound the wait with `tokio::time::timeout`.
    pub async fn next_wait(&self) -> Result<u64, IdError> {
        loop {
            match self.next() {
                Err(IdError::AheadOfClock { retry_at_ms, .. }) => {
                    self.sleep_until(retry_at_ms).await
                }
                other => return other,
            }
        }
    }

    /// Like [`Generator::next_batch`], waiting asynchronously while ahead of the clock.
    pub async fn next_batch_wait(&self, n: u32) -> Result<IdBatch, IdError> {
        loop {
            match self.next_batch(n) {
                Err(IdError::AheadOfClock { retry_at_ms, .. }) => {
                    self.sleep_until(retry_at_ms).await
                }
                other => return other,
            }
        }
    }

    async fn sleep_until(&self, at_ms: u64) {
        let wait = Duration::from_millis(at_ms.saturating_sub(self.clock.now_ms()));
        tokio::time::sleep(wait.clamp(Duration::from_millis(1), MAX_SLEEP)).await;
    }

    /// The packed values of the `n` ids that follow `cur` at clock tick `now`, as
    /// `(first, last)`, after checking every bound on `last`.
    fn reserve(&self, cur: u64, now: u64, n: u64) -> Result<(u64, u64), IdError> {
        if cur == CLOSED {
            return Err(self.closed_error());
        }
        let first = if cur >> self.seq_bits < now {
            (now.min(self.max_tick + 1) << self.seq_bits) | self.start_sequence(now)
        } else {
            cur + 1
        };
        let last = first + (n - 1);
        let last_tick = last >> self.seq_bits;
        if last_tick > self.max_tick {
            return Err(IdError::LayoutExhausted {
                end_ms: self.layout.end_ms(),
            });
        }
        if last_tick > now.saturating_add(self.max_borrow_ticks) {
            let tick_ms = self.layout.tick_ms();
            return Err(IdError::AheadOfClock {
                retry_at_ms: self.layout.ms_of_tick(last_tick - self.max_borrow_ticks),
                ahead: Duration::from_millis((last_tick - now).saturating_mul(tick_ms)),
                max_borrow: Duration::from_millis(self.max_borrow_ticks.saturating_mul(tick_ms)),
            });
        }
        let limit = self.limit.load(Ordering::Acquire);
        if last_tick > limit {
            if self.close_reason.load(Ordering::Acquire) == CloseReason::LeaseLost as u8 {
                return Err(IdError::LeaseLost);
            }
            return Err(IdError::LeaseExpired {
                reserved_until_ms: self.layout.ms_of_tick(limit.saturating_add(1)),
            });
        }
        Ok((first, last))
    }

    /// The first sequence of a fresh tick: a mix of the tick and the seed (splitmix64), so it is
    /// spread evenly and differs from tick to tick and from process to process.
    fn start_sequence(&self, tick: u64) -> u64 {
        let mut z = tick ^ self.seed;
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) & self.seq_mask
    }

    fn compose(&self, packed: u64) -> u64 {
        ((packed & !self.seq_mask) << self.node_bits) | self.node | (packed & self.seq_mask)
    }

    fn batch(&self, first: u64, count: u64) -> IdBatch {
        IdBatch {
            next: first,
            remaining: count,
            node: self.node,
            seq_mask: self.seq_mask,
            node_bits: self.node_bits,
        }
    }

    /// `Ok` while the generator is open; the reason it closed otherwise.
    pub(crate) fn check_open(&self) -> Result<(), IdError> {
        match self.state.load(Ordering::Acquire) {
            CLOSED => Err(self.closed_error()),
            _ => Ok(()),
        }
    }

    fn closed_error(&self) -> IdError {
        if self.close_reason.load(Ordering::Acquire) == CloseReason::LeaseLost as u8 {
            IdError::LeaseLost
        } else {
            IdError::Closed
        }
    }

    /// Lets the generator mint up to tick `limit` (never lowers the limit).
    pub(crate) fn raise_limit(&self, limit: u64) {
        self.limit.fetch_max(limit, Ordering::AcqRel);
    }

    /// Stops minting for good. Returns the tick of the last id minted (every id this generator
    /// ever minted has a tick at most this), or `None` if it was closed already.
    pub(crate) fn close(&self, reason: CloseReason) -> Option<u64> {
        let _ = self.close_reason.compare_exchange(
            CloseReason::Open as u8,
            reason as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        match self.state.swap(CLOSED, Ordering::AcqRel) {
            CLOSED => None,
            prev => Some(prev >> self.seq_bits),
        }
    }
}

/// Ids minted together by [`Generator::next_batch`], in increasing order.
#[derive(Debug, Clone)]
pub struct IdBatch {
    next: u64,
    remaining: u64,
    node: u64,
    seq_mask: u64,
    node_bits: u32,
}

impl Iterator for IdBatch {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        if self.remaining == 0 {
            return None;
        }
        let packed = self.next;
        self.next += 1;
        self.remaining -= 1;
        Some(((packed & !self.seq_mask) << self.node_bits) | self.node | (packed & self.seq_mask))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::try_from(self.remaining).unwrap_or(usize::MAX);
        (n, Some(n))
    }
}

impl ExactSizeIterator for IdBatch {}
