//! Replication positions: where a binlog reader stands and where it resumes.
//!
//! Three kinds of position exist, one per way a server can be asked for its binlog:
//!
//! - [`MariaGtidList`]: a MariaDB GTID position, at most one [`MariaGtid`] (`domain-server-seq`)
//!   per replication domain. A reader advances it with [`MariaGtidList::update`] after each commit.
//! - [`MysqlGtidSet`]: a MySQL GTID set, for each source UUID (and optional MySQL 8.3+ tag) a
//!   sorted list of disjoint, non-adjacent closed intervals of transaction numbers.
//! - [`FilePos`]: a binlog file name and byte offset.
//!
//! [`Position`] holds any of the three. Every type implements `FromStr` and `Display`, and
//! `parse(display(x)) == x` holds for every value built through this module's constructors and
//! parsers; displaying a parsed canonical string gives the same string back. Serde
//! serializes each type as its `Display` string and deserializes it with `FromStr`, so a
//! position stored in a file or sent over the network is the same text an operator types.
//!
//! Text forms (canonical output first; the parsers are more lenient, see each type):
//!
//! | kind     | example                                        | empty value |
//! |----------|------------------------------------------------|-------------|
//! | MariaDB  | `0-1-24,5-100-1`                               | `mariadb:`  |
//! | MySQL    | `3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7`   | `mysql:`    |
//! | file     | `mysql-bin.000003:1234`                        | (none)      |
//!
//! All parse failures are [`PositionError`]s naming what was wrong and where; none of them is
//! transient (retrying the same text fails the same way).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// Largest transaction number (GNO) a MySQL GTID may carry.
///
/// MySQL stores GNOs as signed 64-bit values and `COM_BINLOG_DUMP_GTID` encodes an interval
/// with an exclusive end, so `gno + 1` must still fit in an `i64`.
pub const MAX_GNO: u64 = i64::MAX as u64 - 1;

/// Longest MySQL GTID tag (MySQL 8.3+), in characters.
pub const MAX_TAG_LEN: usize = 32;

/// Why a position could not be parsed or built. Always permanent: the input itself is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PositionError {
    /// A MariaDB GTID is not `domain-server-seq`.
    #[error(
        "invalid MariaDB GTID `{text}`: {reason} (expected `domain-server-seq`, e.g. `0-1-24`)"
    )]
    MariaGtid {
        /// The offending text.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A MariaDB GTID list names the same domain twice.
    #[error(
        "MariaDB GTID list has two entries for domain {domain} (`{first}` and `{second}`); \
         a GTID position holds at most one GTID per domain"
    )]
    DuplicateDomain {
        /// The repeated domain.
        domain: u32,
        /// The first entry seen for it.
        first: MariaGtid,
        /// The second entry seen for it.
        second: MariaGtid,
    },
    /// A MySQL GTID set text is malformed.
    #[error("invalid MySQL GTID set at byte {offset} (`{token}`): {reason}")]
    MysqlGtidSet {
        /// Byte offset of the offending token in the parsed text.
        offset: usize,
        /// The offending token.
        token: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A MySQL GTID tag is not `[a-z_][a-z0-9_]{0,31}`.
    #[error("invalid MySQL GTID tag `{tag}`: {reason}")]
    Tag {
        /// The offending tag.
        tag: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A MySQL transaction number is outside `1..=MAX_GNO`.
    #[error("MySQL transaction number {gno} is out of range (must be 1..={MAX_GNO})")]
    Gno {
        /// The offending number.
        gno: u64,
    },
    /// A MySQL interval whose start is greater than its end.
    #[error("MySQL GTID interval {start}-{end} is empty: its start is greater than its end")]
    EmptyInterval {
        /// First transaction number.
        start: u64,
        /// Last transaction number.
        end: u64,
    },
    /// A binlog file position is malformed.
    #[error(
        "invalid binlog file position `{text}`: {reason} \
         (expected `file:offset`, e.g. `mysql-bin.000003:1234`)"
    )]
    FilePos {
        /// The offending text.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The text is none of the three position kinds.
    #[error(
        "cannot parse `{text}` as a replication position: {reason}; expected one of: \
         a MariaDB GTID list like `0-1-24,5-100-1` (`mariadb:` for the empty list), \
         a MySQL GTID set like `3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5` (`mysql:` for the empty set), \
         a binlog file position like `mysql-bin.000003:1234` (prefix `file:` to force this form)"
    )]
    Unrecognized {
        /// The offending text.
        text: String,
        /// Why no form matched.
        reason: String,
    },
}

