//! The JSON parser behind the tree: text straight into [`Node`]s.
//!
//! # The problem
//!
//! Built through serde, the tree took serde_json's parser and its visitor
//! machinery (about 31 KiB of the app's wasm before `wasm-opt`), after a
//! separate scan of the whole text for its depth, to fill a tree that
//! needs none of serde's generality. This parser costs about as much wasm
//! as it removes, and reads text in 15–26 % fewer instructions (the scan
//! was a fifth of them). It reads the text once,
//! byte by byte, into the same tree, with the same rules: what serde_json
//! accepts it accepts, and reads alike (a test holds it to the serde
//! path on generated text, valid and not); what serde_json refuses it
//! refuses, mostly in serde_json's words (some errors differ in wording
//! or column). Numbers are read as serde_json's `Value` reads them: an
//! integer as `u64`, or `i64` when negative, and as a float past that
//! (`-0` included); a float that overflows is refused ("number out of
//! range"). A float whose digits and power of ten a float holds exactly
//! is found in one operation (Clinger's fast path); any other is read by
//! serde_json's own number reader. Both round correctly, as serde_json's
//! `float_roundtrip` does.
//!
//! It counts its nesting as it goes and stops at the limit it is given
//! ([`Refusal::TooDeep`]), so untrusted text needs no scan for depth
//! before it is parsed ([`parse_tree_bounded`](crate::limits::parse_tree_bounded)
//! scans only a text that did not parse, to say "too deep" where it did).
//!
//! It also skims an object's top-level fields ([`skim`]), reading only the
//! names asked for and skipping the rest by syntax alone, for a message
//! whose whole does not read but whose envelope may.

use std::borrow::Cow;
use std::fmt;

use serde_json::{Number, Value};

use super::Node;
use crate::limits::RAW_VALUE_TOKEN;

/// The deepest nesting the parser ever follows, as serde_json's own
/// limit. Outside text is parsed with a lower one
/// ([`MAX_JSON_DEPTH`](crate::limits::MAX_JSON_DEPTH)); this caps what a
/// caller may ask for.
const RECURSION_LIMIT: usize = 128;

/// Why a text is not JSON, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    reason: Cow<'static, str>,
    line: usize,
    column: usize,
    refusal: Refusal,
}

/// What kind of refusal a [`SyntaxError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not JSON.
    Syntax,
    /// Nested past the limit the parser was given.
    TooDeep,
    /// An object keyed first by serde_json's raw-value token (see
    /// [`RAW_VALUE_TOKEN`](crate::limits::RAW_VALUE_TOKEN)).
    RawValueToken,
}

impl SyntaxError {
    /// What is wrong, without where.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    pub(crate) fn refusal(&self) -> Refusal {
        self.refusal
    }
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {} column {}",
            self.reason, self.line, self.column
        )
    }
}

impl std::error::Error for SyntaxError {}

type Parsed<T> = Result<T, SyntaxError>;

/// Parses `text`, one JSON value with only whitespace around it, into a
/// tree; a name given twice in one object is refused, and so is an object
/// keyed first by serde_json's raw-value token, and nesting deeper than
/// `limit` ([`Refusal::TooDeep`]: checked as the parser goes, so a text
/// is read once, not scanned first).
pub(crate) fn parse_tree(text: &str, limit: usize) -> Parsed<Node<'_>> {
    let mut parser = Parser::new(text);
    parser.limit = limit.min(RECURSION_LIMIT);
    let tree = parser.value()?;
    parser.end()?;
    Ok(tree)
}

/// A field's value as [`skim_bounded`](crate::limits::skim_bounded)
/// leaves it.
#[derive(Debug, Clone, PartialEq)]
pub enum Skimmed<'t> {
    /// A field it was asked to read, read as strictly as
    /// [`parse_tree_bounded`](crate::limits::parse_tree_bounded) reads.
    Read(Node<'t>),
    /// A field it was asked to note, whose value is `null`.
    Null,
    /// A field it was asked to note, not `null`: its syntax checked,
    /// nothing else.
    Skipped,
}

