//! Origin markers (`<meta>.origin`, the `marker` loopback strategy): every transaction an
//! applier writes starts by touching its own row, so readers of the center's binlog know the
//! transaction as drc's.
//!
//! Marker rows are keyed by `(origin, link, worker)` so that the parallel appliers of a link
//! never wait on each other's row lock: each writes only its own row. A marker row keyed by the
//! origin alone (drc before schema version 3) serialised every applier of every link from that
//! origin behind one row lock, held until each transaction committed; [`crate::schema`]
//! upgrades such a table in place.

use std::fmt::Write as _;

use drc_core::sqltext::quoted;

use crate::table;

/// The origin marker of one applier (`marker` strategy): which row of `<meta>.origin` it
/// touches first in every transaction. See the module docs for why the row is per worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// The meta database.
    pub meta: String,
    /// The origin center (the link's source).
    pub origin: String,
    /// The link, `source->target`.
    pub link: String,
    /// The applier worker index.
    pub worker: u32,
}

impl Marker {
    /// The same marker for applier `worker`.
    pub fn for_worker(&self, worker: u32) -> Marker {
        Marker {
            worker,
            ..self.clone()
        }
    }

    /// The marker statement: the first statement of every transaction this applier writes.
    pub fn statement(&self) -> String {
        let mut q = String::from("INSERT INTO ");
        table(&mut q, &self.meta, "origin");
        q.push_str(" (`origin`, `link`, `worker`, `seq`) VALUES (");
        quoted(&mut q, &self.origin);
        q.push_str(", ");
        quoted(&mut q, &self.link);
        let _ = write!(
            q,
            ", {}, 1) ON DUPLICATE KEY UPDATE `seq` = `seq` + 1",
            self.worker
        );
        q
    }
}
