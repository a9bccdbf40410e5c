//! The durable Raft state of one replica: vote, log, committed id, state machine and snapshot,
//! kept in one JSON file in the replica's data directory.
//!
//! Durability protocol: every change rewrites the whole state into `raft-state.json.tmp`,
//! `fsync`s it, renames it over `raft-state.json` and `fsync`s the directory, before the call
//! returns. A crash leaves either the old or the new file, never a torn one. The state is small:
//! drc's Raft group carries no application entries, only one blank entry per elected leader and
//! the membership; snapshots (every [`SNAPSHOT_EVERY`] entries) let openraft purge the log, so
//! the file stays a few kilobytes.
//!
//! The state machine holds only what openraft requires (last applied log id and membership).
//! It is persisted with the rest, so `apply` is durable on return.
//!
//! The writes are synchronous (a few KB and one fsync, on the runtime thread that runs
//! openraft's core task): rare enough (a vote or an entry per election, an apply per entry) not
//! to need a blocking pool.
//!
//! Concurrency: openraft calls the storage from its core task, and reads the log and builds
//! snapshots from other tasks; everything goes through one mutex that is never held across an
//! `.await`.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::{Cursor, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogState, RaftLogReader, RaftSnapshotBuilder, RaftStorage, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};

use crate::TypeConfig;

/// The file holding the state, inside the data directory.
pub const STATE_FILE: &str = "raft-state.json";

/// openraft builds a snapshot (and may purge the log) after this many applied entries.
pub const SNAPSHOT_EVERY: u64 = 100;

/// The state machine: only what openraft needs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Machine {
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
}

/// Everything persisted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    vote: Option<Vote<u64>>,
    committed: Option<LogId<u64>>,
    last_purged: Option<LogId<u64>>,
    log: BTreeMap<u64, Entry<TypeConfig>>,
    machine: Machine,
    snapshot: Option<(SnapshotMeta<u64, BasicNode>, Vec<u8>)>,
}

struct Inner {
    dir: PathBuf,
    state: State,
}