/// Implements serde `Serialize`/`Deserialize` through `Display`/`FromStr`.
macro_rules! serde_as_string {
    ($ty:ty, $expecting:literal) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl serde::de::Visitor<'_> for Visitor {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$ty, E> {
                        v.parse().map_err(E::custom)
                    }
                }
                deserializer.deserialize_str(Visitor)
            }
        }
    };
}

/// Parses a non-empty run of ASCII digits (no sign, no spaces) into an unsigned integer.
fn parse_digits<T: FromStr>(s: &str) -> Result<T, String> {
    if s.is_empty() {
        return Err("a number is missing".to_owned());
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{s}` is not a decimal number"));
    }
    s.parse()
        .map_err(|_| format!("`{s}` is too large for its field"))
}

// ---------------------------------------------------------------------------------------------
// MariaDB
// ---------------------------------------------------------------------------------------------

/// One MariaDB GTID, text `domain-server-seq` (e.g. `0-1-24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MariaGtid {
    /// Replication domain id.
    pub domain: u32,
    /// Server id of the server that originally committed the transaction.
    pub server_id: u32,
    /// Sequence number within the domain.
    pub seq: u64,
}

impl FromStr for MariaGtid {
    type Err = PositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| PositionError::MariaGtid {
            text: s.to_owned(),
            reason,
        };
        let mut parts = s.split('-');
        let (Some(domain), Some(server_id), Some(seq), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(err(
                "needs exactly three numbers separated by `-`".to_owned()
            ));
        };
        Ok(MariaGtid {
            domain: parse_digits(domain).map_err(|r| err(format!("domain: {r}")))?,
            server_id: parse_digits(server_id).map_err(|r| err(format!("server id: {r}")))?,
            seq: parse_digits(seq).map_err(|r| err(format!("sequence number: {r}")))?,
        })
    }
}

impl fmt::Display for MariaGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server_id, self.seq)
    }
}

serde_as_string!(MariaGtid, "a MariaDB GTID like `0-1-24`");

/// A MariaDB GTID position: at most one GTID per domain.
///
/// Text: comma-separated GTIDs sorted by domain (`0-1-24,5-100-1`); the empty list is the empty
/// string. The parser accepts spaces around commas and any domain order, and rejects a domain
/// named twice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MariaGtidList {
    by_domain: BTreeMap<u32, MariaGtid>,
}

impl MariaGtidList {
    /// The empty list: "from the start of the GTID history".
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the GTID of `gtid.domain`, replacing the previous one. A reader calls this after
    /// each committed transaction.
    pub fn update(&mut self, gtid: MariaGtid) {
        self.by_domain.insert(gtid.domain, gtid);
    }

    /// The GTID recorded for `domain`, if any.
    pub fn get(&self, domain: u32) -> Option<&MariaGtid> {
        self.by_domain.get(&domain)
    }

    /// The GTIDs in ascending domain order.
    pub fn iter(&self) -> impl Iterator<Item = &MariaGtid> + '_ {
        self.by_domain.values()
    }

    /// Whether no domain has a GTID.
    pub fn is_empty(&self) -> bool {
        self.by_domain.is_empty()
    }

    /// Number of domains with a GTID.
    pub fn len(&self) -> usize {
        self.by_domain.len()
    }
}

impl FromStr for MariaGtidList {
    type Err = PositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut list = MariaGtidList::new();
        if s.trim().is_empty() {
            return Ok(list);
        }
        for entry in s.split(',') {
            let gtid: MariaGtid = entry.trim().parse()?;
            if let Some(first) = list.by_domain.insert(gtid.domain, gtid) {
                return Err(PositionError::DuplicateDomain {
                    domain: gtid.domain,
                    first,
                    second: gtid,
                });
            }
        }
        Ok(list)
    }
}

