//! Segment allocation: partition-independent (one counter per region) and centralized (one
//! counter for everybody), with double-buffered prefetch.
//!
//! **Id space.** Region `r` of `R` owns the residue class `id % R == r`: a region's counter
//! value `k` (1, 2, 3, ...) becomes the id `k * R + r` ([`Partition::id_of`]), and
//! [`region_of`] is `id % R`. Residue classes rather than ranges because ids then stay small
//! (they grow with the total number of ids minted, not with a region offset near 2^63): they fit
//! `INT` keys for years and JavaScript numbers for ever, and no region can run out of its range
//! before the others. The price: `R` is fixed for the life of a namespace (reserve room, e.g.
//! `R = 8` for 3 centers); the store records `R` and refuses a process that uses another.
//! Centralized allocation is the partition `R = 1` ([`Partition::central`]).
//!
//! **Partition independence.** Each region's counter lives in its own store (its own Redis or
//! its own `drc_meta`), so a region keeps minting while cut off from the others, and ids of two
//! regions differ by construction.
//!
//! **Segments.** A process takes `step` consecutive counter values at a time from the store
//! ([`SegmentStore::reserve`], one atomic `INCRBY` or `UPDATE`), and hands them out from memory.
//! When the current segment is [`SegmentConfig::prefetch_at_percent`] used, a background task
//! fetches the next one, so [`SegmentAllocator::next`] rarely waits for the store.
//!
//! **Guarantees.** Ids are unique across every process of a namespace. Ids of one allocator
//! strictly increase in the order they are handed out (segments come from a counter that only
//! grows). Across processes they are *not* ordered: two processes hold different segments at
//! once. With `step = 1` and no prefetch (`prefetch_at_percent = None`), every id is one store
//! operation and ids are monotonic in the store's commit order (globally, for central
//! allocation). Ids of a segment that a process did not hand out before it stopped are never
//! used (gaps, no repeats).
//!
//! A segment is handed out under a short `std::sync::Mutex` (no I/O under it, never held across
//! an `.await`).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use crate::error::IdError;

/// Which residue class of the id space a region owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Partition {
    regions: u32,
    region: u32,
}

impl Partition {
    /// Region `region` of `regions` (`0 <= region < regions`).
    pub fn new(regions: u32, region: u32) -> Result<Partition, IdError> {
        let mut problems = Vec::new();
        if regions == 0 {
            problems.push("there must be at least 1 region".to_string());
        }
        if region >= regions {
            problems.push(format!(
                "region {region} is not one of 0..{regions} (the number of regions)"
            ));
        }
        if problems.is_empty() {
            Ok(Partition { regions, region })
        } else {
            Err(IdError::invalid("partition", problems))
        }
    }

    /// The single partition of centralized allocation (`R = 1`).
    pub fn central() -> Partition {
        Partition {
            regions: 1,
            region: 0,
        }
    }

    /// Number of regions `R`.
    pub fn regions(&self) -> u32 {
        self.regions
    }

    /// This region `r`.
    pub fn region(&self) -> u32 {
        self.region
    }

    /// The id of counter value `k`: `k * R + r`; `None` if it overflows.
    pub fn id_of(&self, k: u64) -> Option<u64> {
        k.checked_mul(u64::from(self.regions))?
            .checked_add(u64::from(self.region))
    }

    /// The region that minted `id` under this partitioning (`id % R`).
    pub fn region_of(&self, id: u64) -> u32 {
        region_of(id, self.regions)
    }
}

/// The region that minted `id` when the id space is split into `regions` residue classes
/// (`id % regions`). `regions = 0` is treated as 1.
pub fn region_of(id: u64, regions: u32) -> u32 {
    (id % u64::from(regions.max(1))) as u32
}

/// Where segment counters live.
///
/// Implementations: [`crate::RedisStore`], [`crate::MysqlStore`].
pub trait SegmentStore: Send + Sync + 'static {
    /// Atomically adds `step` to the counter of `(namespace, partition.region())` (created at 0)
    /// and returns the new value `last`: the caller owns counter values `last - step + 1 ..=
    /// last`, and nobody else ever gets them. Refuses a counter recorded with another number of
    /// regions ([`IdError::Mismatch`]).
    fn reserve(
        &self,
        namespace: &str,
        partition: Partition,
        step: u64,
    ) -> impl Future<Output = Result<u64, IdError>> + Send;
}

