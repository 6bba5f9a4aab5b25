//! The manifest: which apartments, buildings and units exist.
//!
//! The layout is data, not markup, so adding a unit means adding a manifest
//! entry plus its crate, never editing the shell. The manifest is compiled in
//! (`manifest.json` beside this file) because every unit it names must be
//! compiled in as well: shipping both in one artifact keeps them consistent,
//! costs no extra request and shows no loading state. It is still parsed and
//! validated at start-up, and a bad one renders an error page naming the
//! problem rather than a blank screen.
//!
//! This file holds the shape; `validate.rs` what makes one valid,
//! `lookup.rs` what an address names in it.

mod lookup;
mod validate;

use std::collections::BTreeMap;

use gaesup_state::core::decode::{Fields, FromJson, Node, Why, parse_tree_bounded};

pub use lookup::Missing;
pub use validate::{ManifestError, check_id};

/// The manifest shipped with this build.
pub const BUNDLED: &str = include_str!("manifest.json");

/// Longest id accepted for an apartment, building or unit.
pub const MAX_ID_LEN: usize = 64;

/// Longest manifest read.
const MAX_MANIFEST_BYTES: usize = 1 << 20;

/// The whole layout: one or more apartments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// Apartments in display order; the first is shown at `/`.
    pub apartments: Vec<ApartmentSpec>,
}

/// One apartment: a whole application made of buildings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApartmentSpec {
    /// Address segment, unique among apartments.
    pub id: String,
    /// Human-readable name.
    pub title: String,
    /// Buildings in display order.
    pub buildings: Vec<BuildingSpec>,
}

/// One building: a region of the page grouping units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildingSpec {
    /// Address segment, unique within its apartment.
    pub id: String,
    /// Human-readable name; also the accessible name of the region.
    pub title: String,
    /// Units in display order. A building may offer several versions of a
    /// unit: entries sharing an `id` with different `version`s, of which
    /// [`active`](Self::active) names the one shown.
    pub units: Vec<UnitSpec>,
    /// For each unit offered in several versions, the version shown (unit
    /// id → version). Optional for units offered once.
    pub active: BTreeMap<String, String>,
}

/// One unit placed in a building.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitSpec {
    /// Address segment, unique within its building.
    pub id: String,
    /// Which unit crate renders it (a name in the shell's registry).
    pub kind: String,
    /// Human-readable name; also the accessible name of the unit's frame.
    pub title: String,
    /// Version of the unit, shown in its frame.
    pub version: String,
}

impl FromJson for Manifest {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        Fields::read_only(node, "a manifest", &["apartments"], |fields| {
            Ok(Self {
                apartments: fields.req("apartments")?,
            })
        })
    }
}

impl FromJson for ApartmentSpec {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        let names = ["id", "title", "buildings"];
        Fields::read_only(node, "an apartment", &names, |fields| {
            Ok(Self {
                id: fields.req("id")?,
                title: fields.req("title")?,
                buildings: fields.req("buildings")?,
            })
        })
    }
}

impl FromJson for BuildingSpec {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        let names = ["id", "title", "units", "active"];
        Fields::read_only(node, "a building", &names, |fields| {
            Ok(Self {
                id: fields.req("id")?,
                title: fields.req("title")?,
                units: fields.req("units")?,
                active: fields.or_default("active")?,
            })
        })
    }
}

impl FromJson for UnitSpec {
    fn from_json(node: Node<'_>) -> Result<Self, Why> {
        let names = ["id", "kind", "title", "version"];
        Fields::read_only(node, "a unit", &names, |fields| {
            Ok(Self {
                id: fields.req("id")?,
                kind: fields.req("kind")?,
                title: fields.req("title")?,
                version: fields.req("version")?,
            })
        })
    }
}

impl Manifest {
    /// Parses and validates a manifest; `known_kinds` are the unit kinds this
    /// build can render. A field the manifest's shape does not have, or one
    /// named twice, is a [`ManifestError::Syntax`].
    pub fn parse(text: &str, known_kinds: &[&str]) -> Result<Self, ManifestError> {
        let tree = parse_tree_bounded(text, MAX_MANIFEST_BYTES, "manifest").map_err(|err| {
            ManifestError::Syntax(match err {
                gaesup_state::core::Error::Malformed { reason, .. } => reason,
                other => other.to_string(),
            })
        })?;
        let manifest = Self::from_json(tree).map_err(ManifestError::Syntax)?;
        manifest.validate(known_kinds)?;
        Ok(manifest)
    }

