//! `drc id`: mint and decode distributed ids (crate `drc-id`; guide in docs/ids.md).
//!
//! `drc id next` prints one id per line. With `--redis` or `--mysql`, a time-based worker is
//! leased for the run (and released at the end, so the next run can reuse it at once); segment
//! and central allocation need one of the two. `drc id decode` prints one JSON object per id:
//! `id`, `kind`, `timestamp` (ms since 1970, null for segment ids), `time` (RFC 3339, UTC),
//! `region`, `worker` (null for segment ids) and `sequence` (for segment ids: the region's
//! counter value).

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use drc_id::{
    GeneratorOptions, IdError, Layout, LayoutSpec, LeaseConfig, LeaseStore, LeasedGenerator,
    MysqlStore, Partition, RedisStore, SegmentAllocator, SegmentConfig, SegmentStore,
};
use serde_json::json;

type BoxError = Box<dyn std::error::Error>;

/// `drc id`.
#[derive(Debug, Args)]
pub struct IdArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: IdCommand,
}

/// `drc id` subcommands.
#[derive(Debug, Subcommand)]
pub enum IdCommand {
    /// Mint ids and print one per line.
    Next(NextArgs),
    /// Print the fields of ids as JSON, one object per line.
    Decode(DecodeArgs),
}

/// How ids are minted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// 63 bits: 41 bits of milliseconds, region, worker, 12 bits of sequence.
    Snowflake,
    /// 53 bits (JavaScript-safe): 32 bits of seconds, region, worker, 14 bits of sequence.
    Raindrop,
    /// Per-region counters in Redis or MySQL: region r of R mints ids with id % R == r.
    Segment,
    /// One counter in Redis or MySQL for everybody.
    Central,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Snowflake => "snowflake",
            Kind::Raindrop => "raindrop",
            Kind::Segment => "segment",
            Kind::Central => "central",
        }
    }
}

/// Flags that define the id space; `next` and `decode` must be given the same ones.
#[derive(Debug, Args)]
pub struct SpaceArgs {
    /// How ids are minted.
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// Node bits given to the region, the rest going to the worker (snowflake: 5 of 10,
    /// raindrop: 3 of 7 by default).
    #[arg(long)]
    pub region_bits: Option<u32>,
    /// Epoch of time-based ids, in ms since 1970 (default 1704067200000, 2024-01-01 UTC).
    #[arg(long)]
    pub epoch_ms: Option<u64>,
    /// Number of regions R of segment ids (id % R is the region); never change it for a
    /// namespace in use.
    #[arg(long, default_value_t = 8)]
    pub regions: u32,
}

/// `drc id next`.
#[derive(Debug, Args)]
pub struct NextArgs {
    /// The id space.
    #[command(flatten)]
    pub space: SpaceArgs,
    /// This process's region.
    #[arg(long, default_value_t = 0)]
    pub region: u32,
    /// This process's worker number within the region (snowflake and raindrop).
    #[arg(long)]
    pub worker: Option<u32>,
    /// How many ids to print.
    #[arg(long, default_value_t = 1)]
    pub count: u64,
    /// Redis holding worker leases or counters: redis://[:password@]host:port[/db], or
    /// rediss://... for TLS.
    #[arg(long, conflicts_with = "mysql", value_parser = crate::cli::secret_arg)]
    pub redis: Option<drc_config::Secret>,
    /// With a rediss:// URL: the CA (PEM) to verify the Redis server with (default: the public
    /// web roots).
    #[arg(long, requires = "redis")]
    pub redis_ca: Option<std::path::PathBuf>,
    /// MySQL holding worker leases or counters: mysql://user[:password]@host:port (TLS:
    /// `?drc-tls=verify_ca&drc-tls-ca=/path/ca.pem`, docs/security.md).
    #[arg(long, value_parser = crate::cli::secret_arg)]
    pub mysql: Option<drc_config::Secret>,
    /// Read the password of --redis or --mysql from this environment variable (instead of
    /// writing it in the URL, where `ps` shows it).
    #[arg(long, conflicts_with = "password_file")]
    pub password_env: Option<String>,
    /// Read the password of --redis or --mysql from this file (trailing newline ignored).
    #[arg(long)]
    pub password_file: Option<std::path::PathBuf>,
    /// Database for the lease and counter tables on --mysql (created if missing).
    #[arg(long, default_value = "drc_meta")]
    pub meta_db: String,
    /// Lease or counter namespace: one per id space. Default: the kind's name.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Counter values per segment (segment and central).
    #[arg(long, default_value_t = 1000)]
    pub step: u64,
}

