//! Theme unit: one colour-scheme choice that follows the user everywhere.
//!
//! The user picks System, Light or Dark once; every page of every
//! apartment on this origin uses it, after reloads and in every open tab.
//! The unit shows the choice as a labelled radio group (native radios, so
//! Tab reaches the group and the arrow keys move the choice).
//!
//! It demonstrates the **global** scope: the one key here is shared by
//! every apartment, where a building or apartment key would not be.
//!
//! # The key
//!
//! [`theme_key`] is `global/theme`:
//!
//! - scope **Global**: a colour scheme is a preference of the person, not of
//!   one apartment, so the annex shows the theme picked in the main
//!   apartment;
//! - lifetime **Persistent**: a preference must survive a restart;
//! - strategy **last-write-wins**: a theme is one whole value; if two tabs
//!   pick at once, every tab settles on the same (latest) pick, and nothing
//!   is worth asking the user about.
//!
//! The value is [`Theme`], stored as `"system"`, `"light"` or `"dark"`
//! (what a JavaScript unit reading the key sees too).
//!
//! # Who applies it
//!
//! The switcher only records the choice. [`apply_theme`] puts it on the
//! page (`<html data-theme="light|dark">`, no attribute for System); the
//! shell calls it from one effect on every page, so the theme applies where
//! the switcher is not mounted and there is a single owner of the
//! attribute. Style sheets key their tokens on `:root[data-theme="dark"]`
//! and `:root[data-theme="light"]`, and follow `prefers-color-scheme`
//! without the attribute.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod keys;
#[cfg(feature = "view")]
mod view;

pub use keys::{Theme, theme_key};
#[cfg(feature = "view")]
pub use view::{ThemeSwitcher, apply_theme};

#[cfg(test)]
#[cfg(feature = "view")]
mod tests {
    use super::*;
    use gaesup_state::core::{ManualClock, TabId};
    use gaesup_state::prelude::*;
    use gaesup_state::{StateManager, UnitAddress};
    use leptos::prelude::*;

    #[test]
    fn theme_is_a_global_persistent_last_write_wins_key() {
        let key = theme_key().unwrap();
        let spec = key.spec();
        assert_eq!(spec.scope(), Scope::Global);
        assert_eq!(spec.lifetime(), Lifetime::Persistent);
        assert_eq!(spec.strategy(), Strategy::LastWriteWins);
        assert_eq!(spec.default_value(), &serde_json::json!("system"));
    }

    #[test]
    fn themes_are_stored_lowercase_and_read_back() {
        for theme in Theme::ALL {
            let json = serde_json::to_value(theme).unwrap();
            assert_eq!(json, serde_json::json!(theme.as_str()));
            assert_eq!(serde_json::from_value::<Theme>(json).unwrap(), theme);
        }
        assert!(serde_json::from_value::<Theme>(serde_json::json!("Dark")).is_err());
    }

    #[test]
    fn only_light_and_dark_set_the_attribute() {
        assert_eq!(Theme::System.data_theme(), None);
        assert_eq!(Theme::Light.data_theme(), Some("light"));
        assert_eq!(Theme::Dark.data_theme(), Some("dark"));
        assert_eq!(Theme::default(), Theme::System);
    }

    #[test]
    fn apply_theme_is_a_no_op_natively() {
        apply_theme(Theme::Dark);
    }

    #[test]
    fn every_apartment_sees_the_same_theme() {
        let owner = Owner::new();
        owner.with(|| {
            let state = StateManager::new(TabId::new(1), ManualClock::new(0));
            let key = theme_key().unwrap();
            state.declare(&key).unwrap();
            let main: UnitAddress = "main/settings/theme".parse().unwrap();
            let annex: UnitAddress = "annex/settings/theme".parse().unwrap();
            assert_eq!(state.get(&annex, &key).unwrap(), Theme::System);
            state.set(&main, &key, Theme::Dark).unwrap();
            assert_eq!(state.get(&annex, &key).unwrap(), Theme::Dark);
            assert_eq!(key.full_key(&annex).as_str(), "global/theme");
        });
    }
}
