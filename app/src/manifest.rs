//! The manifest: which apartments, buildings and units exist.
//!
//! The layout is data, not markup, so adding a unit means adding a manifest
//! entry plus its crate, never editing the shell. The manifest is compiled in
//! (`manifest.json` beside this file) because every unit it names must be
//! compiled in as well: shipping both in one artifact keeps them consistent,
//! costs no extra request and shows no loading state. It is still parsed and
//! validated at start-up, and a bad one renders an error page naming the
//! problem rather than a blank screen.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

/// The manifest shipped with this build.
pub const BUNDLED: &str = include_str!("manifest.json");

/// Longest id accepted for an apartment, building or unit.
pub const MAX_ID_LEN: usize = 64;

/// The whole layout: one or more apartments.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Apartments in display order; the first is shown at `/`.
    pub apartments: Vec<ApartmentSpec>,
}

/// One apartment: a whole application made of buildings.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ApartmentSpec {
    /// Address segment, unique among apartments.
    pub id: String,
    /// Human-readable name.
    pub title: String,
    /// Buildings in display order.
    pub buildings: Vec<BuildingSpec>,
}

/// One building: a region of the page grouping units.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
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
    #[serde(default)]
    pub active: BTreeMap<String, String>,
}

/// One unit placed in a building.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
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

/// Why a manifest was rejected. Each variant names the offending entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The text is not valid JSON of the manifest's shape.
    #[error("manifest is not valid: {0}")]
    Syntax(String),
    /// No apartment at all: there would be nothing to show.
    #[error("manifest lists no apartment")]
    NoApartment,
    /// An id breaks the id grammar.
    #[error("{what} id {id:?} is invalid: {reason}")]
    BadId {
        /// Which kind of entry (apartment, building, unit).
        what: &'static str,
        /// The id as written.
        id: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// Two siblings share an id, so their addresses would collide.
    #[error("{what} id {id:?} appears twice in {parent}")]
    Duplicate {
        /// Which kind of entry.
        what: &'static str,
        /// The repeated id.
        id: String,
        /// Where the siblings live.
        parent: String,
    },
    /// A unit is offered in several versions and none is marked active.
    #[error("unit {unit:?} is offered in versions {offered} but \"active\" names none of them")]
    NoActiveVersion {
        /// The unit's address.
        unit: String,
        /// The versions offered, comma-separated.
        offered: String,
    },
    /// `active` names a unit or version the building does not offer.
    #[error(
        "\"active\" picks version {version:?} of unit {unit:?}, which is not offered (offered: {offered})"
    )]
    UnknownActive {
        /// The unit's address.
        unit: String,
        /// The version named.
        version: String,
        /// The versions offered, comma-separated (empty: no such unit).
        offered: String,
    },
    /// A unit names a kind the shell has no crate for.
    #[error("unit {unit:?} has unknown kind {kind:?} (known: {known})")]
    UnknownKind {
        /// The unit's address.
        unit: String,
        /// The kind as written.
        kind: String,
        /// The kinds this build knows, comma-separated.
        known: String,
    },
}

/// Checks an apartment, building or unit id against the id grammar:
/// non-empty, at most [`MAX_ID_LEN`] bytes, ASCII letters, digits, `-` and
/// `_` only. That is stricter than the state keys' grammar on purpose: ids
/// are URL segments and DOM id fragments, so they must need no escaping.
pub fn check_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("it is empty");
    }
    if id.len() > MAX_ID_LEN {
        return Err("it is longer than 64 bytes");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("only ASCII letters, digits, '-' and '_' are allowed");
    }
    Ok(())
}

impl Manifest {
    /// Parses and validates a manifest; `known_kinds` are the unit kinds this
    /// build can render.
    pub fn parse(text: &str, known_kinds: &[&str]) -> Result<Self, ManifestError> {
        let manifest: Manifest =
            serde_json::from_str(text).map_err(|e| ManifestError::Syntax(e.to_string()))?;
        manifest.validate(known_kinds)?;
        Ok(manifest)
    }

    fn validate(&self, known_kinds: &[&str]) -> Result<(), ManifestError> {
        if self.apartments.is_empty() {
            return Err(ManifestError::NoApartment);
        }
        unique(
            "apartment",
            "the manifest",
            self.apartments.iter().map(|a| &a.id),
        )?;
        for apartment in &self.apartments {
            valid("apartment", &apartment.id)?;
            let here = format!("apartment {:?}", apartment.id);
            unique("building", &here, apartment.buildings.iter().map(|b| &b.id))?;
            for building in &apartment.buildings {
                valid("building", &building.id)?;
                let here = format!("building {}/{}", apartment.id, building.id);
                let versions: Vec<String> = building
                    .units
                    .iter()
                    .map(|u| format!("{}@{}", u.id, u.version))
                    .collect();
                unique("unit version", &here, versions.iter())?;
                building.check_active(&apartment.id)?;
                for unit in &building.units {
                    valid("unit", &unit.id)?;
                    if !known_kinds.contains(&unit.kind.as_str()) {
                        return Err(ManifestError::UnknownKind {
                            unit: format!("{}/{}/{}", apartment.id, building.id, unit.id),
                            kind: unit.kind.clone(),
                            known: known_kinds.join(", "),
                        });
                    }
                }
            }
        }
        Ok(())
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

/// Why an address names nothing in the manifest; the message is shown on
/// the 404 page.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Missing {
    /// No apartment with that id.
    #[error("There is no apartment {0:?}.")]
    Apartment(String),
    /// The apartment exists but has no such building.
    #[error("Apartment {apartment:?} has no building {building:?}.")]
    Building {
        /// The apartment's id.
        apartment: String,
        /// The missing building's id.
        building: String,
    },
    /// The building exists but has no such unit.
    #[error("Building {building:?} has no unit {unit:?}.")]
    Unit {
        /// The building's id.
        building: String,
        /// The missing unit's id.
        unit: String,
    },
}

impl Manifest {
    /// The apartment named by an address.
    pub fn find_apartment(&self, apartment: &str) -> Result<&ApartmentSpec, Missing> {
        self.apartment(apartment)
            .ok_or_else(|| Missing::Apartment(apartment.to_owned()))
    }

