//! Named MySQL/MariaDB server error codes that drc reacts to, and the one place that classifies
//! them.
//!
//! Each constant carries the server's own name for the code (`perror <code>` on MariaDB; the
//! two codes above 3000 are MySQL's). Code elsewhere never compares a raw number: it asks one of
//! the classifiers here.
//!
//! Classes (a code may be in more than one: a duplicate key is also a data error):
//! - **transient** ([`is_transient`], [`is_transient_driver_error`]): the same statement can
//!   succeed later — connection trouble, server shutdown, lock waits, deadlocks, a killed query.
//!   Every other server error is **definite**: an operator (or the data) must change first.
//! - **packet too large** ([`is_packet_too_large`]): definite — the same query fails the same
//!   way every time, whether the driver or the server refused it.
//! - **data error** ([`is_data_error`]): the target refused the data itself (strict-mode
//!   conversion, NULL, length, partition, charset, constraint, a unique key of another row).
//! - **duplicate key** ([`is_duplicate_key`]): a unique key of another row.
//! - **source refused** ([`is_source_refusal`]): a binlog dump that cannot go on from this
//!   position or as this user (definite).
//! - **DDL already applied** ([`is_ddl_already_applied`]): a DDL statement whose effect is
//!   already present.
//!
//! Fencing is not a server error code: a stale term is detected by drc's own fence check
//! (`drc_apply::fence`) and is definite.

use mysql_common::proto::codec::error::PacketCodecError;

/// Too many connections.
pub const ER_CON_COUNT_ERROR: u16 = 1040;
/// Server shutdown in progress.
pub const ER_SERVER_SHUTDOWN: u16 = 1053;
/// Lock wait timeout exceeded; try restarting transaction.
pub const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;
/// Deadlock found when trying to get lock; try restarting transaction.
pub const ER_LOCK_DEADLOCK: u16 = 1213;
/// Query execution was interrupted.
pub const ER_QUERY_INTERRUPTED: u16 = 1317;
/// Connection was killed (MariaDB).
pub const ER_CONNECTION_KILLED: u16 = 1927;

/// Got a packet bigger than `max_allowed_packet` bytes.
pub const ER_NET_PACKET_TOO_LARGE: u16 = 1153;
/// Result of a function was larger than `max_allowed_packet` - truncated.
pub const ER_WARN_ALLOWED_PACKET_OVERFLOWED: u16 = 1301;

/// Column cannot be null.
pub const ER_BAD_NULL_ERROR: u16 = 1048;
/// Data too long for column.
pub const ER_DATA_TOO_LONG: u16 = 1406;
/// Truncated incorrect value.
pub const ER_TRUNCATED_WRONG_VALUE: u16 = 1292;
/// Incorrect value for column.
pub const ER_TRUNCATED_WRONG_VALUE_FOR_FIELD: u16 = 1366;
/// Out of range value for column.
pub const ER_WARN_DATA_OUT_OF_RANGE: u16 = 1264;
/// Data truncated for column.
pub const WARN_DATA_TRUNCATED: u16 = 1265;
/// Table has no partition for value.
pub const ER_NO_PARTITION_FOR_GIVEN_VALUE: u16 = 1526;
/// Column count doesn't match value count.
pub const ER_WRONG_VALUE_COUNT_ON_ROW: u16 = 1136;
/// Unknown column.
pub const ER_BAD_FIELD_ERROR: u16 = 1054;
/// Invalid character string.
pub const ER_INVALID_CHARACTER_STRING: u16 = 1300;
/// Cannot convert string from one character set to another (MySQL).
pub const ER_CANNOT_CONVERT_STRING: u16 = 3854;
/// Duplicate entry for key (by number).
pub const ER_DUP_ENTRY: u16 = 1062;
/// Duplicate entry for key (by name).
pub const ER_DUP_ENTRY_WITH_KEY_NAME: u16 = 1586;
/// CONSTRAINT failed (MariaDB's CHECK constraint).
pub const ER_CONSTRAINT_FAILED: u16 = 4025;
/// Check constraint is violated (MySQL).
pub const ER_CHECK_CONSTRAINT_VIOLATED: u16 = 3819;

/// A BIGINT value out of range in an expression (drc's own warning check raises it on purpose:
/// `drc_apply::strict`).
pub const ER_DATA_OUT_OF_RANGE: u16 = 1690;

