//! One applier connection to the target: session setup, and one share of a batch applied as one
//! transaction together with its checkpoint.
//!
//! Session: `foreign_key_checks = 0` (order across tables is not kept, see
//! docs/architecture.md), `time_zone = '+00:00'` (TIMESTAMP literals are UTC),
//! `sql_mode = 'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'` (values arrive
//! exactly as the source stored them: an id 0 stays 0, zero dates stay; and a value the target
//! cannot store exactly is an error, [`crate::strict`]), and the origin tag:
//! `server_id` + `gtid_domain_id` of the origin (server_id strategy) or a marker row first in
//! every transaction (marker strategy).
//!
//! The session also runs at READ COMMITTED: conflict resolution's locking reads then take no
//! gap locks (see [`crate::conflict`]).
//! Fence (when the link runs under a term, [`crate::fence`]): each transaction starts with a
//! locking read of the center's fence row and rolls back with `LinkError::Fenced` when the term
//! there is not this applier's; that error is never retried. On MariaDB the read is a statement
//! in front of the transaction's first query that fails it ([`crate::fence::Fence::guard_statement`]),
//! so the check costs no round trip of its own.
//!
//! Round trips on MariaDB: a source-wins share is one query (start, fence check, statements
//! each with its warning check, checkpoint, `COMMIT`); a last-writer-wins share is one
//! query per dependency level (each carrying the previous level's writes) and one for the last
//! level's writes with the commit ([`crate::conflict`]). On MySQL the fence check and each
//! source-wins statement take a round trip each ([`crate::strict`]).
//!
//! Errors: deadlocks, lock wait timeouts and lost connections are retried (the whole share,
//! from a clean transaction, with backoff); so is a duplicate-key error of a share with
//! last-writer-wins changes (a local writer inserted a row between the read and the write; up
//! to [`DUPLICATE_RETRIES`] times). Anything else stops the link with the server's message.
//!
//! Bounds: one attempt (connecting, the fence check, every round trip, COMMIT) must finish
//! within the query timeout (`[applier] query_timeout_ms`); a timed-out attempt (a half-open
//! connection, a stalled server) drops its connection — its state is unknown, it is never
//! reused — releases its key locks and is retried like a lost connection. Retries wait under
//! [`APPLY_RETRY`] ([`drc_mysql::retry`]); the waits wake on the link's shutdown signal and end
//! the job with [`LinkError::Shutdown`].

use std::time::Duration;

use drc_mysql::retry::Policy;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tokio::sync::watch;
use tracing::{info_span, warn, Instrument};

use crate::conflict::decide::Record;
use crate::conflict::keylock::{keys_of, KeyLocks};
use crate::conflict::{run_levels, Deferred, LwwChange};
use crate::fence::Fence;
use crate::size::Joiner;
use crate::sql::Statement;
use crate::strict::{self, Failure};
use crate::LinkError;

/// Retries of a share: 50 ms doubling to 5 s, less up to 20 % jitter (parallel appliers that
/// deadlocked on each other do not retry in step), at most 1000 attempts for transient errors.
/// Duplicate-key retries ([`DUPLICATE_RETRIES`]) wait the same way.
pub const APPLY_RETRY: Policy = Policy::new(Duration::from_millis(50), Duration::from_secs(5))
    .with_jitter(20)
    .with_max_attempts(Some(1000));

/// How often a share with last-writer-wins changes is retried after duplicate-key errors
/// before the link stops.
pub const DUPLICATE_RETRIES: u32 = 20;

