//! How a key column's collation folds text, for ordering: two changes that touch a common key
//! value must be applied in source order (design invariant 3), and "common" is decided by the
//! column's collation, not by the bytes. In a `utf8mb4_unicode_ci` unique key, `'Bob@x'`,
//! `'bob@x'` and `'BOB@x  '` are one value; a delete of one and an insert of another, applied
//! in parallel or out of order, hit a duplicate key.
//!
//! **The rule: fold at least as much as the server equates.** Exact collation weights are out
//! of reach (MariaDB and MySQL ship dozens of tables), so [`Collation::fold`] over-approximates:
//! two strings the server calls equal always fold to the same bytes; two strings that fold alike
//! may still differ on the server, which only costs parallelism (their changes are ordered
//! although they need not be), never correctness. Collations drc does not know fold nothing and
//! report it: the caller then orders every change of that key (a signature of the key alone).
//!
//! | collation (by name) | fold |
//! |---|---|
//! | `binary`, `*_nopad_bin`, `*_0900_bin` | bytes as stored (NO PAD) |
//! | other `*_bin` (MariaDB and MySQL `_bin` are PAD SPACE) | bytes, trailing spaces dropped |
//! | `utf8*`/`ascii`/`ucs2`/`utf16*`/`utf32` + `general_ci`, `general_mysql500_ci` | text fold; `ß` = `s`; every character above U+FFFF is one (weight U+FFFD) |
//! | same charsets + `unicode_ci` (UCA 4.0.0) | text fold; every character above U+FFFF is one |
//! | same charsets + `unicode_520_ci`, `0900_ai_ci`, `0900_as_ci`, `0900_as_cs`, MariaDB `uca1400_{ai,as}_{ci,cs}` | text fold |
//! | `latin1_swedish_ci` (MariaDB's default) | text fold after Swedish letters: `å` = `[`, `ä` = `æ` = `\`, `ö` = `]`, `ü` = `y` |
//! | `latin1_general_ci`, `latin1_german1_ci` | text fold (german1: `æ` = `a`, `ø` = `o`, `ß` = `s`) |
//! | `_nopad_` variants | as without it (folding more is safe) |
//! | anything else (language tailorings such as `german2`, `danish`, `turkish`, other charsets) | unknown: the key is serialized |
//!
//! The text fold, per character: lowercase; compatibility decomposition (NFKD: full-width
//! forms, ligatures, `ſ`, superscripts, NBSP = space); combining marks, controls and format
//! characters dropped (accents; ignorable characters), and the middle dot `·` (`ŀ` is `l` in
//! general_ci but `l·` in unicode_ci); lowercase again; expansions the
//! decompositions miss (`ß` → `ss`, `æ` → `ae`, `œ` → `oe`, `ø` → `o`, `đ`/`ð` → `d`, `ł` → `l`,
//! `ħ` → `h`, `ŧ` → `t`, `ı` → `i`, `ς` → `σ`); katakana → hiragana and small kana → full size (UCA
//! weighs them alike at the primary level); trailing spaces dropped at the end (PAD SPACE; doing
//! it for NO PAD collations too only merges more). Case- and accent-sensitive UCA collations get
//! the same fold: it merges more than they do, which is allowed.
//!
//! Choice of tools: `unicode-normalization` (unicode-rs, maintained with Unicode's releases) for
//! NFKD and combining marks, the standard library for lowercase; a case-folding crate (`caseless`)
//! was not needed: after NFKD, lowercase differs from full case folding only in `ß` and `ς`,
//! which the expansion list handles. The only hand-written tables are the short lists above,
//! each checked against a real server by the property test in `drc-apply`'s tests
//! (`collation.rs`).
//!
//! Stability: the fold depends on the Unicode tables of `unicode-normalization`. The planner's
//! result must be the same when a crashed batch is planned again; a fold that changes between
//! the crash and the restart (an upgrade of drc mid-batch) could plan it differently.

use std::sync::Arc;

use unicode_normalization::char::{decompose_compatible, is_combining_mark};

use crate::value::{Charset, Text};

