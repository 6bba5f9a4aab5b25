//! Identity: apartment, building and unit ids, key names, unit addresses and
//! tab ids.
//!
//! Every id follows one small grammar, checked by [`validate`]: non-empty, at
//! most [`MAX_ID_LEN`] bytes, no `/` (it separates segments of a full key),
//! no `..` and not `.` (they mean something to every path-like consumer), no
//! control characters, no leading or trailing whitespace (invisible in the
//! UI, so two "equal" ids could differ), and not `__proto__` (keys end up as
//! JavaScript object properties in devtools and adapters).
//!
//! Ids can only be built through validation, and `Deserialize` validates
//! too, so an id found anywhere in the program is known to be well-formed.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::error::{Error, Result, preview};

/// Longest id or key name, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// Which kind of id failed validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdKind {
    /// An [`ApartmentId`].
    Apartment,
    /// A [`BuildingId`].
    Building,
    /// A [`UnitId`].
    Unit,
    /// A [`KeyName`].
    Key,
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Apartment => "apartment id",
            Self::Building => "building id",
            Self::Unit => "unit id",
            Self::Key => "key name",
        })
    }
}

/// The grammar rule an id broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdRule {
    /// It is empty.
    Empty,
    /// It is longer than [`MAX_ID_LEN`] bytes.
    TooLong,
    /// It contains `/`.
    Slash,
    /// It contains `..` or is `.`.
    Dots,
    /// It contains a control character.
    Control,
    /// It starts or ends with whitespace.
    Whitespace,
    /// It is `__proto__`.
    Reserved,
}

impl fmt::Display for IdRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "must not be empty",
            Self::TooLong => "longer than 64 bytes",
            Self::Slash => "must not contain '/'",
            Self::Dots => "must not contain '..' or be '.'",
            Self::Control => "must not contain control characters",
            Self::Whitespace => "must not start or end with whitespace",
            Self::Reserved => "is reserved",
        })
    }
}

