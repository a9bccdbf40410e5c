//! The heartbeat (`<meta>.heartbeat`): one row per center, written every second by that
//! center's daemon. Unlike the other meta tables it is replicated on purpose: a peer's row
//! arriving through a link shows how far behind the link is.

use drc_core::sqltext::quoted;

use crate::table;

/// The statement that stamps `center`'s heartbeat row with the server's time.
pub fn statement(meta: &str, center: &str) -> String {
    let mut q = String::from("INSERT INTO ");
    table(&mut q, meta, "heartbeat");
    q.push_str(" (`center`, `ts`, `seq`) VALUES (");
    quoted(&mut q, center);
    q.push_str(", NOW(6), 1) ON DUPLICATE KEY UPDATE `ts` = NOW(6), `seq` = `seq` + 1");
    q
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
    }
}
