//! The nats-server configuration file format, and mapping it onto [`Options`].
//!
//! Two stages, so each can be tested (and fuzzed) on its own:
//! 1. [`parse_str`] / [`parse_file`] turn text into a tree of [`Node`]s that remember where they
//!    came from (file:line:column). Includes and `$VARIABLES` are resolved here, because both
//!    depend on where in the text they appear.
//! 2. [`apply`] walks the tree and sets `Options` fields. It knows which keys natsd honours, which
//!    it accepts with a warning (features with no security meaning that natsd lacks), which are
//!    fatal (security settings natsd cannot honour: an operator who asked for TLS or NKeys
//!    must never get an open server), and rejects every other key as nats-server does.
//!    `authorization { users }` and `accounts { A { users } }` become `Options.auth.users`
//!    (each user with its account and permissions), checked together as nats-server does.
//!
//! Scalars keep their source text (`Value::Bare`) until a key says what type it wants, because the
//! same text means different things to different keys: `1m` is 1 000 000 bytes to `max_payload`
//! but one minute to `ping_interval`.
//!
//! The parser never panics and bounds its own recursion (blocks, arrays, includes), so a hostile
//! or corrupt file gives an error, never a crash.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::options::{
    Options, Permissions, SubjectPermission, User, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONTROL_LINE, DEFAULT_MAX_PAYLOAD, DEFAULT_MAX_PENDING,
};

/// Deepest nesting of blocks/arrays accepted; real configs use 3 or 4 levels.
const MAX_DEPTH: usize = 64;
/// Deepest chain of includes; deeper is almost certainly a file including itself.
const MAX_INCLUDE_DEPTH: usize = 10;

/// Where a node came from. `line` and `col` are 1-based, as editors show them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pos {
    pub file: Arc<str>,
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A double- or single-quoted string, escapes already applied.
    Str(String),
    /// Unquoted text (`4222`, `true`, `64KB`, `localhost:4222`, `2m`); typed when a key asks.
    Bare(String),
    Map(Vec<Entry>),
    Array(Vec<Node>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
    /// Referenced as `$key` somewhere: then it is a variable definition, not a setting, and is not
    /// checked against the known keys (as nats-server does).
    pub used_as_var: bool,
}

/// What kind of problem an error is; main.rs prints security ones as `[FTL]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Cannot read the file (missing, unreadable, not UTF-8).
    Io,
    /// The text is not valid nats-server config syntax.
    Syntax,
    /// A known key with a value of the wrong type or range.
    Invalid,
    /// A key nats-server does not know either.
    UnknownKey,
    /// A security setting natsd cannot honour yet: refusing to start is the only safe answer.
    Unsupported,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ConfError {
    pub kind: ErrorKind,
    /// None for errors with no position (e.g. the top-level file cannot be opened).
    pub pos: Option<Pos>,
    pub msg: String,
}

impl fmt::Display for ConfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pos {
            Some(p) => write!(f, "{}: {}", p, self.msg),
            None => f.write_str(&self.msg),
        }
    }
}

impl std::error::Error for ConfError {}

fn err(kind: ErrorKind, pos: &Pos, msg: impl Into<String>) -> ConfError {
    ConfError {
        kind,
        pos: Some(pos.clone()),
        msg: msg.into(),
    }
}

/// A setting accepted but not acted on; main.rs logs each as a `[WRN]` line.
#[derive(Clone, Debug, PartialEq)]
pub struct Warning {
    pub pos: Pos,
    pub msg: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pos, self.msg)
    }
}

// ---------------------------------------------------------------------------------------------
// Stage 1: text -> tree
// ---------------------------------------------------------------------------------------------

/// Reads and parses a config file (and everything it includes). The root is always a `Map`.
pub fn parse_file(path: &Path) -> Result<Node, ConfError> {
    parse_file_at(path, 0, &mut Vec::new())
}

/// Parses config text. `name` is used in positions; includes resolve relative to `name`'s dir.
pub fn parse_str(src: &str, name: &str) -> Result<Node, ConfError> {
    let mut scopes = Vec::new();
    Parser::new(src, Arc::from(name), 0, &mut scopes).parse_root()
}

fn parse_file_at(
    path: &Path,
    include_depth: usize,
    scopes: &mut Vec<Vec<Entry>>,
) -> Result<Node, ConfError> {
    let name: Arc<str> = Arc::from(path.display().to_string());
    let bytes = std::fs::read(path).map_err(|e| ConfError {
        kind: ErrorKind::Io,
        pos: None,
        msg: format!(
            "cannot read config file {}: {}",
            path.display(),
            io_reason(&e)
        ),
    })?;
    let src = String::from_utf8(bytes).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        ConfError {
            kind: ErrorKind::Io,
            pos: None,
            msg: format!(
                "{}:{}: config file is not valid UTF-8; save it as UTF-8 text",
                path.display(),
                line
            ),
        }
    })?;
    Parser::new(&src, name, include_depth, scopes).parse_root()
}

/// `std::io::Error`'s Display appends "(os error 2)"; the plain reason reads better.
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_string(),
                None => s,
            }
        }
    }
}

struct Parser<'a> {
    chars: Vec<char>,
    i: usize,
    line: usize,
    col: usize,
    file: Arc<str>,
    include_depth: usize,
    /// The maps being built, outermost first: where `$VAR` looks (innermost first) before the
    /// environment. Shared with included files, which add to the including block.
    scopes: &'a mut Vec<Vec<Entry>>,
}

fn is_space(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\r'
}

/// Characters that end an unquoted key.
fn ends_key(c: char) -> bool {
    c.is_whitespace() || matches!(c, ':' | '=' | '{' | '[' | ';' | ',' | '}' | ']' | '#')
}

/// Characters that end an unquoted value. `#` and `//` only start a comment after whitespace, so
/// `nats://host:4222` and `ab#cd` stay whole, as in nats-server.
fn ends_bare(c: char) -> bool {
    c.is_whitespace() || matches!(c, ',' | ';' | '}' | ']')
}

fn show(c: Option<char>) -> String {
    match c {
        None => "end of file".to_string(),
        Some('\n') => "end of line".to_string(),
        Some(c) => format!("'{}'", c.escape_default()),
    }
}

impl<'a> Parser<'a> {
    fn new(
        src: &str,
        file: Arc<str>,
        include_depth: usize,
        scopes: &'a mut Vec<Vec<Entry>>,
    ) -> Self {
        // A UTF-8 byte order mark some editors write is not part of the config.
        let src = src.strip_prefix('\u{feff}').unwrap_or(src);
        Parser {
            chars: src.chars().collect(),
            i: 0,
            line: 1,
            col: 1,
            file,
            include_depth,
            scopes,
        }
    }

