//! Addresses of apartments, buildings and units (DESIGN.md §1).
//!
//! Every link in the shell is built here, so the address scheme lives in
//! one place. Links carry the deployment's base path (see [`base`]): the
//! router strips it when matching, but does not add it to absolute links.

/// Where the site is served from, without a trailing slash: `""` at the
/// root, `"/demo"` when built with `--public-url /demo/`. Read from the
/// `<base href>` Trunk writes, so one build knows its own deployment.
pub fn base() -> String {
    thread_local! {
        static BASE: String = base_from_href(base_href().as_deref());
    }
    BASE.with(Clone::clone)
}

#[cfg(target_arch = "wasm32")]
fn base_href() -> Option<String> {
    leptos::prelude::document()
        .query_selector("base[href]")
        .ok()
        .flatten()
        .and_then(|base| base.get_attribute("href"))
}

#[cfg(not(target_arch = "wasm32"))]
fn base_href() -> Option<String> {
    None
}

/// The router base for a `<base href>` value (only its path is used).
pub fn base_from_href(href: Option<&str>) -> String {
    let Some(href) = href else {
        return String::new();
    };
    // An absolute URL's path starts after "scheme://host".
    let path = match href.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => href,
    };
    path.trim_end_matches('/').to_owned()
}

/// The root: shows the first apartment.
pub fn home() -> String {
    format!("{}/", base())
}

/// `/apartment/{apartment}`
pub fn apartment(apartment: &str) -> String {
    format!("{}/apartment/{apartment}", base())
}

/// `/apartment/{apartment}/building/{building}`
pub fn building(apartment: &str, building: &str) -> String {
    format!("{}/apartment/{apartment}/building/{building}", base())
}

/// `/apartment/{apartment}/building/{building}/unit/{unit}`
pub fn unit(apartment: &str, building: &str, unit: &str) -> String {
    format!(
        "{}/apartment/{apartment}/building/{building}/unit/{unit}",
        base()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_is_the_path_of_the_base_href_without_trailing_slash() {
        assert_eq!(base_from_href(None), "");
        assert_eq!(base_from_href(Some("/")), "");
        assert_eq!(base_from_href(Some("/demo/")), "/demo");
        assert_eq!(base_from_href(Some("/a/b/")), "/a/b");
        assert_eq!(base_from_href(Some("https://example.org/demo/")), "/demo");
        assert_eq!(base_from_href(Some("https://example.org")), "");
    }

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
