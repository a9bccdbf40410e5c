//! The live source: a replica connection to a server's binlog, with preflight, reconnects and
//! exactly-once delivery across them.
//!
//! Resume protocol (see the crate docs): the source remembers the position after the last
//! `Commit`/`Ddl` it yielded and how many events of the current transaction it yielded. A new
//! connection starts at that position; the interrupted transaction is re-read from its start, and
//! its first `n` events (checked to be the same transaction) are suppressed.
//!
//! Liveness: every event marks the source's [`Liveness`], every transient failure marks it
//! reconnecting; a consumer shows that instead of "running" (the reconnects happen inside
//! [`Source::next`], invisible otherwise).
//!
//! Identity: every reconnect compares the server's `server_id` (and MySQL's `server_uuid`) with
//! the first connection's. A different server behind the same address (a failover, a restart
//! with a new `server_id`) ends the source with [`SourceError::IdentityChanged`] before any of
//! its events is yielded: the caller's loopback filter knows the source by its identity.

use std::time::Duration;

use drc_core::change::{SourceEvent, TxnGtid};
use drc_core::position::{FilePos, Position};
use drc_mysql::retry::Policy;
use drc_mysql::{
    bounded, connect, connect_stream, current_position, load_unique_keys, preflight_source,
    redact_url, server_info, Flavor, MysqlError, ProblemList, ServerInfo,
};
use futures_util::StreamExt;
use mysql_async::binlog::events::{Event, TableMapEvent};
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn};
use tracing::{info, warn};

use crate::assemble::Assembler;
use crate::liveness::Liveness;
use crate::SourceError;

/// Where a source starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartFrom {
    /// The server's current end of binlog (only changes made from now on).
    Current,
    /// An explicit position; the first event yielded is the one right after it.
    Position(Position),
}

/// Settings of a live source. [`SourceConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// `mysql://user:password@host:port` (never printed: `Debug` shows `***`).
    pub url: drc_core::secret::Secret,
    /// The replica `server_id` this source registers with. It must differ from every server's
    /// and every other replica's id: a server drops an older replica connection that uses the
    /// same id.
    pub replica_server_id: u32,
    /// Where to start.
    pub start: StartFrom,
    /// How often the server sends a heartbeat when it has nothing else to send.
    pub heartbeat: Duration,
    /// Reconnect when nothing (not even a heartbeat) arrived for this long.
    pub idle_timeout: Duration,
    /// Timeout of one connection attempt.
    pub connect_timeout: Duration,
    /// Timeout of one metadata query (server facts, preflight, unique keys, opening the
    /// stream); the connection is dropped and the source reconnects after it.
    pub query_timeout: Duration,
    /// First reconnect delay; doubles up to `backoff_max` ([`SourceConfig::reconnect_policy`]).
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Give up after this many consecutive failed reconnects (`None`: never give up).
    pub max_reconnects: Option<u32>,
    /// Read unique keys of each table from information_schema (needed for ordering).
    pub fetch_unique_keys: bool,
}

impl SourceConfig {
    /// Defaults: start at the current end, heartbeat 1 s, idle timeout 10 s, connect timeout
    /// 10 s, query timeout 120 s, backoff 100 ms .. 5 s, reconnect forever, fetch unique keys.
    pub fn new(url: impl Into<String>, replica_server_id: u32) -> Self {
        SourceConfig {
            url: drc_core::secret::Secret::new(url),
            replica_server_id,
            start: StartFrom::Current,
            heartbeat: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            query_timeout: Duration::from_secs(120),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            max_reconnects: None,
            fetch_unique_keys: true,
        }
    }

    /// The reconnect policy: `backoff_min` doubling to `backoff_max`, less up to 20 % jitter
    /// (the sources of many links reconnecting to one restarted server do not stay in step),
    /// at most `max_reconnects` attempts per outage. The first attempt waits too.
    pub fn reconnect_policy(&self) -> Policy {
        Policy::new(self.backoff_min, self.backoff_max)
            .with_jitter(20)
            .with_max_attempts(self.max_reconnects)
    }
}

/// The binlog event type of the server's heartbeats (`HEARTBEAT_LOG_EVENT`), sent while the
/// binlog is idle: not counted as read events.
const HEARTBEAT_EVENT: u8 = 0x1b;

/// Identity of a transaction, to recognise it when re-read after a reconnect.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TxnKey {
    gtid: Option<TxnGtid>,
    at: FilePos,
}

#[derive(Debug)]
struct Skip {
    key: TxnKey,
    /// Events of the transaction yielded before the interruption.
    total: usize,
    /// Events of the re-read transaction suppressed so far.
    seen: usize,
}