/// One share of a batch: the plain statements, the last-writer-wins changes by dependency
/// level, and the checkpoint statement.
#[derive(Debug, Default)]
pub struct Job<'a> {
    /// Statements of "source wins" tables (already rewritten), each checked for errors and
    /// warnings ([`crate::strict`]).
    pub statements: Vec<Statement<'a>>,
    /// The source positions the share covers, for error messages (`after X up to Y`).
    pub at: String,
    /// Changes of last-writer-wins tables, by dependency level.
    pub lww: Vec<Vec<LwwChange<'a>>>,
    /// The checkpoint statement.
    pub checkpoint: String,
    /// Where lost writes are recorded: `(meta database, link name)`.
    pub conflict_log: (String, String),
    /// The local-delete reader's progress (tombstones of local deletes); `None` when it does
    /// not run (only deletes applied by drc then leave tombstones).
    pub progress: Option<crate::conflict::tombstone::Progress>,
    /// The key locks of the target center, taken for the share's last-writer-wins keys
    /// around each attempt ([`crate::conflict::keylock`]).
    pub key_locks: Option<KeyLocks>,
}

/// How the applier marks what it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tag {
    /// Write under the origin's ids (MariaDB).
    ServerId {
        /// The origin server's `server_id`.
        server_id: u32,
        /// The origin server's `gtid_domain_id`.
        domain: u32,
    },
    /// Start every transaction with this applier's marker row ([`drc_meta::Marker`]).
    Marker(drc_meta::Marker),
}

impl Tag {
    /// The tag of applier `worker`: its own marker row (so parallel appliers never wait on
    /// each other's marker lock); a server_id tag is the same for every worker.
    pub fn for_worker(&self, worker: u32) -> Tag {
        match self {
            Tag::Marker(m) => Tag::Marker(m.for_worker(worker)),
            other => other.clone(),
        }
    }
}

/// One applier connection.
pub struct Applier {
    url: drc_core::secret::Secret,
    tag: Tag,
    conn: Option<Conn>,
    connect_timeout: Duration,
    fence: Option<Fence>,
    query_timeout: Duration,
    shutdown: Option<watch::Receiver<bool>>,
    /// The session's `max_allowed_packet`, read once per connection ([`crate::size`]).
    max_allowed_packet: u64,
    /// This applier's index among the link's workers, named by its `worker` span.
    worker: Option<u32>,
    /// The target is MariaDB (read once per connection). Then a share's plain statements go out
    /// joined, their warnings counted in the server ([`strict`]), the fence check is a statement
    /// in front of the first query ([`Fence::guard_statement`]), and last-writer-wins updates
    /// merge into `VALUES()` upserts ([`run_levels`]). MySQL has no compound statements outside
    /// stored programs and warns (1287) on every `VALUES()` upsert.
    mariadb: bool,
    /// Take the MySQL path even on MariaDB ([`Applier::portable`]).
    portable: bool,
}

/// The query timeout of an applier built without [`Applier::with_limits`].
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(120);

/// Join drc's own statements into queries of at most this many bytes (one round trip each),
/// and never more than the target's `max_allowed_packet` allows ([`crate::size::Joiner`]).
const QUERY_BYTES: usize = crate::size::MAX_QUERY;

impl Applier {
    /// A connection to `url` that tags with `tag` (connects lazily).
    pub fn new(url: impl Into<String>, tag: Tag, connect_timeout: Duration) -> Self {
        Applier {
            url: drc_core::secret::Secret::new(url),
            tag,
            conn: None,
            connect_timeout,
            fence: None,
            query_timeout: DEFAULT_QUERY_TIMEOUT,
            shutdown: None,
            max_allowed_packet: 0,
            worker: None,
            mariadb: false,
            portable: false,
        }
    }

    /// Makes this applier worker `index` of its link: its jobs and DDL statements run inside a
    /// `worker` span with that index, so every log line names the worker.
    pub fn with_worker(mut self, index: u32) -> Self {
        self.worker = Some(index);
        self
    }

    /// Makes this applier take the path it takes on MySQL whatever the server: the fence
    /// check and each plain statement in a round trip of its own, last-writer-wins updates as
    /// plain `UPDATE`s. For tests, which run that path against MariaDB.
    pub fn portable(mut self) -> Self {
        self.portable = true;
        self
    }

    /// The `worker` span of this applier (none when it is not one of a link's workers).
    fn span(&self) -> tracing::Span {
        match self.worker {
            Some(worker) => info_span!("worker", worker),
            None => tracing::Span::none(),
        }
    }

