//! What makes a manifest valid: at least one apartment, ids in the id
//! grammar and unique among siblings, known unit kinds, an `active`
//! version for every unit offered in several, and no more units or
//! buildings than a key's declaration has room for.

use std::collections::HashSet;

use gaesup_state::core::{MAX_KEYS_PER_DECLARATION, MAX_PRIVATE_KEYS_PER_BUILDING};

use super::{BuildingSpec, MAX_ID_LEN, Manifest};

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
    /// More units in a building, or buildings or units in an apartment,
    /// than a key's declaration may have full keys there
    /// ([`MAX_PRIVATE_KEYS_PER_BUILDING`], [`MAX_KEYS_PER_DECLARATION`]):
    /// the units past it could never make their first write to a key
    /// they share.
    #[error("{place} holds {count} {what}; keys shared by them allow at most {limit}")]
    TooMany {
        /// What there are too many of (`"units"`, `"buildings"`).
        what: &'static str,
        /// The building or apartment.
        place: String,
        /// How many it holds.
        count: usize,
        /// The most it may hold.
        limit: usize,
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
    pub(super) fn validate(&self, known_kinds: &[&str]) -> Result<(), ManifestError> {
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
            bounded(
                "buildings",
                &here,
                apartment.buildings.len(),
                MAX_KEYS_PER_DECLARATION,
            )?;
            let units: usize = apartment
                .buildings
                .iter()
                .map(BuildingSpec::unit_count)
                .sum();
            bounded("units", &here, units, MAX_KEYS_PER_DECLARATION)?;
            for building in &apartment.buildings {
                valid("building", &building.id)?;
                let here = format!("building {}/{}", apartment.id, building.id);
                bounded(
                    "units",
                    &here,
                    building.unit_count(),
                    MAX_PRIVATE_KEYS_PER_BUILDING,
                )?;
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
}

impl BuildingSpec {
    /// How many units it holds: each address once, however many versions
    /// of it are offered.
    fn unit_count(&self) -> usize {
        self.units
            .iter()
            .map(|unit| unit.id.as_str())
            .collect::<HashSet<_>>()
            .len()
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

fn bounded(
    what: &'static str,
    place: &str,
    count: usize,
    limit: usize,
) -> Result<(), ManifestError> {
    if count > limit {
        return Err(ManifestError::TooMany {
            what,
            place: place.to_owned(),
            count,
            limit,
        });
    }
    Ok(())
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
