//! The heartbeat (`<meta>.heartbeat`): one row per center, written every second by that
//! center's daemon. Unlike the other meta tables it is replicated on purpose: a peer's row
//! arriving through a link shows how far behind the link is.
//!
//! The row's `ts` is `NOW(6)` of the writing center's server (`TIMESTAMP(6)`, microseconds, time
//! zone independent) and `seq` counts its writes. A link measures its lag when it has just
//! committed its source's row ([`applied_lag`]): this center's `NOW(6)` minus that stamp, so the
//! figure resolves microseconds and is off by the clock skew between the two servers.

use drc_core::sqltext::quoted;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::{table, MetaError};

/// The statement that stamps `center`'s heartbeat row with the server's time.
pub fn statement(meta: &str, center: &str) -> String {
    let mut q = String::from("INSERT INTO ");
    table(&mut q, meta, "heartbeat");
    q.push_str(" (`center`, `ts`, `seq`) VALUES (");
    quoted(&mut q, center);
    q.push_str(", NOW(6), 1) ON DUPLICATE KEY UPDATE `ts` = NOW(6), `seq` = `seq` + 1");
    q
}

/// One heartbeat of a center as seen in another center: its write count and how old it is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seen {
    /// The row's `seq` (the heartbeat's write count in its center).
    pub seq: u64,
    /// This server's `NOW(6)` minus the row's `ts`, in seconds: negative when the writing
    /// center's clock is ahead by more than the age. Never clamped.
    pub age: f64,
}

/// The query behind [`applied_lag`]: `center`'s row, aged by this server's clock.
pub fn lag_query(meta: &str, center: &str) -> String {
    let mut q = String::from("SELECT `seq`, TIMESTAMPDIFF(MICROSECOND, `ts`, NOW(6)) FROM ");
    table(&mut q, meta, "heartbeat");
    q.push_str(" WHERE `center` = ");
    quoted(&mut q, center);
    q
}

/// `center`'s heartbeat row in this server, aged by this server's clock now (`None` without a
/// row). Read right after a link committed the row, the age is the link's lag at that commit:
/// the time from the heartbeat's write in its center to it being visible here.
pub async fn applied_lag(
    conn: &mut Conn,
    meta: &str,
    center: &str,
) -> Result<Option<Seen>, MetaError> {
    let row: Option<(u64, i64)> = conn
        .query_first(lag_query(meta, center))
        .await
        .map_err(MetaError::query("reading the applied heartbeat"))?;
    Ok(row.map(|(seq, us)| Seen {
        seq,
        age: us as f64 / 1e6,
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_center_name_is_escaped() {
        assert_eq!(
            super::statement("m", "it's"),
            "INSERT INTO `m`.`heartbeat` (`center`, `ts`, `seq`) VALUES ('it\\'s', NOW(6), 1) \
             ON DUPLICATE KEY UPDATE `ts` = NOW(6), `seq` = `seq` + 1"
        );
        assert_eq!(
            super::lag_query("m", "a`b"),
            "SELECT `seq`, TIMESTAMPDIFF(MICROSECOND, `ts`, NOW(6)) FROM `m`.`heartbeat` \
             WHERE `center` = 'a`b'"
        );
    }
}
