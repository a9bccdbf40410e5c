//! DDL read from the source: passed, stopped at, or replicated (config `[ddl]`; runbook in
//! docs/operations.md, "Schema changes").
//!
//! # Decision ([`decide`], pure)
//!
//! - **Pass** (logged): statements about no replicated table: tables outside the replication
//!   rules, drc's own meta database, account and maintenance statements (`GRANT`,
//!   `CREATE USER`, `OPTIMIZE TABLE`, ...), other statements sqlparser read that name no table,
//!   and tables whose `[ddl.tables]` mode is `ignore`.
//! - **Stop**: mode `stop`; and, whatever the mode, statements that cannot be replicated
//!   safely: `DROP DATABASE` of a replicated database, statements whose tables drc could not
//!   determine (the token fallback found none) but that name a replicated database, and
//!   statements that touch replicated and not replicated tables together (`RENAME TABLE` into
//!   or out of the replicated set, `DROP TABLE kept, excluded`).
//! - **Replicate**: every table the statement touches is replicated with mode `replicate`.
//!
//! # Protocol in the link
//!
//! A DDL that is not passed ends the batch before it and forms a batch of its own
//! ([`crate::batch`]), so everything before it is applied and checkpointed first. Then:
//!
//! 1. An acknowledgment in `<meta>.ddl_skip` for (link, [`position_id`]) passes it, whatever
//!    the decision: the checkpoint moves past it and the row records the statement.
//! 2. Stop: [`crate::LinkError::Ddl`]; the checkpoint stays before the statement, so every
//!    restart stops at it again until an operator acknowledges it (`drc ddl skip`).
//! 3. Replicate: `<meta>.ddl_pending` names the statement, the statement runs alone under the
//!    origin's tag with `USE <session database>`, then the checkpoint moves past it in the
//!    transaction that clears `ddl_pending`. DDL commits implicitly, so a crash between the
//!    statement and the checkpoint runs it again on restart: when it then fails with an error
//!    that means "already done" (table or column exists, unknown table, ...) and
//!    `ddl_pending` shows that this very statement was started before, it is passed; any other
//!    failure stops the link with the server's message.

use drc_config::{DdlMode, Replication};
use drc_core::change::DdlEvent;
use drc_core::ddl::{first_words, words, DdlKind};
use tracing::{info, warn};

use crate::batch::Batch;
use crate::link::{checkpoint_statement, Runner};
use crate::LinkError;
use drc_meta::{self as meta, Checkpoint};

/// What a link does with one DDL statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Pass it (logged): it changes nothing drc replicates, or the operator chose `ignore`.
    Pass(String),
    /// Stop the link at it, for this reason, until an operator acknowledges it.
    Stop(String),
    /// Apply it to the target.
    Replicate,
}

/// The decision about one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What to do.
    pub action: Action,
    /// The replicated tables it touches, as `db.table` (for messages).
    pub tables: Vec<String>,
}

/// Longest statement text quoted in errors and logs, in characters.
pub const STATEMENT_CHARS: usize = 300;

/// `statement` on one line, cut to [`STATEMENT_CHARS`] characters.
pub fn short_statement(statement: &str) -> String {
    let one_line: String = statement.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(STATEMENT_CHARS) {
        Some((at, _)) => format!("{}... ({} bytes)", &one_line[..at], statement.len()),
        None => one_line,
    }
}

/// The identity of a DDL statement in the source's binlog, as operators give it to
/// `drc ddl skip --position`: its GTID when the source uses GTIDs, else the binlog file and
/// offset after it.
pub fn position_id(ev: &DdlEvent) -> String {
    match &ev.gtid {
        Some(g) => g.to_string(),
        None => ev.file_pos.to_string(),
    }
}

