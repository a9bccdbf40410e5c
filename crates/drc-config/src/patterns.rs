//! Table patterns: `db.table` where each side may use `*` (any run of characters) and `?` (one
//! character). Matching is exact otherwise (MySQL names are case-sensitive on Linux).

use std::fmt;

/// A `db.table` glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePattern {
    db: String,
    table: String,
}

impl TablePattern {
    /// Parses `db.table`; both parts must be non-empty and may contain `*` and `?`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let Some((db, table)) = s.split_once('.') else {
            return Err(format!(
                "{s:?} is not a `database.table` pattern (e.g. \"shop.*\" or \"*.orders\")"
            ));
        };
        if db.is_empty() || table.is_empty() || table.contains('.') {
            return Err(format!(
                "{s:?} is not a `database.table` pattern (e.g. \"shop.*\" or \"*.orders\")"
            ));
        }
        Ok(TablePattern {
            db: db.to_string(),
            table: table.to_string(),
        })
    }

    /// Whether `db.table` matches.
    pub fn matches(&self, db: &str, table: &str) -> bool {
        glob(self.db.as_bytes(), db.as_bytes()) && glob(self.table.as_bytes(), table.as_bytes())
    }
}

impl fmt::Display for TablePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.db, self.table)
    }
}

/// Iterative glob matching with backtracking to the last `*` (linear in practice).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let p = TablePattern::parse("shop.order_*").expect("valid");
        assert!(p.matches("shop", "order_items"));
        assert!(p.matches("shop", "order_"));
        assert!(!p.matches("shop", "orders"));
        assert!(!p.matches("shop2", "order_x"));
        let any = TablePattern::parse("*.t?").expect("valid");
        assert!(any.matches("a", "t1"));
        assert!(!any.matches("a", "t12"));
        assert!(TablePattern::parse("noshape").is_err());
        assert!(TablePattern::parse("a.").is_err());
        assert!(TablePattern::parse("a.b.c").is_err());
    }
}
