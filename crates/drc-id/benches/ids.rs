//! Id throughput: SnowFlake and RainDrop against their caps, the segment allocator with and
//! without prefetch (Redis on 127.0.0.1:6379 and a throwaway MariaDB).
//!
//! `cargo bench -p drc-id --bench ids [-- --seconds N --no-redis --no-mysql]`
//!
//! Sustained rate of a time-based generator: mint until the borrowing window is full (the
//! generator is then exactly `max_borrow` ahead of the clock), then count ids between two
//! moments at which the clock let it go on (tick boundaries), over many ticks. At 100 % the
//! generator mints all `2^sequence_bits` ids of every tick. The raw rate (no clock bound) shows
//! the headroom above the cap.

use std::sync::Arc;
use std::time::{Duration, Instant};

use drc_id::{
    Clock, Generator, GeneratorOptions, IdError, Layout, MysqlStore, Partition, RedisStore,
    SegmentAllocator, SegmentConfig, SegmentStore, SystemClock,
};

struct Opts {
    seconds: u64,
    redis: bool,
    mysql: bool,
}

fn opts() -> Opts {
    let mut o = Opts {
        seconds: 3,
        redis: true,
        mysql: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => {
                o.seconds = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(o.seconds)
            }
            "--no-redis" => o.redis = false,
            "--no-mysql" => o.mysql = false,
            _ => {} // cargo passes --bench
        }
    }
    o
}

