//! What the connecting user may do, read from `SHOW GRANTS` without trying it.
//!
//! `drc check` must be safe to run against production servers, so it never writes to find out
//! whether it could: it parses the grant lines of the current session instead. On MariaDB,
//! `SHOW GRANTS` (without `FOR`) lists the user's own grants, those of its current (default) role
//! and those given `TO PUBLIC` — exactly what drc's own sessions get, since drc never runs
//! `SET ROLE`. MySQL 8 lists granted roles without expanding them, so [`Grants::has_roles`] tells
//! the caller that a missing privilege may still come from a role.
//!
//! Only global (`*.*`) and database-level (`` `db`.* ``, with `%`/`_` wildcards and `\` escapes)
//! grants count: table- and column-level grants cannot be checked against tables created later,
//! so [`Grants::has_table_grants_on`] only lets the caller soften the message. Grant lines are
//! never printed: they can carry password hashes.

/// One `GRANT ... ON ... TO ...` line that names privileges (not a role grant).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Grant {
    /// Privileges in upper case, column lists removed (`SELECT`, `CREATE TEMPORARY TABLES`, ...).
    privileges: Vec<String>,
    /// `ALL` / `ALL PRIVILEGES`.
    all: bool,
    scope: Scope,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    /// `*.*`
    Global,
    /// `` `db`.* `` — a LIKE pattern.
    Database(String),
    /// `` `db`.`table` ``
    Table(String),
    /// Routines, proxies and anything else that grants nothing on tables.
    Other,
}

/// The grants of the current session, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Grants {
    grants: Vec<Grant>,
    /// Some line grants a role (`GRANT `r` TO ...`).
    pub(crate) has_roles: bool,
}

impl Grants {
    /// Parses the lines of `SHOW GRANTS`. Lines that are not understood are ignored.
    pub(crate) fn parse<S: AsRef<str>>(lines: &[S]) -> Grants {
        let mut out = Grants::default();
        for line in lines {
            let line = line.as_ref().trim();
            let Some(rest) = strip_prefix_ci(line, "GRANT ") else {
                continue;
            };
            let Some(on) = find_top_level(rest, " ON ") else {
                // `GRANT role TO user`: privileges arrive through the role.
                if find_top_level(rest, " TO ").is_some() {
                    out.has_roles = true;
                }
                continue;
            };
            let privs_text = &rest[..on];
            let after_on = &rest[on + 4..];
            let target = match find_top_level(after_on, " TO ") {
                Some(to) => &after_on[..to],
                None => after_on,
            };
            let mut privileges = Vec::new();
            let mut all = false;
            for p in split_top_level(privs_text) {
                if p.contains('(') {
                    // Column-level: does not cover the whole table.
                    continue;
                }
                let p = p.trim().to_ascii_uppercase();
                if p == "ALL" || p == "ALL PRIVILEGES" {
                    all = true;
                }
                privileges.push(p);
            }
            out.grants.push(Grant {
                privileges,
                all,
                scope: parse_scope(target.trim()),
            });
        }
        out
    }

    /// The privileges of `required` that no global or database-level grant gives on `db`.
    pub(crate) fn missing_on_db<'a>(&self, db: &str, required: &[&'a str]) -> Vec<&'a str> {
        required
            .iter()
            .copied()
            .filter(|want| {
                !self.grants.iter().any(|g| {
                    let applies = match &g.scope {
                        Scope::Global => true,
                        Scope::Database(pattern) => like(pattern, db),
                        Scope::Table(_) | Scope::Other => false,
                    };
                    applies && (g.all || g.privileges.iter().any(|p| p == want))
                })
            })
            .collect()
    }

    /// Whether some table-level grant names a table of `db` (so privileges may be complete
    /// table by table).
    pub(crate) fn has_table_grants_on(&self, db: &str) -> bool {
        self.grants
            .iter()
            .any(|g| matches!(&g.scope, Scope::Table(d) if d == db))
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Byte index of `needle` (ASCII, matched case-insensitively) outside backquotes, quotes and
/// parentheses.
fn find_top_level(s: &str, needle: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let n = needle.as_bytes();
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None => match b {
                b'`' | b'\'' | b'"' => quote = Some(b),
                b'(' => depth += 1,
                b')' => depth = depth.saturating_sub(1),
                _ if depth == 0
                    && bytes.len() - i >= n.len()
                    && bytes[i..i + n.len()].eq_ignore_ascii_case(n) =>
                {
                    return Some(i);
                }
                _ => {}
            },
        }
        i += 1;
    }
    None
}

/// Splits a privilege list at commas outside parentheses and quotes.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '`' | '\'' | '"' => quote = Some(c),
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                ',' if depth == 0 => {
                    out.push(&s[start..i]);
                    start = i + 1;
                }
                _ => {}
            },
        }
    }
    out.push(&s[start..]);
    out
}

/// Reads one identifier: `` `quoted` `` (with doubled backquotes) or a bare word; returns it and
/// the rest.
fn identifier(s: &str) -> Option<(String, &str)> {
    if let Some(body) = s.strip_prefix('`') {
        let mut out = String::new();
        let mut chars = body.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '`' {
                if chars.peek().map(|&(_, c)| c) == Some('`') {
                    chars.next();
                    out.push('`');
                } else {
                    return Some((out, &body[i + 1..]));
                }
            } else {
                out.push(c);
            }
        }
        None
    } else {
        let end = s
            .find(|c: char| c == '.' || c.is_whitespace())
            .unwrap_or(s.len());
        (end > 0).then(|| (s[..end].to_string(), &s[end..]))
    }
}

