//! The lock-free generator: clock rollback, borrowing bound, async wait, batches, sequence
//! spread, concurrency.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use drc_id::{
    Clock, Generator, GeneratorOptions, IdError, Layout, LayoutSpec, ManualClock, SystemClock,
};

use crate::support::{seed, DEADLINE};

/// One day after the default epoch.
const T0: u64 = drc_id::DEFAULT_EPOCH_MS + 86_400_000;

fn manual(layout: Layout, max_borrow: Duration, seed: u64) -> (Arc<ManualClock>, Generator) {
    let clock = Arc::new(ManualClock::new(T0));
    let options = GeneratorOptions {
        clock: clock.clone(),
        max_borrow,
        seed: Some(seed),
    };
    let g = Generator::new(layout, 3, 7, options).expect("generator");
    (clock, g)
}

#[test]
fn a_clock_step_back_borrows_future_ticks_up_to_the_bound_then_names_the_retry_time() {
    let (clock, g) = manual(Layout::snowflake(), Duration::from_secs(1), 1);
    let l = g.layout().clone();
    let mut last = 0;
    for _ in 0..1000 {
        clock.advance(Duration::from_millis(1));
        let id = g.next().expect("id");
        assert!(id > last);
        last = id;
    }
    let top = l.decode(last).expect("decode");
    // NTP steps the clock back by 500 ms and it stays there.
    clock.step_back(Duration::from_millis(500));
    let mut minted = 0u64;
    let err = loop {
        match g.next() {
            Ok(id) => {
                assert!(id > last, "ids never go backwards");
                assert!(l.decode(id).expect("decode").tick >= top.tick);
                last = id;
                minted += 1;
            }
            Err(e) => break e,
        }
    };
    // The rest of the current tick, then 500 borrowed ticks (the clock is 500 ticks back and
    // may be 1000 behind): exactly this many ids, no more.
    let seq_left = (l.ids_per_tick() - 1) - u64::from(top.sequence);
    assert_eq!(minted, seq_left + 500 * l.ids_per_tick());
    let IdError::AheadOfClock { retry_at_ms, .. } = err else {
        panic!("expected AheadOfClock, got {err}");
    };
    assert!(err.is_transient());
    assert_eq!(
        retry_at_ms,
        clock.now_ms() + 1,
        "one more tick of the clock"
    );
    assert_eq!(err.retry_at_ms(), Some(retry_at_ms));
    clock.set(retry_at_ms);
    let id = g.next().expect("the clock caught up by one tick");
    assert!(id > last);
    assert_eq!(l.decode(id).expect("decode").tick, top.tick + 501);
}

#[test]
fn a_big_step_back_fails_at_once_and_never_panics() {
    let (clock, g) = manual(Layout::snowflake(), Duration::from_secs(1), 2);
    let first = g.layout().decode(g.next().expect("id")).expect("decode");
    clock.step_back(Duration::from_secs(3600));
    let err = g.next().expect_err("an hour behind");
    let IdError::AheadOfClock { retry_at_ms, .. } = err else {
        panic!("expected AheadOfClock, got {err}");
    };
    // The next id would have the same tick (or the next one, if the sequence was at its end);
    // it can be minted once the clock is within 1 s of that tick.
    let next_tick_ms = if first.sequence == 4095 { T0 + 1 } else { T0 };
    assert_eq!(retry_at_ms, next_tick_ms - 1000);
}

#[test]
fn a_frozen_clock_allows_exactly_the_borrowed_capacity() {
    let (clock, g) = manual(Layout::raindrop(), Duration::from_secs(2), 3);
    let l = g.layout().clone();
    let first = l.decode(g.next().expect("id")).expect("decode");
    let mut n = 1u64;
    while g.next().is_ok() {
        n += 1;
    }
    // From the random start of this second to the end of the second one borrowed after it.
    assert_eq!(
        n,
        (l.ids_per_tick() - u64::from(first.sequence)) + 2 * l.ids_per_tick()
    );
    clock.advance(Duration::from_secs(1));
    assert!(g.next().is_ok());
}

#[tokio::test(flavor = "current_thread")]
async fn next_wait_sleeps_asynchronously_until_the_clock_catches_up() {
    let (clock, g) = manual(Layout::snowflake(), Duration::from_millis(5), 4);
    let g = Arc::new(g);
    let retry_at = loop {
        match g.next() {
            Ok(_) => {}
            Err(IdError::AheadOfClock { retry_at_ms, .. }) => break retry_at_ms,
            Err(e) => panic!("{e}"),
        }
    };
    let waiter = tokio::spawn({
        let g = g.clone();
        async move { g.next_wait().await }
    });
    // One thread only: the waiter sleeping in tokio leaves it to this task.
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(!waiter.is_finished(), "the clock has not moved");
    clock.set(retry_at);
    let id = tokio::time::timeout(DEADLINE, waiter)
        .await
        .expect("the waiter wakes up")
        .expect("task")
        .expect("id");
    let tick = g.layout().decode(id).expect("decode").tick;
    assert_eq!(tick, g.layout().tick_at(retry_at).expect("tick") + 5);
}