/// How a [`SegmentAllocator`] works.
#[derive(Debug, Clone)]
pub struct SegmentConfig {
    /// Namespace: one id space (a table, a service).
    pub namespace: String,
    /// Which residue class this process's region owns.
    pub partition: Partition,
    /// Counter values per segment (default 1000). Larger: fewer store calls; more ids skipped
    /// when a process stops.
    pub step: u64,
    /// Fetch the next segment in the background when the current one is this many percent used
    /// (default 20); `None`: fetch only when a segment is used up.
    pub prefetch_at_percent: Option<u8>,
    /// The largest id to hand out (default `i64::MAX`; 2^53 - 1 for JavaScript clients).
    pub max_id: u64,
    /// Bound on one store call (default 5 s).
    pub fetch_timeout: Duration,
}

impl SegmentConfig {
    /// Defaults for `namespace` and `partition`.
    pub fn new(namespace: impl Into<String>, partition: Partition) -> SegmentConfig {
        SegmentConfig {
            namespace: namespace.into(),
            partition,
            step: 1000,
            prefetch_at_percent: Some(20),
            max_id: i64::MAX as u64,
            fetch_timeout: Duration::from_secs(5),
        }
    }
}

/// Counters of a [`SegmentAllocator`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SegmentStats {
    /// Segments fetched from the store.
    pub fetches: u64,
    /// Calls that found no id in memory and had to wait for the store.
    pub waits: u64,
}

/// Counter values `next..=last` not handed out yet.
#[derive(Debug, Clone, Copy)]
struct Segment {
    next: u64,
    last: u64,
    len: u64,
}

impl Segment {
    const EMPTY: Segment = Segment {
        next: 1,
        last: 0,
        len: 0,
    };

    fn take(&mut self) -> Option<u64> {
        if self.next > self.last {
            return None;
        }
        let k = self.next;
        self.next += 1;
        Some(k)
    }

    fn used_percent(&self) -> u64 {
        let left = (self.last + 1).saturating_sub(self.next);
        (self.len - left.min(self.len)) * 100 / self.len.max(1)
    }
}

struct State {
    current: Segment,
    spare: Option<Segment>,
    fetching: bool,
}

struct Shared<S> {
    store: S,
    config: SegmentConfig,
    state: Mutex<State>,
    fetched: Notify,
    fetches: AtomicU64,
    waits: AtomicU64,
}

/// Hands out ids from segments of a region's counter. Clone it to share (clones share the
/// segments).
pub struct SegmentAllocator<S: SegmentStore> {
    shared: Arc<Shared<S>>,
}

impl<S: SegmentStore> Clone for SegmentAllocator<S> {
    fn clone(&self) -> Self {
        SegmentAllocator {
            shared: self.shared.clone(),
        }
    }
}

impl<S: SegmentStore> std::fmt::Debug for SegmentAllocator<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentAllocator")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

enum Step<'a> {
    Fetch,
    Wait(tokio::sync::futures::Notified<'a>),
}

