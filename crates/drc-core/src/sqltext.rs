//! SQL text primitives shared by every crate that renders statements: identifiers quoted with
//! backticks, and string literals escaped for a session without `NO_BACKSLASH_ESCAPES` (drc's
//! sessions never set it). Pure text, no I/O.

/// Appends `name` quoted with backticks (a backtick inside is doubled).
pub fn ident(out: &mut String, name: &str) {
    out.push('`');
    for c in name.chars() {
        if c == '`' {
            out.push('`');
        }
        out.push(c);
    }
    out.push('`');
}

/// Appends `` `db`.`table` ``.
pub fn qualified(out: &mut String, db: &str, table: &str) {
    ident(out, db);
    out.push('.');
    ident(out, table);
}

/// Appends `bytes` as an SQL hex literal, `X'0A1B..'` (upper-case digits).
pub fn hex_literal(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    out.reserve(bytes.len() * 2 + 3);
    out.push_str("X'");
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out.push('\'');
}

/// Appends a string literal, escaped for the default sql_mode (backslash escapes on).
pub fn quoted(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{1a}' => out.push_str("\\Z"),
            c => out.push(c),
        }
    }
    out.push('\'');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_literals_are_escaped() {
        let mut s = String::new();
        qualified(&mut s, "a`b", "t");
        assert_eq!(s, "`a``b`.`t`");
        let mut s = String::new();
        quoted(&mut s, "it's a \\ \0\n\r\u{1a}");
        assert_eq!(s, "'it\\'s a \\\\ \\0\\n\\r\\Z'");
    }

    #[test]
    fn hex_literals_have_two_upper_case_digits_per_byte() {
        let mut s = String::new();
        hex_literal(&mut s, &[0x00, 0x0a, 0xff, 0x5c]);
        assert_eq!(s, "X'000AFF5C'");
        let mut s = String::new();
        hex_literal(&mut s, &[]);
        assert_eq!(s, "X''");
    }
}