impl fmt::Display for MariaGtidList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, gtid) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{gtid}")?;
        }
        Ok(())
    }
}

serde_as_string!(MariaGtidList, "a MariaDB GTID list like `0-1-24,5-100-1`");

// ---------------------------------------------------------------------------------------------
// MySQL
// ---------------------------------------------------------------------------------------------

/// Validates a MySQL GTID tag and returns it in lowercase.
fn normalize_tag(tag: &str) -> Result<String, PositionError> {
    let err = |reason: &str| PositionError::Tag {
        tag: tag.to_owned(),
        reason: reason.to_owned(),
    };
    let mut chars = tag.chars();
    match chars.next() {
        None => return Err(err("a tag must not be empty")),
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        Some(_) => return Err(err("a tag must start with a letter or `_`")),
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(err("a tag may contain only letters, digits and `_`"));
    }
    if tag.len() > MAX_TAG_LEN {
        return Err(err("a tag is at most 32 characters long"));
    }
    Ok(tag.to_ascii_lowercase())
}

fn check_gno(gno: u64) -> Result<u64, PositionError> {
    if (1..=MAX_GNO).contains(&gno) {
        Ok(gno)
    } else {
        Err(PositionError::Gno { gno })
    }
}

/// Adds the closed interval `[start, end]` to a sorted list of disjoint, non-adjacent closed
/// intervals, merging every interval it overlaps or touches.
fn insert_interval(intervals: &mut Vec<(u64, u64)>, start: u64, end: u64) {
    // First interval that could merge: its end reaches at least start - 1.
    let first = intervals.partition_point(|&(_, e)| e.saturating_add(1) < start);
    let (mut lo, mut hi) = (start, end);
    let mut last = first;
    while let Some(&(s, e)) = intervals.get(last) {
        if s > hi.saturating_add(1) {
            break;
        }
        lo = lo.min(s);
        hi = hi.max(e);
        last += 1;
    }
    intervals.splice(first..last, std::iter::once((lo, hi)));
}

/// A source UUID and optional (lowercase) tag: one group of a [`MysqlGtidSet`].
type GroupKey = (Uuid, Option<String>);

/// A MySQL GTID set.
///
/// For each source UUID and optional tag (MySQL 8.3+, `[a-z_][a-z0-9_]{0,31}`, stored in
/// lowercase), a sorted list of disjoint, non-adjacent closed intervals of transaction numbers
/// in `1..=MAX_GNO`. No (UUID, tag) group is ever empty.
///
/// Text, as MySQL prints it: `uuid:1-5:7,uuid2:1-100`, one comma-separated entry per UUID
/// (sorted), untagged intervals first, then each tag (sorted) followed by its intervals:
/// `uuid:1-5:tag1:1-3`. The parser also accepts uppercase UUIDs, whitespace and newlines
/// around separators (MySQL prints `,\n`), empty entries, single numbers, overlapping or
/// unsorted intervals (merged), and the same UUID in several entries (merged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MysqlGtidSet {
    groups: BTreeMap<GroupKey, Vec<(u64, u64)>>,
}

