//! Writing into the center being filled, tagged as drc's own writes so that no link reading
//! its binlog sends them on (design invariant 1).
//!
//! The tag is the one an applier of link `A->C` uses ([`Tag`]), decided from `[replication]
//! loopback` the same way link start-up decides it:
//! - `server_id` (MariaDB): the session writes under A's `server_id` and `gtid_domain_id`.
//!   Links `C->P` keep only transactions whose header `server_id` is C's own, so they drop the
//!   copy; A's id is recorded in C's `<meta>.source_identity` for link `A->C` before the first
//!   tagged write ([`drc_meta::record_identity`]), as the origin protocol requires, so that a
//!   reader of C that meets the id knows it as a drc tag. The copy still goes to C's binlog,
//!   so C's own native replicas (if any) receive it.
//! - `marker`: every transaction starts with the upsert of a marker row of link `A->C`
//!   ([`drc_meta::Marker`], one row per writer), which makes readers of C's binlog drop it.
//! - `auto`: `server_id` when the session may set it, else `marker`.
//!
//! Each chunk is one transaction that first deletes the target's rows in the chunk's key range
//! and then inserts the chunk's rows: the range then holds exactly what the source's snapshot
//! holds, whatever it held before, so a chunk can be written again (a retry, or a resumed run)
//! without duplicates or leftovers.

use std::time::Duration;

use drc_config::Loopback;
use drc_meta::Marker;
use drc_mysql::{connect, Flavor, ServerInfo};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::error::BootstrapError;
use crate::snapshot::CONNECT_TIMEOUT;

/// The writing sessions' SQL mode: strict (a value the target cannot hold exactly is an error,
/// not a warning), and an AUTO_INCREMENT column's 0 is stored as 0.
pub const SQL_MODE: &str = drc_mysql::SESSION_SQL_MODE;

/// How the bootstrap's writes are tagged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tag {
    /// Under the source center's server ids.
    ServerId {
        /// A's `server_id`.
        server_id: u32,
        /// A's `gtid_domain_id`.
        domain: u32,
    },
    /// A marker row first in each transaction.
    Marker(Marker),
}

fn setup(tag: &Tag) -> String {
    let mut s = format!(
        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED; \
         SET SESSION foreign_key_checks = 0, time_zone = '+00:00', autocommit = 1, \
         sql_mode = '{SQL_MODE}'"
    );
    if let Tag::ServerId { server_id, domain } = tag {
        s.push_str(&format!(
            ", server_id = {server_id}, gtid_domain_id = {domain}"
        ));
    }
    s
}

/// Decides the tag from the configured strategy (`marker`: `marker` names link `link` from
/// `source`).
pub async fn resolve(
    loopback: Loopback,
    url: &str,
    center: &str,
    target: &ServerInfo,
    source: &ServerInfo,
    marker: Marker,
) -> Result<Tag, BootstrapError> {
    let by_id = Tag::ServerId {
        server_id: source.server_id,
        domain: source.gtid_domain_id,
    };
    let probe = || async {
        let mut c = connect(url, CONNECT_TIMEOUT)
            .await
            .map_err(BootstrapError::server(center))?;
        c.query_drop(setup(&by_id))
            .await
            .map_err(BootstrapError::query(
                center,
                "setting the session's server_id",
            ))
    };
    match loopback {
        Loopback::Marker => Ok(Tag::Marker(marker)),
        Loopback::ServerId if target.flavor == Flavor::MySql => Err(BootstrapError::Input(format!(
            "center {center} runs MySQL: loopback = \"server_id\" needs MariaDB; use \"marker\""
        ))),
        Loopback::ServerId => match probe().await {
            Ok(()) => Ok(by_id),
            Err(e) => Err(BootstrapError::Input(format!(
                "loopback = \"server_id\" but drc's user cannot set its session server_id in center {center} ({e}): GRANT BINLOG REPLAY (or SUPER), or use loopback = \"marker\""
            ))),
        },
        Loopback::Auto if target.flavor == Flavor::MySql => Ok(Tag::Marker(marker)),
        Loopback::Auto => match probe().await {
            Ok(()) => Ok(by_id),
            Err(e) if !e.is_transient() => Ok(Tag::Marker(marker)),
            Err(e) => Err(e),
        },
    }
}

/// One tagged writing session into the target.
pub struct Writer {
    url: String,
    center: String,
    tag: Tag,
    conn: Option<Conn>,
    /// The session's `max_allowed_packet`.
    pub max_allowed_packet: u64,
}

impl Writer {
    /// A writer for worker `worker` (its own marker row under the marker strategy).
    pub fn new(url: &str, center: &str, tag: &Tag, worker: u32) -> Writer {
        let tag = match tag {
            Tag::Marker(m) => Tag::Marker(m.for_worker(worker)),
            t => t.clone(),
        };
        Writer {
            url: url.to_string(),
            center: center.to_string(),
            tag,
            conn: None,
            max_allowed_packet: 0,
        }
    }

    async fn session(&mut self) -> Result<&mut Conn, BootstrapError> {
        if self.conn.is_none() {
            let mut c = connect(&self.url, CONNECT_TIMEOUT)
                .await
                .map_err(BootstrapError::server(&self.center))?;
            c.query_drop(setup(&self.tag))
                .await
                .map_err(BootstrapError::query(
                    &self.center,
                    "setting up a writing session",
                ))?;
            let m: Option<u64> = c.query_first("SELECT @@max_allowed_packet").await.map_err(
                BootstrapError::query(&self.center, "reading max_allowed_packet"),
            )?;
            self.max_allowed_packet = m.unwrap_or(1 << 24);
            self.conn = Some(c);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| BootstrapError::Unsupported("writer connection missing".into()))
    }

    /// Connects now, to learn the session's `max_allowed_packet`.
    pub async fn connect(&mut self) -> Result<u64, BootstrapError> {
        self.session().await?;
        Ok(self.max_allowed_packet)
    }

    /// Runs `statements` as one tagged transaction, retrying transient failures (deadlocks,
    /// lost connections) a few times: the statements must be safe to run again.
    pub async fn transaction(&mut self, statements: &[String]) -> Result<(), BootstrapError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.try_transaction(statements).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() && attempt < 10 => {
                    tracing::warn!(error = %e, attempt, "a bootstrap write failed; retrying");
                    self.conn = None;
                    tokio::time::sleep(Duration::from_millis(100 << attempt.min(6))).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn try_transaction(&mut self, statements: &[String]) -> Result<(), BootstrapError> {
        let center = self.center.clone();
        let marker = match &self.tag {
            Tag::Marker(m) => Some(m.statement()),
            Tag::ServerId { .. } => None,
        };
        let conn = self.session().await?;
        let r = async {
            conn.query_drop("START TRANSACTION").await?;
            if let Some(m) = &marker {
                conn.query_drop(m).await?;
            }
            for s in statements {
                conn.query_drop(s).await?;
            }
            conn.query_drop("COMMIT").await
        }
        .await;
        if let Err(e) = r {
            self.conn = None;
            return Err(BootstrapError::query(&center, "writing a chunk")(e));
        }
        Ok(())
    }
}
