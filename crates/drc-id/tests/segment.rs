//! Segment allocation against Redis and MySQL: residue classes per region, prefetch, central
//! monotonic allocation, mismatches; cancellation with an in-memory store.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drc_id::{
    region_of, IdError, Partition, SegmentAllocator, SegmentConfig, SegmentStats, SegmentStore,
};
use tokio::sync::Semaphore;

use crate::support::{namespace, DEADLINE};

/// Runs `$name(store)` once with Redis (skipped without Redis, outside CI) and once with MySQL.
macro_rules! both_stores {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                let test = concat!("segment::", stringify!($name), "::redis");
                let Some(store) = crate::support::redis(test).await else {
                    return;
                };
                super::$name(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mysql() {
                super::$name(crate::support::mysql().await).await;
            }
        }
    };
}

both_stores!(regions_mint_disjoint_residue_classes_concurrently);
both_stores!(the_next_segment_is_prefetched_before_the_current_one_runs_out);
both_stores!(central_allocation_is_monotonic_per_process_and_unique);
both_stores!(central_allocation_without_prefetch_is_globally_monotonic);
both_stores!(another_number_of_regions_is_refused);
both_stores!(the_end_of_the_id_space_is_an_error);

fn config(ns: &str, partition: Partition, step: u64) -> SegmentConfig {
    let mut c = SegmentConfig::new(ns, partition);
    c.step = step;
    c
}

async fn regions_mint_disjoint_residue_classes_concurrently<S: SegmentStore + Clone>(store: S) {
    let ns = namespace("regions");
    let regions = 3;
    let mut tasks = Vec::new();
    // Per region, two "processes" (allocators), each used by four tasks at once; small
    // segments so that fetches race.
    for region in 0..regions {
        for _process in 0..2 {
            let partition = Partition::new(regions, region).expect("partition");
            let alloc = SegmentAllocator::new(store.clone(), config(&ns, partition, 50))
                .expect("allocator");
            for task in 0..4 {
                let alloc = alloc.clone();
                tasks.push(tokio::spawn(async move {
                    let mut ids = Vec::new();
                    for i in 0..1000 {
                        if (i + task) % 10 == 0 {
                            ids.extend(alloc.next_batch(7).await.expect("batch"));
                        } else {
                            ids.push(alloc.next().await.expect("id"));
                        }
                    }
                    (region, ids)
                }));
            }
        }
    }
    let mut all = HashSet::new();
    let mut total = 0;
    for t in tasks {
        let (region, ids) = t.await.expect("task");
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "one allocator's ids increase in the order handed out"
        );
        for &id in &ids {
            assert_eq!(region_of(id, regions), region, "id {id}");
        }
        total += ids.len();
        all.extend(ids);
    }
    assert_eq!(
        all.len(),
        total,
        "no duplicates across regions and processes"
    );
}

async fn the_next_segment_is_prefetched_before_the_current_one_runs_out<S: SegmentStore + Clone>(
    store: S,
) {
    let ns = namespace("prefetch");
    let partition = Partition::new(4, 1).expect("partition");
    let alloc = SegmentAllocator::new(store, config(&ns, partition, 100)).expect("allocator");
    let mut ids = Vec::new();
    for _ in 0..30 {
        ids.push(alloc.next().await.expect("id"));
    }
    // 20 % used: the second segment is fetched in the background.
    drc_testkit::wait_until("the next segment is prefetched", DEADLINE, || async {
        alloc.stats().fetches == 2
    })
    .await;
    for _ in 0..170 {
        ids.push(alloc.next().await.expect("id"));
    }
    assert_eq!(
        alloc.stats().waits,
        1,
        "only the very first id waited for the store"
    );
    let expected: Vec<u64> = (1..=200).map(|k| k * 4 + 1).collect();
    assert_eq!(ids, expected);
}

async fn central_allocation_is_monotonic_per_process_and_unique<S: SegmentStore + Clone>(store: S) {
    let ns = namespace("central");
    let a = SegmentAllocator::new(store.clone(), config(&ns, Partition::central(), 10)).expect("a");
    let b = SegmentAllocator::new(store, config(&ns, Partition::central(), 10)).expect("b");
    let (mut ai, mut bi) = (Vec::new(), Vec::new());
    for i in 0..500 {
        if i % 3 == 0 {
            bi.push(b.next().await.expect("b"));
        } else {
            ai.push(a.next().await.expect("a"));
        }
    }
    assert!(ai.windows(2).all(|w| w[0] < w[1]));
    assert!(bi.windows(2).all(|w| w[0] < w[1]));
    let all: HashSet<u64> = ai.iter().chain(&bi).copied().collect();
    assert_eq!(all.len(), 500);
}

