//! Leases and segment counters in Redis.
//!
//! Keys (one namespace per id space; tests use a fresh namespace each):
//!
//! | key | type | fields |
//! |---|---|---|
//! | `drc:id:lease:{namespace}:{region}:{worker}` | hash | `owner` (token, empty when released), `until` (`reserved_until`, ticks), `layout` (fingerprint) |
//! | `drc:id:seg:{namespace}:{region}` | hash | `regions` (R), `max` (counter) |
//!
//! Every lease operation is one Lua script (atomic in Redis); a segment reservation is one
//! `MULTI` of `HSETNX regions` + `HGET regions` + `HINCRBY max step`. Integer values are exact:
//! ticks stay far below 2^53 (Lua's numbers), and the counter is only touched by `HINCRBY`.
//! Keys never expire: a lease record is the memory of the last timestamp a worker may have used,
//! so Redis must keep its data across restarts (AOF), or leases must live in MySQL.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::error::IdError;
use crate::lease::{AcquireOutcome, LeaseKey, LeaseStore};
use crate::segment::{Partition, SegmentStore};

/// Bound on connecting and on each command.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Returns `{code, previous_until, reserved_until, text}`: code 0 granted (text empty), 1 held
/// (text = owner, previous_until = its reserved_until), 2 other layout (text = stored layout).
/// ARGV: token, now, len, layout.
const ACQUIRE: &str = r"
local h = redis.call('HMGET', KEYS[1], 'owner', 'until', 'layout')
if h[3] and h[3] ~= ARGV[4] then return {2, 0, 0, h[3]} end
local now = tonumber(ARGV[2])
local prev = -1
if h[2] then prev = tonumber(h[2]) end
if h[1] and h[1] ~= '' and h[1] ~= ARGV[1] and prev >= now then
  return {1, prev, 0, h[1]}
end
local base = now
if prev > base then base = prev end
local new_until = base + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'until', string.format('%d', new_until),
  'layout', ARGV[4])
return {0, prev, new_until, ''}
";

/// Returns the new reserved_until, or -1 when `token` (ARGV[1]) no longer holds the lease.
/// ARGV: token, now, len.
const RENEW: &str = r"
local h = redis.call('HMGET', KEYS[1], 'owner', 'until')
if h[1] ~= ARGV[1] then return -1 end
local u = tonumber(h[2])
local n = tonumber(ARGV[2]) + tonumber(ARGV[3])
if n > u then
  redis.call('HSET', KEYS[1], 'until', string.format('%d', n))
end
return n
";

/// Returns 1 if released, 0 if `token` did not hold the lease. ARGV: token, last_tick.
const RELEASE: &str = r"
local h = redis.call('HMGET', KEYS[1], 'owner', 'until')
if h[1] ~= ARGV[1] then return 0 end
local u = tonumber(h[2])
local l = tonumber(ARGV[2])
if l < u then u = l end
redis.call('HSET', KEYS[1], 'owner', '', 'until', string.format('%d', u))
return 1
";

/// A Redis server holding leases and segment counters. Clones share one connection, which
/// reconnects by itself.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    url: Arc<str>,
    acquire: Arc<redis::Script>,
    renew: Arc<redis::Script>,
    release: Arc<redis::Script>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to `url` (`redis://[:password@]host:port[/db]`, or `rediss://` for TLS,
    /// verified against the public web roots).
    pub async fn connect(url: &str) -> Result<RedisStore, IdError> {
        RedisStore::connect_tls(url, None).await
    }

    /// [`RedisStore::connect`]; with `rediss://`, the server's certificate is verified against
    /// `root_cert` (PEM) when given.
    pub async fn connect_tls(url: &str, root_cert: Option<Vec<u8>>) -> Result<RedisStore, IdError> {
        let shown: Arc<str> = drc_mysql::redact_url(url).into();
        let err = |what, source| IdError::Redis {
            what,
            url: shown.to_string(),
            source,
        };
        let client = match root_cert {
            None => redis::Client::open(url),
            Some(pem) => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            ),
        }
        .map_err(|e| err("parse the URL", e))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| err("connect", e))?;
        Ok(RedisStore {
            conn,
            url: shown,
            acquire: Arc::new(redis::Script::new(ACQUIRE)),
            renew: Arc::new(redis::Script::new(RENEW)),
            release: Arc::new(redis::Script::new(RELEASE)),
        })
    }

    /// The key of a worker lease.
    pub fn lease_key(key: &LeaseKey) -> String {
        format!(
            "drc:id:lease:{}:{}:{}",
            key.namespace, key.region, key.worker
        )
    }

    /// The key of a region's segment counter.
    pub fn segment_key(namespace: &str, region: u32) -> String {
        format!("drc:id:seg:{namespace}:{region}")
    }

    fn error(&self, what: &'static str, source: redis::RedisError) -> IdError {
        IdError::Redis {
            what,
            url: self.url.to_string(),
            source,
        }
    }
}

