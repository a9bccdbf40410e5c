//! Id layouts: how a 64-bit id is cut into timestamp, region, worker and sequence.
//!
//! From the most significant bit down, an id is
//!
//! ```text
//! [ unused | timestamp (ticks since epoch) | region | worker | sequence ]
//! ```
//!
//! A [`Layout`] is only built through [`LayoutSpec::build`], which refuses layouts wider than
//! 63 bits (so an id is a non-negative `BIGINT`) or, for JavaScript-safe layouts, wider than 53
//! bits (so a JavaScript number holds it exactly). A built layout reports its lifetime and its
//! maximum rate, composes ids and decodes them.
//!
//! | preset | unused | timestamp | region | worker | sequence | tick |
//! |---|---|---|---|---|---|---|
//! | [`LayoutSpec::snowflake`] | 1 | 41 | 5 | 5 | 12 | 1 ms |
//! | [`LayoutSpec::raindrop`] | 11 | 32 | 3 | 4 | 14 | 1 s |
//!
//! Both presets count from [`DEFAULT_EPOCH_MS`] (2024-01-01T00:00:00Z); the epoch, the tick and
//! the split of the node bits into region and worker are configurable. Ids are only comparable
//! within one layout: changing any field of a layout in use can mint duplicates, which is why
//! worker leases record the layout ([`Layout::fingerprint`]) and refuse a different one.

use std::fmt;
use std::time::Duration;

use crate::error::IdError;

/// The default epoch of both presets: 2024-01-01T00:00:00Z, in ms since 1970.
pub const DEFAULT_EPOCH_MS: u64 = 1_704_067_200_000;

/// The widest id of an ordinary layout: 63 bits, so the sign bit of a `BIGINT` stays 0.
pub const MAX_BITS: u32 = 63;

/// The widest id of a JavaScript-safe layout: 53 bits (`Number.MAX_SAFE_INTEGER` is 2^53 - 1).
pub const JAVASCRIPT_SAFE_BITS: u32 = 53;

/// The fields of a layout, before validation. Start from a preset and change what you need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutSpec {
    /// Name shown in fingerprints and messages ("snowflake", "raindrop", ...).
    pub name: String,
    /// Width of the timestamp field, in bits.
    pub timestamp_bits: u32,
    /// Width of the region field, in bits (may be 0).
    pub region_bits: u32,
    /// Width of the worker field, in bits (may be 0).
    pub worker_bits: u32,
    /// Width of the sequence field, in bits.
    pub sequence_bits: u32,
    /// Length of one timestamp tick; a whole number of milliseconds.
    pub tick: Duration,
    /// Tick 0 starts here, in ms since 1970.
    pub epoch_ms: u64,
    /// Refuse layouts over 53 bits instead of 63.
    pub javascript_safe: bool,
}

impl LayoutSpec {
    /// SnowFlake: 1 unused, 41 bits of milliseconds, 10 node bits split 5 region + 5 worker,
    /// 12 sequence bits. 69.7 years from the epoch; 4,096,000 ids/s per worker.
    pub fn snowflake() -> LayoutSpec {
        LayoutSpec {
            name: "snowflake".to_string(),
            timestamp_bits: 41,
            region_bits: 5,
            worker_bits: 5,
            sequence_bits: 12,
            tick: Duration::from_millis(1),
            epoch_ms: DEFAULT_EPOCH_MS,
            javascript_safe: false,
        }
    }

    /// RainDrop: 11 unused, 32 bits of seconds, 7 node bits split 3 region + 4 worker, 14
    /// sequence bits: 53 bits, JavaScript-safe. 136 years from the epoch; 16,384 ids/s per
    /// worker.
    pub fn raindrop() -> LayoutSpec {
        LayoutSpec {
            name: "raindrop".to_string(),
            timestamp_bits: 32,
            region_bits: 3,
            worker_bits: 4,
            sequence_bits: 14,
            tick: Duration::from_secs(1),
            epoch_ms: DEFAULT_EPOCH_MS,
            javascript_safe: true,
        }
    }

    /// Splits the node bits (region + worker) differently: `region_bits` for the region, the
    /// rest for the worker. [`LayoutSpec::build`] refuses a split wider than the node bits.
    pub fn with_region_bits(mut self, region_bits: u32) -> LayoutSpec {
        let node = self.region_bits + self.worker_bits;
        self.worker_bits = node.saturating_sub(region_bits);
        self.region_bits = region_bits;
        self
    }

    /// Uses another epoch (ms since 1970).
    pub fn with_epoch_ms(mut self, epoch_ms: u64) -> LayoutSpec {
        self.epoch_ms = epoch_ms;
        self
    }