    /// Bounds every transaction attempt by `query_timeout`, and makes retry sleeps end the job
    /// with [`LinkError::Shutdown`] once `shutdown` turns true.
    pub fn with_limits(
        mut self,
        query_timeout: Duration,
        shutdown: Option<watch::Receiver<bool>>,
    ) -> Self {
        self.query_timeout = query_timeout;
        self.shutdown = shutdown;
        self
    }

    /// Makes every transaction of this applier check the center's fence first (see
    /// [`crate::fence`]): a transaction whose term is not the fence's fails with
    /// [`LinkError::Fenced`] and commits nothing.
    pub fn with_fence(mut self, fence: Option<Fence>) -> Self {
        self.fence = fence;
        self
    }

    async fn session(&mut self) -> Result<&mut Conn, LinkError> {
        if self.conn.is_none() {
            let mut c = drc_mysql::connect(self.url.expose(), self.connect_timeout).await?;
            let mut setup = String::from(
                "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED; \
                 SET SESSION foreign_key_checks = 0, time_zone = '+00:00', \
                 autocommit = 1",
            );
            setup.push_str(&format!(", sql_mode = '{}'", crate::strict::SQL_MODE));
            if let Tag::ServerId { server_id, domain } = &self.tag {
                setup.push_str(&format!(
                    ", server_id = {server_id}, gtid_domain_id = {domain}"
                ));
            }
            c.query_drop(&setup)
                .await
                .map_err(|e| LinkError::target("setting up the applier session", e))?;
            let (packet, version) = c
                .query_first::<(u64, String), _>("SELECT @@SESSION.max_allowed_packet, @@version")
                .await
                .map_err(|e| LinkError::target("reading max_allowed_packet", e))?
                .ok_or_else(|| {
                    LinkError::Setup("SELECT @@max_allowed_packet returned no row".into())
                })?;
            self.max_allowed_packet = packet;
            self.mariadb = !self.portable && version.to_ascii_lowercase().contains("mariadb");
            self.conn = Some(c);
        }
        match self.conn.as_mut() {
            Some(c) => Ok(c),
            None => Err(LinkError::Checkpoint("applier connection missing".into())),
        }
    }

    /// Checks that this connection may tag as configured (`SET SESSION server_id` needs
    /// BINLOG REPLAY or SUPER). Returns the server's refusal as an error.
    pub async fn probe(&mut self) -> Result<(), LinkError> {
        let timeout = self.query_timeout;
        let r = drc_mysql::bounded(timeout, "setting up the applier session", async {
            self.session().await.map(|_| ())
        })
        .await;
        if r.is_err() {
            self.conn = None;
        }
        r
    }

    /// Applies `statements` and then `checkpoint` in one transaction (see [`Applier::apply_job`]).
    pub async fn apply(
        &mut self,
        statements: &[String],
        checkpoint: &str,
    ) -> Result<(), LinkError> {
        let job = Job {
            statements: statements.iter().cloned().map(Statement::raw).collect(),
            checkpoint: checkpoint.to_string(),
            ..Job::default()
        };
        self.apply_job(&job).await.map(|_| ())
    }

    /// Applies a share in one transaction with its checkpoint, retrying transient failures,
    /// and returns the lost writes it recorded. The plain statements are idempotent, and
    /// last-writer-wins changes are decided again from fresh reads, so a retry after an
    /// unknown commit outcome (connection lost during COMMIT) is harmless.
    pub async fn apply_job(&mut self, job: &Job<'_>) -> Result<Vec<Record>, LinkError> {
        let span = self.span();
        self.apply_with_retries(job).instrument(span).await
    }