fn to_i64(v: u64, what: &'static str) -> Result<i64, IdError> {
    i64::try_from(v).map_err(|_| IdError::Unexpected {
        what,
        detail: format!("{v} does not fit a signed 64-bit integer"),
    })
}

fn to_u64(v: i64, what: &'static str) -> Result<u64, IdError> {
    u64::try_from(v).map_err(|_| IdError::Unexpected {
        what,
        detail: format!("negative value {v}"),
    })
}

impl LeaseStore for RedisStore {
    async fn acquire(
        &self,
        key: &LeaseKey,
        token: &str,
        layout: &str,
        now: u64,
        len: u64,
    ) -> Result<AcquireOutcome, IdError> {
        let k = RedisStore::lease_key(key);
        let (code, prev, until, text): (i64, i64, i64, String) = self
            .acquire
            .key(&k)
            .arg(token)
            .arg(now)
            .arg(len)
            .arg(layout)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.error("acquire a worker lease", e))?;
        match code {
            0 => Ok(AcquireOutcome::Granted {
                previous_until: u64::try_from(prev).ok(),
                reserved_until: to_u64(until, "acquire a worker lease")?,
            }),
            1 => Ok(AcquireOutcome::Held {
                owner: text,
                reserved_until: to_u64(prev, "acquire a worker lease")?,
            }),
            2 => Err(IdError::Mismatch {
                what: "lease",
                key: k,
                stored: text,
                wanted: layout.to_string(),
            }),
            c => Err(IdError::Unexpected {
                what: "acquire a worker lease",
                detail: format!("script returned code {c}"),
            }),
        }
    }

    async fn renew(
        &self,
        key: &LeaseKey,
        token: &str,
        now: u64,
        len: u64,
    ) -> Result<Option<u64>, IdError> {
        let until: i64 = self
            .renew
            .key(RedisStore::lease_key(key))
            .arg(token)
            .arg(now)
            .arg(len)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.error("renew a worker lease", e))?;
        Ok(u64::try_from(until).ok())
    }

    async fn release(&self, key: &LeaseKey, token: &str, last_tick: u64) -> Result<(), IdError> {
        let _: i64 = self
            .release
            .key(RedisStore::lease_key(key))
            .arg(token)
            .arg(last_tick)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.error("release a worker lease", e))?;
        Ok(())
    }
}

impl SegmentStore for RedisStore {
    async fn reserve(
        &self,
        namespace: &str,
        partition: Partition,
        step: u64,
    ) -> Result<u64, IdError> {
        let what = "reserve a segment";
        let k = RedisStore::segment_key(namespace, partition.region());
        let (_, regions, last): (bool, String, i64) = redis::pipe()
            .atomic()
            .hset_nx(&k, "regions", partition.regions())
            .hget(&k, "regions")
            .hincr(&k, "max", to_i64(step, what)?)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.error(what, e))?;
        if regions != partition.regions().to_string() {
            return Err(IdError::Mismatch {
                what: "segment counter",
                key: k,
                stored: format!("{regions} regions"),
                wanted: format!("{} regions", partition.regions()),
            });
        }
        to_u64(last, what)
    }
}