#[test]
fn a_batch_is_consecutive_increasing_and_all_or_nothing() {
    let (_clock, g) = manual(Layout::snowflake(), Duration::from_millis(2), 5);
    let l = g.layout().clone();
    let batch: Vec<u64> = g.next_batch(4097).expect("batch").collect();
    assert_eq!(batch.len(), 4097);
    assert!(batch.windows(2).all(|w| w[0] < w[1]));
    let ticks: HashSet<u64> = batch
        .iter()
        .map(|&id| l.decode(id).expect("decode").tick)
        .collect();
    assert_eq!(ticks.len(), 2, "one tick's worth + 1 spans two ticks");
    let err = g
        .next_batch(2 * 4096)
        .expect_err("more than the borrowing bound allows now");
    assert!(matches!(err, IdError::AheadOfClock { .. }), "{err}");
    // Nothing was taken by the refused batch: the next id follows the last one directly.
    let last = l.decode(batch[4096]).expect("decode");
    let next = l.decode(g.next().expect("id")).expect("decode");
    let expected = if last.sequence == 4095 {
        (last.tick + 1, 0)
    } else {
        (last.tick, last.sequence + 1)
    };
    assert_eq!((next.tick, next.sequence), expected);
    assert_eq!(g.next_batch(0).expect("empty").len(), 0);
    // Larger than the whole borrowing window (2 ticks): refused for good, not "retry later".
    let err = g.next_batch(2 * 4096 + 1).expect_err("never fits");
    assert!(
        matches!(err, IdError::Invalid { .. }) && !err.is_transient(),
        "{err}"
    );
}

#[test]
fn the_sequence_starts_at_a_random_value_each_tick_so_id_mod_n_is_even() {
    let seed = seed("the_sequence_starts_at_a_random_value_each_tick");
    let (clock, g) = manual(Layout::snowflake(), Duration::from_secs(1), seed);
    let samples = 8192u64;
    let ids: Vec<u64> = (0..samples)
        .map(|_| {
            clock.advance(Duration::from_millis(1));
            g.next().expect("id")
        })
        .collect();
    for n in [2u64, 3, 4, 10, 16] {
        let mut counts = vec![0u64; n as usize];
        for id in &ids {
            counts[(id % n) as usize] += 1;
        }
        let mean = samples / n;
        for (shard, &c) in counts.iter().enumerate() {
            assert!(
                c > mean * 3 / 4 && c < mean * 5 / 4,
                "id % {n} == {shard}: {c} of {samples} ids (seed {seed}): {counts:?}"
            );
        }
    }
}

#[test]
fn many_threads_share_one_generator_and_every_id_is_unique() {
    let g = Arc::new(
        Generator::new(Layout::snowflake(), 1, 2, GeneratorOptions::default()).expect("gen"),
    );
    let threads = 8;
    let per_thread = 50_000;
    let per: Vec<Vec<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let g = g.clone();
                s.spawn(move || {
                    let mut ids = Vec::with_capacity(per_thread);
                    let mut i = 0usize;
                    while ids.len() < per_thread {
                        i += 1;
                        let r = if (i + t) % 100 == 0 && ids.len() + 50 <= per_thread {
                            g.next_batch(50).map(|b| ids.extend(b))
                        } else {
                            g.next().map(|id| ids.push(id))
                        };
                        match r {
                            Ok(()) => {}
                            // Above the cap: the bound is reached, the clock will move.
                            Err(IdError::AheadOfClock { .. }) => std::thread::yield_now(),
                            Err(e) => panic!("{e}"),
                        }
                    }
                    ids
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let mut all = HashSet::new();
    for ids in &per {
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "each thread sees increasing ids"
        );
        all.extend(ids.iter().copied());
    }
    assert_eq!(all.len(), threads * per_thread, "no duplicates");
    for id in all {
        let d = g.layout().decode(id).expect("decode");
        assert_eq!((d.region, d.worker), (1, 2));
    }
}

#[test]
fn different_workers_never_collide_even_with_the_same_clock_and_seed() {
    let clock = Arc::new(ManualClock::new(T0));
    let gens: Vec<Generator> = (0..4)
        .map(|w| {
            let options = GeneratorOptions {
                clock: clock.clone(),
                max_borrow: Duration::from_secs(1),
                seed: Some(42),
            };
            Generator::new(Layout::snowflake(), w % 2, w / 2, options).expect("gen")
        })
        .collect();
    let mut all = HashSet::new();
    for _ in 0..1000 {
        clock.advance(Duration::from_millis(1));
        for g in &gens {
            for id in g.next_batch(10).expect("batch") {
                assert!(all.insert(id), "duplicate {id}");
            }
        }
    }
    assert_eq!(all.len(), 4 * 1000 * 10);
}

#[test]
fn the_clock_before_the_epoch_and_the_end_of_the_layout_are_permanent_errors() {
    let clock = Arc::new(ManualClock::new(drc_id::DEFAULT_EPOCH_MS - 1));
    let options = GeneratorOptions {
        clock: clock.clone(),
        ..GeneratorOptions::default()
    };
    let mut spec = LayoutSpec::snowflake();
    spec.timestamp_bits = 4; // 16 ms of life
    let g = Generator::new(spec.build().expect("layout"), 0, 0, options).expect("gen");
    let err = g.next().expect_err("before the epoch");
    assert!(matches!(err, IdError::ClockBeforeEpoch { .. }) && !err.is_transient());
    clock.set(drc_id::DEFAULT_EPOCH_MS + 15);
    let mut minted = 0;
    let err = loop {
        match g.next() {
            Ok(_) => minted += 1,
            Err(e) => break e,
        }
    };
    assert!(minted > 0, "the last tick is usable");
    assert!(
        matches!(err, IdError::LayoutExhausted { .. }) && !err.is_transient(),
        "{err}"
    );
    clock.set(drc_id::DEFAULT_EPOCH_MS + 1000);
    assert!(matches!(g.next(), Err(IdError::LayoutExhausted { .. })));
}

#[test]
fn the_system_clock_reads_the_present() {
    let now = SystemClock.now_ms();
    assert!(now > drc_id::DEFAULT_EPOCH_MS && now < Layout::snowflake().end_ms());
}