    fn pos(&self) -> Pos {
        Pos {
            file: self.file.clone(),
            line: self.line,
            col: self.col,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn peek2(&self) -> Option<char> {
        self.chars.get(self.i + 1).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn at_comment(&self) -> bool {
        self.peek() == Some('#') || (self.peek() == Some('/') && self.peek2() == Some('/'))
    }

    fn skip_comment(&mut self) {
        while let Some(c) = self.peek() {
            if c == '\n' {
                break;
            }
            self.bump();
        }
    }

    /// Skips spaces and comments on the current line (not the newline).
    fn skip_inline(&mut self) {
        loop {
            match self.peek() {
                Some(c) if is_space(c) => {
                    self.bump();
                }
                _ if self.at_comment() => self.skip_comment(),
                _ => break,
            }
        }
    }

    /// Skips whitespace, newlines and comments.
    fn skip_all(&mut self) {
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() => {
                    self.bump();
                }
                _ if self.at_comment() => self.skip_comment(),
                _ => break,
            }
        }
    }

    fn syntax(&self, msg: impl Into<String>) -> ConfError {
        err(ErrorKind::Syntax, &self.pos(), msg)
    }

    fn parse_root(mut self) -> Result<Node, ConfError> {
        let pos = Pos {
            file: self.file.clone(),
            line: 1,
            col: 1,
        };
        self.scopes.push(Vec::new());
        let r = self.parse_map_body(None, 0);
        let entries = self.scopes.pop().unwrap_or_default();
        r?;
        Ok(Node {
            value: Value::Map(entries),
            pos,
        })
    }

    /// Parses `key value` entries into the innermost scope until EOF (top level) or the closing
    /// `}` of a block opened at `open`.
    fn parse_map_body(&mut self, open: Option<&Pos>, depth: usize) -> Result<(), ConfError> {
        loop {
            self.skip_all();
            match self.peek() {
                None => {
                    return match open {
                        Some(p) => Err(self.syntax(format!(
                            "unexpected end of file: the block opened at line {} column {} is not closed; add a '}}'",
                            p.line, p.col
                        ))),
                        None => Ok(()),
                    };
                }
                Some('}') => {
                    if open.is_some() {
                        self.bump();
                        return Ok(());
                    }
                    return Err(self.syntax(
                        "unexpected '}' with no block open; remove it or add the missing 'name {'",
                    ));
                }
                Some(';') | Some(',') => {
                    self.bump();
                    continue;
                }
                _ => {}
            }
            self.parse_entry(open.is_some(), depth)?;
        }
    }

    fn parse_key(&mut self) -> Result<String, ConfError> {
        match self.peek() {
            Some(q @ ('"' | '\'')) => self.parse_quoted(q),
            _ => {
                let mut key = String::new();
                while let Some(c) = self.peek() {
                    if ends_key(c) {
                        break;
                    }
                    key.push(c);
                    self.bump();
                }
                if key.is_empty() {
                    return Err(self.syntax(format!(
                        "expected a setting name, found {}; write settings as 'name: value'",
                        show(self.peek())
                    )));
                }
                Ok(key)
            }
        }
    }

    fn parse_entry(&mut self, in_block: bool, depth: usize) -> Result<(), ConfError> {
        let key_pos = self.pos();
        let key = self.parse_key()?;
        self.skip_inline_spaces();
        let mut had_sep = false;
        if matches!(self.peek(), Some(':') | Some('=')) {
            self.bump();
            had_sep = true;
            self.skip_inline_spaces();
        }
        if key == "include" && !had_sep {
            return self.parse_include(&key_pos);
        }
        match self.peek() {
            None | Some('\n') | Some(';') | Some(',') | Some('}') | Some(']') | Some('#') => {
                return Err(err(
                    ErrorKind::Syntax,
                    &key_pos,
                    format!(
                        "setting '{}' has no value; write it as '{}: <value>'",
                        key, key
                    ),
                ));
            }
            Some('/') if self.peek2() == Some('/') => {
                return Err(err(
                    ErrorKind::Syntax,
                    &key_pos,
                    format!(
                        "setting '{}' has no value; write it as '{}: <value>'",
                        key, key
                    ),
                ));
            }
            _ => {}
        }
        let value = self.parse_value(depth)?;
        self.expect_end_of_value(&key, in_block)?;
        if let Some(scope) = self.scopes.last_mut() {
            scope.push(Entry {
                key,
                key_pos,
                value,
                used_as_var: false,
            });
        }
        Ok(())
    }

    fn skip_inline_spaces(&mut self) {
        while matches!(self.peek(), Some(c) if is_space(c)) {
            self.bump();
        }
    }

    /// After a value: spaces, an optional comment, then end of line, `;`, `,`, `}` or EOF.
    fn expect_end_of_value(&mut self, key: &str, in_block: bool) -> Result<(), ConfError> {
        self.skip_inline();
        match self.peek() {
            None | Some('\n') => Ok(()),
            Some(';') | Some(',') => {
                self.bump();
                Ok(())
            }
            Some('}') if in_block => Ok(()),
            c => Err(self.syntax(format!(
                "unexpected {} after the value of '{}'; put one setting per line (or separate them with ';') and quote values that contain spaces",
                show(c),
                key
            ))),
        }
    }

    /// Reads a bare (unquoted) word up to the first character that ends one.
    fn read_bare(&mut self) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek() {
            if ends_bare(c) {
                break;
            }
            s.push(c);
            self.bump();
        }
        s
    }

    fn parse_include(&mut self, key_pos: &Pos) -> Result<(), ConfError> {
        let target = match self.peek() {
            Some(q @ ('"' | '\'')) => self.parse_quoted(q)?,
            _ => self.read_bare(),
        };
        if target.is_empty() {
            return Err(err(
                ErrorKind::Syntax,
                key_pos,
                "'include' needs a file name; write it as 'include ./other.conf'",
            ));
        }
        self.expect_end_of_value("include", true)?;
        if self.include_depth + 1 > MAX_INCLUDE_DEPTH {
            return Err(err(
                ErrorKind::Syntax,
                key_pos,
                format!(
                    "includes nested more than {} deep at '{}'; does a file include itself?",
                    MAX_INCLUDE_DEPTH, target
                ),
            ));
        }
        let base = Path::new(&*self.file)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let path: PathBuf = base.join(&target);
        // The included file's entries land in the current block, and its `$VAR`s see this
        // block's variables: parse it against the same scope stack.
        let included = parse_file_at(&path, self.include_depth + 1, self.scopes).map_err(|e| {
            if e.kind == ErrorKind::Io && e.pos.is_none() {
                err(
                    ErrorKind::Io,
                    key_pos,
                    format!("error in include file '{}': {}", target, e.msg),
                )
            } else {
                e
            }
        })?;
        if let (Value::Map(entries), Some(scope)) = (included.value, self.scopes.last_mut()) {
            scope.extend(entries);
        }
        Ok(())
    }

    fn parse_value(&mut self, depth: usize) -> Result<Node, ConfError> {
        let pos = self.pos();
        if depth >= MAX_DEPTH {
            return Err(self.syntax(format!(
                "blocks and arrays nested more than {} deep; flatten the config",
                MAX_DEPTH
            )));
        }
        let value = match self.peek() {
            Some('{') => {
                self.bump();
                self.scopes.push(Vec::new());
                let r = self.parse_map_body(Some(&pos), depth + 1);
                let entries = self.scopes.pop().unwrap_or_default();
                r?;
                Value::Map(entries)
            }
            Some('[') => self.parse_array(&pos, depth + 1)?,
            Some(q @ ('"' | '\'')) => Value::Str(self.parse_quoted(q)?),
            Some('$') => return self.parse_variable(),
            _ => {
                let s = self.read_bare();
                if s.is_empty() {
                    return Err(
                        self.syntax(format!("expected a value, found {}", show(self.peek())))
                    );
                }
                Value::Bare(s)
            }
        };
        Ok(Node { value, pos })
    }

    fn parse_array(&mut self, open: &Pos, depth: usize) -> Result<Value, ConfError> {
        self.bump(); // '['
        let mut items = Vec::new();
        loop {
            self.skip_all();
            match self.peek() {
                None => {
                    return Err(self.syntax(format!(
                        "unexpected end of file: the array opened at line {} column {} is not closed; add a ']'",
                        open.line, open.col
                    )))
                }
                Some(']') => {
                    self.bump();
                    return Ok(Value::Array(items));
                }
                Some(',') => {
                    self.bump();
                    continue;
                }
                _ => {}
            }
            items.push(self.parse_value(depth)?);
            self.skip_inline();
            match self.peek() {
                Some(',') | Some('\n') | Some(']') | None => {}
                c => {
                    return Err(self.syntax(format!(
                        "unexpected {} in an array; separate items with ',' or new lines and quote items that contain spaces",
                        show(c)
                    )))
                }
            }
        }
    }

    fn parse_quoted(&mut self, quote: char) -> Result<String, ConfError> {
        let open = self.pos();
        self.bump();
        let mut s = String::new();
        loop {
            let Some(c) = self.bump() else {
                return Err(err(
                    ErrorKind::Syntax,
                    &open,
                    format!(
                        "string opened here is never closed; add the closing {}",
                        quote
                    ),
                ));
            };
            if c == quote {
                return Ok(s);
            }
            // Single quotes are raw (no escapes), as in nats-server.
            if c != '\\' || quote == '\'' {
                s.push(c);
                continue;
            }
            let esc_pos = self.pos();
            match self.bump() {
                Some('t') => s.push('\t'),
                Some('n') => s.push('\n'),
                Some('r') => s.push('\r'),
                Some('"') => s.push('"'),
                Some('\\') => s.push('\\'),
                Some('x') => {
                    let h: String = [self.bump(), self.bump()].iter().flatten().collect();
                    match u8::from_str_radix(&h, 16) {
                        Ok(b) if h.len() == 2 && b < 0x80 => s.push(b as char),
                        _ => {
                            return Err(err(
                                ErrorKind::Syntax,
                                &esc_pos,
                                "invalid \\x escape; write \\x followed by two hex digits below 80",
                            ))
                        }
                    }
                }
                other => {
                    return Err(err(
                        ErrorKind::Syntax,
                        &esc_pos,
                        format!(
                            "invalid escape \\{} in a quoted string; only \\t \\n \\r \\\" \\\\ and \\xXX are allowed (use single quotes for raw text)",
                            other.map(|c| c.to_string()).unwrap_or_default()
                        ),
                    ))
                }
            }
        }
    }