fn parse_scope(target: &str) -> Scope {
    if target == "*.*" {
        return Scope::Global;
    }
    let upper = target.to_ascii_uppercase();
    if ["FUNCTION ", "PROCEDURE ", "PACKAGE "]
        .iter()
        .any(|p| upper.starts_with(p))
    {
        return Scope::Other;
    }
    let Some((db, rest)) = identifier(target) else {
        return Scope::Other;
    };
    match rest.strip_prefix('.') {
        Some("*") => Scope::Database(db),
        Some(table) if identifier(table).is_some() => Scope::Table(db),
        _ => Scope::Other,
    }
}

/// SQL `LIKE` with `%`, `_` and `\` escapes, as MySQL applies it to database names in grants.
fn like(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Dynamic programming over (pattern position, text position); names are at most 64 chars.
    let mut states = vec![false; t.len() + 1];
    states[0] = true;
    let mut i = 0;
    while i < p.len() {
        let mut next = vec![false; t.len() + 1];
        match p[i] {
            '%' => {
                let mut seen = false;
                for j in 0..=t.len() {
                    seen |= states[j];
                    next[j] = seen;
                }
            }
            c => {
                let (literal, wildcard) = if c == '\\' && i + 1 < p.len() {
                    i += 1;
                    (p[i], false)
                } else {
                    (c, c == '_')
                };
                for j in 0..t.len() {
                    next[j + 1] = states[j] && (wildcard || t[j] == literal);
                }
            }
        }
        states = next;
        i += 1;
    }
    states[t.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARIADB: &[&str] = &[
        "GRANT `r` TO `u`@`%`",
        "GRANT REPLICATION SLAVE ON *.* TO `u`@`%` IDENTIFIED BY PASSWORD '*D821809F681A40A6E379B50D0463EFAE20BDD122'",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON `shop`.* TO `u`@`%`",
        "GRANT ALL PRIVILEGES ON `drc\\_meta`.* TO `u`@`%`",
        "GRANT USAGE ON *.* TO `r`",
        "GRANT SELECT ON `other`.* TO `r`",
        "GRANT SELECT (`a`, `b`), INSERT ON `crm`.`people` TO `u`@`%`",
        "GRANT EXECUTE ON PROCEDURE `shop`.`p` TO `u`@`%`",
        "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP ON `test\\_%`.* TO PUBLIC",
        "SET DEFAULT ROLE `r` FOR `u`@`%`",
    ];

    #[test]
    fn database_level_grants_count() {
        let g = Grants::parse(MARIADB);
        assert!(g.has_roles);
        let rw = ["SELECT", "INSERT", "UPDATE", "DELETE"];
        assert!(g.missing_on_db("shop", &rw).is_empty());
        assert_eq!(g.missing_on_db("shop", &["CREATE"]), ["CREATE"]);
        assert!(g
            .missing_on_db("drc_meta", &["CREATE", "SELECT"])
            .is_empty());
        // The escaped underscore is literal.
        assert_eq!(g.missing_on_db("drcxmeta", &["SELECT"]), ["SELECT"]);
        // Wildcards from PUBLIC grants.
        assert!(g.missing_on_db("test_1", &rw).is_empty());
        assert_eq!(g.missing_on_db("other", &["INSERT"]), ["INSERT"]);
        // Table-level grants do not count, but are noticed.
        assert_eq!(g.missing_on_db("crm", &["INSERT"]), ["INSERT"]);
        assert!(g.has_table_grants_on("crm"));
        assert!(!g.has_table_grants_on("shop"));
    }

    #[test]
    fn global_grants_cover_every_database() {
        let g = Grants::parse(&[
            "GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION",
            "GRANT PROXY ON ''@'%' TO 'root'@'localhost' WITH GRANT OPTION",
        ]);
        assert!(!g.has_roles);
        assert!(g
            .missing_on_db("anything", &["CREATE", "DELETE"])
            .is_empty());
        let g = Grants::parse(&["GRANT SELECT, REPLICATION SLAVE ON *.* TO 'x'@'%'"]);
        assert_eq!(g.missing_on_db("shop", &["SELECT", "INSERT"]), ["INSERT"]);
    }

    #[test]
    fn like_patterns() {
        assert!(like("shop", "shop"));
        assert!(!like("shop", "shops"));
        assert!(like("sh%", "shop"));
        assert!(like("%", ""));
        assert!(like("s_op", "shop"));
        assert!(!like("s\\_op", "shop"));
        assert!(like("s\\_op", "s_op"));
        assert!(like("a%b%c", "axxbyyc"));
        assert!(!like("a%b%c", "axxbyy"));
    }

    #[test]
    fn odd_lines_are_ignored() {
        let g = Grants::parse(&["", "GRANT", "GRANT SELECT ON", "REVOKE x ON *.* FROM y"]);
        assert!(g.missing_on_db("shop", &["SELECT"]) == ["SELECT"]);
        assert_eq!(identifier("`a``b`.x"), Some(("a`b".to_string(), ".x")));
        assert_eq!(parse_scope("`db`.`t`"), Scope::Table("db".into()));
        assert_eq!(parse_scope("db.*"), Scope::Database("db".into()));
    }
}
