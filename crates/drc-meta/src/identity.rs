//! Source identities (`<meta>.source_identity`): per link into this center (role `link`) and
//! per local-delete reader (role `local`), every `server_id` its source server has had. A
//! link's rows are also the ids drc's appliers write under in this center, which readers of
//! this center's binlog drop (`drc_apply::origin`).

use std::fmt::Write as _;

use drc_core::sqltext::quoted;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::{table, MetaError};

/// Who recorded a `source_identity` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityRole {
    /// A link into this center: its source's id, which is also the tag its appliers write
    /// under here.
    Link,
    /// The center's local-delete reader: this center's own id.
    Local,
}

/// Records that the source of reader `name` (a link, or the local-delete reader) now has
/// `server_id` (and `server_uuid`), and returns every `server_id` recorded for it, the current
/// one included. Run before the reader reads, and before a link's appliers write anything
/// under this id.
pub async fn record_identity(
    conn: &mut Conn,
    meta: &str,
    name: &str,
    role: IdentityRole,
    server_id: u32,
    server_uuid: &str,
) -> Result<Identities, MetaError> {
    let mut q = String::from("SELECT `server_id` FROM ");
    table(&mut q, meta, "source_identity");
    q.push_str(" WHERE `link` = ");
    quoted(&mut q, name);
    q.push_str(" ORDER BY `first_seen`");
    let mut ids: Vec<u32> = conn
        .query(q)
        .await
        .map_err(MetaError::query("reading the source's identities"))?;
    if ids.contains(&server_id) {
        return Ok(Identities { ids, new: false });
    }
    let mut q = String::from("INSERT INTO ");
    table(&mut q, meta, "source_identity");
    q.push_str(" (`link`, `server_id`, `server_uuid`, `role`) VALUES (");
    quoted(&mut q, name);
    let _ = write!(q, ", {server_id}, ");
    quoted(&mut q, server_uuid);
    q.push_str(match role {
        IdentityRole::Link => ", 'link'",
        IdentityRole::Local => ", 'local'",
    });
    q.push_str(") ON DUPLICATE KEY UPDATE `server_id` = `server_id`");
    conn.query_drop(q)
        .await
        .map_err(MetaError::query("recording the source's identity"))?;
    let new = !ids.is_empty();
    ids.push(server_id);
    Ok(Identities { ids, new })
}

/// Every `server_id` recorded for a reader, oldest first, the current one included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identities {
    /// The ids.
    pub ids: Vec<u32>,
    /// The current id was recorded just now, after other ids: the server behind the reader's
    /// address changed identity since the reader last ran.
    pub new: bool,
}

/// The `server_id`s drc's appliers write under in the center of `conn` (every id recorded by a
/// link into it); empty when the center has no meta tables yet (nothing was applied there).
pub async fn tag_ids(conn: &mut Conn, meta: &str) -> Result<Vec<u32>, mysql_async::Error> {
    let mut q = String::from("SELECT DISTINCT `server_id` FROM ");
    table(&mut q, meta, "source_identity");
    q.push_str(" WHERE `role` = 'link'");
    match conn.query(q).await {
        Ok(ids) => Ok(ids),
        // No drc state in that center yet.
        Err(e) if crate::is_missing(&e) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}
