//! Integration tests of the binlog source against real MariaDB servers started by drc-testkit.
//!
//! One test binary: the servers are shared ([`common::server`]) and every test works in a
//! database of its own, filtering the stream by that database.

mod common;
mod fixtures;
mod preflight;
mod resume;
mod schema;
mod values;
