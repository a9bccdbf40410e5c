//! Distributed ids: primary keys minted in different centers never collide.
//!
//! Four ways to mint, by what the keys must be:
//!
//! - **Time-based** ([`Generator`], lock-free, one CAS per id): a [`Layout`] packs a timestamp,
//!   the region, the worker and a sequence into one integer. Presets: SnowFlake (63 bits,
//!   4,096,000 ids/s per worker) and RainDrop (53 bits, JavaScript-safe, 16,384 ids/s per
//!   worker). The region and worker are embedded, so ids of different nodes never collide; a
//!   worker number is leased ([`LeasedGenerator`]) so two live processes never share one, not
//!   after a pause, not after a restart. Clock steps back are absorbed by borrowing future ticks
//!   up to a bound.
//! - **Partition-independent segments** ([`SegmentAllocator`] with [`Partition::new`]): each
//!   region owns a residue class `id % R == r` and leases segments of its own counter from its
//!   own Redis or MySQL, with double-buffered prefetch. Small, dense ids.
//! - **Centralized** ([`SegmentAllocator`] with [`Partition::central`]): one counter for
//!   everybody, monotonic per process.
//!
//! Stores: [`RedisStore`] and [`MysqlStore`] implement both [`LeaseStore`] and
//! [`SegmentStore`]. Errors: [`IdError`], classified transient or permanent. Clocks are
//! injectable ([`Clock`], [`ManualClock`]). Which one to choose: `docs/ids.md`.

mod clock;
mod error;
mod generator;
mod layout;
mod lease;
mod mysql_store;
mod redis_store;
mod segment;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::IdError;
pub use generator::{Generator, GeneratorOptions, IdBatch};
pub use layout::{Decoded, Layout, LayoutSpec, DEFAULT_EPOCH_MS, JAVASCRIPT_SAFE_BITS, MAX_BITS};
pub use lease::{AcquireOutcome, LeaseConfig, LeaseKey, LeaseStore, LeasedGenerator};
pub use mysql_store::MysqlStore;
pub use redis_store::RedisStore;
pub use segment::{
    region_of, Partition, SegmentAllocator, SegmentConfig, SegmentStats, SegmentStore,
};
