//! A small JSON reader that remembers where each value sits in the text.
//!
//! xtask is std-only, and the generator edits `app/src/manifest.json` by
//! inserting text (so its hand-made layout survives); it needs to know where
//! a building's `units` array ends, and to check that the result still
//! parses. Strict enough for that: objects, arrays, strings with escapes,
//! numbers, literals; anything else is an error with its byte offset.

/// A value and its byte range in the source (`start..end`).
#[derive(Debug)]
pub struct Node {
    /// Offset of the value's first byte.
    pub start: usize,
    /// Offset just past the value's last byte.
    pub end: usize,
    /// The value.
    pub value: Value,
}

/// A JSON value; numbers and literals are kept only as "something else".
#[derive(Debug)]
pub enum Value {
    /// `{…}`, members in source order.
    Object(Vec<(String, Node)>),
    /// `[…]`.
    Array(Vec<Node>),
    /// A string, unescaped.
    String(String),
    /// A number, `true`, `false` or `null`.
    Scalar,
}

impl Node {
    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The elements of an array.
    pub fn items(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The text of a string.
    pub fn str(&self) -> Option<&str> {
        match &self.value {
            Value::String(text) => Some(text),
            _ => None,
        }
    }
}

/// Parses a whole document (one value, surrounded by whitespace only).
pub fn parse(text: &str) -> Result<Node, String> {
    let mut reader = Reader {
        bytes: text.as_bytes(),
        at: 0,
        depth: 0,
    };
    let node = reader.value()?;
    reader.space();
    if reader.at != text.len() {
        return Err(reader.error("trailing text after the document"));
    }
    Ok(node)
}

const MAX_DEPTH: usize = 64;

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    depth: usize,
}

impl Reader<'_> {
    fn error(&self, what: &str) -> String {
        format!("invalid JSON at byte {}: {what}", self.at)
    }

    fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected '{}'", char::from(byte))))
        }
    }

    fn value(&mut self) -> Result<Node, String> {
        self.space();
        let start = self.at;
        let value = match self.peek() {
            Some(b'{') => self.nested(Self::object)?,
            Some(b'[') => self.nested(Self::array)?,
            Some(b'"') => Value::String(self.string()?),
            Some(b'-' | b'0'..=b'9') => self.number()?,
            Some(b't') => self.literal("true")?,
            Some(b'f') => self.literal("false")?,
            Some(b'n') => self.literal("null")?,
            _ => return Err(self.error("expected a value")),
        };
        Ok(Node {
            start,
            end: self.at,
            value,
        })
    }

    fn nested(&mut self, read: fn(&mut Self) -> Result<Value, String>) -> Result<Value, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        let value = read(self);
        self.depth -= 1;
        value
    }

    fn object(&mut self) -> Result<Value, String> {
        self.expect(b'{')?;
        let mut members = Vec::new();
        self.space();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(Value::Object(members));
        }
        loop {
            self.space();
            let key = self.string()?;
            self.space();
            self.expect(b':')?;
            let value = self.value()?;
            members.push((key, value));
            self.space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(Value::Object(members));
                }
                _ => return Err(self.error("expected ',' or '}'")),
            }
        }
    }

    fn array(&mut self) -> Result<Value, String> {
        self.expect(b'[')?;
        let mut items = Vec::new();
        self.space();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value()?);
            self.space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.error("expected ',' or ']'")),
            }
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.at += 1;
                    return String::from_utf8(out).map_err(|_| self.error("string is not UTF-8"));
                }
                Some(b'\\') => {
                    self.at += 1;
                    let unescaped = match self.peek() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => self.unicode_escape()?,
                        _ => return Err(self.error("bad escape")),
                    };
                    self.at += 1;
                    let mut buf = [0; 4];
                    out.extend_from_slice(unescaped.encode_utf8(&mut buf).as_bytes());
                }
                Some(byte) if byte < 0x20 => {
                    return Err(self.error("control character in a string"));
                }
                Some(byte) => {
                    out.push(byte);
                    self.at += 1;
                }
            }
        }
    }

    /// At the `u` of `\uXXXX`; leaves `at` on the escape's last digit. A
    /// lone surrogate becomes U+FFFD (the manifest never needs one).
    fn unicode_escape(&mut self) -> Result<char, String> {
        let hex = |reader: &Self, from: usize| -> Result<u32, String> {
            reader
                .bytes
                .get(from..from + 4)
                .and_then(|digits| std::str::from_utf8(digits).ok())
                .and_then(|digits| u32::from_str_radix(digits, 16).ok())
                .ok_or_else(|| reader.error("bad \\u escape"))
        };
        let high = hex(self, self.at + 1)?;
        self.at += 4;
        if (0xD800..0xDC00).contains(&high)
            && self.bytes.get(self.at + 1..self.at + 3) == Some(b"\\u")
        {
            let low = hex(self, self.at + 3)?;
            if (0xDC00..0xE000).contains(&low) {
                self.at += 6;
                let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                return Ok(char::from_u32(code).unwrap_or('\u{FFFD}'));
            }
        }
        Ok(char::from_u32(high).unwrap_or('\u{FFFD}'))
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.at;
        while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        let text = std::str::from_utf8(&self.bytes[start..self.at]).unwrap_or("");
        if text.parse::<f64>().is_err() || text.starts_with('+') {
            return Err(self.error("bad number"));
        }
        Ok(Value::Scalar)
    }

    fn literal(&mut self, word: &str) -> Result<Value, String> {
        if self.bytes[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(Value::Scalar)
        } else {
            Err(self.error(&format!("expected {word}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_values_and_their_spans() {
        let text = r#" {"a": [1, -2.5e3, "x\"y\u00e9\ud83d\ude00"], "b": {"c": null, "d": true}} "#;
        let doc = parse(text).unwrap();
        let a = doc.get("a").unwrap();
        assert_eq!(
            &text[a.start..a.end],
            r#"[1, -2.5e3, "x\"y\u00e9\ud83d\ude00"]"#
        );
        let items = a.items().unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[2].str(), Some("x\"yé😀"));
        assert!(doc.get("b").unwrap().get("d").is_some());
        assert!(doc.get("zz").is_none());
    }

    #[test]
    fn refuses_broken_documents() {
        for text in [
            "",
            "{",
            "[1,]",
            "[1 2]",
            r#"{"a" 1}"#,
            r#"{"a": 1,}"#,
            r#""unterminated"#,
            "\"tab\there\"",
            "+1",
            "tru",
            "{} {}",
            r#"["\x"]"#,
        ] {
            assert!(parse(text).is_err(), "{text:?} parsed");
        }
        assert!(parse(&"[".repeat(MAX_DEPTH + 1)).is_err());
    }

    #[test]
    fn reads_the_bundled_manifest() {
        let text = include_str!("../../../app/src/manifest.json");
        let doc = parse(text).unwrap();
        let apartments = doc.get("apartments").and_then(Node::items).unwrap();
        assert!(
            apartments
                .iter()
                .any(|a| a.get("id").and_then(Node::str) == Some("main"))
        );
    }
}
