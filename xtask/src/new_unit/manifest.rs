//! `app/src/manifest.json` as data: read with serde, edited as typed
//! structs, written back in one canonical layout.
//!
//! The layout is a function of the data alone, so the generator's edit
//! changes only the lines of what it adds: one member or item per line down
//! to a building, and everything below a building (a unit, the `active`
//! map) on one line, as the hand-written manifest always was. Fields this
//! code does not know are kept (after the known ones); known fields keep
//! their order, which the structs' declaration order gives. (No
//! `preserve_order` on serde_json: cargo would unify it into the state
//! core, whose replicas compare serialized maps byte for byte.)

use std::collections::BTreeMap;
use std::io;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::ser::Formatter;

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Apartments, in display order.
    pub apartments: Vec<Apartment>,
    /// Fields this code does not know, kept as they were.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// One apartment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Apartment {
    /// Its address segment.
    pub id: String,
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Its buildings, in display order.
    pub buildings: Vec<Building>,
    /// Fields this code does not know, kept as they were.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// One building.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Building {
    /// Its address segment.
    pub id: String,
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// For a unit offered in several versions, the one shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<BTreeMap<String, Value>>,
    /// Its units, in display order.
    pub units: Vec<Unit>,
    /// Fields this code does not know, kept as they were.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// One unit placed in a building.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unit {
    /// Its address segment.
    pub id: String,
    /// The unit crate that renders it.
    pub kind: String,
    /// Its name.
    pub title: String,
    /// Its version.
    pub version: String,
    /// Fields this code does not know, kept as they were.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

impl Manifest {
    /// Reads a manifest; says where the text is not JSON, or which field
    /// has the wrong shape.
    pub fn parse(text: &str) -> Result<Self, String> {
        // Text first, then shape, so a broken document is reported as one
        // even where its first character already has the wrong type.
        let value: Value =
            serde_json::from_str(text).map_err(|err| format!("invalid JSON: {err}"))?;
        serde_json::from_value(value).map_err(|err| format!("unexpected shape: {err}"))
    }

    /// The manifest in its canonical layout, ending with a line break.
    pub fn to_text(&self) -> Result<String, String> {
        let mut out = Vec::new();
        let mut writer = serde_json::Serializer::with_formatter(&mut out, Layout::default());
        self.serialize(&mut writer)
            .map_err(|err| format!("cannot write the manifest: {err}"))?;
        out.push(b'\n');
        String::from_utf8(out).map_err(|err| format!("cannot write the manifest: {err}"))
    }
}

/// Containers opened this deep or deeper are objects below a building
/// (root object 0, apartments 1, an apartment 2, buildings 3, a building
/// 4, its members' values 5).
const ONE_LINE_FROM: usize = 5;

/// The canonical layout: serde_json's pretty layout (two spaces), except
/// that objects from [`ONE_LINE_FROM`] down, and whatever they hold, are
/// written on one line as `{"a": 1, "b": 2}`.
#[derive(Default)]
struct Layout {
    /// Per open container: written on one line, and holds a value yet.
    open: Vec<(bool, bool)>,
}

impl Layout {
    fn one_line(&self) -> bool {
        self.open.last().is_some_and(|(one_line, _)| *one_line)
    }

    fn open<W: ?Sized + io::Write>(&mut self, writer: &mut W, object: bool) -> io::Result<()> {
        let one_line = self.one_line() || (object && self.open.len() >= ONE_LINE_FROM);
        self.open.push((one_line, false));
        writer.write_all(if object { b"{" } else { b"[" })
    }

    fn close<W: ?Sized + io::Write>(&mut self, writer: &mut W, object: bool) -> io::Result<()> {
        let (one_line, has_value) = self.open.pop().unwrap_or((true, false));
        if !one_line && has_value {
            self.newline(writer)?;
        }
        writer.write_all(if object { b"}" } else { b"]" })
    }

    /// Before an item or a member's key.
    fn item<W: ?Sized + io::Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        if self.one_line() {
            return writer.write_all(if first { b"" } else { b", " });
        }
        writer.write_all(if first { b"" } else { b"," })?;
        self.newline(writer)
    }

    /// A line break, indented to the open containers.
    fn newline<W: ?Sized + io::Write>(&self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b"\n")?;
        for _ in 0..self.open.len() {
            writer.write_all(b"  ")?;
        }
        Ok(())
    }

    fn has_value(&mut self) {
        if let Some((_, has_value)) = self.open.last_mut() {
            *has_value = true;
        }
    }
}

impl Formatter for Layout {
    fn begin_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.open(writer, false)
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.close(writer, false)
    }

    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.item(writer, first)
    }

    fn end_array_value<W: ?Sized + io::Write>(&mut self, _writer: &mut W) -> io::Result<()> {
        self.has_value();
        Ok(())
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.open(writer, true)
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.close(writer, true)
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.item(writer, first)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }

    fn end_object_value<W: ?Sized + io::Write>(&mut self, _writer: &mut W) -> io::Result<()> {
        self.has_value();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUNDLED: &str = include_str!("../../../app/src/manifest.json");

    #[test]
    fn reads_the_bundled_manifest() {
        let manifest = Manifest::parse(BUNDLED).unwrap();
        assert!(manifest.apartments.iter().any(|a| a.id == "main"));
    }

    #[test]
    fn the_bundled_manifest_is_in_the_canonical_layout() {
        let manifest = Manifest::parse(BUNDLED).unwrap();
        assert_eq!(manifest.to_text().unwrap(), BUNDLED);
    }

    #[test]
    fn keeps_fields_it_does_not_know_and_the_order_of_those_it_does() {
        let text = r#"{"apartments": [{"buildings": [{"units": [], "id": "b", "x": [1, {"y": 2}]}], "id": "a", "z": null}], "extra": "kept"}"#;
        let out = Manifest::parse(text).unwrap().to_text().unwrap();
        assert_eq!(
            out,
            "{\n  \"apartments\": [\n    {\n      \"id\": \"a\",\n      \"buildings\": [\n        {\n          \"id\": \"b\",\n          \"units\": [],\n          \"x\": [\n            1,\n            {\"y\": 2}\n          ]\n        }\n      ],\n      \"z\": null\n    }\n  ],\n  \"extra\": \"kept\"\n}\n"
        );
        assert_eq!(Manifest::parse(&out).unwrap().to_text().unwrap(), out);
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
            "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
        ] {
            let error = Manifest::parse(text).unwrap_err();
            assert!(error.starts_with("invalid JSON"), "{text:?}: {error}");
        }
        let error = Manifest::parse(r#"{"apartments": {}}"#).unwrap_err();
        assert!(error.starts_with("unexpected shape"), "{error}");
    }
}
