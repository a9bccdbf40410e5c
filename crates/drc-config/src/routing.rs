//! `[routing]`: center closure. Every key of the application's sharding key (a user id, say)
//! maps to one of `buckets` buckets; buckets are grouped into units, and each unit has one home
//! center, where all writes of its keys go (docs/routing.md). Part of the second loading step
//! (see [`crate::validate`]); every problem is added to the common list.
//!
//! The file seeds the live map; `drc cutover` moves units between centers afterwards (the live
//! map in every center's meta database wins over a unit's `home` here once it exists). Which
//! buckets a unit holds comes from the file only.

use std::collections::BTreeMap;

use crate::ConfigError;

/// The most buckets a map may have (bucket numbers are stored and sent as integers; a map of
/// more than a million buckets only costs memory in every gateway).
pub const MAX_BUCKETS: u32 = 1 << 20;

/// One routing unit: a set of buckets and the center it lives in according to the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// Unique name.
    pub name: String,
    /// Its buckets as sorted, non-overlapping inclusive ranges.
    pub buckets: Vec<(u32, u32)>,
    /// The home center named in the file (the seed of the live map).
    pub home: String,
}

/// The validated `[routing]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    /// Number of buckets; a key maps to `0..buckets`.
    pub buckets: u32,
    /// Units, in file order.
    pub units: Vec<Unit>,
    /// The default routing-key column of replicated tables (closure check); `None`: only the
    /// tables named in `tables` are checked.
    pub key_column: Option<String>,
    /// Per-table overrides by `(database, table)`; `None`: the table is not checked.
    pub tables: BTreeMap<(String, String), Option<String>>,
    /// Unit index of every bucket.
    owner: Vec<u32>,
}

impl Routing {
    /// The unit holding `bucket` (`None` when the bucket is out of range).
    pub fn unit_of_bucket(&self, bucket: u32) -> Option<&Unit> {
        self.owner
            .get(bucket as usize)
            .and_then(|&i| self.units.get(i as usize))
    }

    /// The unit named `name`.
    pub fn unit(&self, name: &str) -> Option<&Unit> {
        self.units.iter().find(|u| u.name == name)
    }

    /// The routing-key column of `db.table` for the closure check, if it is checked.
    pub fn key_column(&self, db: &str, table: &str) -> Option<&str> {
        match self.tables.get(&(db.to_string(), table.to_string())) {
            Some(over) => over.as_deref(),
            None => self.key_column.as_deref(),
        }
    }
}

/// Renders inclusive ranges as `0-99,512,600-700`.
pub fn format_ranges(ranges: &[(u32, u32)]) -> String {
    ranges
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses `"0-99,512-600,700"` into sorted, merged inclusive ranges within `0..buckets`.
pub fn parse_ranges(spec: &str, buckets: u32) -> Result<Vec<(u32, u32)>, String> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    if spec.trim().is_empty() {
        return Err("is empty: give bucket numbers and ranges, e.g. \"0-99,512-600\"".into());
    }
    for item in spec.split(',') {
        let item = item.trim();
        let num = |s: &str| -> Result<u32, String> {
            s.trim()
                .parse::<u32>()
                .map_err(|_| format!("{item:?} is not a bucket number or a range like \"0-99\""))
        };
        let (a, b) = match item.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let n = num(item)?;
                (n, n)
            }
        };
        if a > b {
            return Err(format!(
                "{item:?} runs backwards: write the lower bucket first"
            ));
        }
        if b >= buckets {
            return Err(format!(
                "{item:?} goes past the last bucket, {} (routing.buckets = {buckets})",
                buckets - 1
            ));
        }
        out.push((a, b));
    }
    out.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(out.len());
    for (a, b) in out {
        match merged.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    Ok(merged)
}

fn push(e: &mut Vec<ConfigError>, key: impl Into<String>, message: impl Into<String>) {
    e.push(ConfigError {
        key: key.into(),
        message: message.into(),
    });
}

fn column(name: &str) -> Result<Option<String>, &'static str> {
    let n = name.trim();
    if n.is_empty() {
        return Ok(None);
    }
    if n.len() > 64 || n.contains('`') {
        return Err("is not a column name (at most 64 characters, no backquotes)");
    }
    Ok(Some(n.to_string()))
}

fn valid_unit_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
        })
}

