//! Classification of the statements a binlog Query event carries.
//!
//! With row-based replication a Query event is either transaction control (`BEGIN`, `COMMIT`,
//! `XA ...`, savepoints; see [`is_transaction_control`]) or a statement that changes the schema.
//! [`classify`] tells which kind of DDL a statement is and which tables it changes, so a reader
//! can invalidate cached table schemas and decide what to replicate.
//!
//! Contract:
//! - [`classify`] never panics and never drops a statement: text it does not understand is
//!   [`DdlKind::Other`] with no tables.
//! - The statement is first parsed with `sqlparser` (MySQL dialect); the result then comes from
//!   the syntax tree and [`Ddl::parsed`] is `true`. sqlparser rejects some MySQL and MariaDB
//!   syntax (`ALTER TABLE t ENGINE=InnoDB`, `ADD COLUMN IF NOT EXISTS`, `CREATE ALGORITHM=...
//!   DEFINER=... VIEW`, ...); for those the leading keywords and table names are read from
//!   sqlparser's tokenizer output instead and `parsed` is `false`. In that case `tables` is best
//!   effort: it may miss a name the token reader could not find, so a caller that must be exact
//!   should treat `parsed == false` conservatively (for example, drop all cached schemas).
//! - Names are returned unquoted, with the database qualifier when the statement had one.
//! - A text with several statements is classified by its first one.

use std::fmt;

use sqlparser::ast::{AlterTableOperation, ObjectName, ObjectType, RenameTableNameKind, Statement};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Token, Tokenizer};

/// What a DDL statement does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DdlKind {
    /// `CREATE [OR REPLACE] [TEMPORARY] TABLE`, including `... LIKE` and `... SELECT`.
    CreateTable,
    /// `ALTER TABLE`.
    AlterTable,
    /// `DROP [TEMPORARY] TABLE`.
    DropTable,
    /// `RENAME TABLE`.
    RenameTable,
    /// `TRUNCATE [TABLE]`.
    TruncateTable,
    /// `CREATE [UNIQUE|FULLTEXT|SPATIAL] INDEX`.
    CreateIndex,
    /// `DROP INDEX ... ON`.
    DropIndex,
    /// `CREATE DATABASE` / `CREATE SCHEMA`.
    CreateDatabase,
    /// `DROP DATABASE` / `DROP SCHEMA`.
    DropDatabase,
    /// `CREATE [OR REPLACE] VIEW`.
    CreateView,
    /// `DROP VIEW`.
    DropView,
    /// Anything else, including text that is not SQL at all.
    Other,
}

/// A table (or view) named by a statement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableRef {
    /// The database qualifier, when the statement wrote one (`shop`.`t`).
    pub database: Option<String>,
    /// The table name, unquoted.
    pub table: String,
}

impl TableRef {
    fn from_parts(database: Option<&str>, table: &str) -> Self {
        TableRef {
            database: database.map(str::to_owned),
            table: table.to_owned(),
        }
    }
}

/// Prints the name quoted with backticks, as MySQL would accept it back.
impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quote = |s: &str| format!("`{}`", s.replace('`', "``"));
        if let Some(db) = &self.database {
            write!(f, "{}.", quote(db))?;
        }
        f.write_str(&quote(&self.table))
    }
}

/// The classification of one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ddl {
    /// What the statement does.
    pub kind: DdlKind,
    /// Every table or view the statement changes, in statement order (`RENAME TABLE a TO b,
    /// c TO d` gives a, b, c, d; `ALTER TABLE t RENAME TO u` gives t, u; `CREATE TABLE t LIKE s`
    /// gives t). Empty for database statements and [`DdlKind::Other`].
    pub tables: Vec<TableRef>,
    /// `true` when the result comes from sqlparser's syntax tree (or sqlparser accepted a
    /// statement that is not DDL); `false` when it comes from the token fallback, in which case
    /// `tables` is best effort.
    pub parsed: bool,
}