/// Errors opening a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The directory cannot be created or the state file read.
    #[error("raft data directory {dir}: {source}")]
    Io {
        /// The data directory.
        dir: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The state file does not parse (not written by drc, or damaged).
    #[error("raft state file {path} is unreadable ({source}); if this replica's data directory was damaged, move it away and start the replica again: it rejoins and catches up from the leader")]
    Corrupt {
        /// The file.
        path: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
}

/// The durable store (clones share one state). See the module docs.
#[derive(Clone)]
pub struct FileStore {
    inner: Arc<Mutex<Inner>>,
}

fn io_error(e: std::io::Error) -> StorageError<u64> {
    StorageIOError::write(&e).into()
}

impl FileStore {
    /// Opens (or creates) the store in `dir`, creating the directory when missing; fails when
    /// the directory is not writable.
    pub fn open(dir: &Path) -> Result<FileStore, StoreError> {
        let io = |source| StoreError::Io {
            dir: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        // Prove the directory is writable now rather than at the first vote.
        let probe = dir.join(".write-test");
        std::fs::write(&probe, b"drc").map_err(io)?;
        std::fs::remove_file(&probe).map_err(io)?;
        let path = dir.join(STATE_FILE);
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt {
                path: path.display().to_string(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(io(e)),
        };
        Ok(FileStore {
            inner: Arc::new(Mutex::new(Inner {
                dir: dir.to_path_buf(),
                state,
            })),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The stored vote (for tests and diagnostics).
    pub fn vote(&self) -> Option<Vote<u64>> {
        self.lock().state.vote
    }

    /// The indexes of the stored log entries (for tests and diagnostics).
    pub fn log_indexes(&self) -> Vec<u64> {
        self.lock().state.log.keys().copied().collect()
    }
}

impl Inner {
    /// Writes the whole state durably (see the module docs).
    #[allow(clippy::result_large_err)] // openraft's own error type
    fn persist(&self) -> Result<(), StorageError<u64>> {
        let bytes = serde_json::to_vec(&self.state).map_err(|e| StorageIOError::write(&e))?;
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let mut f = std::fs::File::create(&tmp).map_err(io_error)?;
        f.write_all(&bytes).map_err(io_error)?;
        f.sync_all().map_err(io_error)?;
        drop(f);
        std::fs::rename(&tmp, self.dir.join(STATE_FILE)).map_err(io_error)?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error)?;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for FileStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        let g = self.lock();
        Ok(g.state.log.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for FileStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let mut g = self.lock();
        let machine = g.state.machine.clone();
        let data = serde_json::to_vec(&machine).map_err(|e| StorageIOError::write(&e))?;
        let snapshot_id = match machine.last_applied {
            Some(l) => format!("{}-{}", l.leader_id.term, l.index),
            None => "empty".to_string(),
        };
        let meta = SnapshotMeta {
            last_log_id: machine.last_applied,
            last_membership: machine.membership,
            snapshot_id,
        };
        g.state.snapshot = Some((meta.clone(), data.clone()));
        g.persist()?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

#[allow(deprecated)]
impl RaftStorage<TypeConfig> for FileStore {
    type LogReader = FileStore;
    type SnapshotBuilder = FileStore;

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        let mut g = self.lock();
        g.state.vote = Some(*vote);
        g.persist()
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        Ok(self.lock().state.vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), StorageError<u64>> {
        let mut g = self.lock();
        if g.state.committed != committed {
            g.state.committed = committed;
            g.persist()?;
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        Ok(self.lock().state.committed)
    }

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        let g = self.lock();
        let last_purged_log_id = g.state.last_purged;
        let last_log_id = g
            .state
            .log
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn append_to_log<I>(&mut self, entries: I) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
    {
        let mut g = self.lock();
        for e in entries {
            g.state.log.insert(e.log_id.index, e);
        }
        g.persist()
    }

    async fn delete_conflict_logs_since(
        &mut self,
        log_id: LogId<u64>,
    ) -> Result<(), StorageError<u64>> {
        let mut g = self.lock();
        g.state.log.retain(|&i, _| i < log_id.index);
        g.persist()
    }

    async fn purge_logs_upto(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        let mut g = self.lock();
        g.state.last_purged = Some(log_id);
        g.state.log.retain(|&i, _| i > log_id.index);
        g.persist()
    }

    async fn last_applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        let g = self.lock();
        Ok((
            g.state.machine.last_applied,
            g.state.machine.membership.clone(),
        ))
    }

    async fn apply_to_state_machine(
        &mut self,
        entries: &[Entry<TypeConfig>],
    ) -> Result<Vec<()>, StorageError<u64>> {
        let mut g = self.lock();
        for e in entries {
            g.state.machine.last_applied = Some(e.log_id);
            if let EntryPayload::Membership(m) = &e.payload {
                g.state.machine.membership = StoredMembership::new(Some(e.log_id), m.clone());
            }
        }
        g.persist()?;
        Ok(entries.iter().map(|_| ()).collect())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let data = snapshot.into_inner();
        let machine: Machine =
            serde_json::from_slice(&data).map_err(|e| StorageIOError::read(&e))?;
        let mut g = self.lock();
        g.state.machine = Machine {
            last_applied: meta.last_log_id.or(machine.last_applied),
            membership: meta.last_membership.clone(),
        };
        g.state.snapshot = Some((meta.clone(), data));
        g.persist()
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        let g = self.lock();
        Ok(g.state.snapshot.as_ref().map(|(meta, data)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(data.clone())),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 0), index),
            payload: EntryPayload::Blank,
        }
    }

    #[tokio::test]
    async fn vote_and_log_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut s = FileStore::open(dir.path()).expect("open");
            assert_eq!(s.read_vote().await.expect("vote"), None);
            s.save_vote(&Vote::new(3, 1)).await.expect("save vote");
            s.append_to_log([entry(1, 0), entry(2, 1), entry(3, 2)])
                .await
                .expect("append");
            s.delete_conflict_logs_since(LogId::new(CommittedLeaderId::new(3, 0), 2))
                .await
                .expect("delete");
            s.save_committed(Some(entry(2, 1).log_id))
                .await
                .expect("committed");
        }
        let mut s = FileStore::open(dir.path()).expect("reopen");
        assert_eq!(s.read_vote().await.expect("vote"), Some(Vote::new(3, 1)));
        assert_eq!(s.log_indexes(), vec![0, 1]);
        assert_eq!(
            s.read_committed().await.expect("committed"),
            Some(entry(2, 1).log_id)
        );
        let st = s.get_log_state().await.expect("state");
        assert_eq!(st.last_log_id, Some(entry(2, 1).log_id));
        s.purge_logs_upto(entry(2, 1).log_id).await.expect("purge");
        let mut s = FileStore::open(dir.path()).expect("reopen 2");
        let st = s.get_log_state().await.expect("state");
        assert_eq!(st.last_purged_log_id, Some(entry(2, 1).log_id));
        assert_eq!(st.last_log_id, Some(entry(2, 1).log_id));
        assert!(s.log_indexes().is_empty());
    }

    #[tokio::test]
    async fn applied_state_and_snapshot_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut s = FileStore::open(dir.path()).expect("open");
            s.apply_to_state_machine(&[entry(1, 0), entry(1, 1)])
                .await
                .expect("apply");
            let snap = s.build_snapshot().await.expect("snapshot");
            assert_eq!(snap.meta.last_log_id, Some(entry(1, 1).log_id));
        }
        let mut s = FileStore::open(dir.path()).expect("reopen");
        let (applied, _) = s.last_applied_state().await.expect("applied");
        assert_eq!(applied, Some(entry(1, 1).log_id));
        let snap = s
            .get_current_snapshot()
            .await
            .expect("snapshot")
            .expect("some");
        assert_eq!(snap.meta.snapshot_id, "1-1");
    }

    #[test]
    fn damaged_file_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(STATE_FILE), b"{not json").expect("write");
        let e = FileStore::open(dir.path()).err().expect("error");
        assert!(e.to_string().contains("unreadable"), "{e}");
    }

    #[test]
    fn unwritable_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("plain-file");
        std::fs::write(&file, b"x").expect("write");
        let e = FileStore::open(&file.join("sub")).err().expect("error");
        assert!(e.to_string().contains("raft data directory"), "{e}");
    }
}