/// A column's collation, by name, with the fold drc uses for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collation {
    name: Arc<str>,
    rule: Rule,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Bytes as stored; with `pad`, trailing spaces are ignored.
    Bytes { pad: bool },
    /// The text fold, with a family's extra equalities.
    Text(Family),
    /// Not known: the key is serialized.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// `*_general_ci`: one weight per character; `ß` = `s`; above U+FFFF all equal.
    General,
    /// `*_unicode_ci` (UCA 4.0.0): above U+FFFF all equal.
    Uca400,
    /// Newer UCA collations.
    Uca,
    /// `latin1_swedish_ci`.
    Swedish,
    /// `latin1_general_ci`.
    Latin1General,
    /// `latin1_german1_ci`.
    German1,
}

/// Character sets whose `general_ci`/UCA collations share the Unicode tables.
const UNICODE_CHARSETS: &[&str] = &[
    "utf8mb4", "utf8mb3", "utf8", "ascii", "ucs2", "utf16", "utf16le", "utf32",
];

fn rule_of(name: &str) -> Rule {
    let n = name.to_ascii_lowercase();
    if n == "binary" {
        return Rule::Bytes { pad: false };
    }
    let Some((charset, rest)) = n.split_once('_') else {
        return Rule::Unknown;
    };
    if rest.ends_with("bin") {
        let nopad = rest.contains("nopad") || rest.contains("0900");
        return Rule::Bytes { pad: !nopad };
    }
    let rest = rest.replace("nopad_", "").replace("_nopad", "");
    let unicode = UNICODE_CHARSETS.contains(&charset);
    let family = match (charset, rest.as_str()) {
        (_, "general_ci" | "general_mysql500_ci") if unicode => Family::General,
        (_, "unicode_ci") if unicode => Family::Uca400,
        (
            _,
            "unicode_520_ci" | "0900_ai_ci" | "0900_as_ci" | "0900_as_cs" | "uca1400_ai_ci"
            | "uca1400_ai_cs" | "uca1400_as_ci" | "uca1400_as_cs",
        ) if unicode => Family::Uca,
        ("latin1", "swedish_ci") => Family::Swedish,
        ("latin1", "general_ci") => Family::Latin1General,
        ("latin1", "german1_ci") => Family::German1,
        _ => return Rule::Unknown,
    };
    Rule::Text(family)
}

impl Collation {
    /// The collation named `name` (as `information_schema.COLUMNS.COLLATION_NAME` spells it).
    pub fn new(name: &str) -> Self {
        Collation {
            name: name.into(),
            rule: rule_of(name),
        }
    }

    /// The collation's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True when drc knows how this collation compares (see the module docs).
    pub fn is_known(&self) -> bool {
        self.rule != Rule::Unknown
    }

    /// Appends the folded form of `text` to `out`: equal under this collation implies equal
    /// folded forms. Returns false (and appends nothing) when drc cannot tell: an unknown
    /// collation, or bytes that do not decode in their character set; the caller must then
    /// treat the value as equal to every other value of the key.
    pub fn fold(&self, text: &Text, out: &mut Vec<u8>) -> bool {
        match self.rule {
            Rule::Unknown => false,
            Rule::Bytes { pad } => {
                if !pad {
                    out.extend_from_slice(&text.bytes);
                    return true;
                }
                // Trailing spaces are 0x20 bytes only in these character sets.
                match text.charset {
                    Charset::Utf8mb4 | Charset::Utf8mb3 | Charset::Latin1 | Charset::Ascii => {
                        let end = text
                            .bytes
                            .iter()
                            .rposition(|&b| b != b' ')
                            .map_or(0, |i| i + 1);
                        out.extend_from_slice(&text.bytes[..end]);
                        true
                    }
                    Charset::Binary => {
                        out.extend_from_slice(&text.bytes);
                        true
                    }
                    Charset::Other(_) => false,
                }
            }
            Rule::Text(family) => match text.decode() {
                Some(s) => {
                    let mut folded = String::with_capacity(s.len());
                    fold_str(family, &s, &mut folded);
                    out.extend_from_slice(folded.trim_end_matches(' ').as_bytes());
                    true
                }
                None => false,
            },
        }
    }
}