async fn central_allocation_without_prefetch_is_globally_monotonic<S: SegmentStore + Clone>(
    store: S,
) {
    let ns = namespace("central1");
    let mut c = config(&ns, Partition::central(), 1);
    c.prefetch_at_percent = None;
    let a = SegmentAllocator::new(store.clone(), c.clone()).expect("a");
    let b = SegmentAllocator::new(store, c).expect("b");
    let mut ids = Vec::new();
    for i in 0..100 {
        let alloc = if i % 2 == 0 { &a } else { &b };
        ids.push(alloc.next().await.expect("id"));
    }
    let expected: Vec<u64> = (1..=100).collect();
    assert_eq!(ids, expected, "every id is the store's next value");
}

async fn another_number_of_regions_is_refused<S: SegmentStore + Clone>(store: S) {
    let ns = namespace("mismatch");
    let three = SegmentAllocator::new(
        store.clone(),
        config(&ns, Partition::new(3, 2).expect("p"), 10),
    )
    .expect("3 regions");
    three.next().await.expect("id");
    let four = SegmentAllocator::new(store, config(&ns, Partition::new(4, 2).expect("p"), 10))
        .expect("4 regions");
    let err = four.next().await.expect_err("same counter, other R");
    assert!(
        matches!(err, IdError::Mismatch { .. }) && !err.is_transient(),
        "{err}"
    );
}

async fn the_end_of_the_id_space_is_an_error<S: SegmentStore + Clone>(store: S) {
    let ns = namespace("full");
    let mut c = config(&ns, Partition::new(2, 1).expect("p"), 10);
    c.max_id = 41; // counter values 1..=20 map to ids 3..=41
    c.prefetch_at_percent = None;
    let alloc = SegmentAllocator::new(store, c).expect("allocator");
    let ids = alloc.next_batch(20).await.expect("two segments");
    assert_eq!(ids.last(), Some(&41));
    let err = alloc.next().await.expect_err("full");
    assert!(
        matches!(err, IdError::SpaceExhausted { max_id: 41, .. }),
        "{err}"
    );
}

/// A store in memory whose calls wait for a permit, to hold a fetch half-way.
#[derive(Clone)]
struct GatedStore {
    counters: Arc<Mutex<HashMap<u32, u64>>>,
    gate: Arc<Semaphore>,
}

impl GatedStore {
    /// A store whose gate is closed.
    fn closed() -> GatedStore {
        GatedStore {
            counters: Arc::default(),
            gate: Arc::new(Semaphore::new(0)),
        }
    }
}

impl SegmentStore for GatedStore {
    async fn reserve(&self, _ns: &str, p: Partition, step: u64) -> Result<u64, IdError> {
        let permit = self.gate.acquire().await.expect("gate open");
        permit.forget();
        let mut c = self.counters.lock().expect("lock");
        let v = c.entry(p.region()).or_insert(0);
        *v += step;
        Ok(*v)
    }
}

#[tokio::test]
async fn a_caller_dropped_during_a_fetch_does_not_block_the_others() {
    let store = GatedStore::closed();
    let mut c = SegmentConfig::new("gated", Partition::central());
    c.step = 5;
    c.prefetch_at_percent = None;
    let alloc = SegmentAllocator::new(store.clone(), c).expect("allocator");
    // Polled once, the call starts a fetch that waits at the gate; then it is dropped.
    let first = tokio::time::timeout(Duration::ZERO, alloc.next()).await;
    assert!(first.is_err(), "the fetch is held at the gate");
    store.gate.add_permits(1);
    let id = tokio::time::timeout(DEADLINE, alloc.next())
        .await
        .expect("not stuck behind the dropped fetch")
        .expect("id");
    assert_eq!(id, 1);
    assert_eq!(
        alloc.stats(),
        SegmentStats {
            fetches: 1,
            waits: 2
        }
    );
}

#[tokio::test]
async fn waiting_callers_share_one_fetch() {
    let store = GatedStore::closed();
    let mut c = SegmentConfig::new("shared", Partition::central());
    c.step = 1000;
    let alloc = SegmentAllocator::new(store.clone(), c).expect("allocator");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let alloc = alloc.clone();
            tokio::spawn(async move { alloc.next().await })
        })
        .collect();
    // Let all eight start: the first fetches (held at the gate), the others wait for it.
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    store.gate.add_permits(1);
    let mut ids = HashSet::new();
    for t in tasks {
        let id = tokio::time::timeout(DEADLINE, t)
            .await
            .expect("in time")
            .expect("task")
            .expect("id");
        ids.insert(id);
    }
    assert_eq!(ids.len(), 8);
    assert_eq!(alloc.stats().fetches, 1, "one store call served all eight");
}

#[test]
fn partitions_are_validated() {
    assert!(Partition::new(0, 0).is_err());
    assert!(Partition::new(3, 3).is_err());
    let p = Partition::new(3, 2).expect("p");
    assert_eq!(p.id_of(5), Some(17));
    assert_eq!(p.region_of(17), 2);
    assert_eq!(p.id_of(u64::MAX), None);
    assert_eq!(Partition::central().region_of(12345), 0);
}
