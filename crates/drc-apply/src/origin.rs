//! Which `server_id`s in a source's binlog are the source's own writes and which are drc's
//! (the `server_id` loopback rule, [`crate::filter`]), kept right through server identity
//! changes.
//!
//! Protocol:
//! - Every reader (a link S->T, or S's local-delete reader) records S's current `server_id` in a
//!   meta database before it reads (`<meta>.source_identity`, [`meta::record_identity`]): a
//!   link in T's, the local-delete reader in S's. The recorded ids of a reader are S's own ids
//!   ([`OwnIds`]), so a checkpoint taken before a failover or a restart with a new `server_id`
//!   still finds S's older local writes under the old id.
//! - A link S->T records S's id *before* its appliers write anything into T under that id (the
//!   canary included). So the ids recorded in T by links into T are exactly the ids drc writes
//!   under in T: a reader of T's binlog drops those ([`meta::tag_ids`]).
//! - An id that a reader knows neither way is looked up again in the source (its current
//!   `server_id` and its recorded tags, [`OriginLookup::resolve`]); the tag of a drc write is
//!   always recorded before the write, so the lookup is definitive. An id still unknown after
//!   it (an earlier id of the source that was never recorded, e.g. a change made while no drc
//!   ran, or a meta database that was lost) stops the reader with an error that names the id,
//!   the position and the remedy — never a guess, since a wrong guess either loses the source's
//!   writes or loops drc's.
//! - The source ([`drc_source::Source`]) also stops on a reconnect to a server with another
//!   identity, so that a link restarts, records the new id and proves its tag again with the
//!   canary before it applies anything more.

use drc_core::change::SourceEvent;
use drc_core::position::Position;
use drc_mysql::{connect, Flavor, ServerInfo};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tracing::{info, warn};

use crate::filter::{LinkFilter, OriginIds, OwnIds};
use crate::LinkError;
use crate::CONNECT_TIMEOUT;
use drc_meta::{self as meta, IdentityRole};

/// The source's own `server_id`s for reader `name`, after recording the server's current
/// identity in `conn`'s meta database: the current id and every id recorded earlier.
pub async fn own_ids(
    conn: &mut Conn,
    meta_db: &str,
    name: &str,
    role: IdentityRole,
    source: &ServerInfo,
) -> Result<OwnIds, LinkError> {
    let earlier = meta::record_identity(
        conn,
        meta_db,
        name,
        role,
        source.server_id,
        &source.server_uuid,
    )
    .await?;
    if earlier.new {
        warn!(reader = %name, server_id = source.server_id, earlier = ?earlier.ids, "the server behind the source's address changed identity since this reader last ran (failover or restart with a new server_id); its transactions under every one of these ids are kept as its own");
    }
    let own = OwnIds::new(source.server_id, earlier.ids);
    if own.all().len() > 1 {
        info!(reader = %name, ids = ?own.all(), "the source's own writes carry any of these server_ids");
    }
    Ok(own)
}

/// (MariaDB) The `server_id` of the last GTID of the source's own domain in `resume`: the
/// writer of the source's last local transaction before the stored position, an own id even
/// when the identity table is newer than that position (drc writes under its origins'
/// domains, never under the source's).
pub fn gtid_hint(source: &ServerInfo, resume: &Position) -> Option<u32> {
    match (resume, source.flavor) {
        (Position::MariaGtid(list), Flavor::MariaDb) => {
            list.get(source.gtid_domain_id).map(|g| g.server_id)
        }
        _ => None,
    }
}

/// Looks up, in the source server, what an unknown `server_id` is.
pub struct OriginLookup {
    name: String,
    url: String,
    meta: String,
    conn: Option<Conn>,
}

impl std::fmt::Debug for OriginLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginLookup")
            .field("name", &self.name)
            .finish()
    }
}

impl OriginLookup {
    /// Lookups for reader `name` in the server at `url`, whose meta database is `meta`.
    pub fn new(name: &str, url: &str, meta: &str) -> Self {
        OriginLookup {
            name: name.to_string(),
            url: url.to_string(),
            meta: meta.to_string(),
            conn: None,
        }
    }