    /// Validates the spec; every problem is reported at once.
    pub fn build(self) -> Result<Layout, IdError> {
        let mut problems = Vec::new();
        let limit = if self.javascript_safe {
            JAVASCRIPT_SAFE_BITS
        } else {
            MAX_BITS
        };
        let fields = [
            self.timestamp_bits,
            self.region_bits,
            self.worker_bits,
            self.sequence_bits,
        ];
        let total: u64 = fields.iter().map(|&b| u64::from(b)).sum();
        if total > u64::from(limit) {
            problems.push(format!(
                "{total} bits ({} timestamp + {} region + {} worker + {} sequence) is over the \
                 {limit}-bit limit{}",
                self.timestamp_bits,
                self.region_bits,
                self.worker_bits,
                self.sequence_bits,
                if self.javascript_safe {
                    " of JavaScript-safe ids"
                } else {
                    " (bit 63 is the sign of a BIGINT)"
                }
            ));
        }
        if self.timestamp_bits == 0 {
            problems.push("the timestamp needs at least 1 bit".to_string());
        }
        if self.sequence_bits == 0 || self.sequence_bits > 32 {
            problems.push(format!(
                "the sequence needs 1 to 32 bits, not {}",
                self.sequence_bits
            ));
        }
        if self.region_bits > 16 || self.worker_bits > 16 {
            problems.push(format!(
                "region and worker have at most 16 bits each (got {} and {})",
                self.region_bits, self.worker_bits
            ));
        }
        let tick_ms = self.tick.as_millis();
        if tick_ms == 0 || self.tick.subsec_nanos() % 1_000_000 != 0 {
            problems.push(format!(
                "the tick must be a whole number of milliseconds, not {:?}",
                self.tick
            ));
        }
        if !problems.is_empty() {
            return Err(IdError::invalid("layout", problems));
        }
        Ok(self.assemble())
    }

    /// The layout of a spec known to be valid.
    fn assemble(self) -> Layout {
        Layout {
            name: self.name,
            timestamp_bits: self.timestamp_bits,
            region_bits: self.region_bits,
            worker_bits: self.worker_bits,
            sequence_bits: self.sequence_bits,
            tick_ms: u64::try_from(self.tick.as_millis()).unwrap_or(u64::MAX),
            epoch_ms: self.epoch_ms,
        }
    }
}

/// A validated layout. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    name: String,
    timestamp_bits: u32,
    region_bits: u32,
    worker_bits: u32,
    sequence_bits: u32,
    tick_ms: u64,
    epoch_ms: u64,
}

/// The fields of an id, as [`Layout::decode`] reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// The id.
    pub id: u64,
    /// Ticks since the layout's epoch.
    pub tick: u64,
    /// Start of that tick, in ms since 1970.
    pub timestamp_ms: u64,
    /// Region number.
    pub region: u32,
    /// Worker number within the region.
    pub worker: u32,
    /// Sequence number within the tick.
    pub sequence: u32,
}

impl Layout {
    /// The SnowFlake preset ([`LayoutSpec::snowflake`]).
    pub fn snowflake() -> Layout {
        LayoutSpec::snowflake().assemble()
    }

    /// The RainDrop preset ([`LayoutSpec::raindrop`]).
    pub fn raindrop() -> Layout {
        LayoutSpec::raindrop().assemble()
    }

    /// The layout's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bits used by ids of this layout (the rest, at the top, are 0).
    pub fn bits(&self) -> u32 {
        self.timestamp_bits + self.region_bits + self.worker_bits + self.sequence_bits
    }

    /// Width of the timestamp field.
    pub fn timestamp_bits(&self) -> u32 {
        self.timestamp_bits
    }

    /// Width of the region field.
    pub fn region_bits(&self) -> u32 {
        self.region_bits
    }

    /// Width of the worker field.
    pub fn worker_bits(&self) -> u32 {
        self.worker_bits
    }

    /// Width of the sequence field.
    pub fn sequence_bits(&self) -> u32 {
        self.sequence_bits
    }

    /// True if every id is below 2^53.
    pub fn is_javascript_safe(&self) -> bool {
        self.bits() <= JAVASCRIPT_SAFE_BITS
    }

    /// Length of one tick in milliseconds.
    pub fn tick_ms(&self) -> u64 {
        self.tick_ms
    }

    /// Tick 0 starts here, in ms since 1970.
    pub fn epoch_ms(&self) -> u64 {
        self.epoch_ms
    }

    /// Number of regions the layout can name (2^region_bits).
    pub fn regions(&self) -> u32 {
        1 << self.region_bits
    }

    /// Number of workers per region (2^worker_bits).
    pub fn workers_per_region(&self) -> u32 {
        1 << self.worker_bits
    }