/// The top-level fields of `text`, which must be one JSON object, named
/// in `read` or `note`, in the text's order, names given twice included.
/// Those in `read` are read into trees; those in `note` are skipped
/// ([`Skimmed::Null`] or [`Skimmed::Skipped`]); the rest are skipped and
/// not kept. Skipping checks syntax alone, as serde's `IgnoredAny` does:
/// a name given twice, a lone surrogate in an escape, a number too large
/// for a float are not seen there. No depth limit but the parser's own
/// ([`skim_bounded`](crate::limits::skim_bounded) checks it first).
pub(crate) fn skim<'t>(
    text: &'t str,
    read: &[&str],
    note: &[&str],
) -> Parsed<Vec<(Cow<'t, str>, Skimmed<'t>)>> {
    let mut parser = Parser::new(text);
    parser.skip_whitespace();
    match parser.peek() {
        Some(b'{') => parser.at += 1,
        None => return parser.fail("EOF while parsing a value"),
        Some(_) => return parser.fail("invalid type: expected an object"),
    }
    let mut fields = Vec::new();
    if parser.first_member(b'}')? {
        loop {
            let name = parser.name()?;
            if read.contains(&name.as_ref()) {
                let value = parser.value()?;
                fields.push((name, Skimmed::Read(value)));
            } else {
                parser.skip_whitespace();
                let value = if parser.rest().starts_with(b"null") {
                    parser.at += 4;
                    Skimmed::Null
                } else {
                    parser.skip_value()?;
                    Skimmed::Skipped
                };
                if note.contains(&name.as_ref()) {
                    fields.push((name, value));
                }
            }
            if !parser.next_member(b'}', "an object")? {
                break;
            }
        }
    }
    parser.end()?;
    Ok(fields)
}

/// The text of the JSON string `quoted` (quotes included, nothing
/// around them), escapes read; `None` if it is not one.
pub(crate) fn string_text(quoted: &str) -> Option<String> {
    let mut parser = Parser::new(quoted);
    if parser.peek() != Some(b'"') {
        return None;
    }
    parser.at += 1;
    let text = parser.string().ok()?;
    (parser.at == quoted.len()).then(|| text.into_owned())
}

struct Parser<'t> {
    text: &'t str,
    at: usize,
    depth: usize,
    /// The deepest nesting read.
    limit: usize,
    /// Where an escaped string is put together.
    scratch: String,
}

/// How many bytes at the start of `bytes` are neither a quote, a
/// backslash nor a control character: eight at a time while none is
/// (each byte of a word tested at once, as serde_json does), then one
/// by one.
fn plain_run(bytes: &[u8]) -> usize {
    const fn each(byte: u8) -> u64 {
        u64::from_ne_bytes([byte; 8])
    }
    let mut run = 0;
    for chunk in bytes.chunks_exact(8) {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_ne_bytes(word);
        let quote = word ^ each(b'"');
        let backslash = word ^ each(b'\\');
        // A byte's high bit is set where the byte is zero (or, past such a
        // byte, perhaps not: a borrow), and for the last, below 0x20.
        let found = (quote.wrapping_sub(each(1)) & !quote)
            | (backslash.wrapping_sub(each(1)) & !backslash)
            | (word.wrapping_sub(each(0x20)) & !word);
        if found & each(0x80) != 0 {
            break;
        }
        run += 8;
    }
    let rest = bytes.get(run..).unwrap_or_default();
    run + rest
        .iter()
        .position(|byte| matches!(byte, b'"' | b'\\' | 0x00..=0x1f))
        .unwrap_or(rest.len())
}

impl<'t> Parser<'t> {
    fn new(text: &'t str) -> Self {
        Self {
            text,
            at: 0,
            depth: 0,
            limit: RECURSION_LIMIT,
            scratch: String::new(),
        }
    }