    async fn apply_with_retries(&mut self, job: &Job<'_>) -> Result<Vec<Record>, LinkError> {
        let mut backoff = APPLY_RETRY.start();
        let mut duplicates = 0u32;
        let mut keys = Vec::new();
        if job.key_locks.is_some() {
            for c in job.lww.iter().flatten() {
                keys_of(c.change, &mut keys);
            }
        }
        loop {
            // Taken before the transaction opens, released after it ends (and during backoff).
            let guard = match &job.key_locks {
                Some(l) if !keys.is_empty() => Some(l.lock(keys.clone()).await),
                _ => None,
            };
            let timeout = self.query_timeout;
            let result = drc_mysql::bounded(timeout, "applying a share", self.try_apply(job)).await;
            drop(guard);
            let e = match result {
                Ok(records) => return Ok(records),
                Err(e) => e,
            };
            let more = backoff.failed();
            match e {
                e if e.is_transient() && more => {
                    warn!(error = %e, attempt = backoff.failures(), "apply failed; retrying");
                }
                e if !job.lww.is_empty() && is_duplicate(&e) && duplicates < DUPLICATE_RETRIES => {
                    duplicates += 1;
                    warn!(error = %e, attempt = duplicates, "a local write raced conflict resolution; deciding the share again");
                }
                e => {
                    self.conn = None;
                    return Err(e);
                }
            }
            // Never reuse a connection whose transaction state is unknown.
            self.conn = None;
            if !backoff.wait(self.shutdown.as_ref()).await {
                return Err(LinkError::Shutdown);
            }
        }
    }

    async fn try_apply(&mut self, job: &Job<'_>) -> Result<Vec<Record>, LinkError> {
        let marker = match &self.tag {
            Tag::Marker(m) => Some(m.statement()),
            Tag::ServerId { .. } => None,
        };
        let fence = self.fence.clone();
        self.session().await?;
        // Known once connected.
        let mariadb = self.mariadb;
        let joined = mariadb && !job.statements.is_empty();
        let mut q = Joiner::new(self.max_allowed_packet, QUERY_BYTES);
        let conn = self.session().await?;
        match &fence {
            // On MariaDB the fence check is a statement that fails the query unless the term
            // is this applier's: it rides in front of the transaction's first query.
            Some(f) if mariadb => {
                q.push(conn, "START TRANSACTION", "transaction").await?;
                q.push(conn, &f.guard_statement(), "fence check").await?;
            }
            Some(f) => {
                // The fence check must be answered before anything is written (crate::fence):
                // the transaction's start and the check are one round trip, the writes follow.
                let q = format!("START TRANSACTION;\n{}", f.check_statement());
                let stored = crate::query::select_sets(conn, q, "checking the fence")
                    .await
                    .and_then(|sets| fence_row(sets, f));
                match stored {
                    Ok(Some((term, _))) if term == f.term => {}
                    Ok(other) => {
                        let _ = conn.query_drop("ROLLBACK").await;
                        return Err(f.fenced(other));
                    }
                    Err(e) => {
                        let _ = conn.query_drop("ROLLBACK").await;
                        return Err(e);
                    }
                }
            }
            None => q.push(conn, "START TRANSACTION", "transaction").await?,
        }
        let result = async {
            if let Some(m) = marker {
                q.push(conn, &m, "origin marker").await?;
            }
            if joined {
                // The plain statements joined into the transaction's queries, each followed
                // by its warning check.
                for s in &job.statements {
                    q.push(conn, &s.sql, "change").await?;
                    q.push(conn, strict::CHECK_WARNINGS, "warning check")
                        .await?;
                }
            } else if !job.statements.is_empty() {
                // Each plain statement checked for errors and warnings in a round trip of
                // its own ([`strict::run`]), after drc's prefix.
                let prefix = q.take();
                if let Err(f) = strict::run(conn, &prefix, &job.statements).await {
                    let _ = conn.query_drop("ROLLBACK").await;
                    return Err(Self::failure(conn, job, f).await);
                }
            }
            let mut records = Vec::new();
            let mut deferred = None;
            let mut progress = job.progress.clone();
            if !job.lww.is_empty() {
                (records, deferred) = run_levels(
                    conn,
                    &mut q,
                    &job.lww,
                    &job.conflict_log.0,
                    progress.as_mut(),
                    None,
                    mariadb,
                )
                .await?;
            }
            match commit(conn, &mut q, &records, job).await {
                // The guard after the last level's writes tripped (a local transaction
                // committed since its lookups): the writes ran, the rest did not. Check them
                // as before, then send the rest.
                Err(e) if Deferred::tripped(&e) => {
                    let (Some(d), Some(p)) = (deferred, progress.as_mut()) else {
                        return Err(e);
                    };
                    d.settle(conn, q.max_allowed_packet(), &job.conflict_log.0, p)
                        .await?;
                    let mut rest = Joiner::new(q.max_allowed_packet(), q.limit());
                    commit(conn, &mut rest, &records, job).await?;
                }
                other => other?,
            }
            Ok(records)
        }
        .await;
        match result {
            Err(e) if Fence::tripped(&e) => {
                let _ = conn.query_drop("ROLLBACK").await;
                match &fence {
                    Some(f) => Err(f.fenced_now(conn).await),
                    None => Err(e),
                }
            }
            Err(e) if (joined || !job.lww.is_empty()) && strict::names_a_row(&e) => {
                let _ = conn.query_drop("ROLLBACK").await;
                Err(self.diagnose(job, e).await)
            }
            Err(e) => {
                let _ = conn.query_drop("ROLLBACK").await;
                Err(e)
            }
            ok => ok,
        }
    }

