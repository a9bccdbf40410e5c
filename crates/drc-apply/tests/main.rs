//! Integration tests of drc-apply against a real MariaDB server (drc-testkit), one database per
//! test.

mod collation;
mod fence;
mod guard;
mod lww_merge;
mod marker;
mod multi;
mod strict;
mod tombstone;
