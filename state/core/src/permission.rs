//! Per-key read and write permissions.
//!
//! Each key lists who may read (get, subscribe) and who may write (set, and
//! incoming ops claiming that writer). Scope comes first: nobody outside a
//! key's scope can address it at all; the lists narrow access *within* the
//! scope. This keeps one micro-frontend's bug from corrupting another's
//! data. It is not a security boundary against hostile scripts on the same
//! origin, which can read localStorage directly: keep no secrets in state.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::id::{BuildingId, UnitAddress, UnitId};

/// Something a permission list can name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Principal {
    /// Every unit with this id (in any building within the key's scope).
    Unit(UnitId),
    /// Every unit in a building with this id.
    Building(BuildingId),
}

impl Principal {
    /// Whether `address` is this principal.
    pub fn matches(&self, address: &UnitAddress) -> bool {
        match self {
            Self::Unit(unit) => address.unit() == unit,
            Self::Building(building) => address.building() == building,
        }
    }
}

/// Who may perform one kind of action.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Any unit within the key's scope.
    #[default]
    Anyone,
    /// Only units matching one of these principals.
    Only(Vec<Principal>),
}

impl Access {
    /// Any unit within the key's scope.
    pub fn anyone() -> Self {
        Self::Anyone
    }

    /// Only units with these ids (validated).
    pub fn units<I, S>(ids: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        ids.into_iter()
            .map(|id| UnitId::new(id.as_ref()).map(Principal::Unit))
            .collect::<Result<Vec<_>>>()
            .map(Self::Only)
    }

    /// Only units in buildings with these ids (validated).
    pub fn buildings<I, S>(ids: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        ids.into_iter()
            .map(|id| BuildingId::new(id.as_ref()).map(Principal::Building))
            .collect::<Result<Vec<_>>>()
            .map(Self::Only)
    }

    /// Adds principals to an `Only` list (turning `Anyone` into a list).
    pub fn or(self, other: Access) -> Self {
        match (self, other) {
            (Self::Anyone, _) | (_, Self::Anyone) => Self::Anyone,
            (Self::Only(mut a), Self::Only(b)) => {
                a.extend(b);
                Self::Only(a)
            }
        }
    }

    /// Whether `address` may act.
    pub fn allows(&self, address: &UnitAddress) -> bool {
        match self {
            Self::Anyone => true,
            Self::Only(principals) => principals.iter().any(|p| p.matches(address)),
        }
    }
}

/// A key's read and write lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Permissions {
    /// Who may get and subscribe.
    pub read: Access,
    /// Who may set (and whose incoming ops are accepted).
    pub write: Access,
}

/// What a unit tried to do, for [`Error::PermissionDenied`](crate::Error::PermissionDenied).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Get a value.
    Read,
    /// Write a value (locally or through an incoming op).
    Write,
    /// Subscribe to changes.
    Subscribe,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Subscribe => "subscribe to",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_match_units_and_buildings() {
        let cart: UnitAddress = "shop/main/cart".parse().unwrap();
        let header: UnitAddress = "shop/top/header".parse().unwrap();
        let access = Access::units(["cart"])
            .unwrap()
            .or(Access::buildings(["admin"]).unwrap());
        assert!(access.allows(&cart));
        assert!(!access.allows(&header));
        assert!(access.allows(&"shop/admin/x".parse().unwrap()));
        assert!(Access::anyone().allows(&header));
        assert!(Access::units(["bad/id"]).is_err());
    }
}