/// Leading keywords of statements that change no table's data or schema.
const NOT_TABLE_STATEMENTS: [&[&str]; 20] = [
    &["GRANT"],
    &["REVOKE"],
    &["FLUSH"],
    &["ANALYZE"],
    &["OPTIMIZE"],
    &["REPAIR"],
    &["CHECK"],
    &["SET"],
    &["INSTALL"],
    &["UNINSTALL"],
    &["CREATE", "USER"],
    &["DROP", "USER"],
    &["ALTER", "USER"],
    &["RENAME", "USER"],
    &["CREATE", "ROLE"],
    &["DROP", "ROLE"],
    &["CREATE", "SERVER"],
    &["DROP", "SERVER"],
    &["ALTER", "SERVER"],
    &["ALTER", "DATABASE"],
];

fn pass(why: impl Into<String>) -> Decision {
    Decision {
        action: Action::Pass(why.into()),
        tables: Vec::new(),
    }
}

/// Decides what to do with `ev`; see the module docs.
pub fn decide(ev: &DdlEvent, replication: &Replication, policy: &drc_config::Ddl) -> Decision {
    let lead = first_words(&ev.statement, 2);
    if NOT_TABLE_STATEMENTS.iter().any(|kws| {
        kws.iter()
            .zip(&lead)
            .filter(|(k, w)| **k == w.as_str())
            .count()
            == kws.len()
    }) {
        return pass("not about tables");
    }
    // Replicated databases the statement's text names (for statements without table names).
    let named_dbs = || -> Vec<String> {
        let ws = words(&ev.statement);
        replication
            .databases
            .iter()
            .filter(|d| ws.iter().any(|w| w == *d))
            .cloned()
            .collect()
    };
    let ddl = &ev.ddl;
    if matches!(ddl.kind, DdlKind::CreateDatabase | DdlKind::DropDatabase) {
        let dbs = named_dbs();
        if dbs.is_empty() {
            return pass("names no replicated database");
        }
        let action = if ddl.kind == DdlKind::DropDatabase {
            Action::Stop("DROP DATABASE of a replicated database is never replicated".into())
        } else if policy.mode == DdlMode::Replicate {
            Action::Replicate
        } else {
            Action::Stop("[ddl] mode is \"stop\"".into())
        };
        return Decision {
            action,
            tables: dbs.into_iter().map(|d| format!("{d}.*")).collect(),
        };
    }
    let resolved: Vec<(String, String)> = ddl
        .tables
        .iter()
        .map(|t| {
            let db = t.database.clone().unwrap_or_else(|| ev.database.clone());
            (db, t.table.clone())
        })
        .collect();
    if resolved.is_empty() || resolved.iter().any(|(db, _)| db.is_empty()) {
        if ddl.kind == DdlKind::Other && ddl.parsed {
            return pass("names no table");
        }
        let mut dbs = named_dbs();
        if replication.databases.contains(&ev.database) && !dbs.contains(&ev.database) {
            dbs.push(ev.database.clone());
        }
        if dbs.is_empty() {
            return pass("names no replicated database");
        }
        return Decision {
            action: Action::Stop(
                "drc could not determine which tables the statement changes, and it names a replicated database"
                    .into(),
            ),
            tables: dbs.into_iter().map(|d| format!("{d}.*")).collect(),
        };
    }
    let meta = replication.meta_database.as_str();
    if resolved.iter().all(|(db, _)| db == meta) {
        return pass("drc's meta database");
    }
    let replicated: Vec<&(String, String)> = resolved
        .iter()
        .filter(|(db, t)| replication.replicates(db, t))
        .collect();
    if replicated.is_empty() {
        return pass("touches no replicated table");
    }
    let tables: Vec<String> = replicated.iter().map(|(d, t)| format!("{d}.{t}")).collect();
    let modes: Vec<DdlMode> = replicated
        .iter()
        .map(|(d, t)| policy.mode_of(d, t))
        .collect();
    let action = if modes.iter().all(|m| *m == DdlMode::Ignore) {
        Action::Pass("[ddl.tables] mode \"ignore\"".into())
    } else if let Some(i) = modes.iter().position(|m| *m == DdlMode::Stop) {
        Action::Stop(format!("[ddl] mode is \"stop\" for {}", tables[i]))
    } else if replicated.len() != resolved.len() {
        Action::Stop(
            "the statement touches replicated and not replicated tables together; replicating it would change tables drc does not replicate"
                .into(),
        )
    } else {
        Action::Replicate
    };
    Decision { action, tables }
}