    fn bytes(&self) -> &'t [u8] {
        self.text.as_bytes()
    }

    /// The text from `start` to the parser's position. The parser only
    /// stops at ASCII bytes, so the cut falls between characters.
    fn since(&self, start: usize) -> &'t str {
        debug_assert!(self.text.is_char_boundary(start) && self.text.is_char_boundary(self.at));
        self.text.get(start..self.at).unwrap_or_default()
    }

    fn rest(&self) -> &'t [u8] {
        self.bytes().get(self.at..).unwrap_or_default()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.at).copied()
    }

    /// The error `reason`, placed at the parser's position.
    #[cold]
    fn fail<T>(&self, reason: impl Into<Cow<'static, str>>) -> Parsed<T> {
        self.refuse(Refusal::Syntax, reason)
    }

    /// A refusal of another kind than syntax.
    #[cold]
    fn refuse<T>(&self, refusal: Refusal, reason: impl Into<Cow<'static, str>>) -> Parsed<T> {
        let before = self.bytes().get(..self.at).unwrap_or_default();
        let line_start = before
            .iter()
            .rposition(|&byte| byte == b'\n')
            .map_or(0, |at| at + 1);
        Err(SyntaxError {
            reason: reason.into(),
            line: 1 + before.iter().filter(|&&byte| byte == b'\n').count(),
            column: self.at - line_start + 1,
            refusal,
        })
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// Only whitespace may follow the value.
    fn end(&mut self) -> Parsed<()> {
        self.skip_whitespace();
        match self.peek() {
            None => Ok(()),
            Some(_) => self.fail("trailing characters"),
        }
    }

    /// One level deeper, refused past the parser's limit.
    fn enter(&mut self) -> Parsed<()> {
        self.depth += 1;
        match self.depth > self.limit {
            true => self.refuse(Refusal::TooDeep, "recursion limit exceeded"),
            false => Ok(()),
        }
    }

    fn value(&mut self) -> Parsed<Node<'t>> {
        self.skip_whitespace();
        let Some(first) = self.peek() else {
            return self.fail("EOF while parsing a value");
        };
        match first {
            b'{' => {
                self.enter()?;
                self.at += 1;
                let object = self.object()?;
                self.depth -= 1;
                Ok(object)
            }
            b'[' => {
                self.enter()?;
                self.at += 1;
                let mut items = Vec::new();
                if self.first_member(b']')? {
                    loop {
                        items.push(self.value()?);
                        if !self.next_member(b']', "a list")? {
                            break;
                        }
                    }
                }
                self.depth -= 1;
                Ok(Node::List(items))
            }
            b'"' => {
                self.at += 1;
                Ok(Node::Scalar(Value::String(self.string()?.into_owned())))
            }
            b'-' | b'0'..=b'9' => self.number().map(Node::Scalar),
            _ => self.literal().map(Node::Scalar),
        }
    }

    /// After `[` or `{`: whether a member follows (`false`: the `close`
    /// that ends it empty was read).
    fn first_member(&mut self, close: u8) -> Parsed<bool> {
        self.skip_whitespace();
        match self.peek() {
            Some(byte) if byte == close => {
                self.at += 1;
                Ok(false)
            }
            _ => Ok(true),
        }
    }

    /// After a member of `kind` (closed by `close`): whether another
    /// follows (`false`: `close` was read).
    fn next_member(&mut self, close: u8, kind: &str) -> Parsed<bool> {
        self.skip_whitespace();
        match self.peek() {
            Some(b',') => {
                self.at += 1;
                self.skip_whitespace();
                match self.peek() {
                    Some(byte) if byte == close => self.fail("trailing comma"),
                    _ => Ok(true),
                }
            }
            Some(byte) if byte == close => {
                self.at += 1;
                Ok(false)
            }
            None => self.fail(format!("EOF while parsing {kind}")),
            Some(_) if close == b']' => self.fail("expected `,` or `]`"),
            Some(_) => self.fail("expected `,` or `}`"),
        }
    }

    /// An object's name and the `:` after it.
    fn name(&mut self) -> Parsed<Cow<'t, str>> {
        self.skip_whitespace();
        match self.peek() {
            Some(b'"') => self.at += 1,
            None => return self.fail("EOF while parsing an object"),
            Some(_) => return self.fail("key must be a string"),
        }
        let name = self.string()?;
        self.skip_whitespace();
        match self.peek() {
            Some(b':') => {
                self.at += 1;
                Ok(name)
            }
            None => self.fail("EOF while parsing an object"),
            Some(_) => self.fail("expected `:`"),
        }
    }

    /// After `{`: the fields, each name once.
    fn object(&mut self) -> Parsed<Node<'t>> {
        let mut fields = Vec::new();
        if self.first_member(b'}')? {
            let name = self.name()?;
            if name == RAW_VALUE_TOKEN {
                return self.refuse(
                    Refusal::RawValueToken,
                    format!("{RAW_VALUE_TOKEN:?} is reserved as an object's first key"),
                );
            }
            fields.push((name, self.value()?));
            while self.next_member(b'}', "an object")? {
                let name = self.name()?;
                fields.push((name, self.value()?));
            }
        }
        match super::name_twice(&mut fields) {
            Some(name) => {
                let reason = format!("duplicate field `{}`", crate::error::preview(name));
                self.fail(reason)
            }
            None => Ok(Node::Object(fields)),
        }
    }

    /// After the opening quote: the string's text, borrowed where it
    /// has no escapes, and the closing quote.
    fn string(&mut self) -> Parsed<Cow<'t, str>> {
        let start = self.at;
        self.at += plain_run(self.rest());
        match self.peek() {
            Some(b'"') => {
                let text = self.since(start);
                self.at += 1;
                return Ok(Cow::Borrowed(text));
            }
            Some(b'\\') => {}
            Some(_) => return self.control_character(),
            None => return self.fail("EOF while parsing a string"),
        }
        // Escaped: built in the parser's scratch, then copied out at its
        // final length (one allocation, as serde_json makes it).
        let mut owned = std::mem::take(&mut self.scratch);
        owned.clear();
        owned.push_str(self.since(start));
        let read = self.escaped(&mut owned);
        let read = read.map(|()| Cow::Owned(owned.as_str().to_owned()));
        self.scratch = owned;
        read
    }

    /// The rest of a string from its first backslash, into `owned`.
    fn escaped(&mut self, owned: &mut String) -> Parsed<()> {
        loop {
            let run = self.at;
            self.at += plain_run(self.rest());
            owned.push_str(self.since(run));
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.at += 1;
                    let read = self.escape()?;
                    owned.push(read);
                }
                Some(_) => return self.control_character(),
                None => return self.fail("EOF while parsing a string"),
            }
        }
    }

    #[cold]
    fn control_character<T>(&self) -> Parsed<T> {
        self.fail("control character (\\u0000-\\u001F) found while parsing a string")
    }

    /// After a backslash: the character it stands for. A surrogate must
    /// come in a pair, high then low, as serde_json requires of text.
    fn escape(&mut self) -> Parsed<char> {
        let Some(kind) = self.peek() else {
            return self.fail("EOF while parsing a string");
        };
        self.at += 1;
        let simple = match kind {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => return self.unicode_escape(),
            _ => return self.fail("invalid escape"),
        };
        Ok(simple)
    }

    /// After `\u`: one character, from one escape or a surrogate pair.
    fn unicode_escape(&mut self) -> Parsed<char> {
        let high = self.hex4()?;
        let code = match high {
            0xDC00..=0xDFFF => return self.fail("lone leading surrogate in hex escape"),
            0xD800..=0xDBFF => {
                for next in [b'\\', b'u'] {
                    match self.peek() {
                        Some(byte) if byte == next => self.at += 1,
                        Some(_) => return self.fail("unexpected end of hex escape"),
                        None => return self.fail("EOF while parsing a string"),
                    }
                }
                let low = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return self.fail("lone leading surrogate in hex escape");
                }
                0x1_0000 + ((u32::from(high) - 0xD800) << 10) + (u32::from(low) - 0xDC00)
            }
            other => u32::from(other),
        };
        match char::from_u32(code) {
            Some(read) => Ok(read),
            None => self.fail("invalid unicode code point"),
        }
    }

    /// Four hex digits.
    fn hex4(&mut self) -> Parsed<u16> {
        let mut code = 0_u16;
        for _ in 0..4 {
            let digit = match self.peek() {
                Some(byte @ b'0'..=b'9') => byte - b'0',
                Some(byte @ b'a'..=b'f') => byte - b'a' + 10,
                Some(byte @ b'A'..=b'F') => byte - b'A' + 10,
                Some(_) => return self.fail("invalid escape"),
                None => return self.fail("EOF while parsing a string"),
            };
            self.at += 1;
            code = code * 16 + u16::from(digit);
        }
        Ok(code)
    }

    /// `true`, `false` or `null`.
    fn literal(&mut self) -> Parsed<Value> {
        let rest = self.rest();
        for (word, value) in [
            (&b"true"[..], Value::Bool(true)),
            (b"false", Value::Bool(false)),
            (b"null", Value::Null),
        ] {
            if rest.first() == word.first() {
                if rest.starts_with(word) {
                    self.at += word.len();
                    return Ok(value);
                }
                // As serde_json: a word cut short by the end is EOF.
                return match word.starts_with(rest) {
                    true => {
                        self.at += rest.len();
                        self.fail("EOF while parsing a value")
                    }
                    false => self.fail("expected ident"),
                };
            }
        }
        self.fail("expected value")
    }

    /// The digits from here on (none: `None`, with the parser on what
    /// is not a digit).
    fn digits(&mut self) -> Option<()> {
        let start = self.at;
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        (self.at > start).then_some(())
    }

    /// Checks a number's syntax and steps past it; whether it is an
    /// integer (no fraction, no exponent).
    fn number_syntax(&mut self) -> Parsed<bool> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.at += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return self.fail("invalid number");
                }
            }
            Some(b'1'..=b'9') => {
                self.digits();
            }
            None => return self.fail("EOF while parsing a value"),
            Some(_) => return self.fail("invalid number"),
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.at += 1;
            integer = false;
            if self.digits().is_none() {
                return self.after_digits_expected();
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            integer = false;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            if self.digits().is_none() {
                return self.after_digits_expected();
            }
        }
        Ok(integer)
    }

    #[cold]
    fn after_digits_expected<T>(&self) -> Parsed<T> {
        match self.peek() {
            None => self.fail("EOF while parsing a value"),
            Some(_) => self.fail("invalid number"),
        }
    }

    /// A number, as serde_json's `Value` holds it.
    fn number(&mut self) -> Parsed<Value> {
        let start = self.at;
        let integer = self.number_syntax()?;
        let text = self.since(start);
        if integer {
            let (negative, digits) = match text.strip_prefix('-') {
                Some(digits) => (true, digits),
                None => (false, text),
            };
            let mut magnitude = 0_u64;
            let fits = digits.bytes().all(|digit| {
                match magnitude
                    .checked_mul(10)
                    .and_then(|tens| tens.checked_add(u64::from(digit - b'0')))
                {
                    Some(next) => {
                        magnitude = next;
                        true
                    }
                    None => false,
                }
            });
            if fits {
                return Ok(match negative {
                    false => Value::from(magnitude),
                    // As serde_json: `-0` and what `i64` cannot hold
                    // become floats.
                    true => {
                        let negated = (magnitude as i64).wrapping_neg();
                        match negated < 0 {
                            true => Value::from(negated),
                            false => float(-(magnitude as f64)),
                        }
                    }
                });
            }
        }
        // A fraction, an exponent, or an integer past 64 bits: read by
        // serde_json's own number reader (its syntax is checked already),
        // so that a float reads exactly as serde_json reads it; the
        // standard library's reader would add 10 KiB of tables to the wasm.
        if let Some(read) = fast_float(text) {
            return Ok(float(read));
        }
        match text.parse::<Number>() {
            Ok(read) => Ok(Value::Number(read)),
            Err(err) => self.fail(super::without_position(&err)),
        }
    }

    /// Skips one value by its syntax alone (see [`skim`]).
    fn skip_value(&mut self) -> Parsed<()> {
        self.skip_whitespace();
        let Some(first) = self.peek() else {
            return self.fail("EOF while parsing a value");
        };
        match first {
            b'{' | b'[' => {
                let close = if first == b'{' { b'}' } else { b']' };
                let kind = if first == b'{' { "an object" } else { "a list" };
                self.enter()?;
                self.at += 1;
                if self.first_member(close)? {
                    loop {
                        if close == b'}' {
                            self.skip_whitespace();
                            match self.peek() {
                                Some(b'"') => self.at += 1,
                                None => return self.fail("EOF while parsing an object"),
                                Some(_) => return self.fail("key must be a string"),
                            }
                            self.skip_string()?;
                            self.skip_whitespace();
                            match self.peek() {
                                Some(b':') => self.at += 1,
                                None => return self.fail("EOF while parsing an object"),
                                Some(_) => return self.fail("expected `:`"),
                            }
                        }
                        self.skip_value()?;
                        if !self.next_member(close, kind)? {
                            break;
                        }
                    }
                }
                self.depth -= 1;
                Ok(())
            }
            b'"' => {
                self.at += 1;
                self.skip_string()
            }
            b'-' | b'0'..=b'9' => self.number_syntax().map(|_| ()),
            _ => self.literal().map(|_| ()),
        }
    }

    /// After the opening quote: steps past the string. Escapes need only
    /// their shape (a `\u` four hex digits, paired or not).
    fn skip_string(&mut self) -> Parsed<()> {
        loop {
            self.at += plain_run(self.rest());
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.at += 1;
                    match self.peek() {
                        Some(b'u') => {
                            self.at += 1;
                            self.hex4()?;
                        }
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.at += 1;
                        }
                        Some(_) => return self.fail("invalid escape"),
                        None => return self.fail("EOF while parsing a string"),
                    }
                }
                Some(0x00..=0x1f) => return self.control_character(),
                Some(_) => self.at += 1,
                None => return self.fail("EOF while parsing a string"),
            }
        }
    }
}

