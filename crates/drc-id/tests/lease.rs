//! Worker leases, against Redis and MySQL: exclusion, takeover of a paused holder, restart
//! after a crash, release, background renewal.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use drc_id::{
    Clock, GeneratorOptions, IdError, Layout, LayoutSpec, LeaseConfig, LeaseStore, LeasedGenerator,
    ManualClock, SystemClock,
};

use crate::support::{namespace, DEADLINE};

/// One day after the default epoch.
const T0: u64 = drc_id::DEFAULT_EPOCH_MS + 86_400_000;
const LENGTH: Duration = Duration::from_secs(10);

/// Runs `$name(store)` once with Redis (skipped without Redis, outside CI) and once with MySQL.
macro_rules! both_stores {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn redis() {
                let test = concat!("lease::", stringify!($name), "::redis");
                let Some(store) = crate::support::redis(test).await else {
                    return;
                };
                super::$name(store).await;
            }

            #[tokio::test]
            async fn mysql() {
                super::$name(crate::support::mysql().await).await;
            }
        }
    };
}

both_stores!(a_live_lease_excludes_a_second_holder);
both_stores!(a_paused_holder_cannot_mint_after_a_takeover);
both_stores!(a_paused_holder_with_a_stale_clock_stays_below_the_takeover);
both_stores!(a_restarted_process_starts_after_the_crashed_ones_reserved_until);
both_stores!(a_released_lease_is_taken_at_once_and_continues_after_the_last_id);
both_stores!(background_renewal_extends_the_lease_and_stops_minting_once_lost);
both_stores!(a_lease_of_another_layout_is_refused);

/// Acquires worker (1, 2) of `ns` with the given clock and no background renewal.
async fn holder<S: LeaseStore>(
    store: S,
    ns: &str,
    layout: Layout,
    clock: Arc<ManualClock>,
    max_borrow: Duration,
) -> Result<LeasedGenerator<S>, IdError> {
    let mut lease = LeaseConfig::new(ns, 1, 2);
    lease.length = LENGTH;
    lease.background_renewal = false;
    let options = GeneratorOptions {
        clock,
        max_borrow,
        seed: None,
    };
    LeasedGenerator::acquire(store, layout, lease, options).await
}

fn mint<S: LeaseStore>(g: &LeasedGenerator<S>, n: usize) -> Vec<u64> {
    (0..n).map(|_| g.next().expect("id")).collect()
}

fn ticks(layout: &Layout, ids: &[u64]) -> (u64, u64) {
    let t: Vec<u64> = ids
        .iter()
        .map(|&id| layout.decode(id).expect("decode").tick)
        .collect();
    (*t.iter().min().expect("ids"), *t.iter().max().expect("ids"))
}

async fn a_live_lease_excludes_a_second_holder<S: LeaseStore + Clone>(store: S) {
    let ns = namespace("excl");
    let clock = Arc::new(ManualClock::new(T0));
    let l = Layout::snowflake();
    let second = Duration::from_secs(1);
    let a = holder(store.clone(), &ns, l.clone(), clock.clone(), second)
        .await
        .expect("first holder");
    assert_eq!(a.reserved_until(), l.tick_at(T0).expect("tick") + 10_000);
    let err = holder(store.clone(), &ns, l.clone(), clock.clone(), second)
        .await
        .expect_err("second holder");
    let IdError::LeaseHeld {
        reserved_until_ms, ..
    } = &err
    else {
        panic!("expected LeaseHeld, got {err}");
    };
    assert!(err.is_transient());
    assert_eq!(*reserved_until_ms, l.ms_of_tick(a.reserved_until() + 1) - 1);
    // Another worker of the same region is free.
    let mut other = LeaseConfig::new(&ns, 1, 3);
    other.background_renewal = false;
    let options = GeneratorOptions {
        clock: clock.clone(),
        ..GeneratorOptions::default()
    };
    let b = LeasedGenerator::acquire(store, l, other, options)
        .await
        .expect("worker 3");
    assert_ne!(a.next().expect("a"), b.next().expect("b"));
}

