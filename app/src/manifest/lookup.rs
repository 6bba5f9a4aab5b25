//! Finding what an address names: the apartment, building and unit, and
//! which version of a unit a building shows.

use std::collections::HashSet;

use super::{ApartmentSpec, BuildingSpec, Manifest, UnitSpec};

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
}