    /// The apartment shown at `/`.
    pub fn default_apartment(&self) -> Option<&ApartmentSpec> {
        self.apartments.first()
    }

    /// The apartment with this id.
    pub fn apartment(&self, id: &str) -> Option<&ApartmentSpec> {
        self.apartments.iter().find(|a| a.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: &[&str] = &["counter"];

    fn with_units(units: &str) -> String {
        format!(
            r#"{{"apartments":[{{"id":"a","title":"A","buildings":[
                {{"id":"b","title":"B","units":[{units}]}}]}}]}}"#
        )
    }

    #[test]
    fn bundled_manifest_is_valid_with_two_buildings() {
        let manifest = Manifest::parse(BUNDLED, crate::registry::KINDS).unwrap();
        let apartment = manifest.default_apartment().unwrap();
        assert!(apartment.buildings.len() >= 2);
    }

    #[test]
    fn lookup_follows_the_address() {
        let manifest = Manifest::parse(
            &with_units(r#"{"id":"u","kind":"counter","title":"U","version":"1"}"#),
            KINDS,
        )
        .unwrap();
        let unit = manifest
            .apartment("a")
            .and_then(|a| a.building("b"))
            .and_then(|b| b.unit("u"));
        assert_eq!(unit.map(|u| u.title.as_str()), Some("U"));
        assert!(manifest.apartment("zzz").is_none());
    }

    #[test]
    fn find_names_the_first_missing_part() {
        let manifest = Manifest::parse(
            &with_units(r#"{"id":"u","kind":"counter","title":"U","version":"1"}"#),
            KINDS,
        )
        .unwrap();
        assert!(manifest.find_unit("a", "b", "u").is_ok());
        assert_eq!(
            manifest.find_unit("x", "b", "u").unwrap_err().to_string(),
            r#"There is no apartment "x"."#
        );
        assert_eq!(
            manifest.find_unit("a", "x", "u").unwrap_err().to_string(),
            r#"Apartment "a" has no building "x"."#
        );
        assert_eq!(
            manifest.find_unit("a", "b", "x").unwrap_err().to_string(),
            r#"Building "b" has no unit "x"."#
        );
    }

    #[test]
    fn syntax_error_is_reported_not_panicked() {
        assert!(matches!(
            Manifest::parse("{\"apartments\": [", KINDS),
            Err(ManifestError::Syntax(_))
        ));
        assert!(matches!(
            Manifest::parse(r#"{"apartments":[],"extra":1}"#, KINDS),
            Err(ManifestError::Syntax(_))
        ));
        for (text, says) in [
            (r#"{"apartments":[],"extra":1}"#, "unknown field `extra`"),
            (
                &with_units(r#"{"id":"u","kind":"counter","title":"U","version":"1","colour":1}"#),
                "unknown field `colour`",
            ),
            (
                &with_units(r#"{"id":"u","id":"v","kind":"counter","title":"U","version":"1"}"#),
                "duplicate field `id`",
            ),
            (
                &with_units(r#"{"id":"u","kind":"counter","title":"U"}"#),
                "missing field `version`",
            ),
            (r#"{"apartments":[["a","A",[]]]}"#, "invalid type: sequence"),
        ] {
            match Manifest::parse(text, KINDS) {
                Err(ManifestError::Syntax(why)) => assert!(why.contains(says), "{text}: {why}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn empty_manifest_is_rejected() {
        assert_eq!(
            Manifest::parse(r#"{"apartments":[]}"#, KINDS),
            Err(ManifestError::NoApartment)
        );
    }

    #[test]
    fn unknown_kind_names_the_unit_and_the_known_kinds() {
        let err = Manifest::parse(
            &with_units(r#"{"id":"u","kind":"nope","title":"U","version":"1"}"#),
            KINDS,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"unit "a/b/u" has unknown kind "nope" (known: counter)"#
        );
    }

    /// A private key has one full key per unit, at most 64 in a
    /// building: a 65th unit could never make its first write to a key
    /// of a kind the others share.
    #[test]
    fn a_building_holds_no_more_units_than_a_private_key_has_room_for() {
        let units = |count: usize| {
            (0..count)
                .map(|n| format!(r#"{{"id":"u{n}","kind":"counter","title":"U","version":"1"}}"#))
                .collect::<Vec<_>>()
                .join(",")
        };
        let limit = gaesup_state_core::MAX_PRIVATE_KEYS_PER_BUILDING;
        assert!(Manifest::parse(&with_units(&units(limit)), KINDS).is_ok());
        let err = Manifest::parse(&with_units(&units(limit + 1)), KINDS).unwrap_err();
        assert_eq!(
            err.to_string(),
            "building a/b holds 65 units; keys shared by them allow at most 64"
        );
    }

    /// A private key has at most 256 full keys in an apartment, so its
    /// units are bounded there too, each building within its 64.
    #[test]
    fn an_apartment_holds_no_more_units_than_a_private_key_has_room_for() {
        let manifest = |buildings: usize| {
            let units = (0..52)
                .map(|n| format!(r#"{{"id":"u{n}","kind":"counter","title":"U","version":"1"}}"#))
                .collect::<Vec<_>>()
                .join(",");
            let buildings = (0..buildings)
                .map(|b| format!(r#"{{"id":"b{b}","title":"B","units":[{units}]}}"#))
                .collect::<Vec<_>>()
                .join(",");
            format!(r#"{{"apartments":[{{"id":"a","title":"A","buildings":[{buildings}]}}]}}"#)
        };
        assert!(Manifest::parse(&manifest(4), KINDS).is_ok());
        let err = Manifest::parse(&manifest(5), KINDS).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"apartment "a" holds 260 units; keys shared by them allow at most 256"#
        );
    }

    #[test]
    fn duplicate_unit_versions_are_rejected() {
        let unit = r#"{"id":"u","kind":"counter","title":"U","version":"1"}"#;
        let err = Manifest::parse(&with_units(&format!("{unit},{unit}")), KINDS).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"unit version id "u@1" appears twice in building a/b"#
        );
    }

    fn offering(active: &str) -> String {
        format!(
            r#"{{"apartments":[{{"id":"a","title":"A","buildings":[
                {{"id":"b","title":"B","active":{active},"units":[
                    {{"id":"u","kind":"counter","title":"Old","version":"1"}},
                    {{"id":"v","kind":"counter","title":"Other","version":"1"}},
                    {{"id":"u","kind":"counter","title":"New","version":"2"}}]}}]}}]}}"#
        )
    }

    #[test]
    fn the_active_version_is_the_one_shown() {
        for (active, title) in [("1", "Old"), ("2", "New")] {
            let manifest =
                Manifest::parse(&offering(&format!(r#"{{"u":"{active}"}}"#)), KINDS).unwrap();
            let (_, building, unit) = manifest.find_unit("a", "b", "u").unwrap();
            assert_eq!(unit.title, title);
            assert_eq!(building.offered("u"), ["1", "2"]);
            let shown: Vec<_> = building.shown().iter().map(|u| u.title.as_str()).collect();
            assert_eq!(
                shown,
                [title, "Other"],
                "each unit once, in first-offer order"
            );
            let other = if active == "1" { "2" } else { "1" };
            assert_eq!(
                building.version_label(unit),
                format!("v{active} (also offered: {other})")
            );
            assert_eq!(building.version_label(building.unit("v").unwrap()), "v1");
        }
    }

    #[test]
    fn several_versions_need_a_valid_active_one() {
        assert_eq!(
            Manifest::parse(&offering("{}"), KINDS)
                .unwrap_err()
                .to_string(),
            r#"unit "a/b/u" is offered in versions 1, 2 but "active" names none of them"#
        );
        assert_eq!(
            Manifest::parse(&offering(r#"{"u":"3"}"#), KINDS)
                .unwrap_err()
                .to_string(),
            r#""active" picks version "3" of unit "a/b/u", which is not offered (offered: 1, 2)"#
        );
        assert!(matches!(
            Manifest::parse(&offering(r#"{"u":"1","ghost":"1"}"#), KINDS),
            Err(ManifestError::UnknownActive { offered, .. }) if offered.is_empty()
        ));
    }

    #[test]
    fn hostile_ids_are_rejected() {
        for id in ["", "a/b", "..", "x y", "<img>", "é", &"x".repeat(65)] {
            let text = with_units(&format!(
                r#"{{"id":{},"kind":"counter","title":"U","version":"1"}}"#,
                serde_json::to_string(id).unwrap()
            ));
            assert!(
                matches!(
                    Manifest::parse(&text, KINDS),
                    Err(ManifestError::BadId { what: "unit", .. })
                ),
                "id {id:?} was accepted"
            );
        }
    }

    #[test]
    fn id_grammar_accepts_plain_ids() {
        for id in ["a", "main", "unit-2", "my_unit", &"x".repeat(64)] {
            assert_eq!(check_id(id), Ok(()), "{id:?}");
        }
    }
}
