//! Tests of `drc-id`: layouts and the generator (no I/O), then leases and segments against a
//! real Redis (127.0.0.1:6379) and real MariaDB servers from `drc-testkit`.

mod generator;
mod layout;
mod lease;
mod segment;
mod support;
