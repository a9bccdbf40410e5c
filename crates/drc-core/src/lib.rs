//! Domain types of drc, with no I/O.
//!
//! Everything that moves through the data path is described here: replication positions
//! ([`position`]), decoded column values ([`value`]), table schemas ([`schema`]), row changes and
//! the events a binlog source yields ([`change`]), and the classification of DDL statements
//! ([`ddl`]), and how a key column's collation folds text for ordering ([`collation`]). Crates that talk to servers (`drc-mysql`, `drc-source`) build on these types; this
//! crate never opens a connection or a file.

pub mod change;
pub mod collation;
pub mod ddl;
pub mod position;
pub mod schema;
pub mod secret;
pub mod sqltext;
pub mod value;