    fn parse_variable(&mut self) -> Result<Node, ConfError> {
        let pos = self.pos();
        self.bump(); // '$'
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if !(c.is_alphanumeric() || c == '_') {
                break;
            }
            name.push(c);
            self.bump();
        }
        if name.is_empty() || matches!(self.peek(), Some(c) if !ends_bare(c)) {
            return Err(err(
                ErrorKind::Syntax,
                &pos,
                "a '$' value must be a whole variable name like $PORT; quote the value if the '$' is literal (e.g. a bcrypt hash)",
            ));
        }
        // Innermost block first, then the enclosing ones; the latest definition wins.
        for scope in self.scopes.iter_mut().rev() {
            if let Some(entry) = scope.iter_mut().rev().find(|e| e.key == name) {
                entry.used_as_var = true;
                let mut node = entry.value.clone();
                node.pos = pos;
                return Ok(node);
            }
        }
        if let Ok(v) = std::env::var(&name) {
            return Ok(Node {
                value: Value::Bare(v),
                pos,
            });
        }
        Err(err(
            ErrorKind::Invalid,
            &pos,
            format!(
                "variable ${} is not defined in this block, an enclosing block or the environment; define it above ('{} = value') or export it",
                name, name
            ),
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Typed access to scalars
// ---------------------------------------------------------------------------------------------

impl Node {
    fn kind_name(&self) -> &'static str {
        match self.value {
            Value::Str(_) | Value::Bare(_) => "a value",
            Value::Map(_) => "a block { ... }",
            Value::Array(_) => "an array [ ... ]",
        }
    }

    fn scalar(&self, key: &str, want: &str) -> Result<&str, ConfError> {
        match &self.value {
            Value::Str(s) | Value::Bare(s) => Ok(s),
            _ => Err(err(
                ErrorKind::Invalid,
                &self.pos,
                format!("'{}' must be {}, not {}", key, want, self.kind_name()),
            )),
        }
    }

    fn invalid(&self, key: &str, msg: impl fmt::Display) -> ConfError {
        err(ErrorKind::Invalid, &self.pos, format!("'{}' {}", key, msg))
    }

    pub fn as_string(&self, key: &str) -> Result<String, ConfError> {
        self.scalar(key, "a string").map(str::to_string)
    }

    pub fn as_bool(&self, key: &str) -> Result<bool, ConfError> {
        let s = self.scalar(key, "true or false")?;
        parse_bool(s).ok_or_else(|| {
            self.invalid(
                key,
                format!("must be true or false (or yes/no, on/off), not \"{}\"", s),
            )
        })
    }

    pub fn as_int(&self, key: &str) -> Result<i64, ConfError> {
        let s = self.scalar(key, "a whole number")?;
        s.trim()
            .parse::<i64>()
            .map_err(|_| self.invalid(key, format!("must be a whole number, not \"{}\"", s)))
    }

    /// A size in bytes: a number with an optional suffix (k, kb, m, mb, ...).
    pub fn as_size(&self, key: &str) -> Result<u64, ConfError> {
        let s = self.scalar(key, "a size")?;
        parse_size(s).map_err(|why| self.invalid(key, why))
    }

    /// A duration: a Go-style string ("2m", "100ms", "1h30m") or a bare number of seconds.
    pub fn as_duration(&self, key: &str) -> Result<Duration, ConfError> {
        let s = self.scalar(key, "a duration")?;
        parse_duration(s).map_err(|why| self.invalid(key, why))
    }
}

pub fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" => Some(true),
        "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// `64KB` = 65536, `1m` = 1 000 000, `2MiB` = 2 097 152; case-insensitive, as nats-server.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let (num, suffix) = t.split_at(digits);
    let bad = || {
        format!(
            "must be a size like 1048576, 64KB or 1MB, not \"{}\" (k=1000, kb/kib=1024, m=10^6, mb/mib=2^20, likewise g and t)",
            s
        )
    };
    if num.is_empty() {
        return Err(if t.starts_with('-') {
            format!("must not be negative, got \"{}\"", s)
        } else {
            bad()
        });
    }
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" => 1000,
        "kb" | "ki" | "kib" => 1 << 10,
        "m" => 1_000_000,
        "mb" | "mi" | "mib" => 1 << 20,
        "g" => 1_000_000_000,
        "gb" | "gi" | "gib" => 1 << 30,
        "t" => 1_000_000_000_000,
        "tb" | "ti" | "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size \"{}\" is too large", s))
}

/// Go's `time.ParseDuration` units plus "a bare number is seconds" (nats-server's legacy form).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let hint = "use a number with a unit (ns, us, ms, s, m, h), e.g. \"2m\" or \"100ms\", or a bare number of seconds";
    if t.is_empty() {
        return Err(format!("must be a duration; {}", hint));
    }
    if t.starts_with('-') {
        return Err(format!("must not be negative, got \"{}\"", s));
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("duration \"{}\" is too large", s));
    }
    let b = t.as_bytes();
    let mut i = 0;
    let mut total = 0f64;
    while i < b.len() {
        let start = i;
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
            i += 1;
        }
        let num: f64 = t[start..i]
            .parse()
            .map_err(|_| format!("invalid duration \"{}\"; {}", s, hint))?;
        let ustart = i;
        while i < b.len() && !(b[i].is_ascii_digit() || b[i] == b'.') {
            i += 1;
        }
        let unit = &t[ustart..i];
        let secs = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("duration \"{}\" is missing a unit; {}", s, hint)),
            u => {
                return Err(format!(
                    "unknown unit \"{}\" in duration \"{}\"; {}",
                    u, s, hint
                ))
            }
        };
        total += num * secs;
    }
    Duration::try_from_secs_f64(total).map_err(|_| format!("duration \"{}\" is too large", s))
}

/// `host:port`, `[v6]:port`, `:port` or a bare `port`. Returns (host, port); None = not given.
pub fn split_host_port(s: &str) -> Result<(Option<String>, Option<i32>), String> {
    let s = s.trim();
    let port_of = |p: &str| -> Result<i32, String> {
        p.parse::<i32>()
            .ok()
            .filter(|p| (-1..=65535).contains(p))
            .ok_or_else(|| {
                format!(
                    "port \"{}\" must be a number from 0 to 65535 (or -1 for a random port)",
                    p
                )
            })
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("\"{}\" has '[' without ']'; write IPv6 as [::1]:4222", s))?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((Some(h.to_string()), Some(port_of(p)?))),
            None if after.is_empty() => Ok((Some(h.to_string()), None)),
            None => Err(format!("unexpected \"{}\" after ']' in \"{}\"", after, s)),
        };
    }
    if !s.contains(':') {
        return if s.bytes().all(|b| b.is_ascii_digit() || b == b'-') && !s.is_empty() {
            Ok((None, Some(port_of(s)?)))
        } else {
            Ok((Some(s.to_string()), None))
        };
    }
    if s.matches(':').count() > 1 {
        // A bare IPv6 address with no port.
        return Ok((Some(s.to_string()), None));
    }
    let (h, p) = s.split_once(':').unwrap_or((s, ""));
    let host = if h.is_empty() {
        None
    } else {
        Some(h.to_string())
    };
    Ok((host, Some(port_of(p)?)))
}

// ---------------------------------------------------------------------------------------------
// Stage 2: tree -> Options
// ---------------------------------------------------------------------------------------------

/// The result of loading a config file onto Options.
#[derive(Debug)]
pub struct Loaded {
    pub warnings: Vec<Warning>,
    /// sha256 of the top-level file's bytes, shown by `-t` and at start-up as nats-server does.
    pub digest: String,
}

/// Reads `path` and applies it on top of `opts` (sets `opts.config_file`).
pub fn load(path: &Path, opts: &mut Options) -> Result<Loaded, ConfError> {
    let tree = parse_file(path)?;
    let warnings = apply(&tree, opts)?;
    opts.config_file = Some(path.to_path_buf());
    let digest = std::fs::read(path)
        .map(|b| {
            use sha2::Digest;
            sha2::Sha256::digest(&b)
                .iter()
                .map(|x| format!("{:02x}", x))
                .collect()
        })
        .unwrap_or_default();
    Ok(Loaded { warnings, digest })
}

/// Features natsd accepts in a config but does not provide yet: none of them weakens security
/// when absent (natsd simply does not open those ports).
const NOT_AVAILABLE: &[(&str, &str)] = &[
    ("jetstream", "JetStream"),
    ("websocket", "WebSocket"),
    ("cluster", "clustering"),
    ("leafnodes", "leaf nodes"),
    ("leaf", "leaf nodes"),
    ("mqtt", "MQTT"),
    ("gateway", "gateways"),
    ("http", "HTTP monitoring"),
    ("http_port", "HTTP monitoring"),
    ("monitor_port", "HTTP monitoring"),
    ("https", "HTTPS monitoring"),
    ("https_port", "HTTPS monitoring"),
    ("remote_syslog", "remote syslog"),
    ("ports_file_dir", "the ports file"),
    ("prof_port", "profiling"),
    ("log_size_limit", "log rotation by size"),
    ("log_max_num", "log rotation by size"),
    ("max_traced_msg_len", "trace length limits"),
    ("connect_error_reports", "error report intervals"),
    ("reconnect_error_reports", "error report intervals"),
    ("client_advertise", "client advertise"),
    ("no_advertise", "client advertise"),
    ("disable_sublist_cache", "disabling the sublist cache"),
    ("max_closed_clients", "closed-connection history"),
];

