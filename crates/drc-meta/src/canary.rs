//! The start-up canary (`<meta>.canary`): one row per link, bumped by one tagged transaction
//! that the link's start-up writes in the target and reads back from the target's binlog, to
//! prove that readers of that binlog drop drc's own writes (`drc_apply::link`).

use drc_core::sqltext::quoted;

use crate::table;

/// The canary write of `link`.
pub fn statement(meta: &str, link: &str) -> String {
    let mut q = String::from("INSERT INTO ");
    table(&mut q, meta, "canary");
    q.push_str(" (`link`, `seq`) VALUES (");
    quoted(&mut q, link);
    q.push_str(", 1) ON DUPLICATE KEY UPDATE `seq` = `seq` + 1");
    q
}

/// The canary table's name, as the binlog's row events name it.
pub const TABLE: &str = "canary";