/// Got fatal error from master when reading data from binary log (purged or invalid position,
/// unknown GTID).
pub const ER_MASTER_FATAL_ERROR_READING_BINLOG: u16 = 1236;
/// Access denied for user.
pub const ER_ACCESS_DENIED_ERROR: u16 = 1045;
/// Access denied; you need (at least one of) the privileges for this operation.
pub const ER_SPECIFIC_ACCESS_DENIED_ERROR: u16 = 1227;
/// Unknown command.
pub const ER_UNKNOWN_COM_ERROR: u16 = 1047;

/// Table already exists.
pub const ER_TABLE_EXISTS_ERROR: u16 = 1050;
/// Can't create database; database exists.
pub const ER_DB_CREATE_EXISTS: u16 = 1007;
/// Unknown table.
pub const ER_BAD_TABLE_ERROR: u16 = 1051;
/// Can't drop database; database doesn't exist.
pub const ER_DB_DROP_EXISTS: u16 = 1008;
/// Table doesn't exist.
pub const ER_NO_SUCH_TABLE: u16 = 1146;
/// Duplicate column name.
pub const ER_DUP_FIELDNAME: u16 = 1060;
/// Duplicate key name.
pub const ER_DUP_KEYNAME: u16 = 1061;
/// Can't DROP a column or key; check that it exists.
pub const ER_CANT_DROP_FIELD_OR_KEY: u16 = 1091;
/// Multiple primary key defined.
pub const ER_MULTIPLE_PRI_KEY: u16 = 1068;
/// Unknown database.
pub const ER_BAD_DB_ERROR: u16 = 1049;

/// Server errors after which the same statement can succeed later.
pub const TRANSIENT: &[u16] = &[
    ER_CON_COUNT_ERROR,
    ER_SERVER_SHUTDOWN,
    ER_LOCK_WAIT_TIMEOUT,
    ER_LOCK_DEADLOCK,
    ER_QUERY_INTERRUPTED,
    ER_CONNECTION_KILLED,
];

/// Server errors that say a packet was over `max_allowed_packet`.
pub const PACKET_TOO_LARGE: &[u16] = &[ER_NET_PACKET_TOO_LARGE, ER_WARN_ALLOWED_PACKET_OVERFLOWED];

/// Server errors that say the target refused the data itself.
pub const DATA_ERRORS: &[u16] = &[
    ER_BAD_NULL_ERROR,
    ER_DATA_TOO_LONG,
    ER_TRUNCATED_WRONG_VALUE,
    ER_TRUNCATED_WRONG_VALUE_FOR_FIELD,
    ER_WARN_DATA_OUT_OF_RANGE,
    WARN_DATA_TRUNCATED,
    ER_NO_PARTITION_FOR_GIVEN_VALUE,
    ER_WRONG_VALUE_COUNT_ON_ROW,
    ER_BAD_FIELD_ERROR,
    ER_INVALID_CHARACTER_STRING,
    ER_CANNOT_CONVERT_STRING,
    ER_DUP_ENTRY,
    ER_DUP_ENTRY_WITH_KEY_NAME,
    ER_CONSTRAINT_FAILED,
    ER_CHECK_CONSTRAINT_VIOLATED,
];

/// Server errors for a unique key held by another row.
pub const DUPLICATE_KEY: &[u16] = &[ER_DUP_ENTRY, ER_DUP_ENTRY_WITH_KEY_NAME];

/// Server errors that end a binlog dump for good: the position is gone, or the user may not.
pub const SOURCE_REFUSALS: &[u16] = &[
    ER_MASTER_FATAL_ERROR_READING_BINLOG,
    ER_ACCESS_DENIED_ERROR,
    ER_SPECIFIC_ACCESS_DENIED_ERROR,
    ER_UNKNOWN_COM_ERROR,
];

/// Server errors a DDL statement returns when its effect is already present.
pub const DDL_ALREADY_APPLIED: &[u16] = &[
    ER_TABLE_EXISTS_ERROR,
    ER_DB_CREATE_EXISTS,
    ER_BAD_TABLE_ERROR,
    ER_DB_DROP_EXISTS,
    ER_NO_SUCH_TABLE,
    ER_DUP_FIELDNAME,
    ER_DUP_KEYNAME,
    ER_CANT_DROP_FIELD_OR_KEY,
];

/// True for a server error code in [`TRANSIENT`].
pub fn is_transient(code: u16) -> bool {
    TRANSIENT.contains(&code)
}

