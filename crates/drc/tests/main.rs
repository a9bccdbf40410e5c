//! End-to-end tests of the `drc` binary, run as a user would run it.

mod tail;