/// Security settings natsd cannot honour yet. Starting without them would serve clients the
/// operator meant to keep out, so each is a fatal error naming the setting.
const UNSUPPORTED_SECURITY: &[(&str, &str)] = &[
    ("tls", "TLS"),
    ("operator", "JWT operator mode"),
    ("operators", "JWT operator mode"),
    ("trusted", "trusted operator keys"),
    ("trusted_keys", "trusted operator keys"),
    ("resolver", "JWT account resolvers"),
    ("resolver_preload", "JWT account resolvers"),
    ("resolver_tls", "JWT account resolvers"),
    ("system_account", "the system account"),
    ("nkeys", "NKey authentication"),
    ("ocsp", "OCSP stapling"),
    ("ocsp_cache", "OCSP stapling"),
    ("default_permissions", "default permissions"),
];

fn unsupported(pos: &Pos, setting: &str, what: &str) -> ConfError {
    err(
        ErrorKind::Unsupported,
        pos,
        format!(
            "'{}': {} is not supported by natsd yet; natsd refuses to start rather than serve clients without it (remove the setting, or run nats-server for this deployment)",
            setting, what
        ),
    )
}

fn usize_of(node: &Node, key: &str, v: u64) -> Result<usize, ConfError> {
    usize::try_from(v).map_err(|_| node.invalid(key, "is too large for this machine"))
}

/// A size where 0 means "the default", as nats-server's baseline options treat it.
fn size_or_default(node: &Node, key: &str, default: usize) -> Result<usize, ConfError> {
    match node.as_size(key)? {
        0 => Ok(default),
        v => usize_of(node, key, v),
    }
}

fn count(node: &Node, key: &str) -> Result<usize, ConfError> {
    let v = node.as_int(key)?;
    if v < 0 {
        return Err(node.invalid(key, "must not be negative"));
    }
    usize_of(node, key, v as u64)
}

/// Applies a parsed config tree on top of `opts`. Returns the warnings to log.
pub fn apply(tree: &Node, opts: &mut Options) -> Result<Vec<Warning>, ConfError> {
    let Value::Map(entries) = &tree.value else {
        return Err(err(
            ErrorKind::Syntax,
            &tree.pos,
            "a config file must be a list of settings",
        ));
    };
    let mut warnings = Vec::new();
    let mut users = UserSources::default();
    for e in entries.iter().filter(|e| !e.used_as_var) {
        let key = e.key.to_ascii_lowercase();
        let k = key.as_str();
        let v = &e.value;
        match k {
            "accounts" => users.accounts = Some(apply_accounts(v)?),
            "no_auth_user" => users.no_auth_user = Some((v.as_string(k)?, v.pos.clone())),
            "listen" => {
                let s = v.as_string(k)?;
                let (host, port) = split_host_port(&s).map_err(|why| v.invalid(k, why))?;
                if let Some(h) = host {
                    opts.host = h;
                }
                if let Some(p) = port {
                    opts.port = p;
                }
            }
            "host" | "net" => opts.host = v.as_string(k)?,
            "port" => {
                let p = v.as_int(k)?;
                if !(-1..=65535).contains(&p) {
                    return Err(v.invalid(k, "must be from 0 to 65535 (or -1 for a random port)"));
                }
                opts.port = p as i32;
            }
            "server_name" => {
                let s = v.as_string(k)?;
                if s.contains(char::is_whitespace) {
                    return Err(v.invalid(k, "cannot contain spaces"));
                }
                opts.server_name = Some(s);
            }
            "max_payload" => opts.max_payload = size_or_default(v, k, DEFAULT_MAX_PAYLOAD)?,
            "max_control_line" => {
                opts.max_control_line = size_or_default(v, k, DEFAULT_MAX_CONTROL_LINE)?
            }
            "max_pending" => opts.max_pending = size_or_default(v, k, DEFAULT_MAX_PENDING)?,
            "max_connections" | "max_conn" => {
                opts.max_connections = match count(v, k)? {
                    0 => DEFAULT_MAX_CONNECTIONS,
                    n => n,
                }
            }
            "max_subscriptions" | "max_subs" => opts.max_subscriptions = count(v, k)?,
            "ping_max" => {
                let n = v.as_int(k)?;
                opts.ping_max = u32::try_from(n)
                    .map_err(|_| v.invalid(k, "must be a whole number from 0 up"))?;
            }
            "write_deadline" => opts.write_deadline = v.as_duration(k)?,
            "ping_interval" => opts.ping_interval = v.as_duration(k)?,
            "lame_duck_duration" => opts.lame_duck_duration = v.as_duration(k)?,
            "lame_duck_grace_period" => opts.lame_duck_grace_period = v.as_duration(k)?,
            "authorization" => users.global = Some((apply_authorization(v, opts)?, v.pos.clone())),
            "logfile" | "log_file" => opts.log_file = Some(PathBuf::from(v.as_string(k)?)),
            "pid_file" | "pidfile" => opts.pid_file = Some(PathBuf::from(v.as_string(k)?)),
            "syslog" => opts.syslog = v.as_bool(k)?,
            "debug" => opts.debug = v.as_bool(k)?,
            "trace" | "trace_verbose" => opts.trace = v.as_bool(k)?,
            "logtime" => opts.logtime = v.as_bool(k)?,
            "logtime_utc" => opts.logtime_utc = v.as_bool(k)?,
            _ => {
                if let Some((_, what)) = UNSUPPORTED_SECURITY.iter().find(|(n, _)| *n == k) {
                    return Err(unsupported(&e.key_pos, &e.key, what));
                }
                if let Some((_, what)) = NOT_AVAILABLE.iter().find(|(n, _)| *n == k) {
                    if k == "http" || k == "http_port" || k == "monitor_port" {
                        record_http(v, k, opts)?;
                    }
                    warnings.push(Warning {
                        pos: e.key_pos.clone(),
                        msg: format!(
                            "'{}' is ignored: {} support is not available in natsd yet",
                            e.key, what
                        ),
                    });
                    continue;
                }
                return Err(err(
                    ErrorKind::UnknownKey,
                    &e.key_pos,
                    format!(
                        "unknown field \"{}\"; check the spelling against the nats-server configuration docs",
                        e.key
                    ),
                ));
            }
        }
    }
    users.apply(opts)?;
    Ok(warnings)
}

/// Monitoring is a later issue, but the address is kept in Options so it can be reported.
fn record_http(v: &Node, k: &str, opts: &mut Options) -> Result<(), ConfError> {
    let s = v.as_string(k)?;
    let (host, port) = split_host_port(&s).map_err(|why| v.invalid(k, why))?;
    if host.is_some() {
        opts.http_host = host;
    }
    if port.is_some() {
        opts.http_port = port;
    }
    Ok(())
}

/// Parses `authorization { }` onto `opts.auth` (token, single user, timeout) and returns its
/// `users` list (with `default_permissions` applied), which [`UserSources::apply`] merges with the
/// users of `accounts`.
fn apply_authorization(node: &Node, opts: &mut Options) -> Result<Vec<(User, Pos)>, ConfError> {
    let Value::Map(entries) = &node.value else {
        return Err(node.invalid(
            "authorization",
            format!("must be a block {{ ... }}, not {}", node.kind_name()),
        ));
    };
    let mut auth = opts.auth.clone();
    // A config's authorization block replaces, not merges with, earlier defaults.
    auth.token = None;
    auth.user = None;
    auth.password = None;
    let mut users = Vec::new();
    let mut default_permissions: Option<(Permissions, Pos)> = None;
    for e in entries.iter().filter(|e| !e.used_as_var) {
        let key = e.key.to_ascii_lowercase();
        let k = key.as_str();
        let v = &e.value;
        match k {
            "token" => auth.token = Some(secret(v, k)?),
            "user" | "username" => auth.user = Some(v.as_string(k)?),
            "password" | "pass" => auth.password = Some(secret(v, k)?),
            "timeout" => {
                // nats-server takes a number of seconds (fractions allowed) or a duration.
                let s = v.scalar(k, "a number of seconds")?;
                auth.timeout = match s.trim().parse::<f64>() {
                    Ok(f) => Duration::try_from_secs_f64(f).map_err(|_| {
                        v.invalid(k, "must be a positive number of seconds")
                    })?,
                    Err(_) => v.as_duration(k)?,
                };
            }
            "users" => users = parse_users(v, None)?,
            // nats-server: all three names mean the permissions of every listed user that has
            // none of its own.
            "permissions" | "default_permissions" | "default_permission" => {
                default_permissions = Some((parse_permissions(v)?, e.key_pos.clone()))
            }
            "auth_callout" | "auth_hook" => {
                return Err(unsupported(&e.key_pos, "authorization.auth_callout", "auth callout"))
            }
            "nkeys" => return Err(unsupported(&e.key_pos, "authorization.nkeys", "NKey authentication")),
            _ => {
                return Err(err(
                    ErrorKind::UnknownKey,
                    &e.key_pos,
                    format!(
                        "unknown field \"{}\" in authorization; natsd knows token, user, password, users, permissions and timeout",
                        e.key
                    ),
                ))
            }
        }
    }
    if auth.token.is_some() && (auth.user.is_some() || auth.password.is_some()) {
        return Err(node.invalid(
            "authorization",
            "cannot have both a token and a user/password; keep one",
        ));
    }
    if auth.user.is_some() != auth.password.is_some() {
        return Err(node.invalid(
            "authorization",
            "needs both user and password (or a token instead)",
        ));
    }
    if let Some((perms, pos)) = default_permissions {
        if users.is_empty() {
            // nats-server applies these only to a `users` list and silently ignores them
            // otherwise: a single user or token client would get full access the operator
            // evidently did not mean to grant.
            return Err(unsupported(
                &pos,
                "authorization.permissions",
                "permissions without a users list (nats-server silently ignores them for a single user or token; put the user in 'users = [ {user, password, permissions} ]')",
            ));
        }
        for (u, _) in users.iter_mut() {
            if u.permissions.is_none() {
                u.permissions = Some(perms.clone());
            }
        }
    }
    opts.auth = auth;
    Ok(users)
}

