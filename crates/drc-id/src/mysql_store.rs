//! Leases and segment counters in MySQL/MariaDB (InnoDB), in a metadata database (`drc_meta`
//! by default) that [`MysqlStore::connect`] creates if needed:
//!
//! ```sql
//! CREATE TABLE id_lease (
//!   namespace      VARCHAR(64)  NOT NULL,
//!   region         INT UNSIGNED NOT NULL,
//!   worker         INT UNSIGNED NOT NULL,
//!   layout         VARCHAR(160) NOT NULL,          -- Layout::fingerprint
//!   owner          VARCHAR(64)  NOT NULL DEFAULT '', -- holder's token; '' = released
//!   reserved_until BIGINT       NOT NULL DEFAULT -1, -- last tick the holder may mint
//!   previous_until BIGINT       NOT NULL DEFAULT -1, -- reserved_until before the last acquire
//!   updated_at     TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
//!                  ON UPDATE CURRENT_TIMESTAMP(6),
//!   PRIMARY KEY (namespace, region, worker)
//! ) ENGINE=InnoDB;
//!
//! CREATE TABLE id_segment (
//!   namespace  VARCHAR(64)     NOT NULL,
//!   region     INT UNSIGNED    NOT NULL,
//!   regions    INT UNSIGNED    NOT NULL,             -- R of the residue classes
//!   max_id     BIGINT UNSIGNED NOT NULL DEFAULT 0,   -- the region's counter
//!   updated_at TIMESTAMP(6)    NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
//!              ON UPDATE CURRENT_TIMESTAMP(6),
//!   PRIMARY KEY (namespace, region)
//! ) ENGINE=InnoDB;
//! ```
//!
//! Statements: acquiring a lease is one conditional `UPDATE` (free, released or expired) plus a
//! read-back of the row in the same transaction; renewing and releasing are one conditional
//! `UPDATE ... WHERE owner = token` each (the pool sets `CLIENT_FOUND_ROWS`, so the affected row
//! count says whether the token matched). A segment is one autocommit
//! `UPDATE id_segment SET max_id = LAST_INSERT_ID(max_id + step)`, whose new value comes back in
//! the OK packet. This metadata is local to its center and must not be replicated.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Pool, TxOpts};

use crate::error::IdError;
use crate::lease::{AcquireOutcome, LeaseKey, LeaseStore};
use crate::segment::{Partition, SegmentStore};

/// Bound on getting a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A MySQL/MariaDB server holding leases and segment counters. Clones share one pool.
#[derive(Clone)]
pub struct MysqlStore {
    pool: Pool,
    url: String,
    lease_table: String,
    segment_table: String,
}

impl std::fmt::Debug for MysqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlStore")
            .field("url", &self.url)
            .field("lease_table", &self.lease_table)
            .finish_non_exhaustive()
    }
}