    /// The error of a share whose joined query the target refused or warned about (it is
    /// rolled back): its plain statements are sent again each alone and checked
    /// ([`strict::run`]) in a transaction that is rolled back, which names the row; when they
    /// store exactly, the last-writer-wins writes are ([`Applier::diagnose_lww`]).
    async fn diagnose(&mut self, job: &Job<'_>, first: LinkError) -> LinkError {
        if self.mariadb && !job.statements.is_empty() {
            let conn = match self.session().await {
                Ok(c) => c,
                Err(e) => return e,
            };
            let run = strict::run(conn, "START TRANSACTION", &job.statements).await;
            let _ = conn.query_drop("ROLLBACK").await;
            match run {
                Err(f @ (Failure::Warnings(..) | Failure::Error(Some(_), _))) => {
                    return Self::failure(conn, job, f).await;
                }
                Err(Failure::Error(None, e)) => {
                    return LinkError::target("diagnosing a refused share", e)
                }
                Ok(()) if job.lww.is_empty() => {
                    let tables = job
                        .statements
                        .iter()
                        .filter_map(|s| s.table().map(|t| t.qualified_name()));
                    return strict::unnamed(tables, "a write", &job.at, first);
                }
                Ok(()) => {}
            }
        }
        self.diagnose_lww(job, first).await
    }

    /// The error of a last-writer-wins share whose batched query the target refused or warned
    /// about (it is rolled back): the share is decided again with each write sent alone and
    /// checked, in a transaction that is rolled back, to name the row ([`strict`]). When that
    /// run stores everything exactly (the target changed meanwhile), `first` is described as
    /// it is.
    async fn diagnose_lww(&mut self, job: &Job<'_>, first: LinkError) -> LinkError {
        let mut q = Joiner::new(self.max_allowed_packet, QUERY_BYTES);
        let values_upserts = self.mariadb;
        let conn = match self.session().await {
            Ok(c) => c,
            Err(e) => return e,
        };
        let mut progress = job.progress.clone();
        let run = async {
            conn.query_drop("START TRANSACTION")
                .await
                .map_err(|e| LinkError::target("diagnosing a refused share", e))?;
            run_levels(
                conn,
                &mut q,
                &job.lww,
                &job.conflict_log.0,
                progress.as_mut(),
                Some(&job.at),
                values_upserts,
            )
            .await
            .map(|(records, _)| records)
        }
        .await;
        let _ = conn.query_drop("ROLLBACK").await;
        match run {
            Err(e @ LinkError::Rejected(_)) => e,
            _ => {
                let tables = job
                    .lww
                    .iter()
                    .flatten()
                    .map(|c| c.change.table.qualified_name());
                strict::unnamed(tables, "a last-writer-wins write", &job.at, first)
            }
        }
    }
}