/// `drc id decode`.
#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// The id space.
    #[command(flatten)]
    pub space: SpaceArgs,
    /// The ids.
    #[arg(required = true)]
    pub ids: Vec<u64>,
}

/// Runs `drc id`.
pub async fn run(args: IdArgs) -> Result<ExitCode, BoxError> {
    match args.command {
        IdCommand::Next(a) => next(a).await,
        IdCommand::Decode(a) => decode(&a),
    }
}

fn layout(space: &SpaceArgs) -> Result<Option<Layout>, IdError> {
    let mut spec = match space.kind {
        Kind::Snowflake => LayoutSpec::snowflake(),
        Kind::Raindrop => LayoutSpec::raindrop(),
        Kind::Segment | Kind::Central => return Ok(None),
    };
    if let Some(bits) = space.region_bits {
        spec = spec.with_region_bits(bits);
    }
    if let Some(epoch) = space.epoch_ms {
        spec = spec.with_epoch_ms(epoch);
    }
    spec.build().map(Some)
}

fn partition(space: &SpaceArgs, region: u32) -> Result<Partition, IdError> {
    match space.kind {
        Kind::Central => Ok(Partition::central()),
        _ => Partition::new(space.regions, region),
    }
}

/// Puts `password` into a `redis://[user]@host` URL (percent-encoded).
fn redis_url_with_password(url: &str, password: &str) -> Result<String, BoxError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("--redis must be a redis:// or rediss:// URL")?;
    let encoded = drc_mysql::percent_encode(password);
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) if rest[..at].contains(':') => {
            Err("the --redis URL already has a password: drop it or drop --password-env/--password-file".into())
        }
        Some(at) => Ok(format!("{scheme}://{}:{encoded}@{}", &rest[..at], &rest[at + 1..])),
        None => Ok(format!("{scheme}://:{encoded}@{rest}")),
    }
}

/// The store URLs with the password from `--password-env` / `--password-file` put in.
fn store_urls(a: &NextArgs) -> Result<(Option<String>, Option<String>), BoxError> {
    let password = match (&a.password_env, &a.password_file) {
        (Some(var), _) => {
            Some(std::env::var(var).map_err(|_| format!("--password-env: {var} is not set"))?)
        }
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("--password-file {}: {e}", path.display()))?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
        ),
        (None, None) => None,
    };
    let redis = match (&a.redis, &password) {
        (Some(u), Some(p)) => Some(redis_url_with_password(u.expose(), p)?),
        (Some(u), None) => Some(u.expose().to_string()),
        (None, _) => None,
    };
    let mysql = match (&a.mysql, &password) {
        (Some(u), Some(p)) => Some(drc_mysql::url_with_password(u.expose(), p).map_err(|e| match e {
            drc_mysql::PasswordSlot::AlreadySet => "the --mysql URL already has a password: drop it or drop --password-env/--password-file",
            drc_mysql::PasswordSlot::NoUser => "--mysql needs a user to go with the password: mysql://user@host:port",
        })?),
        (Some(u), None) => Some(u.expose().to_string()),
        (None, _) => None,
    };
    if password.is_some() && redis.is_none() && mysql.is_none() {
        return Err("--password-env/--password-file need --redis or --mysql".into());
    }
    Ok((redis, mysql))
}

async fn redis_store(url: &str, a: &NextArgs) -> Result<RedisStore, BoxError> {
    let ca = match &a.redis_ca {
        Some(p) => Some(std::fs::read(p).map_err(|e| format!("--redis-ca {}: {e}", p.display()))?),
        None => None,
    };
    Ok(RedisStore::connect_tls(url, ca).await?)
}

