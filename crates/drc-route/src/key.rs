//! Which bucket a key is in. The rule is meant to be computed by clients in any language
//! (docs/routing.md, "Keys and buckets"):
//!
//! 1. A key whose text is a canonical decimal integer (an optional `-`, then digits without a
//!    leading zero, or `0`; at most 38 digits) is an **integer key**: its bucket is
//!    `key mod buckets`, the non-negative remainder (`-1 mod 1024 = 1023`).
//! 2. Any other key is a **string key**: its bucket is `CRC-32(UTF-8 bytes of the key) mod
//!    buckets`, with the CRC-32 of zlib, Ethernet and PNG (IEEE 802.3 polynomial, reflected,
//!    initial and final XOR `0xFFFFFFFF`). It is the value of MySQL's `CRC32()`, Python's
//!    `zlib.crc32`, Java's `java.util.zip.CRC32` and Go's `hash/crc32.ChecksumIEEE`.
//!
//! So `"42"` and the integer `42` are the same key, and a client that sends every key as text
//! gets the same answer as the closure check, which reads typed column values.

use drc_core::value::Value;

/// The bucket of a key given as text.
pub fn bucket_of(key: &str, buckets: u32) -> u32 {
    match integer(key) {
        Some(n) => n.rem_euclid(i128::from(buckets)) as u32,
        None => crc32fast::hash(key.as_bytes()) % buckets,
    }
}

/// The bucket of a raw byte key (a binary column): an integer key when the bytes are such text,
/// else the CRC-32 of the bytes.
pub fn bucket_of_bytes(key: &[u8], buckets: u32) -> u32 {
    match std::str::from_utf8(key) {
        Ok(s) => bucket_of(s, buckets),
        Err(_) => crc32fast::hash(key) % buckets,
    }
}

/// The bucket of a column value, or `None` for a value that is not a routing key (NULL, dates,
/// floating point, JSON…).
pub fn bucket_of_value(value: &Value, buckets: u32) -> Option<u32> {
    match value {
        Value::Int(n) => Some(i128::from(*n).rem_euclid(i128::from(buckets)) as u32),
        Value::UInt(n) => Some((u128::from(*n) % u128::from(buckets)) as u32),
        Value::Decimal(d) => Some(bucket_of(d, buckets)),
        Value::Text(t) => Some(match t.decode() {
            Some(s) => bucket_of(&s, buckets),
            None => bucket_of_bytes(&t.bytes, buckets),
        }),
        Value::Bytes(b) => Some(bucket_of_bytes(b, buckets)),
        _ => None,
    }
}

/// The key as an integer when its text is a canonical decimal integer.
fn integer(key: &str) -> Option<i128> {
    let digits = key.strip_prefix('-').unwrap_or(key);
    let canonical = !digits.is_empty()
        && digits.len() <= 38
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && key != "-0";
    if canonical {
        key.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_map_by_remainder() {
        assert_eq!(bucket_of("0", 1024), 0);
        assert_eq!(bucket_of("1025", 1024), 1);
        assert_eq!(bucket_of("-1", 1024), 1023);
        assert_eq!(
            bucket_of("18446744073709551615", 1024),
            (u64::MAX % 1024) as u32
        );
        assert_eq!(bucket_of_value(&Value::Int(-1), 1024), Some(1023));
        assert_eq!(bucket_of_value(&Value::UInt(u64::MAX), 1024), Some(1023));
    }

    #[test]
    fn other_text_maps_by_crc32_like_mysql() {
        // SELECT CRC32('hello') = 907060870 on MySQL and MariaDB; zlib.crc32(b'hello') alike.
        assert_eq!(crc32fast::hash(b"hello"), 907_060_870);
        assert_eq!(bucket_of("hello", 1024), 907_060_870 % 1024);
        // Not canonical integers: string keys.
        for k in ["007", "+5", "-0", "1.0", " 1", ""] {
            assert_eq!(
                bucket_of(k, 1000),
                crc32fast::hash(k.as_bytes()) % 1000,
                "{k:?}"
            );
        }
        assert_eq!(bucket_of_bytes(b"42", 10), 2);
        assert_eq!(
            bucket_of_bytes(&[0xff, 0x00], 10),
            crc32fast::hash(&[0xff, 0x00]) % 10
        );
    }
}