/// A live binlog source. See the module docs.
pub struct Source {
    cfg: SourceConfig,
    server: String,
    info: ServerInfo,
    meta: Option<Conn>,
    stream: Option<BinlogStream>,
    asm: Assembler,
    resume: Position,
    progress: Option<(TxnKey, usize)>,
    skip: Option<Skip>,
    reconnects: u64,
    /// Binlog events received, heartbeats not counted ([`Source::events_read`]).
    events: u64,
    /// Their bytes ([`Source::bytes_read`]).
    bytes: u64,
    live: Liveness,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("server", &self.server)
            .field("resume", &self.resume)
            .field("reconnects", &self.reconnects)
            .finish()
    }
}

async fn open_meta(cfg: &SourceConfig, server: &str) -> Result<(Conn, ServerInfo), SourceError> {
    let mut conn = connect(cfg.url.expose(), cfg.connect_timeout).await?;
    let (info, problems) = bounded(cfg.query_timeout, "reading the source's settings", async {
        let info = server_info(&mut conn).await?;
        let problems = preflight_source(&mut conn, &info).await?;
        Ok::<_, SourceError>((info, problems))
    })
    .await?;
    if !problems.is_empty() {
        return Err(ProblemList {
            server: server.to_string(),
            problems,
        }
        .into());
    }
    Ok((conn, info))
}

impl Source {
    /// Connects, runs the preflight checks, resolves the start position and opens the stream.
    pub async fn connect(cfg: SourceConfig) -> Result<Source, SourceError> {
        let server = redact_url(cfg.url.expose());
        let (mut meta, info) = open_meta(&cfg, &server).await?;
        let start = match &cfg.start {
            StartFrom::Current => current_position(&mut meta, &info).await?,
            StartFrom::Position(p) => p.clone(),
        };
        check_start_fits(&start, &info)?;
        let mut src = Source {
            asm: Assembler::new(&start),
            resume: start,
            cfg,
            server,
            info,
            meta: Some(meta),
            stream: None,
            progress: None,
            skip: None,
            reconnects: 0,
            events: 0,
            bytes: 0,
            live: Liveness::default(),
        };
        src.stream = Some(src.open_stream().await?);
        info!(server = %src.server, position = %src.resume, "binlog source started");
        Ok(src)
    }

    /// Facts about the server read at connect time.
    pub fn server_info(&self) -> &ServerInfo {
        &self.info
    }

    /// The position after the last `Commit` or `Ddl` yielded (where a restart would resume).
    pub fn position(&self) -> &Position {
        &self.resume
    }

    /// A handle on the connection state, for the consumer's status (see [`Liveness`]).
    pub fn liveness(&self) -> Liveness {
        self.live.clone()
    }

    /// How many times the source reconnected.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// How many binlog events the source received from its server, heartbeats not counted.
    /// Events re-read after a reconnect count again (they crossed the network again), so this
    /// measures reading, not the transactions yielded.
    pub fn events_read(&self) -> u64 {
        self.events
    }