    /// The apartment and building named by an address.
    pub fn find_building(
        &self,
        apartment: &str,
        building: &str,
    ) -> Result<(&ApartmentSpec, &BuildingSpec), Missing> {
        let found = self.find_apartment(apartment)?;
        let inner = found.building(building).ok_or_else(|| Missing::Building {
            apartment: apartment.to_owned(),
            building: building.to_owned(),
        })?;
        Ok((found, inner))
    }

    /// The apartment, building and unit named by a unit address.
    pub fn find_unit(
        &self,
        apartment: &str,
        building: &str,
        unit: &str,
    ) -> Result<(&ApartmentSpec, &BuildingSpec, &UnitSpec), Missing> {
        let (found, inner) = self.find_building(apartment, building)?;
        let leaf = inner.unit(unit).ok_or_else(|| Missing::Unit {
            building: building.to_owned(),
            unit: unit.to_owned(),
        })?;
        Ok((found, inner, leaf))
    }
}

impl ApartmentSpec {
    /// The building with this id.
    pub fn building(&self, id: &str) -> Option<&BuildingSpec> {
        self.buildings.iter().find(|b| b.id == id)
    }
}

impl BuildingSpec {
    /// The unit shown under this id: its active version.
    pub fn unit(&self, id: &str) -> Option<&UnitSpec> {
        let mut offered = self.units.iter().filter(|u| u.id == id);
        match self.active.get(id) {
            Some(version) => offered.find(|u| &u.version == version),
            None => offered.next(),
        }
    }

    /// The units shown, in display order: each unit once, in its active
    /// version.
    pub fn shown(&self) -> Vec<&UnitSpec> {
        let mut seen = HashSet::new();
        self.units
            .iter()
            .filter(|u| seen.insert(u.id.as_str()))
            .filter_map(|u| self.unit(&u.id))
            .collect()
    }

    /// The version text of a unit's frame: `v1.2.0`, plus the other
    /// versions on offer when there are several.
    pub fn version_label(&self, unit: &UnitSpec) -> String {
        let others: Vec<&str> = self
            .offered(&unit.id)
            .into_iter()
            .filter(|v| *v != unit.version)
            .collect();
        if others.is_empty() {
            format!("v{}", unit.version)
        } else {
            format!("v{} (also offered: {})", unit.version, others.join(", "))
        }
    }

    /// Every version of unit `id` this building offers, in manifest order.
    pub fn offered(&self, id: &str) -> Vec<&str> {
        self.units
            .iter()
            .filter(|u| u.id == id)
            .map(|u| u.version.as_str())
            .collect()
    }

    /// A unit offered in several versions needs an active one; every
    /// `active` entry must pick an offered version.
    fn check_active(&self, apartment: &str) -> Result<(), ManifestError> {
        let address = |unit: &str| format!("{apartment}/{}/{unit}", self.id);
        for (unit, version) in &self.active {
            let offered = self.offered(unit);
            if !offered.contains(&version.as_str()) {
                return Err(ManifestError::UnknownActive {
                    unit: address(unit),
                    version: version.clone(),
                    offered: offered.join(", "),
                });
            }
        }
        for unit in &self.units {
            let offered = self.offered(&unit.id);
            if offered.len() > 1 && !self.active.contains_key(&unit.id) {
                return Err(ManifestError::NoActiveVersion {
                    unit: address(&unit.id),
                    offered: offered.join(", "),
                });
            }
        }
        Ok(())
    }
}

fn valid(what: &'static str, id: &str) -> Result<(), ManifestError> {
    check_id(id).map_err(|reason| ManifestError::BadId {
        what,
        id: id.to_owned(),
        reason,
    })
}

fn unique<'a>(
    what: &'static str,
    parent: &str,
    ids: impl Iterator<Item = &'a String>,
) -> Result<(), ManifestError> {
    let mut seen = HashSet::new();
    for id in ids {
        if !seen.insert(id) {
            return Err(ManifestError::Duplicate {
                what,
                id: id.clone(),
                parent: parent.to_owned(),
            });
        }
    }
    Ok(())
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