impl MysqlGtidSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one transaction, merging it into the neighbouring intervals.
    ///
    /// Fails if `gno` is outside `1..=MAX_GNO` or `tag` is not a valid tag.
    pub fn add(&mut self, sid: Uuid, tag: Option<&str>, gno: u64) -> Result<(), PositionError> {
        self.add_interval(sid, tag, gno, gno)
    }

    /// Adds the closed interval `start..=end` of transactions.
    ///
    /// Fails if either bound is outside `1..=MAX_GNO`, `start > end`, or `tag` is invalid.
    pub fn add_interval(
        &mut self,
        sid: Uuid,
        tag: Option<&str>,
        start: u64,
        end: u64,
    ) -> Result<(), PositionError> {
        let tag = tag.map(normalize_tag).transpose()?;
        check_gno(start)?;
        check_gno(end)?;
        if start > end {
            return Err(PositionError::EmptyInterval { start, end });
        }
        insert_interval(self.groups.entry((sid, tag)).or_default(), start, end);
        Ok(())
    }

    /// Whether transaction `sid[:tag]:gno` is in the set. The tag is matched case-insensitively.
    pub fn contains(&self, sid: Uuid, tag: Option<&str>, gno: u64) -> bool {
        let key = (sid, tag.map(str::to_ascii_lowercase));
        let Some(intervals) = self.groups.get(&key) else {
            return false;
        };
        let i = intervals.partition_point(|&(_, e)| e < gno);
        intervals.get(i).is_some_and(|&(s, _)| s <= gno)
    }

    /// Whether every transaction `lo..=hi` of `sid[:tag]` is in the set.
    pub fn covers_interval(&self, sid: Uuid, tag: Option<&str>, lo: u64, hi: u64) -> bool {
        let key = (sid, tag.map(str::to_ascii_lowercase));
        let Some(intervals) = self.groups.get(&key) else {
            return false;
        };
        let i = intervals.partition_point(|&(_, e)| e < lo);
        intervals.get(i).is_some_and(|&(s, e)| s <= lo && e >= hi)
    }

    /// Whether the set holds no transaction.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Every (UUID, tag) group with its closed intervals, in the order of the text form: by
    /// UUID, untagged before tagged, tags sorted. Intervals are sorted, disjoint, non-adjacent,
    /// and never empty.
    pub fn iter(&self) -> impl Iterator<Item = (Uuid, Option<&str>, &[(u64, u64)])> + '_ {
        self.groups
            .iter()
            .map(|((sid, tag), intervals)| (*sid, tag.as_deref(), intervals.as_slice()))
    }

    /// Parses one comma-separated entry starting at byte `base` of the whole text.
    fn parse_entry(&mut self, entry: &str, base: usize) -> Result<(), PositionError> {
        // Split at ':' keeping each trimmed segment with its absolute offset.
        let mut segments = Vec::new();
        let mut at = base;
        for raw in entry.split(':') {
            let lead = raw.len() - raw.trim_start().len();
            segments.push((raw.trim(), at + lead));
            at += raw.len() + 1;
        }
        let err = |(token, offset): (&str, usize), reason: &str| PositionError::MysqlGtidSet {
            offset,
            token: token.to_owned(),
            reason: reason.to_owned(),
        };
        let mut iter = segments.into_iter();
        let Some(head) = iter.next() else {
            return Ok(());
        };
        if head.0.is_empty() && entry.trim().is_empty() {
            return Ok(()); // empty entry, as MySQL allows
        }
        if head.0.len() != 36 {
            return Err(err(
                head,
                "expected a UUID like `3e11fa47-71ca-11e1-9e33-c80aa9429562`",
            ));
        }
        let sid = Uuid::try_parse(head.0).map_err(|_| {
            err(
                head,
                "not a valid UUID (expected like `3e11fa47-71ca-11e1-9e33-c80aa9429562`)",
            )
        })?;
        let mut tag: Option<String> = None;
        // The last UUID or tag token, and whether intervals followed it.
        let mut group_head = head;
        let mut group_has_interval = false;
        for seg in iter {
            let (text, _) = seg;
            if text.is_empty() {
                return Err(err(
                    seg,
                    "empty interval (two `:` in a row or a trailing `:`)",
                ));
            }
            if text.starts_with(|c: char| c.is_ascii_digit()) {
                let (start, end) = match text.split_once('-') {
                    Some((s, e)) => (s.trim(), e.trim()),
                    None => (text, text),
                };
                let start: u64 = parse_digits(start).map_err(|r| err(seg, &r))?;
                let end: u64 = parse_digits(end).map_err(|r| err(seg, &r))?;
                if start == 0 {
                    return Err(err(
                        seg,
                        "transaction number 0 is not allowed (they start at 1)",
                    ));
                }
                if end > MAX_GNO {
                    return Err(err(
                        seg,
                        &format!("transaction number is larger than {MAX_GNO}"),
                    ));
                }
                if start > end {
                    return Err(err(seg, "interval start is greater than its end"));
                }
                let intervals = self.groups.entry((sid, tag.clone())).or_default();
                insert_interval(intervals, start, end);
                group_has_interval = true;
            } else {
                if tag.is_some() && !group_has_interval {
                    return Err(err(group_head, "tag is not followed by any interval"));
                }
                let normalized = normalize_tag(text).map_err(|e| match e {
                    PositionError::Tag { reason, .. } => err(seg, &reason),
                    other => other,
                })?;
                tag = Some(normalized);
                group_head = seg;
                group_has_interval = false;
            }
        }
        if !group_has_interval {
            return Err(err(
                group_head,
                "not followed by any interval (expected e.g. `:1-5`)",
            ));
        }
        Ok(())
    }
}

