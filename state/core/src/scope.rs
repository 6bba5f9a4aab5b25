//! Scope (who shares a key), lifetime (how long it lives) and the fully
//! qualified key derived from them.
//!
//! The two axes are independent: a `Private` key can be `Persistent`, a
//! `Global` key can live in `Memory` only.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Result, preview};
use crate::id::{IdKind, KeyName, UnitAddress, validate};

/// Who shares a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Only the declaring unit.
    Private,
    /// Every unit of the same building.
    Building,
    /// Every unit of the apartment.
    Apartment,
    /// Every apartment of this origin.
    Global,
}

impl Scope {
    /// All scopes, narrowest first.
    pub const ALL: [Scope; 4] = [
        Scope::Private,
        Scope::Building,
        Scope::Apartment,
        Scope::Global,
    ];

    /// The lowercase name used in full keys and JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Private => "private",
            Self::Building => "building",
            Self::Apartment => "apartment",
            Self::Global => "global",
        }
    }

    /// Number of address segments (apartment, building, unit) this scope
    /// puts into a full key.
    const fn address_segments(self) -> usize {
        match self {
            Self::Private => 3,
            Self::Building => 2,
            Self::Apartment => 1,
            Self::Global => 0,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Scope {
    type Error = Error;
    fn try_from(text: String) -> Result<Self> {
        text.parse()
    }
}

crate::decode::from_json_text!(Scope, FullKey);

impl FromStr for Scope {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|scope| scope.as_str() == text)
            .ok_or_else(|| Error::InvalidName {
                what: "scope",
                value: preview(text),
                reason: "expected private, building, apartment or global",
            })
    }
}

/// How long a key's value lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lifetime {
    /// This page only; never written to storage.
    Memory,
    /// This browser session (sessionStorage in the web layer).
    Ephemeral,
    /// Survives restarts (localStorage in the web layer).
    Persistent,
}

/// From its name.
impl crate::decode::FromJson for Lifetime {
    fn from_json(node: crate::decode::Node<'_>) -> std::result::Result<Self, crate::decode::Why> {
        let name = crate::decode::text(node, "a lifetime")?;
        crate::decode::variant(
            &name,
            &[
                ("memory", Self::Memory),
                ("ephemeral", Self::Ephemeral),
                ("persistent", Self::Persistent),
            ],
        )
    }
}
crate::deserialize_through_tree!(Lifetime);

impl fmt::Display for Lifetime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Memory => "memory",
            Self::Ephemeral => "ephemeral",
            Self::Persistent => "persistent",
        })
    }
}

/// The longest full key [`FullKey::find_or_new`] builds on the stack, and
/// the longest there is: a private key (the scope with the most segments)
/// whose three address segments and name have
/// [`MAX_ID_LEN`](crate::MAX_ID_LEN) bytes each.
const STACK_KEY_LEN: usize = "private".len() + 4 * (1 + crate::id::MAX_ID_LEN);

/// A fully qualified key: scope plus the address segments the scope needs
/// plus the key name.
///
/// ```text
/// private/{apartment}/{building}/{unit}/{key}
/// building/{apartment}/{building}/{key}
/// apartment/{apartment}/{key}
/// global/{key}
/// ```
///
/// Because the scope and every address segment are part of the key, the same
/// key name in two buildings, or two units' private keys, never collide, and
/// a unit cannot even name another unit's private key (the address comes
/// from the caller). Parsing from the wire validates every segment.
#[derive(Clone)]
pub struct FullKey {
    // The text is the identity: equality, ordering and hashing are the
    // text's, so maps of full keys serialize in the same order everywhere.
    // It is shared, not copied (a key is cloned into every op, change and
    // map entry it names), and where each segment ends is found once, on
    // construction (which validated the segments).
    text: Arc<str>,
    scope: Scope,
    /// Byte offsets of the `/` after the scope and after each address
    /// segment; only the first `scope.address_segments() + 1` are used.
    cuts: [u16; 4],
}

impl FullKey {
    /// Derives the full key of `name` in `scope`, as seen from `address`.
    pub fn new(scope: Scope, address: &UnitAddress, name: &KeyName) -> Self {
        Self::find_or_new(scope, address, name, |_| None)
    }