/// Classifies one statement from a binlog Query event. Never fails; see the module docs.
pub fn classify(sql: &str) -> Ddl {
    let dialect = MySqlDialect {};
    let parsed = match Parser::parse_sql(&dialect, sql) {
        Ok(statements) => {
            if let Some(ddl) = statements.first().and_then(from_statement) {
                return ddl;
            }
            // Accepted, but not a statement we map. Only a DDL keyword up front is worth a
            // second look (sqlparser may have read MySQL syntax as something else).
            let first = leading_words(sql, 1);
            if !first
                .first()
                .is_some_and(|w| DDL_STARTS.contains(&w.as_str()))
            {
                return Ddl {
                    kind: DdlKind::Other,
                    tables: Vec::new(),
                    parsed: true,
                };
            }
            true
        }
        Err(_) => false,
    };
    match from_tokens(&mut Cursor::new(sql)) {
        (DdlKind::Other, _) => Ddl {
            kind: DdlKind::Other,
            tables: Vec::new(),
            parsed,
        },
        (kind, tables) => Ddl {
            kind,
            tables,
            parsed: false,
        },
    }
}

/// First keywords of the statements [`from_tokens`] recognizes.
const DDL_STARTS: [&str; 5] = ["CREATE", "ALTER", "DROP", "RENAME", "TRUNCATE"];

fn table_ref(name: &ObjectName) -> Option<TableRef> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|part| match part.as_ident() {
            Some(ident) => ident.value.clone(),
            None => part.to_string(),
        })
        .collect();
    match parts.as_slice() {
        [] => None,
        [table] => Some(TableRef::from_parts(None, table)),
        [.., database, table] => Some(TableRef::from_parts(Some(database), table)),
    }
}

fn refs<'a>(names: impl IntoIterator<Item = &'a ObjectName>) -> Vec<TableRef> {
    names.into_iter().filter_map(table_ref).collect()
}

/// Maps a parsed statement; `None` when the statement is not one of the DDL kinds.
fn from_statement(statement: &Statement) -> Option<Ddl> {
    let (kind, tables) = match statement {
        Statement::CreateTable(create) => (DdlKind::CreateTable, refs([&create.name])),
        Statement::AlterTable(alter) => {
            let mut tables = refs([&alter.name]);
            for op in &alter.operations {
                if let AlterTableOperation::RenameTable { table_name } = op {
                    let (RenameTableNameKind::To(name) | RenameTableNameKind::As(name)) =
                        table_name;
                    tables.extend(table_ref(name));
                }
            }
            (DdlKind::AlterTable, tables)
        }
        Statement::Drop {
            object_type,
            names,
            table,
            ..
        } => match object_type {
            ObjectType::Table => (DdlKind::DropTable, refs(names)),
            ObjectType::View => (DdlKind::DropView, refs(names)),
            ObjectType::Index => (DdlKind::DropIndex, refs(table)),
            ObjectType::Database | ObjectType::Schema => (DdlKind::DropDatabase, Vec::new()),
            _ => return None,
        },
        Statement::RenameTable(renames) => (
            DdlKind::RenameTable,
            refs(renames.iter().flat_map(|r| [&r.old_name, &r.new_name])),
        ),
        Statement::Truncate(truncate) => (
            DdlKind::TruncateTable,
            refs(truncate.table_names.iter().map(|t| &t.name)),
        ),
        Statement::CreateIndex(index) => (DdlKind::CreateIndex, refs([&index.table_name])),
        Statement::CreateDatabase { .. } | Statement::CreateSchema { .. } => {
            (DdlKind::CreateDatabase, Vec::new())
        }
        Statement::CreateView(view) => (DdlKind::CreateView, refs([&view.name])),
        _ => return None,
    };
    Some(Ddl {
        kind,
        tables,
        parsed: true,
    })
}

// ---------------------------------------------------------------------------------------------
// Token fallback
// ---------------------------------------------------------------------------------------------

/// Tokenizes `sql`, dropping whitespace and comments. When the tokenizer fails (an unterminated
/// string, say), the text before the error is tokenized instead: the leading keywords and
/// names are all the fallback needs.
fn tokens(sql: &str) -> Vec<Token> {
    let dialect = MySqlDialect {};
    let mut text = sql;
    for _ in 0..4 {
        match Tokenizer::new(&dialect, text).tokenize() {
            Ok(tokens) => {
                return tokens
                    .into_iter()
                    .filter(|t| !matches!(t, Token::Whitespace(_) | Token::EOF))
                    .collect()
            }
            Err(e) => match byte_offset(text, e.location) {
                Some(end) if end > 0 && end < text.len() => text = text.get(..end).unwrap_or(""),
                _ => break,
            },
        }
    }
    Vec::new()
}