impl FromStr for MysqlGtidSet {
    type Err = PositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut set = MysqlGtidSet::new();
        let mut base = 0;
        for entry in s.split(',') {
            set.parse_entry(entry, base)?;
            base += entry.len() + 1;
        }
        Ok(set)
    }
}

impl fmt::Display for MysqlGtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut previous: Option<Uuid> = None;
        for (sid, tag, intervals) in self.iter() {
            if previous != Some(sid) {
                if previous.is_some() {
                    f.write_str(",")?;
                }
                write!(f, "{sid}")?;
                previous = Some(sid);
            }
            if let Some(tag) = tag {
                write!(f, ":{tag}")?;
            }
            for &(start, end) in intervals {
                if start == end {
                    write!(f, ":{start}")?;
                } else {
                    write!(f, ":{start}-{end}")?;
                }
            }
        }
        Ok(())
    }
}

serde_as_string!(
    MysqlGtidSet,
    "a MySQL GTID set like `3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5`"
);

// ---------------------------------------------------------------------------------------------
// File position
// ---------------------------------------------------------------------------------------------

/// A binlog file and byte offset, text `mysql-bin.000003:1234`.
///
/// The parser splits at the last `:`; the file name must be non-empty without `:` or
/// whitespace, and the offset at least 4 (a binlog file starts with a 4-byte magic number).
/// The fields are public, so a hand-built value that breaks these rules will not round-trip.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FilePos {
    /// Binlog file name, without directory.
    pub file: String,
    /// Byte offset of the next event to read.
    pub offset: u64,
}

/// Smallest valid offset in a binlog file: just after the magic number.
pub const MIN_BINLOG_OFFSET: u64 = 4;

impl FromStr for FilePos {
    type Err = PositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_file_pos(s).map_err(|reason| PositionError::FilePos {
            text: s.to_owned(),
            reason,
        })
    }
}

fn parse_file_pos(s: &str) -> Result<FilePos, String> {
    let Some((file, offset)) = s.rsplit_once(':') else {
        return Err("missing `:offset`".to_owned());
    };
    if file.is_empty() {
        return Err("the file name is empty".to_owned());
    }
    if file.contains(':') {
        return Err("the file name contains `:`".to_owned());
    }
    if file.chars().any(char::is_whitespace) {
        return Err("the file name contains whitespace".to_owned());
    }
    let offset: u64 = parse_digits(offset).map_err(|r| format!("offset: {r}"))?;
    if offset < MIN_BINLOG_OFFSET {
        return Err(format!(
            "offset {offset} is inside the 4-byte magic number at the start of every binlog \
             file (the smallest offset is 4)"
        ));
    }
    Ok(FilePos {
        file: file.to_owned(),
        offset,
    })
}

impl fmt::Display for FilePos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.offset)
    }
}

serde_as_string!(
    FilePos,
    "a binlog file position like `mysql-bin.000003:1234`"
);

// ---------------------------------------------------------------------------------------------
// Position
// ---------------------------------------------------------------------------------------------

/// Any replication position.
///
/// `FromStr` infers the kind (after trimming surrounding whitespace): explicit prefixes
/// `mariadb:`, `mysql:` and `file:` win; otherwise a text whose comma-separated entries all look
/// like `digits-digits-digits` is MariaDB, a text starting with a 36-character UUID and `:` is
/// MySQL, and any other text containing `:` is a file position. `Display` prints no prefix,
/// except `mariadb:` for the empty MariaDB list, `mysql:` for the empty MySQL set, and `file:`
/// for a file position whose bare text would be read as another kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// A MariaDB GTID position.
    MariaGtid(MariaGtidList),
    /// A MySQL GTID set.
    MysqlGtid(MysqlGtidSet),
    /// A binlog file and offset.
    File(FilePos),
}

