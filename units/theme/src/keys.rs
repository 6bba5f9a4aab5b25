//! The theme key and the value it holds, declared the same way by the app
//! and by the relay.

use std::sync::Arc;

use gaesup_state_core::{KeySpec, Lifetime, Result, Scope, SharedKey, Strategy};
use serde::{Deserialize, Serialize};

/// A colour scheme.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Theme {
    /// Follow the operating system (`prefers-color-scheme`).
    #[default]
    System,
    /// Always light.
    Light,
    /// Always dark.
    Dark,
}

impl Theme {
    /// Every theme, in the order the switcher shows them.
    pub const ALL: [Theme; 3] = [Theme::System, Theme::Light, Theme::Dark];

    /// The label the switcher shows.
    pub fn label(self) -> &'static str {
        match self {
            Self::System => "System",
            Self::Light => "Light",
            Self::Dark => "Dark",
        }
    }

    /// The stored form, also the radio's `value`: `system`, `light`, `dark`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::Light => "light",
            Self::Dark => "dark",
        }
    }

    /// The `data-theme` attribute for this theme; `None` (no attribute)
    /// lets the style sheet follow the system.
    pub fn data_theme(self) -> Option<&'static str> {
        match self {
            Self::System => None,
            Self::Light => Some("light"),
            Self::Dark => Some("dark"),
        }
    }
}

/// The theme key: `global/theme`, persistent, last-write-wins.
pub fn theme_key() -> Result<SharedKey<Theme>> {
    SharedKey::builder("theme")
        .scope(Scope::Global)
        .lifetime(Lifetime::Persistent)
        .strategy(Strategy::LastWriteWins)
        .build()
}

/// Every key this unit declares: what a relay must know to apply its ops.
pub fn declarations() -> Result<Vec<Arc<KeySpec>>> {
    Ok(vec![Arc::clone(theme_key()?.spec())])
}
