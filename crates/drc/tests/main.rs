//! End-to-end tests of the `drc` binary, run as a user would run it, against three real MariaDB
//! servers shared by the tests of this binary.

mod apply;
mod bootstrap;
mod check;
mod cli;
mod clock;
mod cluster;
mod conflicts;
mod control;
mod ddl;
mod deploy;
mod failover;
mod http;
mod id;
mod incidents;
mod lag;
mod observability;
mod proxy;
mod replicas;
mod replication;
mod routing;
mod sizes;
mod start;
mod stuck;
mod tail;
mod tls;
mod verify;