    /// The bytes of the events counted by [`Source::events_read`] (binlog event sizes, headers
    /// included).
    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }

    async fn open_stream(&self) -> Result<BinlogStream, SourceError> {
        bounded(
            self.cfg.query_timeout,
            "opening the binlog stream",
            self.open_stream_unbounded(),
        )
        .await
    }

    async fn open_stream_unbounded(&self) -> Result<BinlogStream, SourceError> {
        let mut conn = connect_stream(self.cfg.url.expose(), self.cfg.connect_timeout).await?;
        let q = |what: &'static str| move |source| MysqlError::Query { what, source };
        let hb_ns = self.cfg.heartbeat.as_nanos().min(u128::from(u64::MAX));
        conn.query_drop(format!("SET @master_heartbeat_period = {hb_ns}"))
            .await
            .map_err(q("setting the heartbeat period"))?;
        let mut request = BinlogStreamRequest::new(self.cfg.replica_server_id);
        let file;
        match &self.resume {
            Position::MariaGtid(list) => {
                conn.query_drop("SET @mariadb_slave_capability = 4")
                    .await
                    .map_err(q("SET @mariadb_slave_capability"))?;
                conn.query_drop(format!(
                    "SET @slave_connect_state = '{list}', @slave_gtid_strict_mode = 0, \
                     @slave_gtid_ignore_duplicates = 0"
                ))
                .await
                .map_err(q("SET @slave_connect_state"))?;
                request = request.with_pos(4u64);
            }
            Position::MysqlGtid(set) => {
                request = request.with_gtid().with_gtid_set(mysql_sids(set)?);
            }
            Position::File(fp) => {
                if self.info.flavor == Flavor::MariaDb {
                    conn.query_drop("SET @mariadb_slave_capability = 4")
                        .await
                        .map_err(q("SET @mariadb_slave_capability"))?;
                }
                file = fp.file.clone().into_bytes();
                request = request.with_filename(&file).with_pos(fp.offset);
            }
        }
        conn.get_binlog_stream(request)
            .await
            .map_err(|source| SourceError::stream(&self.server, &self.resume.to_string(), source))
    }

    async fn reconnect(&mut self) -> Result<(), SourceError> {
        if let Some(s) = self.stream.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), s.close()).await;
        }
        self.meta = None;
        if let Some(p) = self.progress.take() {
            self.skip = Some(Skip {
                key: p.0,
                total: p.1,
                seen: 0,
            });
        }
        let mut backoff = self.cfg.reconnect_policy().start();
        loop {
            backoff.wait(None).await;
            let attempt = async {
                let (meta, info) = open_meta(&self.cfg, &self.server).await?;
                self.check_identity(&info)?;
                self.meta = Some(meta);
                self.info = info;
                self.asm.reset_connection_state(&self.resume);
                self.open_stream().await
            };
            match attempt.await {
                Ok(stream) => {
                    self.stream = Some(stream);
                    self.reconnects += 1;
                    info!(server = %self.server, position = %self.resume, "binlog source reconnected");
                    return Ok(());
                }
                Err(e) if e.is_transient() => {
                    self.live.failed(&e);
                    if !backoff.failed() {
                        return Err(e);
                    }
                    warn!(server = %self.server, error = %e, retry_in_ms = backoff.delay().as_millis() as u64, "reconnect failed");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Refuses a reconnect to a server other than the one first connected to (see
    /// [`SourceError::IdentityChanged`]).
    fn check_identity(&self, now: &ServerInfo) -> Result<(), SourceError> {
        let was = &self.info;
        if was.server_id == now.server_id && was.server_uuid == now.server_uuid {
            return Ok(());
        }
        let uuid = |u: &str| {
            if u.is_empty() {
                String::new()
            } else {
                format!(" (server_uuid {u})")
            }
        };
        Err(SourceError::IdentityChanged {
            server: self.server.clone(),
            position: self.resume.to_string(),
            was_id: was.server_id,
            was_uuid: uuid(&was.server_uuid),
            now_id: now.server_id,
            now_uuid: uuid(&now.server_uuid),
        })
    }

    /// The next event. Reconnects transparently on transient failures; returns an error only
    /// when the source cannot go on (a permanent error, or `max_reconnects` exhausted).
    pub async fn next(&mut self) -> Result<SourceEvent, SourceError> {
        loop {
            let Some(stream) = self.stream.as_mut() else {
                self.reconnect().await?;
                continue;
            };
            let item = match tokio::time::timeout(self.cfg.idle_timeout, stream.next()).await {
                Err(_) => Err(SourceError::Idle {
                    server: self.server.clone(),
                    secs: self.cfg.idle_timeout.as_secs(),
                }),
                Ok(None) => Err(SourceError::Stream {
                    server: self.server.clone(),
                    source: mysql_async::Error::Driver(mysql_async::DriverError::ConnectionClosed),
                }),
                Ok(Some(Err(source))) => Err(SourceError::stream(
                    &self.server,
                    &self.resume.to_string(),
                    source,
                )),
                Ok(Some(Ok(ev))) => {
                    self.live.event();
                    if ev.header().event_type_raw() != HEARTBEAT_EVENT {
                        self.events += 1;
                        self.bytes += u64::from(ev.header().event_size());
                    }
                    Ok(ev)
                }
            };
            let ev = match item {
                Ok(ev) => ev,
                Err(e) if e.is_transient() => {
                    warn!(server = %self.server, error = %e, "binlog stream interrupted; reconnecting");
                    self.live.failed(&e);
                    self.stream = None;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if ev.header().event_type_raw() == 0x13 {
                match self.table_map(&ev).await {
                    Ok(()) => {}
                    // The metadata connection failed (the server restarting, a network cut):
                    // like a broken stream, reconnect and re-read from the last commit.
                    Err(e) if e.is_transient() => {
                        warn!(server = %self.server, error = %e, "reading table metadata failed; reconnecting");
                        self.live.failed(&e);
                        self.stream = None;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            let Some(se) = self.asm.handle(&ev, true)? else {
                continue;
            };
            if let Some(se) = self.track(se)? {
                return Ok(se);
            }
        }
    }

    async fn table_map(&mut self, ev: &Event) -> Result<(), SourceError> {
        let tme: TableMapEvent<'_> = ev.read_event().map_err(SourceError::event)?;
        if self.cfg.fetch_unique_keys {
            let (db, table) = (tme.database_name(), tme.table_name());
            if !self.asm.has_keys(&db, &table) {
                // Through a half-open network this waits up to query_timeout: the link shows
                // it (reconnecting, with this message) after idle_timeout, like a silent stream.
                let (live, idle) = (self.live.clone(), self.cfg.idle_timeout);
                let waiting = || {
                    format!(
                        "no answer from {} for {} s while reading the unique keys of `{db}`.`{table}` \
                         (still waiting, up to applier.query_timeout_ms)",
                        self.server,
                        idle.as_secs()
                    )
                };
                let meta = match self.meta.as_mut() {
                    Some(m) => m,
                    None => self.meta.insert(
                        live.watch(
                            idle,
                            waiting,
                            connect(self.cfg.url.expose(), self.cfg.connect_timeout),
                        )
                        .await?,
                    ),
                };
                let keys = bounded(
                    self.cfg.query_timeout,
                    "reading unique keys",
                    load_unique_keys(meta, &db, &table),
                );
                match live.watch(idle, waiting, keys).await {
                    Ok(keys) => self.asm.set_keys(&db, &table, keys),
                    Err(e) => {
                        self.meta = None;
                        return Err(e.into());
                    }
                }
            }
        }
        self.asm.table_map(&tme)
    }

    /// Applies the resume protocol to an assembled event: suppresses the already-yielded part
    /// of a re-read transaction, and records progress.
    fn track(&mut self, se: SourceEvent) -> Result<Option<SourceEvent>, SourceError> {
        if let Some(skip) = self.skip.take() {
            if skip.seen == 0 {
                let same = match &se {
                    SourceEvent::Begin(b) => {
                        b.gtid == skip.key.gtid && self.asm_file_pos() == skip.key.at
                    }
                    _ => false,
                };
                if !same {
                    return Err(self.vanished(&skip.key));
                }
            }
            let seen = skip.seen + 1;
            if seen < skip.total {
                self.skip = Some(Skip { seen, ..skip });
            } else {
                self.progress = Some((skip.key, skip.total));
            }
            return Ok(None);
        }
        match &se {
            SourceEvent::Begin(b) => {
                let key = TxnKey {
                    gtid: b.gtid.clone(),
                    at: self.asm_file_pos(),
                };
                self.progress = Some((key, 1));
            }
            SourceEvent::Rows(_) => {
                if let Some(p) = self.progress.as_mut() {
                    p.1 += 1;
                }
            }
            SourceEvent::Commit(c) => {
                self.progress = None;
                self.resume = c.position.clone();
            }
            SourceEvent::Ddl(d) => {
                self.progress = None;
                self.resume = d.position.clone();
            }
        }
        Ok(Some(se))
    }

    fn asm_file_pos(&self) -> FilePos {
        self.asm.file_pos()
    }

    fn vanished(&self, key: &TxnKey) -> SourceError {
        SourceError::Protocol(format!(
            "after reconnecting to {}, the transaction that was being read ({}) is no longer \
             where it was: the source's binlog changed (restored or truncated after a crash with \
             sync_binlog=0?). Its first part was already delivered; verify the centers",
            self.server,
            key.gtid
                .as_ref()
                .map(|g| g.to_string())
                .unwrap_or_else(|| key.at.to_string())
        ))
    }

    /// Closes the replication connection.
    pub async fn close(mut self) {
        if let Some(s) = self.stream.take() {
            let _ = s.close().await;
        }
    }
}

fn check_start_fits(start: &Position, info: &ServerInfo) -> Result<(), SourceError> {
    match (start, info.flavor) {
        (Position::MariaGtid(_), Flavor::MySql) => Err(SourceError::Position(
            "a MariaDB GTID position (domain-server-seq) was given for a MySQL server; use a MySQL GTID set (uuid:1-10) or file:offset".into(),
        )),
        (Position::MysqlGtid(_), Flavor::MariaDb) => Err(SourceError::Position(
            "a MySQL GTID set (uuid:1-10) was given for a MariaDB server; use a MariaDB GTID list (0-1-100) or file:offset".into(),
        )),
        (Position::MysqlGtid(_), Flavor::MySql) if !info.gtid_enabled => Err(SourceError::Position(
            "a GTID set was given but the server has gtid_mode OFF; use file:offset".into(),
        )),
        _ => Ok(()),
    }
}

fn mysql_sids(
    set: &drc_core::position::MysqlGtidSet,
) -> Result<Vec<mysql_async::Sid<'static>>, SourceError> {
    use mysql_common::packets::{GnoInterval, Sid, Tag};
    let mut out = Vec::new();
    for (uuid, tag, intervals) in set.iter() {
        let mut sid = Sid::new(*uuid.as_bytes());
        if let Some(tag) = tag {
            let tag = Tag::new(tag.to_string())
                .map_err(|e| SourceError::Position(format!("GTID tag {tag}: {e}")))?;
            sid = sid.with_tag(tag);
        }
        for (start, end) in intervals {
            sid = sid.with_interval(GnoInterval::new(*start, end.saturating_add(1)));
        }
        out.push(sid);
    }
    Ok(out)
}