    /// [`new`](Self::new), or the key `find` returns for the same text:
    /// a clone of a key some map holds shares its text, so writing or
    /// reading a key that exists allocates nothing for its name. `find`
    /// gets the text built on the stack, all a lookup by `&str` needs
    /// (`FullKey` borrows as `str`). A new key costs one allocation.
    pub fn find_or_new<'a>(
        scope: Scope,
        address: &UnitAddress,
        name: &KeyName,
        find: impl FnOnce(&str) -> Option<&'a FullKey>,
    ) -> Self {
        let all: [&str; 4] = [
            address.apartment().as_str(),
            address.building().as_str(),
            address.unit().as_str(),
            name.as_str(),
        ];
        let parts = &all[..scope.address_segments()];
        let parts = parts.iter().chain(&all[3..]);
        let mut cuts = [0u16; 4];
        let mut stack = [0u8; STACK_KEY_LEN];
        let mut len = 0;
        let mut put = |bytes: &[u8]| {
            // Past the end of the stack buffer nothing is copied, only
            // counted: the heap takes over below.
            if let Some(slot) = stack.get_mut(len..len + bytes.len()) {
                slot.copy_from_slice(bytes);
            }
            len += bytes.len();
        };
        put(scope.as_str().as_bytes());
        let mut at = scope.as_str().len();
        for (cut, part) in cuts.iter_mut().zip(parts.clone()) {
            *cut = Self::offset(at);
            put(b"/");
            put(part.as_bytes());
            at += 1 + part.len();
        }
        let heap: String;
        // Validated segments always fit on the stack (`get` is `None` past
        // it); longer text is still a key, built on the heap.
        let on_stack = stack
            .get(..len)
            .and_then(|text| std::str::from_utf8(text).ok());
        let text = match on_stack {
            Some(text) => text,
            _ => {
                let mut text = String::with_capacity(len);
                text.push_str(scope.as_str());
                for part in parts {
                    text.push('/');
                    text.push_str(part);
                }
                heap = text;
                &heap
            }
        };
        if let Some(found) = find(text) {
            return found.clone();
        }
        Self {
            text: Arc::from(text),
            scope,
            cuts,
        }
    }

    /// A byte offset in a full key. Validated segments are at most
    /// `MAX_ID_LEN` bytes, so every offset fits.
    fn offset(at: usize) -> u16 {
        u16::try_from(at).unwrap_or(u16::MAX)
    }

    /// A key of validated text whose first segment is `scope`.
    fn from_valid(text: String, scope: Scope) -> Self {
        let mut cuts = [0u16; 4];
        for (cut, (at, _)) in cuts.iter_mut().zip(text.match_indices('/')) {
            *cut = Self::offset(at);
        }
        Self {
            text: Arc::from(text),
            scope,
            cuts,
        }
    }

    /// Parses and validates a full key string.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |reason| Error::InvalidName {
            what: "full key",
            value: preview(text),
            reason,
        };
        // Bounded split: a hostile string of a million slashes costs six
        // segments, not a million allocations.
        let segments: Vec<&str> = text.splitn(6, '/').collect();
        let (scope_text, rest) = segments.split_first().ok_or_else(|| bad("empty"))?;
        let scope: Scope = scope_text.parse()?;
        let expected = scope.address_segments() + 1;
        if rest.len() != expected {
            return Err(bad("wrong number of segments for its scope"));
        }
        let kinds = [IdKind::Apartment, IdKind::Building, IdKind::Unit];
        for (segment, kind) in rest.iter().zip(kinds.iter().take(expected - 1)) {
            validate(*kind, segment)?;
        }
        if let Some(name) = rest.last() {
            validate(IdKind::Key, name)?;
        }
        Ok(Self::from_valid(text.to_owned(), scope))
    }

    /// The text between the cuts `from` and `from + 1` (the end of the text
    /// past the last cut).
    fn segment_after(&self, from: usize) -> &str {
        let start = usize::from(self.cuts[from]) + 1;
        let end = if from < self.scope.address_segments() {
            usize::from(self.cuts[from + 1])
        } else {
            self.text.len()
        };
        // The text was validated; the fallback is unreachable but keeps
        // this function panic-free.
        self.text.get(start..end).unwrap_or_default()
    }

    /// The scope.
    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// The key name (last segment).
    pub fn name(&self) -> &str {
        self.segment_after(self.scope.address_segments())
    }

    fn address_segment(&self, index: usize) -> Option<&str> {
        (index < self.scope.address_segments()).then(|| self.segment_after(index))
    }

    /// The apartment segment, unless the key is global.
    pub fn apartment(&self) -> Option<&str> {
        self.address_segment(0)
    }

    /// The building segment, for building and private keys.
    pub fn building(&self) -> Option<&str> {
        self.address_segment(1)
    }

    /// `apartment/building`, for building and private keys: the building
    /// the key belongs to, as one slice of its text.
    pub(crate) fn building_path(&self) -> Option<&str> {
        if self.scope.address_segments() < 2 {
            return None;
        }
        let start = usize::from(self.cuts[0]) + 1;
        self.text.get(start..usize::from(self.cuts[2]))
    }

    /// The unit segment, for private keys.
    pub fn unit(&self) -> Option<&str> {
        self.address_segment(2)
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `address` is inside this key's scope, i.e. would derive this
    /// same full key from the key's scope and name.
    pub fn reachable_by(&self, address: &UnitAddress) -> bool {
        let same = |segment: Option<&str>, id: &str| segment.is_none_or(|s| s == id);
        same(self.apartment(), address.apartment().as_str())
            && same(self.building(), address.building().as_str())
            && same(self.unit(), address.unit().as_str())
    }

    /// Whether this key lies inside `address`'s reach for `scope` (used to
    /// select the keys of one scope as seen by one unit).
    pub fn is_in(&self, scope: Scope, address: &UnitAddress) -> bool {
        self.scope() == scope && self.reachable_by(address)
    }
}