async fn a_paused_holder_cannot_mint_after_a_takeover<S: LeaseStore + Clone>(store: S) {
    let ns = namespace("pause");
    let clock = Arc::new(ManualClock::new(T0));
    let l = Layout::snowflake();
    let second = Duration::from_secs(1);
    let a = holder(store.clone(), &ns, l.clone(), clock.clone(), second)
        .await
        .expect("a");
    let a_ids = mint(&a, 100);
    // A renews once while alive ...
    clock.advance(Duration::from_secs(5));
    let until = a.renew().await.expect("renew");
    assert_eq!(until, l.tick_at(clock.now_ms()).expect("tick") + 10_000);
    // ... then is paused (no renewal) past its lease; B takes the worker over.
    clock.set(l.ms_of_tick(until + 1));
    let b = holder(store.clone(), &ns, l.clone(), clock.clone(), second)
        .await
        .expect("b takes over");
    let b_ids = mint(&b, 100);
    assert!(
        ticks(&l, &b_ids).0 > until,
        "B starts after A's reserved_until"
    );
    // A resumes: it may not mint past its lease, cannot renew, and stays closed.
    let err = a.next().expect_err("expired");
    assert!(matches!(err, IdError::LeaseExpired { .. }), "{err}");
    let err = a.renew().await.expect_err("lost");
    assert!(
        matches!(err, IdError::LeaseLost) && !err.is_transient(),
        "{err}"
    );
    assert!(matches!(a.next(), Err(IdError::LeaseLost)));
    let all: HashSet<u64> = a_ids.iter().chain(&b_ids).copied().collect();
    assert_eq!(all.len(), 200);
    // Releasing a lost lease does not touch B's.
    a.release()
        .await
        .expect("release of a lost lease is a no-op");
    mint(&b, 10);
    assert!(b.renew().await.is_ok());
}

async fn a_paused_holder_with_a_stale_clock_stays_below_the_takeover<S: LeaseStore + Clone>(
    store: S,
) {
    let ns = namespace("stale");
    // RainDrop: a 10 s lease is 10 ticks, so A can mint up to its bound in a test.
    let l = Layout::raindrop();
    let a_clock = Arc::new(ManualClock::new(T0));
    let b_clock = Arc::new(ManualClock::new(T0 + 11_000));
    // A may borrow far ahead: only its lease stops it.
    let a = holder(
        store.clone(),
        &ns,
        l.clone(),
        a_clock.clone(),
        Duration::from_secs(60),
    )
    .await
    .expect("a");
    let a_until = a.reserved_until();
    let mut a_ids = mint(&a, 10);
    let b = holder(
        store.clone(),
        &ns,
        l.clone(),
        b_clock.clone(),
        Duration::from_secs(1),
    )
    .await
    .expect("b takes over: A's lease expired by B's clock");
    let b_ids = mint(&b, 1000);
    // A's clock did not move (a paused process, or a slow clock): it keeps minting, but only
    // up to its reserved_until, which B starts after.
    let err = loop {
        match a.generator().next_batch(1000) {
            Ok(batch) => a_ids.extend(batch),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, IdError::LeaseExpired { .. }), "{err}");
    let (_, a_max) = ticks(&l, &a_ids);
    let (b_min, _) = ticks(&l, &b_ids);
    assert_eq!(a_max, a_until, "A used its lease to the end");
    assert!(b_min > a_until);
    let all: HashSet<u64> = a_ids.iter().chain(&b_ids).copied().collect();
    assert_eq!(all.len(), a_ids.len() + b_ids.len());
    assert!(matches!(a.renew().await, Err(IdError::LeaseLost)));
}