impl<S: SegmentStore> SegmentAllocator<S> {
    /// An allocator; it fetches its first segment on first use.
    pub fn new(store: S, config: SegmentConfig) -> Result<SegmentAllocator<S>, IdError> {
        let mut problems = Vec::new();
        if config.step == 0 {
            problems.push("step must be at least 1".to_string());
        }
        if config.prefetch_at_percent.is_some_and(|p| p > 100) {
            problems.push("prefetch_at_percent must be 0..=100".to_string());
        }
        if config.namespace.is_empty() || config.namespace.len() > 64 {
            problems.push("the namespace must have 1 to 64 bytes".to_string());
        }
        if !problems.is_empty() {
            return Err(IdError::invalid("segment allocator", problems));
        }
        Ok(SegmentAllocator {
            shared: Arc::new(Shared {
                store,
                config,
                state: Mutex::new(State {
                    current: Segment::EMPTY,
                    spare: None,
                    fetching: false,
                }),
                fetched: Notify::new(),
                fetches: AtomicU64::new(0),
                waits: AtomicU64::new(0),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SegmentConfig {
        &self.shared.config
    }

    /// How often the store was called and how often a caller had to wait for it.
    pub fn stats(&self) -> SegmentStats {
        SegmentStats {
            fetches: self.shared.fetches.load(Ordering::Relaxed),
            waits: self.shared.waits.load(Ordering::Relaxed),
        }
    }

    /// One id. From memory when the current segment has one; otherwise waits for the segment
    /// being fetched, or fetches it. Cancel-safe.
    pub async fn next(&self) -> Result<u64, IdError> {
        let mut waited = false;
        loop {
            let step = {
                let mut st = self.shared.lock();
                if let Some(k) = st.current.take() {
                    self.maybe_prefetch(&mut st);
                    return Ok(self.shared.id_of(k));
                }
                if let Some(spare) = st.spare.take() {
                    st.current = spare;
                    continue;
                }
                if !waited {
                    waited = true;
                    self.shared.waits.fetch_add(1, Ordering::Relaxed);
                }
                if st.fetching {
                    // Created under the lock: the fetcher's notify_waiters reaches it.
                    Step::Wait(self.shared.fetched.notified())
                } else {
                    st.fetching = true;
                    Step::Fetch
                }
            };
            match step {
                Step::Wait(notified) => notified.await,
                Step::Fetch => {
                    let guard = FetchGuard(&self.shared);
                    let segment = self.shared.fetch().await;
                    guard.finish(segment)?;
                }
            }
        }
    }

    /// `n` ids, in increasing order. Takes what the current segment has under one lock, then
    /// continues like [`SegmentAllocator::next`]. On error the ids taken so far are skipped.
    pub async fn next_batch(&self, n: usize) -> Result<Vec<u64>, IdError> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            {
                let mut st = self.shared.lock();
                while out.len() < n {
                    match st.current.take() {
                        Some(k) => out.push(self.shared.id_of(k)),
                        None => break,
                    }
                }
                self.maybe_prefetch(&mut st);
            }
            if out.len() < n {
                out.push(self.next().await?);
            }
        }
        Ok(out)
    }

    /// Starts a background fetch when the current segment is used past the threshold and no
    /// spare is there or on its way. Outside a tokio runtime there is no prefetch.
    fn maybe_prefetch(&self, st: &mut State) {
        let Some(at) = self.shared.config.prefetch_at_percent else {
            return;
        };
        if st.fetching || st.spare.is_some() || st.current.used_percent() < u64::from(at) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        st.fetching = true;
        let shared = self.shared.clone();
        runtime.spawn(async move {
            let guard = FetchGuard(&shared);
            let segment = shared.fetch().await;
            if let Err(e) = guard.finish(segment) {
                tracing::warn!(
                    namespace = %shared.config.namespace,
                    region = shared.config.partition.region(),
                    error = %e,
                    "segment prefetch failed; the next caller that runs out retries"
                );
            }
        });
    }
}

impl<S: SegmentStore> Shared<S> {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics under this lock; a poisoned lock still holds consistent data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every counter value of a fetched segment maps to an id <= max_id (checked in `fetch`).
    fn id_of(&self, k: u64) -> u64 {
        self.config.partition.id_of(k).unwrap_or(u64::MAX)
    }

    async fn fetch(&self) -> Result<Segment, IdError> {
        let c = &self.config;
        let last = tokio::time::timeout(
            c.fetch_timeout,
            self.store.reserve(&c.namespace, c.partition, c.step),
        )
        .await
        .map_err(|_| IdError::Timeout {
            what: "reserve a segment",
            after: c.fetch_timeout,
        })??;
        if last < c.step {
            return Err(IdError::Unexpected {
                what: "reserve a segment",
                detail: format!("counter {last} is below the step {}", c.step),
            });
        }
        if self
            .config
            .partition
            .id_of(last)
            .is_none_or(|id| id > c.max_id)
        {
            return Err(IdError::SpaceExhausted {
                key: format!("{}/{}", c.namespace, c.partition.region()),
                max_id: c.max_id,
            });
        }
        Ok(Segment {
            next: last - c.step + 1,
            last,
            len: c.step,
        })
    }
}

/// Clears `fetching` and wakes the waiters when a fetch ends, also when the fetching future is
/// dropped half-way (so a cancelled caller never leaves the others waiting for ever).
struct FetchGuard<'a, S: SegmentStore>(&'a Shared<S>);

impl<S: SegmentStore> FetchGuard<'_, S> {
    /// Installs a fetched segment (as current if the current one is used up, else as spare).
    fn finish(self, segment: Result<Segment, IdError>) -> Result<(), IdError> {
        let segment = segment?;
        let mut st = self.0.lock();
        if st.current.next > st.current.last {
            st.current = segment;
        } else {
            st.spare = Some(segment);
        }
        // Counted once the segment is in place, so that a caller who saw the count move finds
        // the segment in memory (the prefetch test waits on it).
        self.0.fetches.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl<S: SegmentStore> Drop for FetchGuard<'_, S> {
    fn drop(&mut self) {
        self.0.lock().fetching = false;
        self.0.fetched.notify_waiters();
    }
}