fn main() {
    // `cargo test --all-targets` runs bench binaries without arguments; `cargo bench` passes
    // `--bench`. Measure only when asked to.
    if std::env::args().len() == 1 {
        eprintln!("this is a benchmark; run it with `cargo bench -p drc-id --bench ids`");
        return;
    }
    let o = opts();
    println!("# drc-id benchmarks ({} s per measurement)\n", o.seconds);
    raw("snowflake", Layout::snowflake(), 1);
    raw("snowflake", Layout::snowflake(), 2);
    sustained("snowflake next()", Layout::snowflake(), 1, 0, o.seconds);
    sustained("snowflake next()", Layout::snowflake(), 2, 0, o.seconds);
    sustained(
        "snowflake next_batch(256)",
        Layout::snowflake(),
        1,
        256,
        o.seconds,
    );
    sustained_async(
        "snowflake next_wait() on tokio",
        Layout::snowflake(),
        o.seconds,
    );
    raw("raindrop", Layout::raindrop(), 1);
    sustained(
        "raindrop next()",
        Layout::raindrop(),
        1,
        0,
        o.seconds.max(5),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if o.redis {
        match rt.block_on(RedisStore::connect("redis://127.0.0.1:6379")) {
            Ok(store) => segments(&rt, "redis", store, o.seconds),
            Err(e) => println!("segment allocator on redis: skipped ({e})"),
        }
    }
    if o.mysql {
        match drc_testkit::MariaDb::start(drc_testkit::ServerOptions::default()) {
            Ok(server) => {
                let store = rt
                    .block_on(MysqlStore::connect(&server.url(), "drc_meta"))
                    .expect("mysql store");
                segments(&rt, "mysql", store, o.seconds);
            }
            Err(e) => println!("segment allocator on mysql: skipped ({e})"),
        }
    }
}

fn generator(layout: Layout, max_borrow: Duration) -> Arc<Generator> {
    let options = GeneratorOptions {
        max_borrow,
        ..GeneratorOptions::default()
    };
    Arc::new(Generator::new(layout, 1, 1, options).expect("generator"))
}

/// Mints for 1 s with no clock bound (a borrowing window of a day): the CAS loop's own speed.
fn raw(name: &str, layout: Layout, threads: usize) {
    let g = generator(layout, Duration::from_secs(86_400));
    let began = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                let g = g.clone();
                s.spawn(move || {
                    let mut n = 0u64;
                    while began.elapsed() < Duration::from_secs(1) {
                        for _ in 0..1000 {
                            std::hint::black_box(g.next().expect("id"));
                        }
                        n += 1000;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("thread")).sum()
    });
    let rate = total as f64 / began.elapsed().as_secs_f64();
    println!(
        "{name} raw (no clock bound), {threads} thread(s): {:.1} M ids/s = {:.1}x the cap",
        rate / 1e6,
        rate / g.layout().max_rate_per_worker()
    );
}

/// Spins until the clock reaches `ms` (a benchmark thread, not a tokio worker).
fn spin_until(ms: u64) {
    while SystemClock.now_ms() < ms {
        std::hint::spin_loop();
    }
}

/// Sustained rate against the cap, `threads` threads sharing one generator, each asking for
/// single ids (`batch == 0`) or batches.
fn sustained(name: &str, layout: Layout, threads: usize, batch: u32, seconds: u64) {
    let g = generator(layout, Duration::from_secs(1));
    let cap = g.layout().max_rate_per_worker();
    // Fill the borrowing window.
    loop {
        match g.next() {
            Ok(_) => {}
            Err(IdError::AheadOfClock { retry_at_ms, .. }) => {
                spin_until(retry_at_ms);
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let began = Instant::now();
    let window = Duration::from_secs(seconds);
    let total: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                let g = g.clone();
                s.spawn(move || {
                    let mut n = 0u64;
                    while began.elapsed() < window {
                        let r = if batch == 0 {
                            g.next().map(|id| {
                                std::hint::black_box(id);
                                1
                            })
                        } else {
                            g.next_batch(batch).map(|b| {
                                std::hint::black_box(b);
                                u64::from(batch)
                            })
                        };
                        match r {
                            Ok(k) => n += k,
                            Err(IdError::AheadOfClock { retry_at_ms, .. }) => {
                                spin_until(retry_at_ms)
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("thread")).sum()
    });
    let rate = total as f64 / began.elapsed().as_secs_f64();
    println!(
        "{name}, {threads} thread(s), sustained: {:.0} ids/s = {:.1} % of the cap ({cap:.0}/s)",
        rate,
        100.0 * rate / cap
    );
}

/// Sustained rate of `next_wait` on a current-thread tokio runtime (sleeps, never spins).
fn sustained_async(name: &str, layout: Layout, seconds: u64) {
    let g = generator(layout, Duration::from_secs(1));
    let cap = g.layout().max_rate_per_worker();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (total, elapsed) = rt.block_on(async {
        while g.next().is_ok() {}
        let began = Instant::now();
        let mut n = 0u64;
        while began.elapsed() < Duration::from_secs(seconds) {
            for _ in 0..1000 {
                std::hint::black_box(g.next_wait().await.expect("id"));
            }
            n += 1000;
        }
        (n, began.elapsed())
    });
    let rate = total as f64 / elapsed.as_secs_f64();
    println!(
        "{name}, sustained: {rate:.0} ids/s = {:.1} % of the cap",
        100.0 * rate / cap
    );
}

/// Asks for one id per microsecond (1,000,000 ids/s, evenly spread: the task yields while
/// ahead of schedule) for `seconds`, and counts the calls that found no id in memory.
fn paced<S: SegmentStore + Clone>(
    rt: &tokio::runtime::Runtime,
    name: &str,
    store: S,
    step: u64,
    prefetch: Option<u8>,
    seconds: u64,
) {
    let ns = format!("bench_{}_{:08x}", std::process::id(), fastrand::u32(..));
    let mut c = SegmentConfig::new(ns, Partition::new(3, 1).expect("partition"));
    c.step = step;
    c.prefetch_at_percent = prefetch;
    let alloc = SegmentAllocator::new(store, c).expect("allocator");
    let (total, elapsed, slowest, before) = rt.block_on(async {
        alloc.next().await.expect("warm up");
        let before = alloc.stats();
        let began = Instant::now();
        let end = Duration::from_secs(seconds);
        let mut n = 0u64;
        let mut slowest = Duration::ZERO;
        loop {
            let due = Duration::from_micros(n);
            if due >= end {
                break;
            }
            while began.elapsed() < due {
                tokio::task::yield_now().await;
            }
            let t = Instant::now();
            std::hint::black_box(alloc.next().await.expect("id"));
            slowest = slowest.max(t.elapsed());
            n += 1;
        }
        (n, began.elapsed(), slowest, before)
    });
    let st = alloc.stats();
    println!(
        "segment allocator on {name}, paced at 1,000,000 ids/s, step {step}, prefetch {}: \
         {:.2} M ids/s, {} fetches, {} calls waited for the store, slowest call {:?}",
        prefetch.map_or("off".to_string(), |p| format!("at {p} %")),
        total as f64 / elapsed.as_secs_f64() / 1e6,
        st.fetches - before.fetches,
        st.waits - before.waits,
        slowest
    );
}

fn segments<S: SegmentStore + Clone>(
    rt: &tokio::runtime::Runtime,
    name: &str,
    store: S,
    seconds: u64,
) {
    for (step, prefetch, tasks) in [
        (1000, Some(20), 1),
        (10_000, Some(20), 1),
        (1000, Some(20), 2),
        (1000, None, 1),
    ] {
        let ns = format!("bench_{}_{:08x}", std::process::id(), fastrand::u32(..));
        let mut c = SegmentConfig::new(ns, Partition::new(3, 1).expect("partition"));
        c.step = step;
        c.prefetch_at_percent = prefetch;
        let alloc = SegmentAllocator::new(store.clone(), c).expect("allocator");
        let (total, elapsed) = rt.block_on(async {
            alloc.next().await.expect("warm up");
            let began = Instant::now();
            let hs: Vec<_> = (0..tasks)
                .map(|_| {
                    let alloc = alloc.clone();
                    tokio::spawn(async move {
                        let mut n = 0u64;
                        while began.elapsed() < Duration::from_secs(seconds) {
                            for _ in 0..1000 {
                                std::hint::black_box(alloc.next().await.expect("id"));
                            }
                            n += 1000;
                        }
                        n
                    })
                })
                .collect();
            let mut total = 0;
            for h in hs {
                total += h.await.expect("task");
            }
            (total, began.elapsed())
        });
        let st = alloc.stats();
        println!(
            "segment allocator on {name}, step {step}, prefetch {}, {tasks} task(s): {:.2} M ids/s \
             ({} fetches, {} calls waited for the store)",
            prefetch.map_or("off".to_string(), |p| format!("at {p} %")),
            total as f64 / elapsed.as_secs_f64() / 1e6,
            st.fetches,
            st.waits
        );
    }
    for (step, prefetch) in [(1000, Some(20)), (1000, None), (10_000, Some(20))] {
        paced(rt, name, store.clone(), step, prefetch, seconds);
    }
}