impl FromStr for FullKey {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self> {
        Self::parse(text)
    }
}

impl TryFrom<String> for FullKey {
    type Error = Error;
    fn try_from(text: String) -> Result<Self> {
        Self::parse(&text)
    }
}

impl From<FullKey> for String {
    fn from(key: FullKey) -> String {
        key.text.to_string()
    }
}

/// As its text, borrowed: every op, message and stored entry names its
/// key, and a copy into a `String` first cost an allocation each time.
impl Serialize for FullKey {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

// Equality, ordering and hashing are the text's, so a map of full keys can
// be searched by the text alone (see `FullKey::find_or_new`).
impl std::borrow::Borrow<str> for FullKey {
    fn borrow(&self) -> &str {
        &self.text
    }
}

impl PartialEq for FullKey {
    fn eq(&self, other: &Self) -> bool {
        // As in `cmp`: twins share their text.
        Arc::ptr_eq(&self.text, &other.text) || self.text == other.text
    }
}

impl Eq for FullKey {}

impl PartialOrd for FullKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for FullKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Keys of one replica share their text (`find_or_new`): a lookup
        // of the key a write opened finds its twin without comparing
        // bytes.
        if Arc::ptr_eq(&self.text, &other.text) {
            return std::cmp::Ordering::Equal;
        }
        self.text.cmp(&other.text)
    }
}

impl std::hash::Hash for FullKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl fmt::Debug for FullKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FullKey")
            .field("text", &&*self.text)
            .finish()
    }
}