/// The places users come from (`authorization.users`, `accounts.*.users`) and `no_auth_user`,
/// checked together once the whole file is read, as nats-server does.
#[derive(Default)]
struct UserSources {
    global: Option<(Vec<(User, Pos)>, Pos)>,
    accounts: Option<Vec<(User, Pos)>>,
    no_auth_user: Option<(String, Pos)>,
}

impl UserSources {
    fn apply(self, opts: &mut Options) -> Result<(), ConfError> {
        let mut all: Vec<(User, Pos)> = Vec::new();
        let block_pos = self.global.as_ref().map(|(_, p)| p.clone());
        if let Some(acc) = self.accounts {
            all.extend(acc);
        }
        if let Some((users, _)) = self.global {
            all.extend(users);
        }
        for (i, (u, pos)) in all.iter().enumerate() {
            if all[..i].iter().any(|(o, _)| o.user == u.user) {
                return Err(err(
                    ErrorKind::Invalid,
                    pos,
                    format!("Duplicate user {:?} detected; every user name must be unique across authorization and accounts", u.user),
                ));
            }
        }
        if !all.is_empty() {
            let pos = block_pos.as_ref().unwrap_or(&all[0].1);
            if opts.auth.token.is_some() {
                return Err(err(
                    ErrorKind::Invalid,
                    pos,
                    "Can not have a token and a users array; keep one",
                ));
            }
            if opts.auth.user.is_some() {
                return Err(err(
                    ErrorKind::Invalid,
                    pos,
                    "Can not have a single user/pass and a users array; add the user to the users list",
                ));
            }
        }
        if let Some((name, pos)) = &self.no_auth_user {
            if all.is_empty() {
                return Err(err(
                    ErrorKind::Invalid,
                    pos,
                    format!("no_auth_user: {name:?} present, but users/nkeys are not defined"),
                ));
            }
            if !all.iter().any(|(u, _)| &u.user == name) {
                return Err(err(
                    ErrorKind::Invalid,
                    pos,
                    format!("no_auth_user: {name:?} not present as user or nkey in authorization block or account configuration"),
                ));
            }
        }
        if let Some((_, pos)) = &self.no_auth_user {
            // The client handler lets such a client in as that user, but nats-server also drops
            // `auth_required` from INFO and serves PING/SUB/PUB before CONNECT; natsd's INFO
            // (server.rs) and pre-CONNECT check cannot do that yet. Refused until they match.
            return Err(unsupported(
                pos,
                "no_auth_user",
                "no_auth_user (nats-server then omits auth_required from INFO and serves commands sent before CONNECT; natsd does not match that yet)",
            ));
        }
        opts.auth.users = all.into_iter().map(|(u, _)| u).collect();
        Ok(())
    }
}

/// `accounts { A { users = [...] } }` (or `accounts = [A, B]`, accounts without users).
/// Only `users` is honoured inside an account; anything else there (imports, exports, limits,
/// JetStream, nkey) changes who may see what, so it is refused rather than ignored.
fn apply_accounts(node: &Node) -> Result<Vec<(User, Pos)>, ConfError> {
    let mut users = Vec::new();
    match &node.value {
        Value::Array(names) => {
            for n in names {
                let name = n.as_string("accounts")?;
                account_name(n, &name)?;
            }
        }
        Value::Map(accounts) => {
            for a in accounts.iter().filter(|e| !e.used_as_var) {
                account_name(&a.value, &a.key)?;
                let Value::Map(entries) = &a.value.value else {
                    return Err(a.value.invalid(
                        &format!("accounts.{}", a.key),
                        format!(
                            "must be a block {{ users = [...] }}, not {}",
                            a.value.kind_name()
                        ),
                    ));
                };
                for e in entries.iter().filter(|e| !e.used_as_var) {
                    if e.key.eq_ignore_ascii_case("users") {
                        users.extend(parse_users(&e.value, Some(&a.key))?);
                    } else {
                        return Err(unsupported(
                            &e.key_pos,
                            &format!("accounts.{}.{}", a.key, e.key),
                            "account settings other than users",
                        ));
                    }
                }
            }
        }
        _ => {
            return Err(node.invalid(
                "accounts",
                format!(
                    "must be a block {{ NAME {{ users = [...] }} }}, not {}",
                    node.kind_name()
                ),
            ))
        }
    }
    Ok(users)
}

fn account_name(node: &Node, name: &str) -> Result<(), ConfError> {
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(node.invalid("accounts", format!("has an invalid account name {name:?}")));
    }
    Ok(())
}

/// A `users = [ {user, password, permissions}, ... ]` list.
fn parse_users(node: &Node, account: Option<&str>) -> Result<Vec<(User, Pos)>, ConfError> {
    let Value::Array(items) = &node.value else {
        return Err(node.invalid(
            "users",
            format!(
                "must be an array [ {{user, password}}, ... ], not {}",
                node.kind_name()
            ),
        ));
    };
    items.iter().map(|n| parse_user(n, account)).collect()
}

fn parse_user(node: &Node, account: Option<&str>) -> Result<(User, Pos), ConfError> {
    let Value::Map(entries) = &node.value else {
        return Err(node.invalid(
            "users",
            format!(
                "entries must be blocks {{user: NAME, password: SECRET}}, not {}",
                node.kind_name()
            ),
        ));
    };
    let mut user = User {
        account: account.map(str::to_string),
        ..User::default()
    };
    let mut name = None;
    for e in entries.iter().filter(|e| !e.used_as_var) {
        let key = e.key.to_ascii_lowercase();
        let k = key.as_str();
        let v = &e.value;
        match k {
            "user" | "username" => name = Some(v.as_string(k)?),
            // May be empty or absent, as in nats-server: then the client must send no password.
            "password" | "pass" => user.password = v.as_string(k)?,
            "permissions" | "permission" => user.permissions = Some(parse_permissions(v)?),
            "nkey" => return Err(unsupported(&e.key_pos, "users.nkey", "NKey authentication")),
            "proxy_required" => {
                return Err(unsupported(
                    &e.key_pos,
                    "users.proxy_required",
                    "requiring users to connect through a trusted proxy",
                ))
            }
            "allowed_connection_types" | "connection_types" | "clients" => {
                return Err(unsupported(
                    &e.key_pos,
                    &format!("users.{}", e.key),
                    "restricting users to connection types",
                ))
            }
            _ => {
                return Err(err(
                    ErrorKind::UnknownKey,
                    &e.key_pos,
                    format!(
                    "unknown field \"{}\" in a user; natsd knows user, password and permissions",
                    e.key
                ),
                ))
            }
        }
    }
    match name {
        Some(n) if !n.is_empty() => user.user = n,
        _ => return Err(node.invalid("users", "entry needs a user name ('user: NAME')")),
    }
    Ok((user, node.pos.clone()))
}

