//! Filters as routes inside the unit's own address.
//!
//! TodoMVC routes `#/`, `#/active` and `#/completed`. Here the unit has a
//! real address, `/apartment/{a}/building/{b}/unit/{u}`, and the shell
//! routes everything below it to the same unit, so the filters are
//! `{address}`, `{address}/active` and `{address}/completed`: each click is
//! a history entry, back and forward move between filters, and a filter
//! can be bookmarked.

use crate::model::Todo;

/// Which todos the list shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Filter {
    /// Every todo (the unit's own address).
    #[default]
    All,
    /// Todos not done (`{address}/active`).
    Active,
    /// Todos done (`{address}/completed`).
    Completed,
}

impl Filter {
    /// The three filters, in the order the footer links them.
    pub const ALL: [Filter; 3] = [Filter::All, Filter::Active, Filter::Completed];

    /// The link text.
    pub fn label(self) -> &'static str {
        match self {
            Self::All => "All",
            Self::Active => "Active",
            Self::Completed => "Completed",
        }
    }

    /// Whether the list shows `todo` under this filter.
    pub fn shows(self, todo: &Todo) -> bool {
        match self {
            Self::All => true,
            Self::Active => !todo.completed,
            Self::Completed => todo.completed,
        }
    }

    /// The address of this filter under the unit's address `base`.
    pub fn href(self, base: &str) -> String {
        match self {
            Self::All => base.to_owned(),
            Self::Active => format!("{base}/active"),
            Self::Completed => format!("{base}/completed"),
        }
    }

    /// The filter the current `path` selects for the unit at `base`.
    ///
    /// Anything that is not one of the unit's filter routes shows all
    /// todos: another page (the apartment, where many units render
    /// together), the bare address, or an unknown sub-route.
    pub fn from_path(base: &str, path: &str) -> Filter {
        match own_rest(base, path).map(|rest| rest.trim_matches('/')) {
            Some("active") => Self::Active,
            Some("completed") => Self::Completed,
            _ => Self::All,
        }
    }
}

/// The path the site is deployed under, from the `<base href>` of the
/// page, without a trailing slash: `""` at the root, `"/demo"` for a build
/// made with `--public-url /demo/`. The router strips it when matching but
/// neither removes it from the location nor adds it to links, so the unit
/// puts it in front of its own address. The same rule as the shell's, so
/// both agree on where the unit lives.
pub fn deployment_base(base_href: Option<&str>) -> String {
    let Some(href) = base_href else {
        return String::new();
    };
    // An absolute URL's path starts after "scheme://host".
    let path = match href.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |at| &rest[at..]),
        None => href,
    };
    path.trim_end_matches('/').to_owned()
}

/// Whether `path` is the unit's own address `base` or one of its
/// sub-routes, i.e. the unit is shown on its own (focused).
pub fn is_own_address(base: &str, path: &str) -> bool {
    own_rest(base, path).is_some()
}

/// What follows `base` in `path`, if `path` is at or below `base`
/// (`/unit/todo2` is not below `/unit/todo`).
fn own_rest<'p>(base: &str, path: &'p str) -> Option<&'p str> {
    let rest = path.strip_prefix(base)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "/apartment/main/building/desk/unit/todo";

    #[test]
    fn each_filter_route_parses_back_to_its_filter() {
        for filter in Filter::ALL {
            assert_eq!(Filter::from_path(BASE, &filter.href(BASE)), filter);
        }
    }

    #[test]
    fn filter_addresses_extend_the_unit_address() {
        assert_eq!(Filter::All.href(BASE), BASE);
        assert_eq!(Filter::Active.href(BASE), format!("{BASE}/active"));
        assert_eq!(Filter::Completed.href(BASE), format!("{BASE}/completed"));
    }

    #[test]
    fn trailing_slashes_are_tolerated() {
        assert_eq!(Filter::from_path(BASE, &format!("{BASE}/")), Filter::All);
        assert_eq!(
            Filter::from_path(BASE, &format!("{BASE}/active/")),
            Filter::Active
        );
    }

    #[test]
    fn other_pages_and_unknown_routes_show_all() {
        assert_eq!(Filter::from_path(BASE, "/"), Filter::All);
        assert_eq!(Filter::from_path(BASE, "/apartment/main"), Filter::All);
        assert_eq!(
            Filter::from_path(BASE, &format!("{BASE}/nonsense")),
            Filter::All
        );
        // A sibling whose id merely starts with ours is not our address.
        assert_eq!(
            Filter::from_path(BASE, &format!("{BASE}2/active")),
            Filter::All
        );
    }

    #[test]
    fn deployment_base_is_the_base_href_path_without_trailing_slash() {
        assert_eq!(deployment_base(None), "");
        assert_eq!(deployment_base(Some("/")), "");
        assert_eq!(deployment_base(Some("/demo/")), "/demo");
        assert_eq!(deployment_base(Some("https://example.org/a/b/")), "/a/b");
        assert_eq!(deployment_base(Some("https://example.org")), "");
    }

    #[test]
    fn filters_work_under_a_deployment_base() {
        let own = format!("/demo{BASE}");
        let active = Filter::Active.href(&own);
        assert_eq!(active, format!("/demo{BASE}/active"));
        assert_eq!(Filter::from_path(&own, &active), Filter::Active);
        assert!(is_own_address(&own, &active));
        assert!(!is_own_address(&own, "/demo/"));
    }

    #[test]
    fn focused_only_at_or_below_the_unit_address() {
        assert!(is_own_address(BASE, BASE));
        assert!(is_own_address(BASE, &format!("{BASE}/completed")));
        assert!(!is_own_address(BASE, "/"));
        assert!(!is_own_address(BASE, "/apartment/main/building/desk"));
        assert!(!is_own_address(BASE, &format!("{BASE}2")));
    }
}