/// Powers of ten that a float holds exactly.
const EXACT_POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The float a JSON number `text` (its syntax checked) stands for, where
/// one operation finds it exactly: its digits, as an integer, are at most
/// 2^53 and its power of ten at most 22 either way. Both are then floats
/// exactly, and one multiplication or division rounds once, correctly
/// (Clinger's fast path). `None` for the rest, which serde_json reads.
fn fast_float(text: &str) -> Option<f64> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(unsigned) => (true, unsigned),
        None => (false, text),
    };
    let (number, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (unsigned.get(..at)?, unsigned.get(at + 1..)?),
        None => (unsigned, "0"),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let mut digits = 0_u64;
    let mut significant = 0;
    for byte in whole.bytes().chain(fraction.bytes()) {
        if digits == 0 && byte == b'0' {
            continue;
        }
        significant += 1;
        if significant > 16 {
            return None;
        }
        digits = digits * 10 + u64::from(byte - b'0');
    }
    if digits > 1 << 53 {
        return None;
    }
    let magnitude = if digits == 0 {
        0.0
    } else {
        let exponent: i32 = exponent.parse().ok()?;
        let fraction = i32::try_from(fraction.len()).ok()?;
        let power = exponent.checked_sub(fraction)?;
        let scale = *EXACT_POWERS_OF_TEN.get(usize::try_from(power.unsigned_abs()).ok()?)?;
        match power < 0 {
            true => digits as f64 / scale,
            false => digits as f64 * scale,
        }
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// A finite float as a JSON number.
fn float(read: f64) -> Value {
    Number::from_f64(read).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::sample::Index;
    use serde::de::{self, IgnoredAny, MapAccess, Visitor};

    use super::*;

    /// The oracle: the tree as serde_json's parser builds it through
    /// serde (the path this parser replaced, still used for serde input).
    fn serde_tree(text: &str) -> serde_json::Result<Node<'_>> {
        let mut input = serde_json::Deserializer::from_str(text);
        let tree = de::Deserializer::deserialize_any(&mut input, super::super::Tree)?;
        input.end()?;
        Ok(tree)
    }

    /// Both refuse `text`, or both read it into the same tree (numbers
    /// compared by kind too: `0` is not `-0.0`).
    fn agree(text: &str) -> Result<(), TestCaseError> {
        match (parse_tree(text, RECURSION_LIMIT), serde_tree(text)) {
            (Ok(ours), Ok(theirs)) => {
                prop_assert_eq!(&ours, &theirs, "{:?}", text);
                // And the value is serde_json's own `Value` of the text.
                if let Ok(value) = serde_json::from_str::<Value>(text) {
                    prop_assert_eq!(ours.into_value(), value, "{:?}", text);
                }
            }
            (Err(_), Err(_)) => {}
            (ours, theirs) => {
                prop_assert!(false, "{text:?}: ours {ours:?}, serde {theirs:?}");
            }
        }
        Ok(())
    }

    /// What a skim sees of a field: its tree (read), or whether it was
    /// `null` (noted).
    #[derive(Debug, PartialEq)]
    enum Seen<'t> {
        Tree(Node<'t>),
        Null(bool),
    }

    /// Names a skim reads, and names it notes, in the tests.
    const READ: &[&str] = &["a"];
    const NOTE: &[&str] = &["b", ""];

    /// What serde's lenient envelope read (the one `skim` replaced) saw
    /// of a top-level object: the fields in `READ` read into trees through
    /// serde, those in `NOTE` skipped as `Option<IgnoredAny>` (`null` or
    /// not), the others skipped as `IgnoredAny`; names read as `String`s.
    fn serde_skim(text: &str) -> Option<Vec<(String, Seen<'_>)>> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = Vec<(String, Seen<'de>)>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    if READ.contains(&name.as_str()) {
                        let tree = map.next_value_seed(super::super::Tree)?;
                        fields.push((name, Seen::Tree(tree)));
                    } else if NOTE.contains(&name.as_str()) {
                        let null = map.next_value::<Option<IgnoredAny>>()?.is_none();
                        fields.push((name, Seen::Null(null)));
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(fields)
            }
        }
        let mut input = serde_json::Deserializer::from_str(text);
        let fields = de::Deserializer::deserialize_map(&mut input, Fields).ok()?;
        input.end().ok()?;
        Some(fields)
    }

    fn ours_skim(text: &str) -> Option<Vec<(String, Seen<'_>)>> {
        let fields = skim(text, READ, NOTE).ok()?;
        let seen = fields.into_iter().map(|(name, value)| {
            let seen = match value {
                Skimmed::Read(tree) => Seen::Tree(tree),
                Skimmed::Null => Seen::Null(true),
                Skimmed::Skipped => Seen::Null(false),
            };
            (name.into_owned(), seen)
        });
        Some(seen.collect())
    }

    /// The old way to a bounded tree: a depth scan (and the raw-value
    /// token check), then serde_json's parser.
    fn old_bounded(text: &str) -> crate::Result<Node<'_>> {
        crate::limits::check_depth(text, crate::limits::MAX_JSON_DEPTH, "x")?;
        serde_tree(text).map_err(|err| crate::Error::Malformed {
            what: "x",
            reason: err.to_string(),
        })
    }

    fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            "-?(0|[1-9][0-9]{0,24})(\\.[0-9]{1,24})?([eE][+-]?[0-9]{1,3})?",
            // Near the integer types' ends.
            "-?(9223372036854775[0-9]{3}|1844674407370955[0-9]{4}|[1-9][0-9]{19,22})",
            // Long exponents, either way, past what an `i32` holds too.
            "-?(0|[1-9][0-9]{0,3})(\\.[0-9]{1,3})?[eE][+-]?[0-9]{4,12}",
            // Not numbers, or not quite.
            "-?(0[0-9]|\\.[0-9]|[0-9]\\.|[0-9][eE][+-]?|-|0x1|[0-9]+[eE][0-9]{4,6})",
        ]
    }

    /// A string literal, quotes included, of characters and escapes,
    /// some of them wrong (a lone surrogate, a control character, a bad
    /// escape).
    fn string() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            "[a-zA-Z0-9 ]{1,4}",
            "[a-z]{8,20}",
            "[é€😀ᄀ\u{7f}\u{2028}\u{a0}]",
            Just("\\\"".to_owned()),
            Just("\\\\".to_owned()),
            "\\\\[/bfnrt]",
            "\\\\u[0-9a-fA-F]{4}",
            // Surrogates: high, low, paired, reversed.
            "\\\\u[dD][89abAB][0-9a-fA-F]{2}",
            "\\\\u[dD][c-fC-F][0-9a-fA-F]{2}",
            "\\\\u[dD][89ab][0-9a-f]{2}\\\\u[dD][c-f][0-9a-f]{2}",
            "\\\\u[dD][89ab][0-9a-f]{2}\\\\u[dD][89ab][0-9a-f]{2}",
            "\\\\u[dD][89ab][0-9a-f]{2}\\\\[nx]",
            // Wrong: a control character, a bad escape, a short \u.
            "[\\x00-\\x1f]",
            "\\\\[xa0U]",
            "\\\\u[0-9a-f]{0,3}[g\"]",
        ];
        prop::collection::vec(piece, 0..5).prop_map(|pieces| format!("\"{}\"", pieces.concat()))
    }

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            // Few names, so that some repeat; "\u0061" is "a" spelt
            // otherwise.
            Just("\"a\"".to_owned()),
            Just("\"b\"".to_owned()),
            Just("\"\\u0061\"".to_owned()),
            string(),
        ]
    }

    fn space() -> impl Strategy<Value = String> {
        "[ \t\n\r]{0,2}"
    }

    fn json() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just("false".to_owned()),
            number(),
            string(),
        ];
        leaf.prop_recursive(4, 64, 20, |inner| {
            prop_oneof![
                (
                    prop::collection::vec((space(), inner.clone()), 0..6),
                    space()
                )
                    .prop_map(|(items, end)| {
                        let items: Vec<String> =
                            items.into_iter().map(|(at, item)| at + &item).collect();
                        format!("[{}{end}]", items.join(","))
                    }),
                (
                    prop::collection::vec((name(), space(), inner), 0..20),
                    space()
                )
                    .prop_map(|(fields, end)| {
                        let fields: Vec<String> = fields
                            .into_iter()
                            .map(|(name, at, value)| format!("{at}{name}{at}:{value}"))
                            .collect();
                        format!("{{{}{end}}}", fields.join(","))
                    }),
            ]
        })
    }

    /// `text` with a few characters deleted, inserted or replaced.
    fn mutated() -> impl Strategy<Value = String> {
        let noise = prop::sample::select(vec![
            '{', '}', '[', ']', ',', ':', '"', '\\', '0', '1', '-', '.', 'e', 'u', 'n', 't', ' ',
            '\n', '\u{0}', 'é', '\u{c}', '\u{b}', '\u{a0}', '\u{feff}', '\u{7f}', '\u{2028}',
        ]);
        (
            json(),
            prop::collection::vec((any::<Index>(), 0..3_u8, noise), 0..4),
        )
            .prop_map(|(text, edits)| {
                let mut chars: Vec<char> = text.chars().collect();
                for (at, edit, noise) in edits {
                    let at = at.index(chars.len() + 1);
                    match edit {
                        0 if at < chars.len() => {
                            chars.remove(at);
                        }
                        1 => chars.insert(at, noise),
                        _ if at < chars.len() => chars[at] = noise,
                        _ => chars.push(noise),
                    }
                }
                chars.into_iter().collect()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn generated_json_reads_as_serde_reads_it(text in json()) {
            agree(&text)?;
        }

        #[test]
        fn mutated_json_reads_or_fails_as_serde_does(text in mutated()) {
            agree(&text)?;
        }

        #[test]
        fn numbers_read_as_serde_reads_them(text in number(), around in space()) {
            agree(&text)?;
            agree(&format!("{around}[{text}]{around}"))?;
        }

        #[test]
        fn strings_read_as_serde_reads_them(text in string()) {
            agree(&text)?;
            agree(&format!("{{{text}:1}}"))?;
        }

        #[test]
        fn skimming_sees_what_serde_skipping_saw(text in prop_oneof![json(), mutated()]) {
            prop_assert_eq!(ours_skim(&text), serde_skim(&text), "{:?}", text);
        }

        /// Near the depth limit, with the raw-value token among the names:
        /// refused as the old scan and parse refused it (the same kind of
        /// error), or read alike.
        #[test]
        fn bounded_parsing_refuses_as_the_scan_and_parse_did(
            text in prop_oneof![json(), mutated()],
            depth in 80_usize..100,
            object in any::<bool>(),
            token in any::<bool>(),
        ) {
            let (open, close) = match (object, token) {
                (true, true) => (format!("{{\"{RAW_VALUE_TOKEN}\":"), "}"),
                (true, false) => ("{\"a\":".to_owned(), "}"),
                (false, _) => ("[".to_owned(), "]"),
            };
            let text = format!("{}{text}{}", open.repeat(depth), close.repeat(depth));
            let ours = crate::limits::parse_tree_bounded(&text, usize::MAX, "x");
            match (ours, old_bounded(&text)) {
                (Ok(ours), Ok(theirs)) => prop_assert_eq!(ours, theirs),
                (Err(ours), Err(theirs)) => prop_assert_eq!(
                    std::mem::discriminant(&ours),
                    std::mem::discriminant(&theirs),
                    "{:?} against {:?}",
                    ours,
                    theirs
                ),
                (ours, theirs) => prop_assert!(false, "ours {ours:?}, old {theirs:?}"),
            }
        }
    }

    #[test]
    fn edge_numbers_read_as_serde_reads_them() {
        for text in [
            "0",
            "-0",
            "-0.0",
            "-0e3",
            "0e99999",
            "1e400",
            "-1e400",
            "1e-400",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "9223372036854775808",
            "2.2250738585072014e-308",
            "4.9e-324",
            "1.7976931348623157e308",
            "1.7976931348623159e308",
            "0.1000000000000000055511151231257827",
            "9007199254740993",
            "9007199254740993.0",
            "123456789012345678901234567890e-10",
            "01",
            "-",
            "1.",
            ".5",
            "1e",
            "+1",
            "1_000",
            "Infinity",
            "NaN",
        ] {
            agree(text).unwrap();
            agree(&format!("[{text}]")).unwrap();
        }
    }

    #[test]
    fn edge_texts_read_as_serde_reads_them() {
        for text in [
            "",
            " ",
            "nul",
            "nulx",
            "tru",
            "[",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{1:1}",
            "[1 2]",
            "{}",
            "[]",
            " [ ] ",
            "{\"a\":1} x",
            "\"\\ud800\"",
            "\"\\ud800\\u0041\"",
            "\"\\udc00\"",
            "\"\\ud83d\\ude00\"",
            // The ends of the surrogate ranges.
            "\"\\ud800\\udc00\"",
            "\"\\udbff\\udfff\"",
            "\"\\udbff\\ue000\"",
            "\"\\ud7ff\\udc00\"",
            "\"\\u0000\"",
            "\"a\tb\"",
            "\"\\u00e9\"",
            "{\"a\":1,\"\\u0061\":2}",
            "\u{feff}1",
        ] {
            agree(text).unwrap();
        }
    }

    #[test]
    fn a_name_twice_is_refused_and_errors_say_where() {
        let err = parse_tree("{\"x\":1,\n \"x\":2}", RECURSION_LIMIT).unwrap_err();
        assert_eq!(err.reason(), "duplicate field `x`");
        assert!(err.to_string().ends_with(" at line 2 column 8"), "{err}");
        let err = parse_tree("[1,\n2,]", RECURSION_LIMIT).unwrap_err();
        assert_eq!(err.to_string(), "trailing comma at line 2 column 3");
    }

    #[test]
    fn nesting_past_the_recursion_limit_is_refused_not_overflowed() {
        let deep = "[".repeat(RECURSION_LIMIT + 1) + &"]".repeat(RECURSION_LIMIT + 1);
        assert_eq!(
            parse_tree(&deep, RECURSION_LIMIT).unwrap_err().reason(),
            "recursion limit exceeded"
        );
        let within = "[".repeat(RECURSION_LIMIT) + &"]".repeat(RECURSION_LIMIT);
        assert!(parse_tree(&within, RECURSION_LIMIT).is_ok());
        let deep_skipped = format!("{{\"x\":{deep}}}");
        assert!(skim(&deep_skipped, &[], &[]).is_err());
    }

    #[test]
    fn names_without_escapes_are_borrowed() {
        let tree = parse_tree("{\"plain\":1,\"esc\\u0061ped\":2}", RECURSION_LIMIT).unwrap();
        let Node::Object(fields) = tree else {
            panic!("an object")
        };
        assert!(matches!(fields[0].0, Cow::Borrowed("plain")));
        assert!(matches!(&fields[1].0, Cow::Owned(name) if name == "escaped"));
    }

    #[test]
    fn skim_reads_what_it_is_asked_and_skips_what_would_not_read() {
        let text = r#"{"v":2,"type":"pong","body":{"a":1,"a":"\ud800"},"x":1e999,"n":null}"#;
        assert!(parse_tree(text, RECURSION_LIMIT).is_err());
        let fields = skim(text, &["v", "type"], &["body", "x", "n"]).unwrap();
        let fields: Vec<(&str, &Skimmed<'_>)> = fields
            .iter()
            .map(|(name, value)| (name.as_ref(), value))
            .collect();
        assert_eq!(
            fields,
            [
                ("v", &Skimmed::Read(Node::Scalar(Value::from(2)))),
                ("type", &Skimmed::Read(Node::Scalar(Value::from("pong")))),
                ("body", &Skimmed::Skipped),
                ("x", &Skimmed::Skipped),
                ("n", &Skimmed::Null),
            ]
        );
        // What is read is read strictly.
        assert!(skim(r#"{"v":"\ud800"}"#, &["v"], &[]).is_err());
        assert!(skim(r#"{"v":"\ud800"}"#, &[], &["v"]).is_ok());
        assert!(skim("[1]", &[], &[]).is_err());
        assert!(skim("{} 1", &[], &[]).is_err());
    }

    #[test]
    fn string_text_reads_one_string_literal() {
        assert_eq!(string_text("\"a\\u0062\"").as_deref(), Some("ab"));
        assert_eq!(string_text("\"a\" "), None);
        assert_eq!(string_text("1"), None);
        assert_eq!(string_text("\"\\ud800\""), None);
    }
}