async fn next(a: NextArgs) -> Result<ExitCode, BoxError> {
    let (redis_url, mysql_url) = store_urls(&a)?;
    let namespace = a
        .namespace
        .clone()
        .unwrap_or_else(|| a.space.kind.name().to_string());
    let mut out = Output::new();
    if let Some(layout) = layout(&a.space)? {
        let worker = a
            .worker
            .ok_or("--worker is required for --kind snowflake and raindrop")?;
        let lease = LeaseConfig::new(namespace, a.region, worker);
        if let Some(url) = &redis_url {
            let store = redis_store(url, &a).await?;
            mint_leased(store, layout, lease, a.count, &mut out).await?;
        } else if let Some(url) = &mysql_url {
            let store = MysqlStore::connect(url, &a.meta_db).await?;
            mint_leased(store.clone(), layout, lease, a.count, &mut out).await?;
            store.disconnect().await;
        } else {
            tracing::warn!(
                "no --redis or --mysql: worker {worker} is not leased; make sure no other \
                 process uses it"
            );
            let g = drc_id::Generator::new(layout, a.region, worker, GeneratorOptions::default())?;
            for _ in 0..a.count {
                if !out.id(g.next_wait().await?)? {
                    break;
                }
            }
        }
    } else {
        let mut config = SegmentConfig::new(namespace, partition(&a.space, a.region)?);
        config.step = a.step;
        if let Some(url) = &redis_url {
            let store = redis_store(url, &a).await?;
            mint_segments(store, config, a.count, &mut out).await?;
        } else if let Some(url) = &mysql_url {
            let store = MysqlStore::connect(url, &a.meta_db).await?;
            mint_segments(store.clone(), config, a.count, &mut out).await?;
            store.disconnect().await;
        } else {
            return Err(format!(
                "--kind {} needs --redis URL or --mysql URL (where the counters live)",
                a.space.kind.name()
            )
            .into());
        }
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}

async fn mint_leased<S: LeaseStore>(
    store: S,
    layout: Layout,
    lease: LeaseConfig,
    count: u64,
    out: &mut Output,
) -> Result<(), BoxError> {
    let g = LeasedGenerator::acquire(store, layout, lease, GeneratorOptions::default()).await?;
    let mut result = Ok(());
    for _ in 0..count {
        match g.next_wait().await {
            Ok(id) => match out.id(id) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    result = Err(e.into());
                    break;
                }
            },
            Err(e) => {
                result = Err(e.into());
                break;
            }
        }
    }
    // Released even after an error, so the worker is free for the next run at once.
    g.release().await?;
    result
}

async fn mint_segments<S: SegmentStore>(
    store: S,
    config: SegmentConfig,
    count: u64,
    out: &mut Output,
) -> Result<(), BoxError> {
    let alloc = SegmentAllocator::new(store, config)?;
    let mut left = count;
    while left > 0 {
        let n = left.min(10_000);
        for id in alloc.next_batch(n as usize).await? {
            if !out.id(id)? {
                return Ok(());
            }
        }
        left -= n;
    }
    Ok(())
}

fn decode(a: &DecodeArgs) -> Result<ExitCode, BoxError> {
    let layout = layout(&a.space)?;
    let mut out = Output::new();
    for &id in &a.ids {
        let line = match &layout {
            Some(l) => {
                let d = l.decode(id)?;
                json!({
                    "id": id,
                    "kind": a.space.kind.name(),
                    "timestamp": d.timestamp_ms,
                    "time": rfc3339_utc(d.timestamp_ms),
                    "region": d.region,
                    "worker": d.worker,
                    "sequence": d.sequence,
                })
            }
            None => {
                let p = partition(&a.space, 0)?;
                json!({
                    "id": id,
                    "kind": a.space.kind.name(),
                    "timestamp": null,
                    "time": null,
                    "region": p.region_of(id),
                    "worker": null,
                    "sequence": id / u64::from(p.regions()),
                })
            }
        };
        if !out.line(line)? {
            break;
        }
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}

/// Buffered stdout that treats a closed pipe (`drc id next | head`) as the end, not an error.
struct Output {
    out: std::io::BufWriter<std::io::StdoutLock<'static>>,
}

impl Output {
    fn new() -> Output {
        Output {
            out: std::io::BufWriter::new(std::io::stdout().lock()),
        }
    }

    /// Prints an id; false once the reader has gone.
    fn id(&mut self, id: u64) -> std::io::Result<bool> {
        self.line(id)
    }

    /// Prints a line; false once the reader has gone.
    fn line(&mut self, s: impl std::fmt::Display) -> std::io::Result<bool> {
        match writeln!(self.out, "{s}") {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn finish(mut self) -> std::io::Result<()> {
        match self.out.flush() {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e),
            _ => Ok(()),
        }
    }
}

/// `ms` since 1970 as `YYYY-MM-DDTHH:MM:SS.mmmZ` (proleptic Gregorian, UTC).
fn rfc3339_utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::rfc3339_utc;

    #[test]
    fn timestamps_format_as_rfc3339() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_utc(1_704_067_200_000), "2024-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_utc(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_utc(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }
}

#[cfg(test)]
mod password_tests {
    #[test]
    fn redis_passwords_go_into_the_url() {
        let f = super::redis_url_with_password;
        assert_eq!(
            f("redis://h:6379/0", "p w").expect("ok"),
            "redis://:p%20w@h:6379/0"
        );
        assert_eq!(
            f("rediss://u@h:6379", "x").expect("ok"),
            "rediss://u:x@h:6379"
        );
        assert!(f("redis://:a@h", "x").is_err());
        assert!(f("h:6379", "x").is_err());
    }
}