/// True for a server error code in [`DATA_ERRORS`].
pub fn is_data_error(code: u16) -> bool {
    DATA_ERRORS.contains(&code)
}

/// True for a server error code in [`DUPLICATE_KEY`].
pub fn is_duplicate_key(code: u16) -> bool {
    DUPLICATE_KEY.contains(&code)
}

/// True for a server error code in [`SOURCE_REFUSALS`].
pub fn is_source_refusal(code: u16) -> bool {
    SOURCE_REFUSALS.contains(&code)
}

/// True for a server error code in [`DDL_ALREADY_APPLIED`].
pub fn is_ddl_already_applied(code: u16) -> bool {
    DDL_ALREADY_APPLIED.contains(&code)
}

/// The server error code of `e`, if the server answered with an error.
pub fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

/// Classifies a driver error: I/O and connection-level errors are transient, server errors are
/// transient only when [`is_transient`] says so (access denied, unknown database, syntax mean
/// "change something").
///
/// A packet over `max_allowed_packet` (refused by the client before it is sent, or by the
/// server, [`is_packet_too_large`]) is definite: the same query fails the same way every time.
pub fn is_transient_driver_error(e: &mysql_async::Error) -> bool {
    if is_packet_too_large(e) {
        return false;
    }
    match e {
        mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => true,
        mysql_async::Error::Server(s) => is_transient(s.code),
        mysql_async::Error::Url(_) | mysql_async::Error::Other(_) => false,
    }
}

/// True when `e` says a packet was larger than `max_allowed_packet`: the driver refused to send
/// it (it knows the server's limit), or the server refused it ([`PACKET_TOO_LARGE`]).
pub fn is_packet_too_large(e: &mysql_async::Error) -> bool {
    match e {
        mysql_async::Error::Io(mysql_async::IoError::Io(io)) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<PacketCodecError>())
            .is_some_and(|c| matches!(c, PacketCodecError::PacketTooLarge)),
        mysql_async::Error::Driver(mysql_async::DriverError::PacketTooLarge) => true,
        mysql_async::Error::Server(s) => PACKET_TOO_LARGE.contains(&s.code),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: u16) -> mysql_async::Error {
        mysql_async::Error::Server(mysql_async::ServerError {
            code,
            message: String::new(),
            state: String::new(),
        })
    }

    #[test]
    fn packet_too_large_is_definite() {
        let e = mysql_async::Error::Io(mysql_async::IoError::Io(std::io::Error::other(
            PacketCodecError::PacketTooLarge,
        )));
        assert!(is_packet_too_large(&e));
        assert!(!is_transient_driver_error(&e));
        let lost = mysql_async::Error::Io(mysql_async::IoError::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert!(!is_packet_too_large(&lost));
        assert!(is_transient_driver_error(&lost));
        assert!(is_packet_too_large(&server(ER_NET_PACKET_TOO_LARGE)));
        assert!(!is_transient_driver_error(&server(ER_NET_PACKET_TOO_LARGE)));
    }

    #[test]
    fn server_codes_are_classified() {
        for code in [ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT, ER_CONNECTION_KILLED] {
            assert!(is_transient_driver_error(&server(code)), "{code}");
        }
        for code in [ER_ACCESS_DENIED_ERROR, ER_DUP_ENTRY, ER_DATA_OUT_OF_RANGE] {
            assert!(!is_transient_driver_error(&server(code)), "{code}");
        }
        assert!(is_data_error(ER_DUP_ENTRY) && is_duplicate_key(ER_DUP_ENTRY));
        assert!(is_data_error(ER_DATA_TOO_LONG) && !is_duplicate_key(ER_DATA_TOO_LONG));
        assert!(!is_data_error(ER_DATA_OUT_OF_RANGE));
        assert!(is_source_refusal(ER_MASTER_FATAL_ERROR_READING_BINLOG));
        assert!(is_ddl_already_applied(ER_TABLE_EXISTS_ERROR));
        assert_eq!(server_code(&server(ER_DUP_ENTRY)), Some(1062));
    }

    /// No code is transient and definite at once.
    #[test]
    fn transient_codes_are_in_no_definite_class() {
        for code in TRANSIENT {
            let definite = [
                PACKET_TOO_LARGE,
                DATA_ERRORS,
                SOURCE_REFUSALS,
                DDL_ALREADY_APPLIED,
            ];
            assert!(!definite.iter().any(|c| c.contains(code)), "{code}");
        }
    }
}