const MARIADB_PREFIX: &str = "mariadb:";
const MYSQL_PREFIX: &str = "mysql:";
const FILE_PREFIX: &str = "file:";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Maria,
    Mysql,
    File,
}

fn looks_like_maria_gtid(entry: &str) -> bool {
    let mut parts = entry.split('-');
    (0..3).all(|_| {
        parts
            .next()
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    }) && parts.next().is_none()
}

/// The kind an unprefixed, trimmed text is read as.
fn infer_kind(text: &str) -> Option<Kind> {
    if text.is_empty() {
        return None;
    }
    if text.split(',').all(|e| looks_like_maria_gtid(e.trim())) {
        return Some(Kind::Maria);
    }
    let uuid_then_colon = text.get(..36).is_some_and(|u| Uuid::try_parse(u).is_ok())
        && text.get(36..).is_some_and(|rest| rest.starts_with(':'));
    if uuid_then_colon {
        return Some(Kind::Mysql);
    }
    if text.contains(':') {
        return Some(Kind::File);
    }
    None
}

impl FromStr for Position {
    type Err = PositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        if let Some(rest) = text.strip_prefix(MARIADB_PREFIX) {
            return rest.parse().map(Position::MariaGtid);
        }
        if let Some(rest) = text.strip_prefix(MYSQL_PREFIX) {
            return rest.parse().map(Position::MysqlGtid);
        }
        if let Some(rest) = text.strip_prefix(FILE_PREFIX) {
            return rest.parse().map(Position::File);
        }
        let unrecognized = |reason: String| PositionError::Unrecognized {
            text: s.to_owned(),
            reason,
        };
        match infer_kind(text) {
            Some(Kind::Maria) => text.parse().map(Position::MariaGtid),
            Some(Kind::Mysql) => text.parse().map(Position::MysqlGtid),
            Some(Kind::File) => parse_file_pos(text)
                .map(Position::File)
                .map_err(|r| unrecognized(format!("as a file position, {r}"))),
            None if text.is_empty() => Err(unrecognized("the text is empty".to_owned())),
            None => Err(unrecognized("it matches none of the forms".to_owned())),
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::MariaGtid(list) if list.is_empty() => f.write_str(MARIADB_PREFIX),
            Position::MariaGtid(list) => write!(f, "{list}"),
            Position::MysqlGtid(set) if set.is_empty() => f.write_str(MYSQL_PREFIX),
            Position::MysqlGtid(set) => write!(f, "{set}"),
            Position::File(pos) => {
                let bare = pos.to_string();
                let collides = [MARIADB_PREFIX, MYSQL_PREFIX, FILE_PREFIX]
                    .iter()
                    .any(|p| bare.starts_with(p));
                if collides || infer_kind(&bare) != Some(Kind::File) {
                    f.write_str(FILE_PREFIX)?;
                }
                f.write_str(&bare)
            }
        }
    }
}

impl Position {
    /// True when a reader at `self` has read every transaction up to `other`: per MariaDB
    /// domain a sequence number at least `other`'s; for MySQL every GTID of `other`; for file
    /// positions the same file at an offset at least `other`'s, or a later file (by name, which
    /// orders the numbered files of one server). Positions of different kinds never cover.
    pub fn covers(&self, other: &Position) -> bool {
        match (self, other) {
            (Position::MariaGtid(a), Position::MariaGtid(b)) => b
                .iter()
                .all(|g| a.get(g.domain).is_some_and(|h| h.seq >= g.seq)),
            (Position::MysqlGtid(a), Position::MysqlGtid(b)) => {
                b.iter().all(|(sid, tag, ranges)| {
                    ranges
                        .iter()
                        .all(|&(lo, hi)| a.covers_interval(sid, tag, lo, hi))
                })
            }
            (Position::File(a), Position::File(b)) => {
                (a.file.as_str(), a.offset) >= (b.file.as_str(), b.offset)
            }
            _ => false,
        }
    }
}

serde_as_string!(
    Position,
    "a replication position (MariaDB GTID list, MySQL GTID set or `file:offset`)"
);

#[cfg(test)]
mod tests;
