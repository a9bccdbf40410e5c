//! Layouts: presets, validation, lifetime and rate, compose/decode.

use std::time::Duration;

use drc_id::{IdError, Layout, LayoutSpec, DEFAULT_EPOCH_MS};

use crate::support::seed;

#[test]
fn snowflake_preset_is_1_41_10_12_in_milliseconds() {
    let l = Layout::snowflake();
    assert_eq!(l.bits(), 63, "1 bit unused");
    assert_eq!(
        (
            l.timestamp_bits(),
            l.region_bits(),
            l.worker_bits(),
            l.sequence_bits()
        ),
        (41, 5, 5, 12)
    );
    assert_eq!(l.tick_ms(), 1);
    assert_eq!(l.epoch_ms(), DEFAULT_EPOCH_MS);
    assert_eq!(l.max_rate_per_worker(), 4_096_000.0);
    assert_eq!(l.lifetime(), Duration::from_millis(1 << 41));
    assert_eq!(l.end_ms(), DEFAULT_EPOCH_MS + (1 << 41));
    assert_eq!((l.regions(), l.workers_per_region()), (32, 32));
    assert!(!l.is_javascript_safe());
}

#[test]
fn raindrop_preset_is_53_bits_in_seconds() {
    let l = Layout::raindrop();
    assert_eq!(l.bits(), 53, "11 bits unused");
    assert_eq!(
        (
            l.timestamp_bits(),
            l.region_bits() + l.worker_bits(),
            l.sequence_bits()
        ),
        (32, 7, 14)
    );
    assert_eq!((l.region_bits(), l.worker_bits()), (3, 4));
    assert_eq!(l.tick_ms(), 1000);
    assert_eq!(l.max_rate_per_worker(), 16_384.0);
    assert_eq!(l.lifetime(), Duration::from_secs(1 << 32));
    assert!(l.is_javascript_safe());
    // The largest possible id is a safe JavaScript integer.
    let max = l.compose(l.max_tick(), 7, 15, (1 << 14) - 1);
    assert_eq!(max, (1u64 << 53) - 1);
}

#[test]
fn layouts_over_63_bits_are_refused() {
    let mut spec = LayoutSpec::snowflake();
    spec.timestamp_bits = 42;
    let err = spec.build().expect_err("64 bits");
    assert!(!err.is_transient());
    assert!(err.to_string().contains("64 bits"), "{err}");
    assert!(err.to_string().contains("63-bit limit"), "{err}");
}

#[test]
fn javascript_safe_layouts_over_53_bits_are_refused() {
    let mut spec = LayoutSpec::raindrop();
    spec.sequence_bits = 15;
    let err = spec.clone().build().expect_err("54 bits");
    assert!(err.to_string().contains("53-bit limit"), "{err}");
    // The same width is fine when JavaScript safety is not asked for.
    spec.javascript_safe = false;
    assert_eq!(spec.build().expect("54 bits").bits(), 54);
}

#[test]
fn every_problem_of_a_layout_is_reported_at_once() {
    let mut spec = LayoutSpec::snowflake();
    spec.timestamp_bits = 60;
    spec.sequence_bits = 0;
    spec.tick = Duration::from_micros(1500);
    let IdError::Invalid { problems, .. } = spec.build().expect_err("invalid") else {
        panic!("not an Invalid error");
    };
    assert_eq!(problems.len(), 3, "{problems:?}");
}

#[test]
fn the_node_split_is_configurable() {
    let l = LayoutSpec::snowflake()
        .with_region_bits(3)
        .build()
        .expect("3 + 7");
    assert_eq!((l.region_bits(), l.worker_bits()), (3, 7));
    assert_eq!(l.bits(), 63);
    l.check_node(7, 127).expect("fits");
    let err = l.check_node(8, 128).expect_err("does not fit");
    let IdError::Invalid { problems, .. } = err else {
        panic!("not an Invalid error");
    };
    assert_eq!(problems.len(), 2, "both fields reported: {problems:?}");
    // All node bits to the region leaves one worker per region; one more bit is too wide.
    let all_region = LayoutSpec::raindrop()
        .with_region_bits(7)
        .build()
        .expect("7 + 0");
    assert_eq!(all_region.workers_per_region(), 1);
    let err = LayoutSpec::raindrop()
        .with_region_bits(8)
        .build()
        .expect_err("54 bits");
    assert!(err.to_string().contains("53-bit limit"), "{err}");
}

#[test]
fn the_epoch_is_configurable_and_part_of_the_fingerprint() {
    let a = Layout::snowflake();
    let b = LayoutSpec::snowflake()
        .with_epoch_ms(1_600_000_000_000)
        .build()
        .expect("layout");
    assert_eq!(b.epoch_ms(), 1_600_000_000_000);
    assert_ne!(a.fingerprint(), b.fingerprint());
    assert_eq!(a.fingerprint(), Layout::snowflake().fingerprint());
    assert!(matches!(
        b.tick_at(1_500_000_000_000),
        Err(IdError::ClockBeforeEpoch { .. })
    ));
}

#[test]
fn compose_and_decode_round_trip() {
    let seed = seed("compose_and_decode_round_trip");
    let mut rng = fastrand::Rng::with_seed(seed);
    for layout in [Layout::snowflake(), Layout::raindrop()] {
        for _ in 0..10_000 {
            let tick = rng.u64(..=layout.max_tick());
            let region = rng.u32(..layout.regions());
            let worker = rng.u32(..layout.workers_per_region());
            let sequence = rng.u32(..(1u32 << layout.sequence_bits()));
            let id = layout.compose(tick, region, worker, sequence);
            assert!(id < 1 << layout.bits());
            let d = layout.decode(id).expect("decodes");
            assert_eq!(
                (d.id, d.tick, d.region, d.worker, d.sequence),
                (id, tick, region, worker, sequence),
                "{layout}"
            );
            assert_eq!(d.timestamp_ms, layout.epoch_ms() + tick * layout.tick_ms());
            assert_eq!(layout.region_of(id).expect("region"), region);
        }
    }
}

#[test]
fn values_wider_than_the_layout_are_not_ids() {
    let l = Layout::raindrop();
    let err = l.decode(1 << 53).expect_err("bit 53 set");
    assert!(matches!(err, IdError::NotAnId { bits: 53, .. }), "{err}");
    assert!(Layout::snowflake().decode(u64::MAX).is_err());
}