/// Server errors that a DDL statement returns when its effect is already present: table or
/// database exists, unknown table or database, duplicate column or key name, cannot drop a
/// missing column or key ([`drc_mysql::codes::DDL_ALREADY_APPLIED`]).
pub fn already_applied(e: &crate::LinkError) -> bool {
    match e {
        crate::LinkError::Target { source, .. } => drc_mysql::codes::server_code(source)
            .is_some_and(drc_mysql::codes::is_ddl_already_applied),
        _ => false,
    }
}

impl Runner {
    /// Handles a batch that holds one DDL statement (sequence `seq`); see the module docs.
    pub(crate) async fn ddl(
        &mut self,
        seq: u64,
        batch: &Batch,
        ev: &DdlEvent,
        decision: &Decision,
    ) -> Result<(), LinkError> {
        let meta_db = self.spec.replication.meta_database.clone();
        let link = self.spec.name.clone();
        let id = position_id(ev);
        let checkpoint = checkpoint_statement(
            &self.spec,
            &Checkpoint {
                worker: 0,
                batch: seq,
                workers: 1,
                start: batch.start.clone(),
                end: batch.end.clone(),
            },
        );
        let Some(applier) = self.appliers.first_mut() else {
            return Err(LinkError::Checkpoint("the link has no applier".into()));
        };
        if meta::ddl_acknowledged(&mut self.meta_conn, &meta_db, &link, &id).await? {
            warn!(position = %id, statement = %short_statement(&ev.statement),
                "DDL passed: an operator acknowledged it (drc ddl skip)");
            let note = meta::ddl_passed_statement(&meta_db, &link, &id, &ev.statement);
            applier.apply(&[note], &checkpoint).await?;
            self.count("skipped");
            self.set_position(&batch.end);
            return Ok(());
        }
        match &decision.action {
            Action::Stop(reason) => {
                self.count("stopped");
                Err(LinkError::Ddl {
                    link,
                    position: id,
                    statement: short_statement(&ev.statement),
                    tables: decision.tables.join(", "),
                    reason: reason.clone(),
                })
            }
            Action::Pass(_) => {
                applier.apply(&[], &checkpoint).await?;
                self.set_position(&batch.end);
                Ok(())
            }
            Action::Replicate => {
                let started = meta::ddl_pending(&mut self.meta_conn, &meta_db, &link).await?;
                let retry = started.as_deref() == Some(id.as_str());
                let start = meta::ddl_start_statement(&meta_db, &link, &id, &ev.statement);
                mysql_async::prelude::Queryable::query_drop(&mut self.meta_conn, start)
                    .await
                    .map_err(|e| LinkError::target("recording the pending DDL", e))?;
                match applier.run_ddl(&ev.database, &ev.statement).await {
                    Ok(()) => {
                        info!(position = %id, statement = %short_statement(&ev.statement), "DDL replicated")
                    }
                    Err(e) if retry && already_applied(&e) => {
                        warn!(position = %id, error = %e,
                            "DDL already applied before a restart (its checkpoint was not written); passing it")
                    }
                    Err(e @ LinkError::Fenced { .. }) => return Err(e),
                    Err(e) => {
                        return Err(LinkError::DdlFailed {
                            link,
                            position: id,
                            statement: short_statement(&ev.statement),
                            source: Box::new(e),
                        })
                    }
                }
                let done = meta::ddl_done_statement(&meta_db, &link);
                applier.apply(&[done], &checkpoint).await?;
                self.forget_schemas();
                self.count("replicated");
                self.set_position(&batch.end);
                Ok(())
            }
        }
    }

    fn count(&self, action: &str) {
        self.metrics
            .ddl
            .with_label_values(&[self.spec.name.as_str(), action])
            .inc();
    }
}

#[cfg(test)]
mod tests;