    /// The source's current `server_id` and the ids drc writes under there. A connection that
    /// broke since the last lookup (the server restarted) is replaced once.
    pub async fn read(&mut self) -> Result<(u32, Vec<u32>), LinkError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let conn = match self.conn.as_mut() {
                Some(c) => c,
                None => self.conn.insert(connect(&self.url, CONNECT_TIMEOUT).await?),
            };
            let read = async {
                let id: Option<u32> = conn.query_first("SELECT @@server_id").await?;
                let tags = meta::tag_ids(conn, &self.meta).await?;
                Ok::<_, mysql_async::Error>((id.unwrap_or(0), tags))
            }
            .await;
            match read {
                Ok(r) => return Ok(r),
                Err(e) => {
                    self.conn = None;
                    if tries >= 2 || !drc_mysql::is_transient_driver_error(&e) {
                        return Err(LinkError::target(
                            "reading the source's server_id and drc's tags",
                            e,
                        ));
                    }
                }
            }
        }
    }

    /// The ids a reader starts with: `own`, and the tags recorded in the source. Refuses an
    /// id that is both (another center's applier writes under one of the source's ids).
    pub async fn initial(&mut self, own: OwnIds) -> Result<OriginIds, LinkError> {
        let (_, foreign) = self.read().await?;
        self.check(&own, &foreign)?;
        Ok(OriginIds { own, foreign })
    }

    fn check(&self, own: &OwnIds, foreign: &[u32]) -> Result<(), LinkError> {
        match foreign.iter().find(|id| own.contains(**id)) {
            Some(id) => Err(LinkError::Setup(format!(
                "{}: server_id {id} is both one of the source's own ids ({:?}) and an id drc's appliers write under in the source center (<meta>.source_identity, role 'link'): drc cannot tell the source's writes from its own. Give every center's server an id no other center ever used",
                self.name,
                own.all()
            ))),
            None => Ok(()),
        }
    }

    /// Resolves `server_id`, unknown to `filter`, seen at `position`: learns it as a drc tag
    /// or as the source's (new) own id, or fails with [`LinkError::UnknownOrigin`]. (For a
    /// transaction the caller then calls [`LinkFilter::settle_origin`].)
    pub async fn resolve(
        &mut self,
        filter: &mut LinkFilter,
        server_id: u32,
        position: &Position,
    ) -> Result<(), LinkError> {
        let (current, foreign) = self.read().await?;
        let Some(ids) = filter.origin_mut().ids_mut() else {
            return Ok(());
        };
        if current == server_id && !foreign.contains(&server_id) {
            warn!(reader = %self.name, server_id, %position, "the source now writes under a new server_id; its transactions are kept as its own");
            ids.own.add(server_id);
        }
        self.check(&ids.own, &foreign)?;
        ids.foreign = foreign;
        if ids.classify(server_id).is_some() {
            return Ok(());
        }
        Err(LinkError::UnknownOrigin {
            reader: self.name.clone(),
            server_id,
            position: position.to_string(),
            own: format!("{:?}", ids.own.all()),
            tags: format!("{:?}", ids.foreign),
        })
    }
}

/// Filters `ev` (read after `position`), looking up an unknown origin first when it matters
/// ([`LinkFilter::unknown_origin`]). Without a lookup such an origin is an error.
pub async fn filter_event(
    filter: &mut LinkFilter,
    lookup: Option<&mut OriginLookup>,
    ev: SourceEvent,
    position: &Position,
) -> Result<SourceEvent, LinkError> {
    if let Some(id) = filter.unknown_origin(&ev) {
        match lookup {
            Some(l) => {
                l.resolve(filter, id, position).await?;
                filter.settle_origin();
            }
            None => {
                return Err(LinkError::UnknownOrigin {
                    reader: "reader".into(),
                    server_id: id,
                    position: position.to_string(),
                    own: "?".into(),
                    tags: "?".into(),
                })
            }
        }
    }
    Ok(filter.filter(ev))
}
