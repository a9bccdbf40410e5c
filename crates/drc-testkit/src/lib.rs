//! Throwaway MariaDB servers for `drc`'s integration tests.
//!
//! ```no_run
//! use drc_testkit::{MariaDb, ServerOptions};
//! let server = MariaDb::start(ServerOptions::default())?;
//! println!("{}", server.url()); // mysql://root@127.0.0.1:PORT
//! # Ok::<(), drc_testkit::TestkitError>(())
//! ```
//!
//! Guarantees:
//! - a server starts in well under a second after the first of the machine: `mariadb-install-db`
//!   runs once per machine and MariaDB version (template datadir cached in the temp dir), and
//!   each server copies it;
//! - every server of a process has a distinct `server_id` and `gtid_domain_id`;
//! - nothing is left behind, whatever happens to the test process: each server is owned by a
//!   small `sh` supervisor that kills it and deletes its directory when the test process's end of
//!   a pipe closes (drop, panic, exit, or `SIGKILL`);
//! - starting and stopping are synchronous and independent of any async runtime, so servers can
//!   be shared by all tests of a binary ([`shared_servers`]);
//! - waits poll with a deadline; nothing sleeps a fixed time.
//!
//! Needs `mariadbd` and `mariadb-install-db` (Debian: `apt-get install -y mariadb-server`) and
//! Linux (`/proc` is used to see whether a server is alive).

mod client;
mod error;
mod options;
mod port;
mod server;
mod shared;
mod supervisor;
mod template;

pub use client::{connect, create_db, wait_until, CONNECT_DEADLINE};
pub use error::TestkitError;
pub use options::{
    BinlogFormat, BinlogRowImage, BinlogRowMetadata, ServerOptions, FIRST_AUTO_SERVER_ID,
};
pub use port::free_port;
pub use server::MariaDb;
pub use shared::{shared_servers, unique_db_name};
