//! Addresses of apartments, buildings and units (DESIGN.md §1).
//!
//! Every link in the shell is built here, so the address scheme lives in
//! one place.

/// The root: shows the first apartment.
pub fn home() -> String {
    "/".to_owned()
}

/// `/apartment/{apartment}`
pub fn apartment(apartment: &str) -> String {
    format!("/apartment/{apartment}")
}

/// `/apartment/{apartment}/building/{building}`
pub fn building(apartment: &str, building: &str) -> String {
    format!("/apartment/{apartment}/building/{building}")
}

/// `/apartment/{apartment}/building/{building}/unit/{unit}`
pub fn unit(apartment: &str, building: &str, unit: &str) -> String {
    format!("/apartment/{apartment}/building/{building}/unit/{unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_address_follows_the_design() {
        assert_eq!(
            unit("main", "lobby", "counter"),
            "/apartment/main/building/lobby/unit/counter"
        );
    }

    #[test]
    fn each_address_extends_its_parent() {
        assert!(building("a", "b").starts_with(&apartment("a")));
        assert!(unit("a", "b", "u").starts_with(&building("a", "b")));
    }
}