impl fmt::Display for FullKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_names_its_building_as_apartment_slash_building() {
        let unit: UnitAddress = "apt/shop/cart".parse().unwrap();
        let name: KeyName = "k".parse().unwrap();
        let path = |scope| {
            FullKey::new(scope, &unit, &name)
                .building_path()
                .map(str::to_owned)
        };
        assert_eq!(path(Scope::Private).as_deref(), Some("apt/shop"));
        assert_eq!(path(Scope::Building).as_deref(), Some("apt/shop"));
        assert_eq!(path(Scope::Apartment), None);
        assert_eq!(path(Scope::Global), None);
    }

    /// A full key is written as its text, borrowed: the string it was
    /// converted to before, as a value and as a map key.
    #[test]
    fn a_full_key_serializes_as_the_string_it_was() {
        let unit: UnitAddress = "a/b \"q\"/u\\v".parse().unwrap();
        let name: KeyName = "k é".parse().unwrap();
        for scope in [
            Scope::Private,
            Scope::Building,
            Scope::Apartment,
            Scope::Global,
        ] {
            let key = FullKey::new(scope, &unit, &name);
            let json = serde_json::to_string(&key).unwrap();
            assert_eq!(
                json,
                serde_json::to_string(&String::from(key.clone())).unwrap()
            );
            assert_eq!(serde_json::from_str::<FullKey>(&json).unwrap(), key);
            let map = std::collections::BTreeMap::from([(key.clone(), 1)]);
            let as_text = std::collections::BTreeMap::from([(String::from(key), 1)]);
            crate::id::assert_same_json(&map, &as_text);
        }
    }

    fn address(text: &str) -> UnitAddress {
        text.parse().unwrap()
    }

    #[test]
    fn formats_follow_the_design() {
        let a = address("shop/header/cart");
        let k = KeyName::new("count").unwrap();
        assert_eq!(
            FullKey::new(Scope::Private, &a, &k).as_str(),
            "private/shop/header/cart/count"
        );
        assert_eq!(
            FullKey::new(Scope::Building, &a, &k).as_str(),
            "building/shop/header/count"
        );
        assert_eq!(
            FullKey::new(Scope::Apartment, &a, &k).as_str(),
            "apartment/shop/count"
        );
        assert_eq!(FullKey::new(Scope::Global, &a, &k).as_str(), "global/count");
    }

    #[test]
    fn a_derived_key_reads_its_segments_like_a_parsed_one() {
        let a = address("shop-1/header/cart.v2");
        let k = KeyName::new("item count").unwrap();
        for scope in Scope::ALL {
            let derived = FullKey::new(scope, &a, &k);
            let parsed = FullKey::parse(derived.as_str()).unwrap();
            for key in [&derived, &parsed] {
                assert_eq!(key.scope(), scope);
                assert_eq!(key.name(), "item count");
                assert_eq!(
                    key.apartment(),
                    (scope != Scope::Global).then_some("shop-1")
                );
                let building = matches!(scope, Scope::Private | Scope::Building);
                assert_eq!(key.building(), building.then_some("header"));
                assert_eq!(key.unit(), (scope == Scope::Private).then_some("cart.v2"));
                assert!(key.reachable_by(&a));
            }
            assert_eq!(derived, parsed);
        }
    }

    #[test]
    fn a_found_key_is_shared_and_a_new_one_is_whole_at_the_longest() {
        // Segments of the longest valid length fill the stack buffer to
        // its last byte in the private scope.
        let long = "x".repeat(crate::id::MAX_ID_LEN);
        let a = address(&format!("{long}/{long}/{long}"));
        let k = KeyName::new(long.clone()).unwrap();
        let mut held = std::collections::BTreeMap::new();
        for scope in Scope::ALL {
            let built = FullKey::find_or_new(scope, &a, &k, |_| None);
            let parsed = FullKey::parse(built.as_str()).unwrap();
            assert_eq!(built.cuts, parsed.cuts, "{scope:?}");
            assert_eq!(built, parsed);
            assert_eq!(built.name(), long);
            held.insert(built, ());
        }
        let longest = held.keys().map(|key| key.as_str().len()).max();
        assert_eq!(longest, Some(STACK_KEY_LEN));
        for scope in Scope::ALL {
            let mut asked = None;
            let found = FullKey::find_or_new(scope, &a, &k, |text| {
                asked = Some(text.to_owned());
                held.get_key_value(text).map(|(key, _)| key)
            });
            let (original, ()) = held.get_key_value(found.as_str()).unwrap();
            assert!(Arc::ptr_eq(&found.text, &original.text), "{scope:?}");
            assert_eq!(asked.as_deref(), Some(found.as_str()));
        }
    }

    #[test]
    fn same_name_in_two_buildings_never_collides() {
        let k = KeyName::new("count").unwrap();
        let one = FullKey::new(Scope::Building, &address("a/b1/u"), &k);
        let two = FullKey::new(Scope::Building, &address("a/b2/u"), &k);
        assert_ne!(one, two);
        let p1 = FullKey::new(Scope::Private, &address("a/b/u1"), &k);
        let p2 = FullKey::new(Scope::Private, &address("a/b/u2"), &k);
        assert_ne!(p1, p2);
    }

    #[test]
    fn parse_round_trips_and_validates() {
        for text in [
            "private/a/b/u/k",
            "building/a/b/k",
            "apartment/a/k",
            "global/k",
        ] {
            let key = FullKey::parse(text).unwrap();
            assert_eq!(key.as_str(), text);
            assert_eq!(key.name(), "k");
        }
        for bad in [
            "",
            "global",
            "global/",
            "global/a/b",
            "private/a/b/k",
            "apartment/../k",
            "public/k",
            "global/__proto__",
            "building/a/b/c/d/e/f/g",
        ] {
            assert!(FullKey::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reachability() {
        let key = FullKey::parse("building/a/b/k").unwrap();
        assert!(key.reachable_by(&address("a/b/x")));
        assert!(!key.reachable_by(&address("a/c/x")));
        assert!(!key.reachable_by(&address("z/b/x")));
        let private = FullKey::parse("private/a/b/u/k").unwrap();
        assert!(private.reachable_by(&address("a/b/u")));
        assert!(!private.reachable_by(&address("a/b/v")));
        assert!(
            FullKey::parse("global/k")
                .unwrap()
                .reachable_by(&address("q/r/s"))
        );
    }
}