async fn a_restarted_process_starts_after_the_crashed_ones_reserved_until<S: LeaseStore + Clone>(
    store: S,
) {
    let ns = namespace("crash");
    let clock = Arc::new(ManualClock::new(T0));
    let l = Layout::snowflake();
    let second = Duration::from_secs(1);
    let a = holder(store.clone(), &ns, l.clone(), clock.clone(), second)
        .await
        .expect("a");
    // A borrows 3 ticks ahead of the clock, then crashes (dropped, nothing released).
    let a_ids: Vec<u64> = a.generator().next_batch(3 * 4096).expect("batch").collect();
    let a_until = a.reserved_until();
    drop(a);
    let err = holder(store.clone(), &ns, l.clone(), clock.clone(), second)
        .await
        .expect_err("the crashed lease is still live");
    assert!(matches!(err, IdError::LeaseHeld { .. }), "{err}");
    clock.set(l.ms_of_tick(a_until + 1));
    let b = holder(store.clone(), &ns, l.clone(), clock.clone(), second)
        .await
        .expect("b after expiry");
    let b_ids = mint(&b, 100);
    assert!(ticks(&l, &b_ids).0 > a_until);
    assert!(b_ids.iter().min() > a_ids.iter().max());
}

async fn a_released_lease_is_taken_at_once_and_continues_after_the_last_id<
    S: LeaseStore + Clone,
>(
    store: S,
) {
    let ns = namespace("release");
    let clock = Arc::new(ManualClock::new(T0));
    let l = Layout::snowflake();
    let second = Duration::from_secs(1);
    let a = holder(store.clone(), &ns, l.clone(), clock.clone(), second)
        .await
        .expect("a");
    let a_ids: Vec<u64> = a.generator().next_batch(3 * 4096).expect("batch").collect();
    let a_last = *a_ids.last().expect("ids");
    a.release().await.expect("release");
    // Same instant: no waiting for the lease length.
    let b = holder(store.clone(), &ns, l.clone(), clock.clone(), second)
        .await
        .expect("b at once");
    let b_first = b.next().expect("id");
    assert!(b_first > a_last);
    assert!(l.decode(b_first).expect("d").tick > l.decode(a_last).expect("d").tick);
    b.release().await.expect("release b");
}

async fn background_renewal_extends_the_lease_and_stops_minting_once_lost<S: LeaseStore + Clone>(
    store: S,
) {
    let ns = namespace("renew");
    let l = Layout::snowflake();
    let mut lease = LeaseConfig::new(&ns, 1, 2);
    lease.length = Duration::from_millis(600);
    lease.renew_every = Some(Duration::from_millis(100));
    let a = LeasedGenerator::acquire(store.clone(), l.clone(), lease, GeneratorOptions::default())
        .await
        .expect("a");
    let first_until = a.reserved_until();
    drc_testkit::wait_until("the lease is renewed", DEADLINE, || async {
        a.reserved_until() > first_until
    })
    .await;
    drc_testkit::wait_until("the clock passes the first lease", DEADLINE, || async {
        l.tick_at(SystemClock.now_ms()).expect("tick") > first_until + 1
    })
    .await;
    let a_id = a
        .next_wait()
        .await
        .expect("minting goes on past the first lease");
    assert!(l.decode(a_id).expect("d").tick > first_until);
    // B's clock is an hour ahead: by it A's lease has expired, and B takes the worker over.
    let b_clock = Arc::new(ManualClock::new(SystemClock.now_ms() + 3_600_000));
    let b = holder(store, &ns, l.clone(), b_clock, Duration::from_secs(1))
        .await
        .expect("b");
    assert!(b.next().expect("b") > a_id);
    drc_testkit::wait_until("A's renewer finds the lease lost", DEADLINE, || async {
        matches!(a.next(), Err(IdError::LeaseLost))
    })
    .await;
}

async fn a_lease_of_another_layout_is_refused<S: LeaseStore + Clone>(store: S) {
    let ns = namespace("layout");
    let clock = Arc::new(ManualClock::new(T0));
    let second = Duration::from_secs(1);
    let a = holder(
        store.clone(),
        &ns,
        Layout::snowflake(),
        clock.clone(),
        second,
    )
    .await
    .expect("a");
    a.release().await.expect("release");
    let other = LayoutSpec::snowflake()
        .with_epoch_ms(drc_id::DEFAULT_EPOCH_MS - 1000)
        .build()
        .expect("layout");
    let err = holder(store, &ns, other, clock, second)
        .await
        .expect_err("another epoch in the same namespace");
    assert!(
        matches!(err, IdError::Mismatch { .. }) && !err.is_transient(),
        "{err}"
    );
}