impl MysqlStore {
    /// Connects to `url` (`mysql://user[:password]@host:port`) and creates `database` and the
    /// two tables if they do not exist. The user needs CREATE (once), SELECT, INSERT and UPDATE.
    pub async fn connect(url: &str, database: &str) -> Result<MysqlStore, IdError> {
        let shown = drc_mysql::redact_url(url);
        if database.is_empty()
            || database.len() > 64
            || !database
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
        {
            return Err(IdError::invalid(
                "metadata database name",
                vec![format!(
                    "{database:?}: use 1 to 64 letters, digits, '_' or '$'"
                )],
            ));
        }
        let opts = drc_mysql::pool_opts(url)
            .map_err(|e| IdError::invalid("MySQL URL", vec![format!("{shown}: {e}")]))?;
        let pool = Pool::new(opts.client_found_rows(true));
        let store = MysqlStore {
            pool,
            url: shown,
            lease_table: format!("`{database}`.`id_lease`"),
            segment_table: format!("`{database}`.`id_segment`"),
        };
        let mut conn = store.conn().await?;
        let ddl = [
            format!("CREATE DATABASE IF NOT EXISTS `{database}`"),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (
                   namespace VARCHAR(64) NOT NULL,
                   region INT UNSIGNED NOT NULL,
                   worker INT UNSIGNED NOT NULL,
                   layout VARCHAR(160) NOT NULL,
                   owner VARCHAR(64) NOT NULL DEFAULT '',
                   reserved_until BIGINT NOT NULL DEFAULT -1,
                   previous_until BIGINT NOT NULL DEFAULT -1,
                   updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
                     ON UPDATE CURRENT_TIMESTAMP(6),
                   PRIMARY KEY (namespace, region, worker)
                 ) ENGINE=InnoDB",
                store.lease_table
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (
                   namespace VARCHAR(64) NOT NULL,
                   region INT UNSIGNED NOT NULL,
                   regions INT UNSIGNED NOT NULL,
                   max_id BIGINT UNSIGNED NOT NULL DEFAULT 0,
                   updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
                     ON UPDATE CURRENT_TIMESTAMP(6),
                   PRIMARY KEY (namespace, region)
                 ) ENGINE=InnoDB",
                store.segment_table
            ),
        ];
        for stmt in ddl {
            conn.query_drop(stmt)
                .await
                .map_err(|e| store.error("create the metadata tables", e))?;
        }
        Ok(store)
    }

    /// Closes the pool's connections.
    pub async fn disconnect(self) {
        let _ = self.pool.disconnect().await;
    }

    async fn conn(&self) -> Result<Conn, IdError> {
        match tokio::time::timeout(CONNECT_TIMEOUT, self.pool.get_conn()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(self.error("connect", e)),
            Err(_) => Err(IdError::Timeout {
                what: "connect to MySQL",
                after: CONNECT_TIMEOUT,
            }),
        }
    }

    fn error(&self, what: &'static str, source: mysql_async::Error) -> IdError {
        IdError::Mysql {
            what,
            url: self.url.clone(),
            source,
        }
    }
}

fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl LeaseStore for MysqlStore {
    async fn acquire(
        &self,
        key: &LeaseKey,
        token: &str,
        layout: &str,
        now: u64,
        len: u64,
    ) -> Result<AcquireOutcome, IdError> {
        let what = "acquire a worker lease";
        let (now, len) = (signed(now), signed(len));
        let mut conn = self.conn().await?;
        // Outside the transaction: an INSERT IGNORE that finds the row takes a shared lock,
        // and two acquirers upgrading shared locks would deadlock.
        conn.exec_drop(
            format!(
                "INSERT IGNORE INTO {} (namespace, region, worker, layout) VALUES (?, ?, ?, ?)",
                self.lease_table
            ),
            (&key.namespace, key.region, key.worker, layout),
        )
        .await
        .map_err(|e| self.error(what, e))?;
        let mut tx = conn
            .start_transaction(TxOpts::default())
            .await
            .map_err(|e| self.error(what, e))?;
        // previous_until is assigned first, from the old reserved_until (the same under
        // MariaDB's SIMULTANEOUS_ASSIGNMENT and without it).
        tx.exec_drop(
            format!(
                "UPDATE {} SET previous_until = reserved_until,
                   reserved_until = GREATEST(reserved_until, ?) + ?, owner = ?
                 WHERE namespace = ? AND region = ? AND worker = ? AND layout = ?
                   AND (owner = '' OR owner = ? OR reserved_until < ?)",
                self.lease_table
            ),
            (
                now,
                len,
                token,
                &key.namespace,
                key.region,
                key.worker,
                layout,
                token,
                now,
            ),
        )
        .await
        .map_err(|e| self.error(what, e))?;
        let granted = tx.affected_rows() == 1;
        let row: Option<(String, String, i64, i64)> = tx
            .exec_first(
                format!(
                    "SELECT layout, owner, previous_until, reserved_until FROM {}
                     WHERE namespace = ? AND region = ? AND worker = ?",
                    self.lease_table
                ),
                (&key.namespace, key.region, key.worker),
            )
            .await
            .map_err(|e| self.error(what, e))?;
        tx.commit().await.map_err(|e| self.error(what, e))?;
        let Some((stored_layout, owner, previous, until)) = row else {
            return Err(IdError::Unexpected {
                what,
                detail: "the lease row vanished".to_string(),
            });
        };
        let until_tick = u64::try_from(until).map_err(|_| IdError::Unexpected {
            what,
            detail: format!("reserved_until {until}"),
        });
        if granted {
            return Ok(AcquireOutcome::Granted {
                previous_until: u64::try_from(previous).ok(),
                reserved_until: until_tick?,
            });
        }
        if stored_layout != layout {
            return Err(IdError::Mismatch {
                what: "lease",
                key: format!("{}/{}/{}", key.namespace, key.region, key.worker),
                stored: stored_layout,
                wanted: layout.to_string(),
            });
        }
        Ok(AcquireOutcome::Held {
            owner,
            reserved_until: until_tick?,
        })
    }

    async fn renew(
        &self,
        key: &LeaseKey,
        token: &str,
        now: u64,
        len: u64,
    ) -> Result<Option<u64>, IdError> {
        let what = "renew a worker lease";
        let until = now.saturating_add(len);
        let mut conn = self.conn().await?;
        conn.exec_drop(
            format!(
                "UPDATE {} SET reserved_until = GREATEST(reserved_until, ?)
                 WHERE namespace = ? AND region = ? AND worker = ? AND owner = ?",
                self.lease_table
            ),
            (signed(until), &key.namespace, key.region, key.worker, token),
        )
        .await
        .map_err(|e| self.error(what, e))?;
        Ok((conn.affected_rows() == 1).then_some(until))
    }

    async fn release(&self, key: &LeaseKey, token: &str, last_tick: u64) -> Result<(), IdError> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            format!(
                "UPDATE {} SET owner = '', reserved_until = LEAST(reserved_until, ?)
                 WHERE namespace = ? AND region = ? AND worker = ? AND owner = ?",
                self.lease_table
            ),
            (
                signed(last_tick),
                &key.namespace,
                key.region,
                key.worker,
                token,
            ),
        )
        .await
        .map_err(|e| self.error("release a worker lease", e))
    }
}