/// Byte offset of a 1-based (line, column-in-characters) location.
fn byte_offset(text: &str, location: Location) -> Option<usize> {
    let (mut line, mut column) = (1, 1);
    for (offset, c) in text.char_indices() {
        if (line, column) == (location.line, location.column) {
            return Some(offset);
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    None
}

/// Reads a statement's leading keywords and names from its tokens.
struct Cursor {
    tokens: Vec<Token>,
    at: usize,
}

impl Cursor {
    fn new(sql: &str) -> Self {
        Cursor {
            tokens: tokens(sql),
            at: 0,
        }
    }

    fn next(&mut self) -> Option<&Token> {
        let token = self.tokens.get(self.at);
        self.at += 1;
        token
    }

    /// Whether the token `ahead` positions on is the unquoted keyword `kw`.
    fn is_kw(&self, ahead: usize, kw: &str) -> bool {
        matches!(
            self.tokens.get(self.at + ahead),
            Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw)
        )
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        let found = self.is_kw(0, kw);
        if found {
            self.at += 1;
        }
        found
    }

    /// Consumes `kws` if they all come next, in order; otherwise consumes nothing.
    fn eat_kws(&mut self, kws: &[&str]) -> bool {
        let found = kws.iter().enumerate().all(|(i, kw)| self.is_kw(i, kw));
        if found {
            self.at += kws.len();
        }
        found
    }

    fn eat_any_kw(&mut self, kws: &[&str]) -> bool {
        kws.iter().any(|kw| self.eat_kw(kw))
    }

    fn eat(&mut self, token: &Token) -> bool {
        let found = self.tokens.get(self.at) == Some(token);
        if found {
            self.at += 1;
        }
        found
    }

    /// `name` or `database.name`, each part quoted or not.
    fn name(&mut self) -> Option<TableRef> {
        let Some(Token::Word(first)) = self.tokens.get(self.at) else {
            return None;
        };
        if let (Some(Token::Period), Some(Token::Word(second))) =
            (self.tokens.get(self.at + 1), self.tokens.get(self.at + 2))
        {
            let name = TableRef::from_parts(Some(&first.value), &second.value);
            self.at += 3;
            return Some(name);
        }
        let name = TableRef::from_parts(None, &first.value);
        self.at += 1;
        Some(name)
    }

    /// `name [, name ...]`.
    fn names(&mut self) -> Vec<TableRef> {
        let mut names = Vec::new();
        while let Some(name) = self.name() {
            names.push(name);
            if !self.eat(&Token::Comma) {
                break;
            }
        }
        names
    }

    /// Skips forward to just after the next unquoted `kw` outside parentheses.
    fn skip_past_kw(&mut self, kw: &str) -> bool {
        let mut depth = 0usize;
        while self.at < self.tokens.len() {
            if depth == 0 && self.eat_kw(kw) {
                return true;
            }
            match self.next() {
                Some(Token::LParen) => depth += 1,
                Some(Token::RParen) => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        false
    }
}

fn from_tokens(c: &mut Cursor) -> (DdlKind, Vec<TableRef>) {
    if c.eat_kw("CREATE") {
        create_from_tokens(c)
    } else if c.eat_kw("ALTER") {
        alter_from_tokens(c)
    } else if c.eat_kw("DROP") {
        drop_from_tokens(c)
    } else if c.eat_kw("RENAME") {
        rename_from_tokens(c)
    } else if c.eat_kw("TRUNCATE") {
        c.eat_kw("TABLE");
        (DdlKind::TruncateTable, c.name().into_iter().collect())
    } else {
        (DdlKind::Other, Vec::new())
    }
}

/// Object types that may follow `DEFINER = user` in a CREATE statement.
const DEFINER_TARGETS: [&str; 7] = [
    "SQL",
    "VIEW",
    "TRIGGER",
    "PROCEDURE",
    "FUNCTION",
    "EVENT",
    "AGGREGATE",
];

/// `CREATE [OR REPLACE] [modifiers] {TABLE|INDEX|DATABASE|SCHEMA|VIEW} ...`.
fn create_from_tokens(c: &mut Cursor) -> (DdlKind, Vec<TableRef>) {
    c.eat_kws(&["OR", "REPLACE"]);
    loop {
        if c.eat_any_kw(&[
            "TEMPORARY",
            "UNIQUE",
            "FULLTEXT",
            "SPATIAL",
            "ONLINE",
            "OFFLINE",
        ]) {
            continue;
        }
        if c.eat_kw("ALGORITHM") {
            c.eat(&Token::Eq);
            c.next();
            continue;
        }
        if c.eat_kw("DEFINER") {
            c.eat(&Token::Eq);
            // `user`@`host`, 'user'@'%', CURRENT_USER[()]: skip to the object type.
            for _ in 0..8 {
                if DEFINER_TARGETS.iter().any(|kw| c.is_kw(0, kw)) || c.next().is_none() {
                    break;
                }
            }
            continue;
        }
        if c.eat_kws(&["SQL", "SECURITY"]) {
            c.next();
            continue;
        }
        break;
    }
    if c.eat_kw("TABLE") {
        c.eat_kws(&["IF", "NOT", "EXISTS"]);
        (DdlKind::CreateTable, c.name().into_iter().collect())
    } else if c.eat_kw("INDEX") {
        let table = if c.skip_past_kw("ON") { c.name() } else { None };
        (DdlKind::CreateIndex, table.into_iter().collect())
    } else if c.eat_any_kw(&["DATABASE", "SCHEMA"]) {
        (DdlKind::CreateDatabase, Vec::new())
    } else if c.eat_kw("VIEW") {
        c.eat_kws(&["IF", "NOT", "EXISTS"]);
        (DdlKind::CreateView, c.name().into_iter().collect())
    } else {
        (DdlKind::Other, Vec::new())
    }
}

/// `ALTER [ONLINE|OFFLINE] [IGNORE] TABLE [IF EXISTS] name ... [, RENAME [TO|AS] new] ...`.
fn alter_from_tokens(c: &mut Cursor) -> (DdlKind, Vec<TableRef>) {
    c.eat_any_kw(&["ONLINE", "OFFLINE"]);
    c.eat_kw("IGNORE");
    if !c.eat_kw("TABLE") {
        return (DdlKind::Other, Vec::new());
    }
    c.eat_kws(&["IF", "EXISTS"]);
    let Some(table) = c.name() else {
        return (DdlKind::AlterTable, Vec::new());
    };
    let mut tables = vec![table];
    // A table rename is an operation of its own: it starts right after the table name or
    // after a top-level comma. `RENAME COLUMN/INDEX/KEY` renames something else.
    let mut depth = 0usize;
    let mut operation_start = true;
    while c.at < c.tokens.len() {
        if depth == 0 && operation_start && c.eat_kw("RENAME") {
            if !["COLUMN", "INDEX", "KEY"].iter().any(|kw| c.is_kw(0, kw)) {
                c.eat_any_kw(&["TO", "AS"]);
                tables.extend(c.name());
            }
            operation_start = false;
            continue;
        }
        operation_start = false;
        match c.next() {
            Some(Token::LParen) => depth += 1,
            Some(Token::RParen) => depth = depth.saturating_sub(1),
            Some(Token::Comma) if depth == 0 => operation_start = true,
            _ => {}
        }
    }
    (DdlKind::AlterTable, tables)
}

/// `DROP [TEMPORARY] {TABLE|VIEW} [IF EXISTS] a, b`, `DROP INDEX i ON t`, `DROP DATABASE`.
fn drop_from_tokens(c: &mut Cursor) -> (DdlKind, Vec<TableRef>) {
    c.eat_kw("TEMPORARY");
    c.eat_any_kw(&["ONLINE", "OFFLINE"]);
    if c.eat_kw("TABLE") {
        c.eat_kws(&["IF", "EXISTS"]);
        (DdlKind::DropTable, c.names())
    } else if c.eat_kw("VIEW") {
        c.eat_kws(&["IF", "EXISTS"]);
        (DdlKind::DropView, c.names())
    } else if c.eat_kw("INDEX") {
        c.eat_kws(&["IF", "EXISTS"]);
        let table = if c.skip_past_kw("ON") { c.name() } else { None };
        (DdlKind::DropIndex, table.into_iter().collect())
    } else if c.eat_any_kw(&["DATABASE", "SCHEMA"]) {
        (DdlKind::DropDatabase, Vec::new())
    } else {
        (DdlKind::Other, Vec::new())
    }
}

/// `RENAME TABLE [IF EXISTS] a [WAIT n|NOWAIT] TO b, c TO d`.
fn rename_from_tokens(c: &mut Cursor) -> (DdlKind, Vec<TableRef>) {
    if !c.eat_any_kw(&["TABLE", "TABLES"]) {
        return (DdlKind::Other, Vec::new());
    }
    c.eat_kws(&["IF", "EXISTS"]);
    let mut tables = Vec::new();
    while let Some(from) = c.name() {
        tables.push(from);
        if c.eat_kw("WAIT") {
            c.next();
        }
        c.eat_kw("NOWAIT");
        if !c.eat_kw("TO") {
            break;
        }
        tables.extend(c.name());
        if !c.eat(&Token::Comma) {
            break;
        }
    }
    (DdlKind::RenameTable, tables)
}

// ---------------------------------------------------------------------------------------------
// Transaction control
// ---------------------------------------------------------------------------------------------

/// The first `n` bare words of `sql`, uppercased, skipping whitespace and comments. The body of
/// an executable comment (`/*!50100 ... */`, MariaDB `/*M!100100 ... */`) counts as code.
/// Stops at the first character that is not part of a word, whitespace or a comment.
fn leading_words(sql: &str, n: usize) -> Vec<String> {
    let bytes = sql.as_bytes();
    let mut words = Vec::new();
    let mut i = 0;
    let skip_line = |from: usize| {
        bytes[from..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |p| from + p + 1)
    };
    while words.len() < n && i < bytes.len() {
        let rest = &bytes[i..];
        if rest[0].is_ascii_whitespace() {
            i += 1;
        } else if rest.starts_with(b"/*!") || rest.starts_with(b"/*M!") {
            i += if rest[2] == b'!' { 3 } else { 4 };
            i += bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        } else if rest.starts_with(b"*/") {
            i += 2; // end of an executable comment
        } else if rest.starts_with(b"/*") {
            i = rest[2..]
                .windows(2)
                .position(|w| w == b"*/")
                .map_or(bytes.len(), |p| i + 2 + p + 2);
        } else if rest[0] == b'#'
            || (rest.starts_with(b"--") && rest.get(2).is_none_or(|b| b.is_ascii_whitespace()))
        {
            i = skip_line(i);
        } else if rest[0].is_ascii_alphabetic() || rest[0] == b'_' {
            let len = rest
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_' || **b == b'$')
                .count();
            words.push(String::from_utf8_lossy(&rest[..len]).to_ascii_uppercase());
            i += len;
        } else {
            break;
        }
    }
    words
}

/// The first `n` bare words of `sql`, uppercased (comments and whitespace skipped; the body
/// of an executable comment counts as code). For callers that sort statements by their leading
/// keywords (`GRANT`, `CREATE USER`, ...).
pub fn first_words(sql: &str, n: usize) -> Vec<String> {
    leading_words(sql, n)
}

/// Every word of `sql` (keywords and names, quoted or not, unquoted), in order; comments and
/// literals are left out. For callers that must know whether a statement names something at
/// all, when [`classify`] could not tell which tables it changes.
pub fn words(sql: &str) -> Vec<String> {
    tokens(sql)
        .into_iter()
        .filter_map(|t| match t {
            Token::Word(w) => Some(w.value),
            _ => None,
        })
        .collect()
}

/// Whether `sql` is transaction control rather than DDL: `BEGIN [WORK]`, `START TRANSACTION`,
/// `COMMIT`, `ROLLBACK` (including `ROLLBACK TO [SAVEPOINT] x`), `SAVEPOINT x`,
/// `RELEASE SAVEPOINT x`, and `XA START|BEGIN|END|PREPARE|COMMIT|ROLLBACK`. Case-insensitive;
/// leading whitespace and comments are skipped. MariaDB's `BEGIN NOT ATOMIC` compound statement
/// is not transaction control.
pub fn is_transaction_control(sql: &str) -> bool {
    let words = leading_words(sql, 2);
    let second = words.get(1).map(String::as_str);
    match words.first().map(String::as_str) {
        Some("BEGIN") => second != Some("NOT"),
        Some("COMMIT" | "ROLLBACK" | "SAVEPOINT") => true,
        Some("START") => second == Some("TRANSACTION"),
        Some("RELEASE") => second == Some("SAVEPOINT"),
        Some("XA") => matches!(
            second,
            Some("START" | "BEGIN" | "END" | "PREPARE" | "COMMIT" | "ROLLBACK")
        ),
        _ => false,
    }
}

/// Whether `sql` is a data-changing statement (`INSERT`, `REPLACE`, `UPDATE`, `DELETE`,
/// `LOAD DATA`). In a row-based binlog such a statement in a QUERY event means some session wrote
/// with `binlog_format` STATEMENT or MIXED: its rows are not in the binlog.
pub fn is_dml(sql: &str) -> bool {
    let words = leading_words(sql, 2);
    match words.first().map(String::as_str) {
        Some("INSERT" | "REPLACE" | "UPDATE" | "DELETE") => true,
        Some("LOAD") => matches!(words.get(1).map(String::as_str), Some("DATA" | "XML")),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