    /// The largest tick the timestamp field holds.
    pub fn max_tick(&self) -> u64 {
        (1u64 << self.timestamp_bits) - 1
    }

    /// How long the layout lasts from its epoch.
    pub fn lifetime(&self) -> Duration {
        Duration::from_millis((self.max_tick() + 1).saturating_mul(self.tick_ms))
    }

    /// When the layout runs out, in ms since 1970: no id can be minted from then on.
    pub fn end_ms(&self) -> u64 {
        self.epoch_ms
            .saturating_add((self.max_tick() + 1).saturating_mul(self.tick_ms))
    }

    /// Ids per tick per worker (2^sequence_bits).
    pub fn ids_per_tick(&self) -> u64 {
        1 << self.sequence_bits
    }

    /// The most ids one worker can mint per second, sustained.
    pub fn max_rate_per_worker(&self) -> f64 {
        self.ids_per_tick() as f64 * 1000.0 / self.tick_ms as f64
    }

    /// The most ids the whole layout (every region and worker) can mint per second.
    pub fn max_rate_total(&self) -> f64 {
        self.max_rate_per_worker()
            * f64::from(self.regions())
            * f64::from(self.workers_per_region())
    }

    /// A string naming every field of the layout; two layouts mint compatible ids exactly when
    /// their fingerprints are equal. Worker leases store it.
    pub fn fingerprint(&self) -> String {
        format!(
            "{}:{}/{}/{}/{}:tick={}ms:epoch={}",
            self.name,
            self.timestamp_bits,
            self.region_bits,
            self.worker_bits,
            self.sequence_bits,
            self.tick_ms,
            self.epoch_ms
        )
    }

    /// The tick that contains `unix_ms`.
    pub fn tick_at(&self, unix_ms: u64) -> Result<u64, IdError> {
        if unix_ms < self.epoch_ms {
            return Err(IdError::ClockBeforeEpoch {
                now_ms: unix_ms,
                epoch_ms: self.epoch_ms,
            });
        }
        Ok((unix_ms - self.epoch_ms) / self.tick_ms)
    }

    /// Start of `tick`, in ms since 1970.
    pub fn ms_of_tick(&self, tick: u64) -> u64 {
        self.epoch_ms
            .saturating_add(tick.saturating_mul(self.tick_ms))
    }

    /// Checks that `region` and `worker` fit the layout.
    pub fn check_node(&self, region: u32, worker: u32) -> Result<(), IdError> {
        let mut problems = Vec::new();
        if region >= self.regions() {
            problems.push(format!(
                "region {region} does not fit {} region bits (0..={})",
                self.region_bits,
                self.regions() - 1
            ));
        }
        if worker >= self.workers_per_region() {
            problems.push(format!(
                "worker {worker} does not fit {} worker bits (0..={})",
                self.worker_bits,
                self.workers_per_region() - 1
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(IdError::invalid("node", problems))
        }
    }

    /// Builds an id. Fields wider than the layout are masked; callers validate first
    /// ([`Layout::check_node`]).
    pub fn compose(&self, tick: u64, region: u32, worker: u32, sequence: u32) -> u64 {
        let seq_mask = self.ids_per_tick() - 1;
        (tick & self.max_tick()) << (self.node_bits() + self.sequence_bits)
            | (u64::from(region) & (u64::from(self.regions()) - 1))
                << (self.worker_bits + self.sequence_bits)
            | (u64::from(worker) & (u64::from(self.workers_per_region()) - 1)) << self.sequence_bits
            | (u64::from(sequence) & seq_mask)
    }

    /// Reads the fields of `id`; refuses values with bits above the layout's width.
    pub fn decode(&self, id: u64) -> Result<Decoded, IdError> {
        if id >> self.bits() != 0 {
            return Err(IdError::NotAnId {
                id,
                bits: self.bits(),
            });
        }
        let sequence = id & (self.ids_per_tick() - 1);
        let worker = (id >> self.sequence_bits) & (u64::from(self.workers_per_region()) - 1);
        let region =
            (id >> (self.sequence_bits + self.worker_bits)) & (u64::from(self.regions()) - 1);
        let tick = id >> (self.sequence_bits + self.node_bits());
        Ok(Decoded {
            id,
            tick,
            timestamp_ms: self.ms_of_tick(tick),
            region: region as u32,
            worker: worker as u32,
            sequence: sequence as u32,
        })
    }

    /// The region that minted `id` (its region field).
    pub fn region_of(&self, id: u64) -> Result<u32, IdError> {
        self.decode(id).map(|d| d.region)
    }

    pub(crate) fn node_bits(&self) -> u32 {
        self.region_bits + self.worker_bits
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.fingerprint())
    }
}