impl SegmentStore for MysqlStore {
    async fn reserve(
        &self,
        namespace: &str,
        partition: Partition,
        step: u64,
    ) -> Result<u64, IdError> {
        let what = "reserve a segment";
        let mut conn = self.conn().await?;
        let update = format!(
            "UPDATE {} SET max_id = LAST_INSERT_ID(max_id + ?)
             WHERE namespace = ? AND region = ? AND regions = ?",
            self.segment_table
        );
        let params = (step, namespace, partition.region(), partition.regions());
        for attempt in 0..2 {
            conn.exec_drop(&update, params)
                .await
                .map_err(|e| self.error(what, e))?;
            if conn.affected_rows() == 1 {
                return match conn.last_insert_id() {
                    Some(last) if last > 0 => Ok(last),
                    _ => conn
                        .query_first::<u64, _>("SELECT LAST_INSERT_ID()")
                        .await
                        .map_err(|e| self.error(what, e))?
                        .ok_or(IdError::Unexpected {
                            what,
                            detail: "no LAST_INSERT_ID".to_string(),
                        }),
                };
            }
            if attempt == 0 {
                // First use of this counter (or another number of regions: checked below).
                conn.exec_drop(
                    format!(
                        "INSERT IGNORE INTO {} (namespace, region, regions) VALUES (?, ?, ?)",
                        self.segment_table
                    ),
                    (namespace, partition.region(), partition.regions()),
                )
                .await
                .map_err(|e| self.error(what, e))?;
            }
        }
        let stored: Option<u32> = conn
            .exec_first(
                format!(
                    "SELECT regions FROM {} WHERE namespace = ? AND region = ?",
                    self.segment_table
                ),
                (namespace, partition.region()),
            )
            .await
            .map_err(|e| self.error(what, e))?;
        Err(IdError::Mismatch {
            what: "segment counter",
            key: format!("{namespace}/{}", partition.region()),
            stored: format!("{} regions", stored.unwrap_or(0)),
            wanted: format!("{} regions", partition.regions()),
        })
    }
}