/// `permissions { publish = ..., subscribe = ... }`, with nats-server's aliases.
fn parse_permissions(node: &Node) -> Result<Permissions, ConfError> {
    let Value::Map(entries) = &node.value else {
        return Err(node.invalid(
            "permissions",
            format!(
                "must be a block {{ publish = ..., subscribe = ... }}, not {}",
                node.kind_name()
            ),
        ));
    };
    let mut p = Permissions::default();
    for e in entries.iter().filter(|e| !e.used_as_var) {
        let key = e.key.to_ascii_lowercase();
        match key.as_str() {
            "pub" | "publish" | "import" => p.publish = Some(subject_permission(&e.value)?),
            "sub" | "subscribe" | "export" => p.subscribe = Some(subject_permission(&e.value)?),
            "allow_responses" | "publish_allow_responses" => {
                return Err(unsupported(
                    &e.key_pos,
                    &format!("permissions.{}", e.key),
                    "response permissions",
                ))
            }
            _ => {
                return Err(err(
                    ErrorKind::UnknownKey,
                    &e.key_pos,
                    format!(
                        "Unknown field \"{}\" parsing permissions; use publish and subscribe",
                        e.key
                    ),
                ))
            }
        }
    }
    Ok(p)
}

/// `"a.>"`, `["a.>", "b"]` (both = allow) or `{ allow = ..., deny = ... }`.
fn subject_permission(node: &Node) -> Result<SubjectPermission, ConfError> {
    let mut sp = SubjectPermission::default();
    match &node.value {
        Value::Map(entries) => {
            for e in entries.iter().filter(|e| !e.used_as_var) {
                match e.key.to_ascii_lowercase().as_str() {
                    "allow" => sp.allow = subject_list(&e.value)?,
                    "deny" => sp.deny = subject_list(&e.value)?,
                    _ => {
                        return Err(err(
                            ErrorKind::UnknownKey,
                            &e.key_pos,
                            format!(
                                "Unknown field name \"{}\" parsing subject permissions, only 'allow' or 'deny' are permitted",
                                e.key
                            ),
                        ))
                    }
                }
            }
        }
        _ => sp.allow = subject_list(node)?,
    }
    Ok(sp)
}

fn subject_list(node: &Node) -> Result<Vec<String>, ConfError> {
    let items: Vec<&Node> = match &node.value {
        Value::Array(a) => a.iter().collect(),
        _ => vec![node],
    };
    items
        .into_iter()
        .map(|n| {
            let s = n.as_string("permissions")?;
            if s.trim().contains(char::is_whitespace) {
                // "subject queue": nats-server's queue permissions, which natsd's checks lack.
                return Err(unsupported(
                    &n.pos,
                    &format!("permissions {s:?}"),
                    "queue group permissions ('subject queue')",
                ));
            }
            let s = s.trim().to_string();
            if !crate::sublist::valid_subject(s.as_bytes()) {
                return Err(n.invalid(
                    "permissions",
                    format!("subject {s:?} is not a valid subject"),
                ));
            }
            Ok(s)
        })
        .collect()
}