impl Applier {
    /// Runs one DDL statement alone (it commits by itself) under this applier's tag, after
    /// `USE database` when the source session had one, and after a fence check. The connection
    /// is closed afterwards, so the default database never leaks into later transactions.
    pub async fn run_ddl(&mut self, database: &str, statement: &str) -> Result<(), LinkError> {
        let span = self.span();
        self.run_ddl_once(database, statement)
            .instrument(span)
            .await
    }

    async fn run_ddl_once(&mut self, database: &str, statement: &str) -> Result<(), LinkError> {
        let fence = self.fence.clone();
        let conn = self.session().await?;
        if let Some(f) = fence {
            let stored = async {
                conn.query_drop("START TRANSACTION").await?;
                let r = conn.query_first::<(u64, u32), _>(f.check_statement()).await;
                conn.query_drop("ROLLBACK").await?;
                r
            }
            .await;
            match stored {
                Ok(Some((term, _))) if term == f.term => {}
                Ok(other) => return Err(f.fenced(other)),
                Err(e) => return Err(LinkError::target("checking the fence", e)),
            }
        }
        let mut q = String::new();
        if !database.is_empty() {
            q.push_str("USE ");
            crate::sql::ident(&mut q, database);
            q.push_str(";\n");
        }
        q.push_str(statement);
        let result = conn.query_drop(&q).await;
        self.conn = None;
        result.map_err(|e| LinkError::target("applying DDL", e))
    }
}

impl Applier {
    /// The error of a failed checked query (the share is rolled back): a definite data error
    /// or warning is described by table, key, column and value ([`strict::diagnose`]);
    /// anything else keeps its usual class (transient errors are retried).
    async fn failure(conn: &mut Conn, job: &Job<'_>, f: Failure) -> LinkError {
        match f {
            Failure::Error(Some(i), e) if strict::is_data_error(&e) => {
                let first = e.to_string();
                strict::diagnose(conn, &job.statements[i], first, &job.at).await
            }
            Failure::Error(_, e) => LinkError::target("applying changes", e),
            Failure::Warnings(i, w) => {
                let first = w
                    .first()
                    .map(|(l, c, m)| format!("{m} ({l} {c})"))
                    .unwrap_or_default();
                strict::diagnose(conn, &job.statements[i], first, &job.at).await
            }
        }
    }
}

/// The end of a share's transaction, after its writes (each already checked): the conflict
/// records, the checkpoint and `COMMIT`, joined into `q` and sent.
async fn commit(
    conn: &mut Conn,
    q: &mut Joiner,
    records: &[Record],
    job: &Job<'_>,
) -> Result<(), LinkError> {
    let (meta, link) = &job.conflict_log;
    for r in records {
        q.push(
            conn,
            &crate::conflict::record_sql(meta, link, r),
            "conflict record",
        )
        .await?;
    }
    q.push(conn, &job.checkpoint, "checkpoint").await?;
    q.push(conn, "COMMIT", "commit").await?;
    q.flush(conn).await
}

/// The `(term, replica)` of the fence check's answer `sets` (`None` when the fence row is
/// missing); a row of other types is [`LinkError::Checkpoint`].
fn fence_row(sets: Vec<Vec<mysql_async::Row>>, f: &Fence) -> Result<Option<(u64, u32)>, LinkError> {
    match sets.into_iter().next().and_then(|s| s.into_iter().next()) {
        None => Ok(None),
        Some(row) => mysql_async::from_row_opt::<(u64, u32)>(row)
            .map(Some)
            .map_err(|e| {
                LinkError::Checkpoint(format!(
                    "the fence row of center {} does not read as (term, replica): {e}",
                    f.center
                ))
            }),
    }
}

/// True for a duplicate-key error of the target ([`drc_mysql::codes::DUPLICATE_KEY`]).
fn is_duplicate(e: &LinkError) -> bool {
    match e {
        LinkError::Target { source, .. } => {
            drc_mysql::codes::server_code(source).is_some_and(drc_mysql::codes::is_duplicate_key)
        }
        _ => false,
    }
}
