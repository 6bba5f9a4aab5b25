//! Snapshots: a scope's values exported as versioned JSON.
//!
//! ```json
//! {"format":"gaesup-snapshot","version":1,"scope":"building",
//!  "keys":{"cart":{"schema":2,"value":{"items":[]}}}}
//! ```
//!
//! Keys are names relative to the scope, so a snapshot taken in one
//! building can be restored in another. Values (not replicated states)
//! are exported: restoring makes new writes, so the restored values win
//! over older ones and reach every tab. See
//! [`Replica::snapshot`](crate::Replica::snapshot) and
//! [`Replica::restore`](crate::Replica::restore).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::decode::{Fields, FromJson, Why};
use crate::error::{Error, Result};
use crate::id::KeyName;
use crate::limits::{MAX_SNAPSHOT_BYTES, check_value, read_bounded};
use crate::scope::Scope;

/// The `format` tag of every snapshot.
pub const SNAPSHOT_FORMAT: &str = "gaesup-snapshot";
/// The snapshot format version this code writes and reads.
pub const SNAPSHOT_VERSION: u32 = 1;

/// One key's value in a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotEntry {
    /// Schema version of `value`.
    pub schema: u32,
    /// The value.
    pub value: Value,
}

/// A scope's values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// Always [`SNAPSHOT_FORMAT`].
    pub format: String,
    /// Always [`SNAPSHOT_VERSION`] for snapshots this code writes.
    pub version: u32,
    /// The scope the keys belong to.
    pub scope: Scope,
    /// Values by key name.
    pub keys: BTreeMap<KeyName, SnapshotEntry>,
}

/// Unknown fields are refused: a snapshot is a file a person may have
/// edited, and a misspelt field must not pass unnoticed.
impl FromJson for SnapshotEntry {
    fn from_json(value: crate::decode::Node<'_>) -> std::result::Result<Self, Why> {
        Fields::read_only(value, "a snapshot entry", &["schema", "value"], |fields| {
            Ok(Self {
                schema: fields.req("schema")?,
                value: fields.req("value")?,
            })
        })
    }
}

impl FromJson for Snapshot {
    fn from_json(value: crate::decode::Node<'_>) -> std::result::Result<Self, Why> {
        let names = ["format", "version", "scope", "keys"];
        Fields::read_only(value, "a snapshot", &names, |fields| {
            Ok(Self {
                format: fields.req("format")?,
                version: fields.req("version")?,
                scope: fields.req("scope")?,
                keys: fields.req("keys")?,
            })
        })
    }
}

crate::decode::deserialize_through_tree!(SnapshotEntry, Snapshot);

impl Snapshot {
    /// An empty snapshot of `scope`.
    pub fn new(scope: Scope) -> Self {
        Self {
            format: SNAPSHOT_FORMAT.to_owned(),
            version: SNAPSHOT_VERSION,
            scope,
            keys: BTreeMap::new(),
        }
    }

    /// The snapshot as JSON text.
    pub fn to_json(&self) -> Result<String> {
        crate::limits::to_text(self).map_err(|err| Error::InvalidSnapshot {
            reason: err.to_string(),
        })
    }

    /// Parses and validates untrusted snapshot text: size and depth limits,
    /// shape (unknown fields refused, key names validated), format tag and
    /// version, value limits (an object larger than one value passes when
    /// each field is within them: it may be a merge key's; the restore
    /// checks each value by its key's strategy).
    pub fn parse(text: &str) -> Result<Self> {
        let snapshot: Snapshot =
            read_bounded(text, MAX_SNAPSHOT_BYTES, "snapshot").map_err(|err| match err {
                Error::Malformed { reason, .. } => Error::InvalidSnapshot { reason },
                other => other,
            })?;
        if snapshot.format != SNAPSHOT_FORMAT {
            return Err(Error::InvalidSnapshot {
                reason: String::from("not a gaesup snapshot"),
            });
        }
        if snapshot.version != SNAPSHOT_VERSION {
            return Err(Error::InvalidSnapshot {
                reason: format!(
                    "snapshot format version {} (this code reads {SNAPSHOT_VERSION})",
                    snapshot.version
                ),
            });
        }
        for entry in snapshot.keys.values() {
            match (check_value(&entry.value, "snapshot value"), &entry.value) {
                // A merge key's value may be larger than one value, and each
                // of its fields may not; the restore checks it by the key's
                // strategy, which a snapshot does not name.
                (Err(Error::TooLarge { .. }), Value::Object(fields)) => {
                    for field in fields.values() {
                        check_value(field, "snapshot value")?;
                    }
                }
                (checked, _) => {
                    checked?;
                }
            }
        }
        Ok(snapshot)
    }
}