/// Appends the text fold of `s` (module docs) to `out`, without trimming trailing spaces.
fn fold_str(family: Family, s: &str, out: &mut String) {
    if s.is_ascii() {
        // Fast path: ASCII folds by lowercasing and dropping controls.
        out.extend(
            s.bytes()
                .filter(|b| !b.is_ascii_control())
                .map(|b| char::from(b.to_ascii_lowercase())),
        );
        return;
    }
    for c in s.chars() {
        if matches!(family, Family::General | Family::Uca400) && u32::from(c) > 0xFFFF {
            out.push('\u{FFFD}');
            continue;
        }
        for l in c.to_lowercase() {
            let l = premap(family, l);
            decompose_compatible(l, |d| {
                // The middle dot: `ŀ` decomposes to `l·`, and the collations disagree on
                // whether `ŀ` equals `l` (general_ci) or `l·` (unicode_ci); dropping the dot
                // makes all three fold alike, which only merges more.
                if is_combining_mark(d) || ignorable(d) || d == '\u{00B7}' {
                    return;
                }
                for e in d.to_lowercase() {
                    expand(family, e, out);
                }
            });
        }
    }
}

/// A family's equalities that the general fold would break (applied to a lowercase character,
/// before decomposition).
fn premap(family: Family, c: char) -> char {
    match (family, c) {
        (Family::General | Family::German1, 'ß' | 'ẞ') => 's',
        (Family::German1, 'æ') => 'a',
        (Family::German1, 'ø') => 'o',
        (Family::Swedish, 'å') => '[',
        (Family::Swedish, 'ä' | 'æ') => '\\',
        (Family::Swedish, 'ö') => ']',
        (Family::Swedish, 'ü') => 'y',
        // Its compatibility decomposition keeps a middle dot that the collations ignore.
        (_, 'ŀ') => 'l',
        _ => c,
    }
}

/// Controls and format characters: ignorable in UCA collations (dropping them only merges
/// more in the others).
fn ignorable(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}'
            | '\u{17B5}' | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}'
            | '\u{E0000}'..='\u{E0FFF}')
}

/// Expansions that decompositions miss, and kana folding; pushes the result.
fn expand(family: Family, c: char, out: &mut String) {
    let s = match c {
        'ß' => "ss",
        'æ' => "ae",
        'œ' => "oe",
        'ĳ' => "ij",
        _ => {
            out.push(single(family, c));
            return;
        }
    };
    out.push_str(s);
}

fn single(_family: Family, c: char) -> char {
    match c {
        'ø' => 'o',
        'đ' | 'ð' => 'd',
        'ł' => 'l',
        'ħ' => 'h',
        'ŧ' => 't',
        'ı' => 'i',
        'ς' => 'σ',
        // Katakana to hiragana (same primary weight in UCA).
        '\u{30A1}'..='\u{30F6}' => char::from_u32(u32::from(c) - 0x60).unwrap_or(c),
        _ => small_kana(c),
    }
}

