//! Waiting until replication has caught up past a read: how verify tells a change in flight
//! from a real difference.
//!
//! Each center's binlog position is read right after that center answered a read
//! ([`crate::centers::Centers::everywhere`]). For every link `S->T`, the read is covered once
//! T's checkpoint of the link ([`drc_meta::recovery`] of its rows in T's meta database; for a
//! batch committed by some workers only, the batch's start) covers S's position: T then holds
//! every change S had committed when S was read (the checkpoint commits with the changes it
//! covers, design invariant 2). A checkpoint advances over transactions a link drops (drc's
//! own writes) too, and the daemons' heartbeats keep every position moving, so an idle
//! cluster catches up within about a batch delay.
//!
//! A link that has no checkpoint, or does not catch up within the timeout, is reported by name;
//! differences seen while it lagged are reported as unconfirmed, never as confirmed.

use std::time::Duration;

use drc_core::position::Position;
use drc_meta::{load_checkpoints, recovery, Recovery};

use crate::centers::Centers;
use crate::error::VerifyError;

/// How often the checkpoints are read while waiting.
pub const POLL: Duration = Duration::from_millis(50);

/// The link name `source->target`.
pub fn link(source: &str, target: &str) -> String {
    format!("{source}->{target}")
}

/// Where a link's checkpoints say it has applied up to (`None`: no checkpoint).
fn applied(rows: &[drc_meta::Checkpoint]) -> Option<Position> {
    match recovery(rows) {
        Recovery::Fresh => None,
        Recovery::Clean { position, .. } => Some(position),
        Recovery::Partial { start, .. } => Some(start),
    }
}

/// Waits until every link `S->T` has applied `positions[S]` (positions by center index).
/// Returns the links that did not within `timeout` (empty: caught up). Links in `skip` (known
/// to lag) are not waited for and are returned as lagging at once.
pub async fn wait(
    centers: &mut Centers,
    positions: &[Position],
    timeout: Duration,
    skip: &[String],
) -> Result<Vec<String>, VerifyError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let names = centers.names();
    let mut pending: Vec<(usize, usize)> = Vec::new();
    for t in 0..names.len() {
        for s in 0..names.len() {
            if s != t {
                pending.push((s, t));
            }
        }
    }
    let mut lagging: Vec<String> = Vec::new();
    pending.retain(|&(s, t)| {
        let l = link(&names[s], &names[t]);
        if skip.contains(&l) {
            lagging.push(l);
            false
        } else {
            true
        }
    });
    loop {
        let mut still = Vec::new();
        for &(s, t) in &pending {
            let l = link(&names[s], &names[t]);
            let meta = centers.meta.clone();
            let target = &mut centers.list[t];
            let rows = match load_checkpoints(target.conn(), &meta, &l).await {
                Ok(rows) => rows,
                // No meta database: drc never ran there, so the link has no checkpoint.
                Err(drc_meta::MetaError::Query { source, .. }) if drc_meta::is_missing(&source) => {
                    Vec::new()
                }
                Err(e) => return Err(VerifyError::meta(&names[t])(e)),
            };
            match applied(&rows) {
                Some(p) if p.covers(&positions[s]) => {}
                Some(_) => still.push((s, t)),
                None => lagging.push(l),
            }
        }
        pending = still;
        if pending.is_empty() {
            return Ok(lagging);
        }
        if tokio::time::Instant::now() >= deadline {
            lagging.extend(pending.iter().map(|&(s, t)| link(&names[s], &names[t])));
            return Ok(lagging);
        }
        tokio::time::sleep(POLL).await;
    }
}