/// Validates `[routing]` against the configured center names.
pub(crate) fn routing(
    raw: &crate::raw::RawRouting,
    centers: &[&str],
    e: &mut Vec<ConfigError>,
) -> Option<Routing> {
    let before = e.len();
    let buckets = match raw.buckets {
        None => 1024,
        Some(n) if (1..=i64::from(MAX_BUCKETS)).contains(&n) => n as u32,
        Some(n) => {
            push(
                e,
                "routing.buckets",
                format!("{n} is out of range: use 1..={MAX_BUCKETS} (default 1024)"),
            );
            return None;
        }
    };
    if raw.unit.is_empty() {
        push(
            e,
            "routing.unit",
            "no [[routing.unit]]: name at least one unit with its buckets and home center",
        );
    }
    let mut units = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, u) in raw.unit.iter().enumerate() {
        let key = |k: &str| format!("routing.unit[{i}].{k}");
        let name = match &u.name {
            Some(n) if valid_unit_name(n) => n.clone(),
            Some(n) => {
                push(e, key("name"), format!("{n:?} is not a valid unit name: use 1-64 characters of a-z, 0-9, '_', '-' and '.'"));
                continue;
            }
            None => {
                push(e, key("name"), "missing: every unit needs a name");
                continue;
            }
        };
        if !names.insert(name.clone()) {
            push(
                e,
                key("name"),
                format!("unit {name:?} is named twice: unit names are unique"),
            );
        }
        let home = match &u.home {
            Some(h) if centers.contains(&h.as_str()) => h.clone(),
            Some(h) => {
                push(
                    e,
                    key("home"),
                    format!(
                        "unit {name:?}: home {h:?} is not a center (centers: {})",
                        centers.join(", ")
                    ),
                );
                String::new()
            }
            None => {
                push(
                    e,
                    key("home"),
                    format!("unit {name:?}: missing: name the center its keys live in"),
                );
                String::new()
            }
        };
        let ranges = match u.buckets.as_deref().map(|s| parse_ranges(s, buckets)) {
            Some(Ok(r)) => r,
            Some(Err(m)) => {
                push(e, key("buckets"), format!("unit {name:?}: {m}"));
                Vec::new()
            }
            None => {
                push(
                    e,
                    key("buckets"),
                    format!("unit {name:?}: missing: give its buckets, e.g. \"0-99,512-600\""),
                );
                Vec::new()
            }
        };
        units.push(Unit {
            name,
            buckets: ranges,
            home,
        });
    }
    // Every bucket in exactly one unit: overlaps per pair of units, then the uncovered ranges.
    let mut owner: Vec<Option<u32>> = vec![None; buckets as usize];
    let mut overlaps: BTreeMap<(usize, usize), Vec<(u32, u32)>> = BTreeMap::new();
    for (ui, u) in units.iter().enumerate() {
        for &(a, b) in &u.buckets {
            for bucket in a..=b {
                match owner[bucket as usize] {
                    Some(prev) => {
                        let list = overlaps.entry((prev as usize, ui)).or_default();
                        match list.last_mut() {
                            Some(last) if last.1 + 1 == bucket => last.1 = bucket,
                            _ => list.push((bucket, bucket)),
                        }
                    }
                    None => owner[bucket as usize] = Some(ui as u32),
                }
            }
        }
    }
    for ((a, b), ranges) in &overlaps {
        push(
            e,
            format!("routing.unit[{b}].buckets"),
            format!(
                "units {:?} and {:?} both hold bucket(s) {}: a bucket belongs to one unit",
                units[*a].name,
                units[*b].name,
                format_ranges(ranges)
            ),
        );
    }
    let mut uncovered: Vec<(u32, u32)> = Vec::new();
    for (bucket, o) in owner.iter().enumerate() {
        if o.is_none() {
            let bucket = bucket as u32;
            match uncovered.last_mut() {
                Some(last) if last.1 + 1 == bucket => last.1 = bucket,
                _ => uncovered.push((bucket, bucket)),
            }
        }
    }
    if !uncovered.is_empty() && !units.is_empty() {
        push(
            e,
            "routing.unit",
            format!(
                "bucket(s) {} belong to no unit: every bucket of 0..{} needs one (routing.buckets = {buckets})",
                format_ranges(&uncovered),
                buckets - 1
            ),
        );
    }
    let key_column = match raw.key_column.as_deref().map(column) {
        None => None,
        Some(Ok(c)) => c,
        Some(Err(m)) => {
            push(e, "routing.key_column", m);
            None
        }
    };
    let mut tables = BTreeMap::new();
    for (name, col) in &raw.tables {
        let key = format!("routing.tables.{name:?}");
        let Some((db, table)) = name.split_once('.').filter(|(d, t)| {
            !d.is_empty() && !t.is_empty() && !t.contains('.') && !name.contains('*')
        }) else {
            push(
                e,
                &key,
                "must name one table as \"database.table\" (no wildcards)",
            );
            continue;
        };
        match column(col) {
            Ok(c) => {
                tables.insert((db.to_string(), table.to_string()), c);
            }
            Err(m) => push(e, &key, m),
        }
    }
    if e.len() > before {
        return None;
    }
    Some(Routing {
        buckets,
        units,
        key_column,
        tables,
        owner: owner.into_iter().map(|o| o.unwrap_or(0)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> crate::raw::RawRouting {
        toml::from_str(text).expect("toml")
    }

    fn check(text: &str) -> Result<Routing, Vec<ConfigError>> {
        let mut e = Vec::new();
        routing(&raw(text), &["a", "b", "c"], &mut e).ok_or(e)
    }

    #[test]
    fn ranges_parse_merge_and_reject() {
        assert_eq!(
            parse_ranges("5, 0-3,4,10-12", 16).expect("ok"),
            vec![(0, 5), (10, 12)]
        );
        assert!(parse_ranges("3-1", 16)
            .expect_err("invalid")
            .contains("backwards"));
        assert!(parse_ranges("0-16", 16)
            .expect_err("invalid")
            .contains("last bucket, 15"));
        assert!(parse_ranges("x", 16)
            .expect_err("invalid")
            .contains("\"x\""));
        assert!(parse_ranges("", 16).is_err());
        assert_eq!(format_ranges(&[(0, 5), (7, 7)]), "0-5,7");
    }

    #[test]
    fn a_valid_map_routes_every_bucket() {
        let r = check(
            "buckets = 10\nkey_column = \"user_id\"\n[tables]\n\"s.t\" = \"\"\n\"s.o\" = \"buyer\"\n\
             [[unit]]\nname = \"u-a\"\nbuckets = \"0-4\"\nhome = \"a\"\n\
             [[unit]]\nname = \"u-b\"\nbuckets = \"5-9\"\nhome = \"b\"\n",
        )
        .expect("valid");
        assert_eq!(r.unit_of_bucket(4).map(|u| u.name.as_str()), Some("u-a"));
        assert_eq!(r.unit_of_bucket(5).map(|u| u.home.as_str()), Some("b"));
        assert!(r.unit_of_bucket(10).is_none());
        assert_eq!(r.key_column("s", "x"), Some("user_id"));
        assert_eq!(r.key_column("s", "t"), None);
        assert_eq!(r.key_column("s", "o"), Some("buyer"));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let e = check(
            "buckets = 10\n\
             [[unit]]\nname = \"u-a\"\nbuckets = \"0-4\"\nhome = \"a\"\n\
             [[unit]]\nname = \"u-b\"\nbuckets = \"3-6\"\nhome = \"zz\"\n\
             [[unit]]\nname = \"u-a\"\nbuckets = \"9-8\"\nhome = \"c\"\n",
        )
        .expect_err("invalid");
        let text: Vec<String> = e.iter().map(ToString::to_string).collect();
        let all = text.join("\n");
        assert!(all.contains("both hold bucket(s) 3-4"), "{all}");
        assert!(all.contains("\"zz\" is not a center"), "{all}");
        assert!(all.contains("named twice"), "{all}");
        assert!(all.contains("backwards"), "{all}");
        assert!(all.contains("bucket(s) 7-9 belong to no unit"), "{all}");
        assert_eq!(text.len(), 5, "{all}");
    }

    #[test]
    fn bucket_count_and_units_are_required_sane() {
        let e = check("buckets = 0\n").expect_err("invalid");
        assert!(e[0].message.contains("1..="), "{e:?}");
        let e = check("buckets = 4\n").expect_err("invalid");
        assert!(e[0].message.contains("at least one unit"), "{e:?}");
    }
}