/// Small hiragana to full size (UCA weighs `ぁ` like `あ` at the primary level).
fn small_kana(c: char) -> char {
    match c {
        'ぁ' | 'ぃ' | 'ぅ' | 'ぇ' | 'ぉ' | 'っ' | 'ゃ' | 'ゅ' | 'ょ' | 'ゎ' => {
            char::from_u32(u32::from(c) + 1).unwrap_or(c)
        }
        'ゕ' => 'か',
        'ゖ' => 'け',
        _ => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold(coll: &str, s: &str) -> Option<String> {
        let mut out = Vec::new();
        Collation::new(coll)
            .fold(&Text::utf8(s), &mut out)
            .then(|| String::from_utf8_lossy(&out).into_owned())
    }

    fn latin1(coll: &str, s: &str) -> Option<Vec<u8>> {
        let text = Text {
            bytes: s
                .chars()
                .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
                .collect(),
            charset: Charset::Latin1,
            charset_name: None,
        };
        let mut out = Vec::new();
        Collation::new(coll).fold(&text, &mut out).then_some(out)
    }

    #[test]
    fn case_and_accent_insensitive_collations_fold_case_accents_expansions_and_pad() {
        for coll in [
            "utf8mb4_general_ci",
            "utf8mb4_unicode_ci",
            "utf8mb4_unicode_520_ci",
            "utf8mb4_0900_ai_ci",
            "utf8mb4_uca1400_ai_ci",
            "utf8mb3_general_nopad_ci",
        ] {
            let same = |a: &str, b: &str| {
                assert_eq!(fold(coll, a), fold(coll, b), "{coll}: {a:?} = {b:?}");
            };
            same("Bob@x", "bob@x");
            same("BOB@X  ", "bob@x");
            same("Résumé", "resume");
            same("ｂｏｂ", "bob");
            same("Ǆ", "dž");
            assert_ne!(fold(coll, "bob"), fold(coll, "bib"), "{coll}");
            assert_ne!(
                fold(coll, " bob"),
                fold(coll, "bob"),
                "{coll}: leading spaces count"
            );
        }
        assert_eq!(
            fold("utf8mb4_unicode_ci", "straße"),
            fold("utf8mb4_unicode_ci", "STRASSE")
        );
        assert_eq!(fold("utf8mb4_0900_ai_ci", "Œuvre"), Some("oeuvre".into()));
        assert_eq!(
            fold("utf8mb4_general_ci", "straße"),
            fold("utf8mb4_general_ci", "strase")
        );
        assert_eq!(
            fold("utf8mb4_general_ci", "😀"),
            fold("utf8mb4_general_ci", "😁")
        );
        assert_eq!(
            fold("utf8mb4_unicode_ci", "😀"),
            fold("utf8mb4_unicode_ci", "\u{FFFD}")
        );
        assert_ne!(
            fold("utf8mb4_0900_ai_ci", "😀"),
            fold("utf8mb4_0900_ai_ci", "😁")
        );
        assert_eq!(
            fold("utf8mb4_0900_ai_ci", "ア"),
            fold("utf8mb4_0900_ai_ci", "ぁ")
        );
        assert_eq!(
            fold("utf8mb4_unicode_ci", "a\u{AD}b"),
            fold("utf8mb4_unicode_ci", "ab")
        );
        assert_eq!(
            fold("utf8mb4_unicode_ci", "σοφος"),
            fold("utf8mb4_unicode_ci", "ΣΟΦΟΣ")
        );
        assert_eq!(
            fold("utf8mb4_unicode_ci", "σοφος"),
            fold("utf8mb4_unicode_ci", "σοφοσ")
        );
    }

    #[test]
    fn binary_collations_compare_bytes_and_pad_space_drops_trailing_spaces() {
        assert_eq!(fold("utf8mb4_bin", "Bob "), Some("Bob".into()));
        assert_ne!(fold("utf8mb4_bin", "Bob"), fold("utf8mb4_bin", "bob"));
        assert_ne!(fold("utf8mb4_bin", "résumé"), fold("utf8mb4_bin", "resume"));
        assert_eq!(fold("utf8mb4_nopad_bin", "Bob "), Some("Bob ".into()));
        assert_eq!(fold("utf8mb4_0900_bin", "Bob "), Some("Bob ".into()));
        assert_eq!(fold("binary", "Bob "), Some("Bob ".into()));
        assert_ne!(fold("utf8mb4_bin", "a\t"), fold("utf8mb4_bin", "a"));
    }

    #[test]
    fn unknown_collations_and_undecodable_text_are_reported() {
        for coll in [
            "utf8mb4_german2_ci",
            "utf8mb4_turkish_ci",
            "cp1251_general_ci",
            "x",
        ] {
            assert!(!Collation::new(coll).is_known(), "{coll}");
            assert_eq!(fold(coll, "a"), None, "{coll}");
        }
        let bad = Text {
            bytes: vec![0xff, 0xfe],
            charset: Charset::Utf8mb4,
            charset_name: None,
        };
        assert!(!Collation::new("utf8mb4_general_ci").fold(&bad, &mut Vec::new()));
        assert_eq!(
            Collation::new("UTF8MB4_GENERAL_CI").name(),
            "UTF8MB4_GENERAL_CI"
        );
        assert!(Collation::new("UTF8MB4_GENERAL_CI").is_known());
    }

    #[test]
    fn latin1_collations_follow_their_tables() {
        let sw = |s: &str| latin1("latin1_swedish_ci", s);
        assert_eq!(sw("Å"), sw("["));
        assert_eq!(sw("Ä"), sw("æ"));
        assert_eq!(sw("ö"), sw("]"));
        assert_eq!(sw("Ü"), sw("y"));
        assert_eq!(sw("Ð"), sw("d"));
        assert_eq!(sw("Élan "), sw("elan"));
        assert_ne!(sw("å"), sw("a"));
        let g1 = |s: &str| latin1("latin1_german1_ci", s);
        assert_eq!(g1("Æ"), g1("a"));
        assert_eq!(g1("ß"), g1("s"));
        assert_eq!(g1("Ø"), g1("o"));
        assert_eq!(latin1("latin1_german2_ci", "a"), None);
    }
}