/// Reads a password or token; the secret itself is never put in a message. Either may be a
/// bcrypt hash (`nats server passwd`): the client handler verifies those, as nats-server does.
fn secret(v: &Node, k: &str) -> Result<String, ConfError> {
    let s = v.as_string(k)?;
    if s.is_empty() {
        return Err(v.invalid(k, "must not be empty"));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<Node, ConfError> {
        parse_str(src, "t.conf")
    }

    fn opts(src: &str) -> Result<(Options, Vec<Warning>), ConfError> {
        let tree = parse(src)?;
        let mut o = Options::default();
        let w = apply(&tree, &mut o)?;
        Ok((o, w))
    }

    fn entries(n: &Node) -> &[Entry] {
        match &n.value {
            Value::Map(e) => e,
            _ => panic!("not a map"),
        }
    }

    #[test]
    fn separators_and_terminators() {
        let (o, _) = opts("port: 4333;\nmax_payload = 1024,\nserver_name hello\n").unwrap();
        assert_eq!(o.port, 4333);
        assert_eq!(o.max_payload, 1024);
        assert_eq!(o.server_name.as_deref(), Some("hello"));
    }

    #[test]
    fn comments_everywhere() {
        let (o, _) = opts("# c\n// d\nport: 4333 # trailing\nserver_name: ab#cd // x\n").unwrap();
        assert_eq!(o.port, 4333);
        assert_eq!(o.server_name.as_deref(), Some("ab#cd"));
    }

    #[test]
    fn bare_listen_keeps_colon() {
        let (o, _) = opts("listen: localhost:4555\n").unwrap();
        assert_eq!((o.host.as_str(), o.port), ("localhost", 4555));
        let (o, _) = opts("listen: \"[::1]:4556\"\n").unwrap();
        assert_eq!((o.host.as_str(), o.port), ("::1", 4556));
        let (o, _) = opts("listen: 4557\n").unwrap();
        assert_eq!((o.host.as_str(), o.port), ("0.0.0.0", 4557));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64KB").unwrap(), 65536);
        assert_eq!(parse_size("64kb").unwrap(), 65536);
        assert_eq!(parse_size("1k").unwrap(), 1000);
        assert_eq!(parse_size("1Ki").unwrap(), 1024);
        assert_eq!(parse_size("1KiB").unwrap(), 1024);
        assert_eq!(parse_size("2m").unwrap(), 2_000_000);
        assert_eq!(parse_size("2MB").unwrap(), 2 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1_000_000_000);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("1t").unwrap(), 1_000_000_000_000);
        assert_eq!(parse_size("1tb").unwrap(), 1 << 40);
        assert!(parse_size("1.5MB").is_err());
        assert!(parse_size("-5").unwrap_err().contains("negative"));
        assert!(parse_size("99999999999999tb")
            .unwrap_err()
            .contains("too large"));
        let (o, _) = opts("max_payload: 64KB\nmax_pending: 1m\n").unwrap();
        assert_eq!(o.max_payload, 65536);
        assert_eq!(o.max_pending, 1_000_000);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert!(parse_duration("2x")
            .unwrap_err()
            .contains("unknown unit \"x\""));
        assert!(parse_duration("5").is_ok());
        let (o, _) = opts(
            "ping_interval: \"2m\"\nwrite_deadline: 300ms\nlame_duck_duration: 30\nlame_duck_grace_period: 5s\n",
        )
        .unwrap();
        assert_eq!(o.ping_interval, Duration::from_secs(120));
        assert_eq!(o.write_deadline, Duration::from_millis(300));
        assert_eq!(o.lame_duck_duration, Duration::from_secs(30));
        assert_eq!(o.lame_duck_grace_period, Duration::from_secs(5));
    }

    #[test]
    fn bare_1m_means_a_minute_for_durations_and_a_million_for_sizes() {
        let (o, _) = opts("ping_interval: 1m\nmax_pending: 1m\n").unwrap();
        assert_eq!(o.ping_interval, Duration::from_secs(60));
        assert_eq!(o.max_pending, 1_000_000);
    }

    #[test]
    fn booleans() {
        let (o, _) = opts("debug: yes\ntrace: on\nlogtime: off\nsyslog: TRUE\n").unwrap();
        assert!(o.debug && o.trace && o.syslog && !o.logtime);
        let e = opts("debug: maybe\n").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
        assert!(e
            .to_string()
            .starts_with("t.conf:1:8: 'debug' must be true or false"));
    }

    #[test]
    fn strings_and_escapes() {
        let t = parse("a: \"x\\ty\\\"z\\x41\"\nb: 'raw \\n $x'\n").unwrap();
        let e = entries(&t);
        assert_eq!(e[0].value.value, Value::Str("x\ty\"zA".into()));
        assert_eq!(e[1].value.value, Value::Str("raw \\n $x".into()));
        let er = parse("a: \"bad \\q\"\n").unwrap_err();
        assert!(er.to_string().contains("invalid escape \\q"), "{}", er);
        assert_eq!(er.pos.unwrap().col, 10);
    }

    #[test]
    fn arrays_comma_and_newline() {
        let t = parse("a = [1, 2,3]\nb = [\n  nats://x:1\n  nats://y:2 # c\n]\nc: []\n").unwrap();
        let e = entries(&t);
        let Value::Array(a) = &e[0].value.value else {
            panic!()
        };
        assert_eq!(a.len(), 3);
        let Value::Array(b) = &e[1].value.value else {
            panic!()
        };
        assert_eq!(b[1].value, Value::Bare("nats://y:2".into()));
        let Value::Array(c) = &e[2].value.value else {
            panic!()
        };
        assert!(c.is_empty());
    }

    #[test]
    fn blocks_with_and_without_separator() {
        for src in [
            "authorization {\n token: abc\n}\n",
            "authorization = {\n token = abc\n}\n",
            "authorization: { token: abc, timeout: 1 }\n",
            "authorization { token: abc }",
        ] {
            let (o, _) = opts(src).unwrap();
            assert_eq!(o.auth.token.as_deref(), Some("abc"), "{}", src);
        }
    }

    #[test]
    fn variables_in_blocks_then_environment() {
        let (o, _) = opts("P = 4333\nport: $P\n").unwrap();
        assert_eq!(o.port, 4333);
        let (o, _) = opts(
            "TOK = outer\nserver_name: $TOK\nauthorization {\n  TOK = inner\n  token: $TOK\n}\n",
        )
        .unwrap();
        assert_eq!(o.auth.token.as_deref(), Some("inner"));
        assert_eq!(o.server_name.as_deref(), Some("outer"));
        // A variable in a block is not visible outside it.
        let e = opts("authorization {\n T = tok\n token: $T\n}\nserver_name: $T\n").unwrap_err();
        assert!(
            e.to_string().contains("variable $T is not defined"),
            "{}",
            e
        );
        assert_eq!(e.pos.as_ref().unwrap().line, 5);
        std::env::set_var("NATSD_CONF_TEST_PORT", "4999");
        let (o, _) = opts("port: $NATSD_CONF_TEST_PORT\n").unwrap();
        assert_eq!(o.port, 4999);
        // Whole values only: inside a string the '$' is literal.
        let (o, _) = opts("server_name: \"a$P\"\n").unwrap();
        assert_eq!(o.server_name.as_deref(), Some("a$P"));
        // An unused variable-looking key is an unknown field, as in nats-server.
        assert_eq!(
            opts("UNUSED = 1\n").unwrap_err().kind,
            ErrorKind::UnknownKey
        );
    }

    #[test]
    fn unknown_key_has_file_line_col() {
        let e = opts("port: 4333\n  foo_bar: 1\n").unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnknownKey);
        assert!(
            e.to_string()
                .starts_with("t.conf:2:3: unknown field \"foo_bar\""),
            "{}",
            e
        );
        let e = opts("authorization {\n  token: abc\n  bogus: 1\n}\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("t.conf:3:3: unknown field \"bogus\""),
            "{}",
            e
        );
    }

    #[test]
    fn syntax_errors_say_where_and_how() {
        let cases = [
            (
                "authorization {\n  token: \"abc\"\n",
                "is not closed; add a '}'",
            ),
            ("server_name: \"abc\n", "never closed"),
            ("port:\n", "has no value"),
            ("port\n", "has no value"),
            ("server_name: hello world\n", "unexpected 'w'"),
            ("port: 1\n}\n", "unexpected '}'"),
            ("a = [1 2]\n", "in an array"),
            ("a = [1, 2\n", "array opened at line 1"),
            ("port: $\n", "whole variable name"),
        ];
        for (src, want) in cases {
            let e = parse(src).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Syntax, "{}", src);
            assert!(e.to_string().contains(want), "{:?}: {}", src, e);
            assert!(e.to_string().starts_with("t.conf:"), "{}", e);
        }
    }

    #[test]
    fn security_settings_natsd_cannot_honour_are_fatal() {
        let u = |extra: &str| {
            format!("authorization {{\n users = [\n {{user: a, password: b{extra}}}\n ]\n}}\n")
        };
        for (src, name) in [
            ("tls {\n cert_file: a\n key_file: b\n}\n".to_string(), "'tls'"),
            ("operator: /x.jwt\n".into(), "'operator'"),
            ("resolver: MEMORY\n".into(), "'resolver'"),
            ("system_account: SYS\n".into(), "'system_account'"),
            ("authorization { nkeys = [] }\n".into(), "authorization.nkeys"),
            (
                "authorization { auth_callout { issuer: x } }\n".into(),
                "authorization.auth_callout",
            ),
            (
                "authorization {\n users = [ {nkey: UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4} ]\n}\n".into(),
                "users.nkey",
            ),
            (
                u(", allowed_connection_types: [\"STANDARD\"]"),
                "users.allowed_connection_types",
            ),
            (u(", proxy_required: true"), "users.proxy_required"),
            (u(", clients: [STANDARD]"), "users.clients"),
            (
                u(", permissions: { allow_responses: true }"),
                "permissions.allow_responses",
            ),
            (
                u(", permissions: { subscribe: \"a.> q\" }"),
                "queue group permissions",
            ),
            (
                u(", permissions: { subscribe: { deny: [\"a.> q\"] } }"),
                "queue group permissions",
            ),
            (
                "accounts { A { users = [ {user: a, password: b} ], exports = [ {stream: x} ] } }\n".into(),
                "accounts.A.exports",
            ),
            ("accounts { A { imports = [] } }\n".into(), "accounts.A.imports"),
            ("accounts { A { jetstream: enabled } }\n".into(), "accounts.A.jetstream"),
            (
                "accounts { A { users = [ {user: a, password: b} ] } }\nno_auth_user: a\n".into(),
                "'no_auth_user'",
            ),
            (
                "authorization {\n user: a\n password: b\n permissions: { publish: [\"a.>\"] }\n}\n".into(),
                "authorization.permissions",
            ),
            (
                "authorization {\n token: t\n default_permissions: { publish: x }\n}\n".into(),
                "authorization.permissions",
            ),
        ] {
            let e = opts(&src).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Unsupported, "{}: {}", src, e);
            assert!(e.msg.contains(name), "{}: {}", src, e);
            assert!(e.msg.contains("refuses to start"), "{}", e);
        }
    }

    #[test]
    fn users_list_maps_names_passwords_and_permissions() {
        let (o, _) = opts(
            "authorization {\n  timeout: 3\n  users = [\n    \
             {user: alice, password: pa, permissions: {publish: [\"a.>\", \"_INBOX.>\"], \
             subscribe: {allow: [\"a.>\", q.x], deny: \"a.secret\"}}}\n    \
             {username: bob, pass: \"$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW\"}\n    \
             {user: carol, permissions: {pub: x, sub: {deny: [y]}}}\n    \
             {user: dave, permissions: {import: i, export: e}}\n  ]\n}\n",
        )
        .unwrap();
        let a = &o.auth;
        assert!(a.required());
        assert_eq!(a.timeout, Duration::from_secs(3));
        assert_eq!((a.token.as_ref(), a.user.as_ref()), (None, None));
        let names: Vec<&str> = a.users.iter().map(|u| u.user.as_str()).collect();
        assert_eq!(names, ["alice", "bob", "carol", "dave"]);
        assert!(a.users.iter().all(|u| u.account.is_none()));
        let sp = |allow: &[&str], deny: &[&str]| SubjectPermission {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            deny: deny.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(a.users[0].password, "pa");
        assert_eq!(
            a.users[0].permissions,
            Some(Permissions {
                publish: Some(sp(&["a.>", "_INBOX.>"], &[])),
                subscribe: Some(sp(&["a.>", "q.x"], &["a.secret"])),
            })
        );
        // A bcrypt hash is kept verbatim for the client handler to verify.
        assert!(a.users[1].password.starts_with("$2a$05$"));
        assert_eq!(a.users[1].permissions, None);
        // No password: the client must send none (as nats-server).
        assert_eq!(a.users[2].password, "");
        assert_eq!(
            a.users[2].permissions,
            Some(Permissions {
                publish: Some(sp(&["x"], &[])),
                subscribe: Some(sp(&[], &["y"])),
            })
        );
        assert_eq!(
            a.users[3].permissions,
            Some(Permissions {
                publish: Some(sp(&["i"], &[])),
                subscribe: Some(sp(&["e"], &[])),
            })
        );
    }

    #[test]
    fn default_permissions_go_to_users_without_their_own() {
        for key in ["permissions", "default_permissions", "default_permission"] {
            let (o, _) = opts(&format!(
                "authorization {{\n  {key}: {{publish: d}}\n  users = [\n    \
                 {{user: a, password: p}}\n    {{user: b, password: p, permissions: {{publish: own}}}}\n  ]\n}}\n"
            ))
            .unwrap();
            let pubs: Vec<_> = o
                .auth
                .users
                .iter()
                .map(|u| {
                    u.permissions
                        .as_ref()
                        .unwrap()
                        .publish
                        .as_ref()
                        .unwrap()
                        .allow
                        .clone()
                })
                .collect();
            assert_eq!(
                pubs,
                [vec!["d".to_string()], vec!["own".to_string()]],
                "{key}"
            );
        }
    }

    #[test]
    fn accounts_users_keep_their_account() {
        let (o, _) = opts(
            "accounts {\n  A { users = [ {user: a1, password: p}, {user: a2, password: p} ] }\n  \
             B: { users: [ {user: b1, password: q, permissions: {publish: x}} ] }\n  C {}\n}\n\
             authorization { users = [ {user: g, password: p} ], timeout: 1 }\n",
        )
        .unwrap();
        let got: Vec<(&str, Option<&str>)> = o
            .auth
            .users
            .iter()
            .map(|u| (u.user.as_str(), u.account.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("a1", Some("A")),
                ("a2", Some("A")),
                ("b1", Some("B")),
                ("g", None)
            ]
        );
        assert!(o.auth.users[2].permissions.is_some());
        assert_eq!(o.auth.no_auth_user, None);
        assert!(o.auth.required());
        // An empty users list, like nats-server's, requires nothing.
        let (o, _) = opts("authorization { users = [] }\n").unwrap();
        assert!(!o.auth.required());
        // Accounts listed by name only hold no users.
        let (o, _) = opts("accounts = [A, B]\n").unwrap();
        assert!(o.auth.users.is_empty() && !o.auth.required());
    }

    #[test]
    fn user_and_account_mistakes_are_errors_like_nats_server() {
        for (src, kind, want) in [
            (
                "authorization { users = [ {user: a, password: b}, {user: a, password: c} ] }\n",
                ErrorKind::Invalid,
                "Duplicate user \"a\"",
            ),
            (
                "accounts { A { users = [ {user: a, password: b} ] } }\nauthorization { users = [ {user: a, password: c} ] }\n",
                ErrorKind::Invalid,
                "Duplicate user \"a\"",
            ),
            (
                "authorization { token: x, users = [ {user: a, password: b} ] }\n",
                ErrorKind::Invalid,
                "Can not have a token and a users array",
            ),
            (
                "accounts { A { users = [ {user: a, password: b} ] } }\nauthorization { user: u, password: p }\n",
                ErrorKind::Invalid,
                "Can not have a single user/pass and a users array",
            ),
            (
                "authorization { users = [ {user: a, password: b} ] }\nno_auth_user: zz\n",
                ErrorKind::Invalid,
                "no_auth_user: \"zz\" not present as user",
            ),
            (
                "authorization { user: a, password: b }\nno_auth_user: a\n",
                ErrorKind::Invalid,
                "users/nkeys are not defined",
            ),
            (
                "authorization { users = [ {user: a, password: b, bogus: 1} ] }\n",
                ErrorKind::UnknownKey,
                "unknown field \"bogus\"",
            ),
            (
                "authorization { users = [ {user: a, password: b, account: A} ] }\n",
                ErrorKind::UnknownKey,
                "unknown field \"account\"",
            ),
            (
                "authorization { users = [ {password: b} ] }\n",
                ErrorKind::Invalid,
                "needs a user name",
            ),
            ("authorization { users = a }\n", ErrorKind::Invalid, "must be an array"),
            ("authorization { users = [ a ] }\n", ErrorKind::Invalid, "must be blocks"),
            (
                "authorization { users = [ {user: a, permissions: {foo: x}} ] }\n",
                ErrorKind::UnknownKey,
                "Unknown field \"foo\" parsing permissions",
            ),
            (
                "authorization { users = [ {user: a, permissions: {publish: {allow: x, bogus: y}}} ] }\n",
                ErrorKind::UnknownKey,
                "only 'allow' or 'deny' are permitted",
            ),
            (
                "authorization { users = [ {user: a, permissions: {publish: \"a..b\"}} ] }\n",
                ErrorKind::Invalid,
                "subject \"a..b\" is not a valid subject",
            ),
            (
                "authorization { users = [ {user: a, permissions: {subscribe: {deny: [\"a.>.b\"]}}} ] }\n",
                ErrorKind::Invalid,
                "is not a valid subject",
            ),
            ("authorization { users = [ {user: a, permissions: x} ] }\n", ErrorKind::Invalid, "must be a block"),
            ("accounts: 5\n", ErrorKind::Invalid, "must be a block"),
            ("accounts { A: 5 }\n", ErrorKind::Invalid, "must be a block"),
        ] {
            let e = opts(src).unwrap_err();
            assert_eq!(e.kind, kind, "{}: {}", src, e);
            assert!(e.msg.contains(want), "{}: {}", src, e);
        }
    }

    #[test]
    fn passwords_never_appear_in_errors() {
        let e = opts("authorization { users = [ {user: a, password: \"s3cr3t\", bogus: 1} ] }\n")
            .unwrap_err();
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
        let e = opts(
            "authorization { users = [ {user: a, password: \"s3cr3t\"} ], token: \"t0k3n\" }\n",
        )
        .unwrap_err();
        assert!(
            !e.to_string().contains("t0k3n") && !e.to_string().contains("s3cr3t"),
            "{e}"
        );
    }

    #[test]
    fn bcrypt_secrets_are_kept_verbatim_for_the_client_handler() {
        let hash = "$2a$04$abcdefghijklmnopqrstuuH9xl1yJ8mI2Dcz8cBWqKZ0Fb4k3eM4a";
        let (o, _) = opts(&format!(
            "authorization {{\n user: a\n password: \"{hash}\"\n}}\n"
        ))
        .unwrap();
        assert_eq!(o.auth.password.as_deref(), Some(hash));
        // nats-server verifies a bcrypt-hashed token too; so does natsd's client handler.
        let (o, _) = opts(&format!("authorization {{ token: \"{hash}\" }}\n")).unwrap();
        assert_eq!(o.auth.token.as_deref(), Some(hash));
    }

    #[test]
    fn key_case_insensitive_and_last_wins() {
        let (o, _) = opts("PORT: 1\nPort: 2\n").unwrap();
        assert_eq!(o.port, 2);
    }

    #[test]
    fn value_ranges() {
        assert!(opts("port: 70000\n").is_err());
        assert!(opts("port: abc\n")
            .unwrap_err()
            .msg
            .contains("whole number"));
        // 0 means the default, as in nats-server.
        let (o, _) = opts("max_payload: 0\nmax_connections: 0\nmax_pending: 0\n").unwrap();
        assert_eq!(o, Options::default());
        assert!(opts("max_connections: -1\n").is_err());
        assert!(opts("server_name: 'a b'\n")
            .unwrap_err()
            .msg
            .contains("spaces"));
        assert!(opts("port: { a: 1 }\n")
            .unwrap_err()
            .msg
            .contains("not a block"));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let src = format!("a = {}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse(&src).unwrap_err().msg.contains("nested"));
        let src = format!("a {}", "{ b ".repeat(10_000));
        assert!(parse(&src).is_err());
    }

    #[test]
    fn split_host_port_forms() {
        assert_eq!(
            split_host_port("127.0.0.1:4222").unwrap(),
            (Some("127.0.0.1".into()), Some(4222))
        );
        assert_eq!(split_host_port(":4222").unwrap(), (None, Some(4222)));
        assert_eq!(split_host_port("::1").unwrap(), (Some("::1".into()), None));
        assert_eq!(
            split_host_port("[::1]").unwrap(),
            (Some("::1".into()), None)
        );
        assert_eq!(split_host_port("-1").unwrap(), (None, Some(-1)));
        assert!(split_host_port("h:99999").is_err());
        assert!(split_host_port("[::1").is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_random_text(s in "\\PC*") {
            if let Ok(t) = parse(&s) {
                let _ = apply(&t, &mut Options::default());
            }
        }

        #[test]
        fn never_panics_on_config_like_text(s in "[a-z_$ :=\\{\\}\\[\\],;#/\"'\\\\\n\t0-9kKmMbB.-]{0,200}") {
            if let Ok(t) = parse(&s) {
                let _ = apply(&t, &mut Options::default());
            }
        }

        /// Any valid setting, written in any of the separator/quoting/terminator styles, reads
        /// back as the value written.
        #[test]
        fn written_settings_read_back(
            port in -1i32..=65535,
            payload_kib in 1u64..=65536,
            name in "[A-Za-z0-9_.-]{1,20}",
            ping_ms in 1u64..=10_000_000,
            sep in proptest::sample::select(vec![": ", " = ", " ", ":", "="]),
            end in proptest::sample::select(vec!["", ";", ",", " # note", " // note"]),
            quote in proptest::bool::ANY,
        ) {
            let q = |v: String| if quote { format!("\"{}\"", v) } else { v };
            let src = format!(
                "port{sep}{port}{end}\nmax_payload{sep}{}{end}\nserver_name{sep}{}{end}\nping_interval{sep}{}{end}\n",
                q(format!("{}KB", payload_kib)),
                q(name.clone()),
                q(format!("{}ms", ping_ms)),
            );
            let (o, w) = opts(&src).map_err(|e| proptest::test_runner::TestCaseError::fail(format!("{}\n{}", e, src)))?;
            proptest::prop_assert!(w.is_empty());
            proptest::prop_assert_eq!(o.port, port);
            proptest::prop_assert_eq!(o.max_payload as u64, payload_kib * 1024);
            proptest::prop_assert_eq!(o.server_name, Some(name));
            proptest::prop_assert_eq!(o.ping_interval, Duration::from_millis(ping_ms));
        }

        #[test]
        fn never_panics_on_random_bytes(b in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let s = String::from_utf8_lossy(&b);
            if let Ok(t) = parse(&s) {
                let _ = apply(&t, &mut Options::default());
            }
        }
    }
}