/// Checks `text` against the id grammar.
pub fn validate(kind: IdKind, text: &str) -> Result<()> {
    let rule = if text.is_empty() {
        Some(IdRule::Empty)
    } else if text.len() > MAX_ID_LEN {
        Some(IdRule::TooLong)
    } else if text.contains('/') {
        Some(IdRule::Slash)
    } else if text.contains("..") || text == "." {
        Some(IdRule::Dots)
    } else if text.chars().any(char::is_control) {
        Some(IdRule::Control)
    } else if text.starts_with(char::is_whitespace) || text.ends_with(char::is_whitespace) {
        Some(IdRule::Whitespace)
    } else if text == "__proto__" {
        Some(IdRule::Reserved)
    } else {
        None
    };
    match rule {
        None => Ok(()),
        Some(rule) => Err(Error::InvalidId {
            kind,
            value: preview(text),
            rule,
        }),
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        pub struct $name(String);

        crate::decode::from_json_text!($name);

        impl $name {
            /// Validates `text` and wraps it.
            pub fn new(text: impl Into<String>) -> Result<Self> {
                let text = text.into();
                validate($kind, &text)?;
                Ok(Self(text))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(text: &str) -> Result<Self> {
                Self::new(text)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = Error;
            fn try_from(text: &str) -> Result<Self> {
                Self::new(text)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(text: String) -> Result<Self> {
                Self::new(text)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// Id of an apartment (one whole application).
    ApartmentId,
    IdKind::Apartment
);
id_type!(
    /// Id of a building (a region of the page grouping units).
    BuildingId,
    IdKind::Building
);
id_type!(
    /// Id of a unit (one micro-frontend).
    UnitId,
    IdKind::Unit
);
id_type!(
    /// Name of a state key or event, unique within its scope.
    KeyName,
    IdKind::Key
);

/// Where a unit lives: `apartment/building/unit`.
///
/// This is the identity every read and write is made on behalf of; with the
/// key's scope it derives the [`FullKey`](crate::FullKey).
///
/// Cloning is cheap (the parts are shared): every op and recorded write
/// carries its writer's address.
#[derive(Debug, Clone, Eq, PartialOrd, Ord)]
pub struct UnitAddress(std::sync::Arc<AddressParts>);

crate::decode::from_json_text!(UnitAddress, TabId);

impl std::hash::Hash for UnitAddress {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // The parts, as equality compares them.
        self.0.hash(state);
    }
}

impl PartialEq for UnitAddress {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        // Clones of one address (a unit's every write) share their parts:
        // equal without comparing three names.
        std::sync::Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct AddressParts {
    apartment: ApartmentId,
    building: BuildingId,
    unit: UnitId,
}

impl UnitAddress {
    /// Builds an address from validated parts.
    pub fn new(apartment: ApartmentId, building: BuildingId, unit: UnitId) -> Self {
        Self(std::sync::Arc::new(AddressParts {
            apartment,
            building,
            unit,
        }))
    }

    /// Validates three strings and builds an address.
    pub fn parse_parts(apartment: &str, building: &str, unit: &str) -> Result<Self> {
        Ok(Self::new(
            apartment.parse()?,
            building.parse()?,
            unit.parse()?,
        ))
    }

    /// The apartment.
    pub fn apartment(&self) -> &ApartmentId {
        &self.0.apartment
    }

    /// The building.
    pub fn building(&self) -> &BuildingId {
        &self.0.building
    }

    /// The unit.
    pub fn unit(&self) -> &UnitId {
        &self.0.unit
    }
}

impl FromStr for UnitAddress {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let mut parts = text.splitn(4, '/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), Some(u), None) => Self::parse_parts(a, b, u),
            _ => Err(Error::InvalidName {
                what: "unit address",
                value: preview(text),
                reason: "expected apartment/building/unit",
            }),
        }
    }
}

impl TryFrom<String> for UnitAddress {
    type Error = Error;
    fn try_from(text: String) -> Result<Self> {
        text.parse()
    }
}

impl From<UnitAddress> for String {
    fn from(address: UnitAddress) -> String {
        address.to_string()
    }
}

/// As its text (`apartment/building/unit`), written straight into the
/// output: every op and stored entry names its writer, and a conversion
/// to a `String` first cost an allocation each time.
impl Serialize for UnitAddress {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl fmt::Display for UnitAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.0.apartment, self.0.building, self.0.unit
        )
    }
}

/// Identity of one browser tab (one replica).
///
/// The web layer draws it at random on every page load; the core never
/// generates one. Reusing an id after a reload is tolerated (the replica
/// recovers its sequence number and clock from what it loads) but not
/// advised: a sum key counts per tab id, so increments made after the last
/// persist and before the reload would leave the reloaded tab's totals
/// behind what other tabs saw, and its next increments would be hidden.
/// On the wire it is 16 hex digits in a string, because JSON numbers above
/// 2^53 lose precision in any JavaScript tooling that touches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TabId(u64);

impl TabId {
    /// Wraps a raw id.
    pub const fn new(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw id.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl FromStr for TabId {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let bad = |reason| Error::InvalidName {
            what: "tab id",
            value: preview(text),
            reason,
        };
        if text.is_empty() || text.len() > 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("expected 1 to 16 hex digits"));
        }
        u64::from_str_radix(text, 16)
            .map(Self)
            .map_err(|_| bad("expected 1 to 16 hex digits"))
    }
}

impl TryFrom<String> for TabId {
    type Error = Error;
    fn try_from(text: String) -> Result<Self> {
        text.parse()
    }
}

impl From<TabId> for String {
    fn from(tab: TabId) -> String {
        tab.to_string()
    }
}

/// As its 16 hex digits, written straight into the output (every stamp
/// and op id holds one: no `String` is made for it).
impl Serialize for TabId {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl fmt::Display for TabId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Asserts that `a` and `b` serialize alike: as JSON text and as a
/// `serde_json::Value` (each goes through its own serializer).
#[cfg(test)]
pub(crate) fn assert_same_json<A: Serialize + ?Sized, B: Serialize + ?Sized>(a: &A, b: &B) {
    assert_eq!(
        serde_json::to_string(a).unwrap(),
        serde_json::to_string(b).unwrap()
    );
    assert_eq!(
        serde_json::to_value(a).unwrap(),
        serde_json::to_value(b).unwrap()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written straight into the output, a tab id and an address are what
    /// their text was as a `String` (the form they had on the wire and in
    /// storage), as values and as map keys, and they read back.
    #[test]
    fn ids_serialize_as_the_strings_they_were() {
        let tabs = [TabId::new(0), TabId::new(0xabc), TabId::new(u64::MAX)];
        for tab in tabs {
            let text = serde_json::to_string(&tab).unwrap();
            assert_eq!(text, serde_json::to_string(&String::from(tab)).unwrap());
            assert_eq!(serde_json::from_str::<TabId>(&text).unwrap(), tab);
        }
        let map: std::collections::BTreeMap<TabId, u8> = tabs.into_iter().zip(0..).collect();
        let as_text: std::collections::BTreeMap<String, u8> = map
            .iter()
            .map(|(tab, n)| (String::from(*tab), *n))
            .collect();
        assert_same_json(&map, &as_text);
        for text in ["a/b/u", "a \"quoted\"/back\\slash/é ☃ \u{2028}x"] {
            let address: UnitAddress = text.parse().unwrap();
            let json = serde_json::to_string(&address).unwrap();
            assert_eq!(json, serde_json::to_string(text).unwrap());
            assert_eq!(serde_json::from_str::<UnitAddress>(&json).unwrap(), address);
            let map = std::collections::BTreeMap::from([(address.clone(), 1)]);
            let as_text = std::collections::BTreeMap::from([(text, 1)]);
            assert_same_json(&map, &as_text);
        }
    }

    #[test]
    fn grammar_rejects_hostile_names() {
        let cases = [
            ("", IdRule::Empty),
            ("a/b", IdRule::Slash),
            ("..", IdRule::Dots),
            ("a..b", IdRule::Dots),
            (".", IdRule::Dots),
            ("a\u{0}b", IdRule::Control),
            ("a\nb", IdRule::Control),
            ("\u{7f}", IdRule::Control),
            (" a", IdRule::Whitespace),
            ("a\u{3000}", IdRule::Whitespace),
            ("__proto__", IdRule::Reserved),
        ];
        for (text, rule) in cases {
            let err = KeyName::new(text).unwrap_err();
            assert_eq!(
                err,
                Error::InvalidId {
                    kind: IdKind::Key,
                    value: text.to_owned(),
                    rule
                },
                "{text:?}"
            );
        }
        let long = "x".repeat(MAX_ID_LEN + 1);
        assert!(matches!(
            UnitId::new(long),
            Err(Error::InvalidId {
                rule: IdRule::TooLong,
                ..
            })
        ));
        assert!(KeyName::new("x".repeat(MAX_ID_LEN)).is_ok());
        assert!(KeyName::new("장바구니.v2_ok-1").is_ok());
    }

    #[test]
    fn huge_name_error_is_truncated() {
        let err = KeyName::new("y".repeat(4 << 20)).unwrap_err();
        assert!(err.to_string().len() < 200);
    }

    #[test]
    fn deserialize_validates() {
        assert!(serde_json::from_str::<UnitId>("\"__proto__\"").is_err());
        assert!(serde_json::from_str::<UnitAddress>("\"a/b\"").is_err());
        assert!(serde_json::from_str::<UnitAddress>("\"a/b/c/d\"").is_err());
        let address: UnitAddress = serde_json::from_str("\"shop/header/cart\"").unwrap();
        assert_eq!(address.unit().as_str(), "cart");
        assert_eq!(
            serde_json::to_string(&address).unwrap(),
            "\"shop/header/cart\""
        );
    }

    #[test]
    fn tab_id_is_hex_on_the_wire() {
        let tab = TabId::new(u64::MAX);
        let text = serde_json::to_string(&tab).unwrap();
        assert_eq!(text, "\"ffffffffffffffff\"");
        assert_eq!(serde_json::from_str::<TabId>(&text).unwrap(), tab);
        assert!(serde_json::from_str::<TabId>("\"\"").is_err());
        assert!(serde_json::from_str::<TabId>("\"+1\"").is_err());
        assert!(serde_json::from_str::<TabId>("\"10000000000000000\"").is_err());
        assert!(serde_json::from_str::<TabId>("12").is_err());
    }
}
