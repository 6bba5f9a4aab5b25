//! `cargo xtask new-unit <name> --framework react|svelte|vue`: a unit
//! written with a JavaScript framework, copied from the app's own unit of
//! that framework (`units/<framework>-counter`: its crate, which declares
//! the keys, and its `js/`, which `js/build.mjs` bundles), with a
//! Playwright spec written for it.

use super::Names;

/// A framework `--framework` accepts, and the unit it copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framework {
    /// What `--framework` takes.
    pub name: &'static str,
    /// How the framework is written.
    pub label: &'static str,
    /// The unit (directory under `units/`) the new one is copied from.
    pub unit: &'static str,
}

/// Every framework `--framework` accepts.
pub const FRAMEWORKS: &[Framework] = &[
    Framework {
        name: "react",
        label: "React",
        unit: "react-counter",
    },
    Framework {
        name: "svelte",
        label: "Svelte",
        unit: "svelte-counter",
    },
    Framework {
        name: "vue",
        label: "Vue",
        unit: "vue-counter",
    },
];

/// The framework named `name`, or an error listing them.
pub fn find(name: &str) -> Result<Framework, String> {
    FRAMEWORKS
        .iter()
        .find(|f| f.name == name)
        .copied()
        .ok_or_else(|| {
            let known: Vec<_> = FRAMEWORKS.iter().map(|f| f.name).collect();
            format!(
                "unknown framework {name:?}; --framework takes {}",
                known.join(", ")
            )
        })
}

impl Framework {
    /// The names of the unit copied, for renaming.
    pub fn source_names(&self) -> Names {
        Names {
            kebab: self.unit.to_owned(),
            snake: self.unit.replace('-', "_"),
            pascal: self
                .unit
                .split('-')
                .map(super::names::capitalized)
                .collect(),
            title: String::new(),
        }
    }

    /// The new unit's Playwright spec: it counts, saves a note shown back
    /// as text, and a thrown error stays in its frame, on its own address.
    pub fn spec(&self, names: &Names, building: &str) -> String {
        SPEC.replace("{label}", self.label)
            .replace("{kebab}", &names.kebab)
            .replace("{title}", &names.title)
            .replace("{building}", building)
    }
}

const SPEC: &str = r#"import { test, expect } from './support/fixtures';
import { FrameworkUnit } from './support/frameworks';

// The {title} unit, written in {label} (units/{kebab}/js/), on its own
// address: it counts, saves the apartment's shared note and shows it back
// as text, and an error it throws stays in its frame, with a retry.
// Made by `cargo xtask new-unit --framework`: extend it with the unit.
const BUILDING = '{building}';
const ADDRESS = `/apartment/main/building/${BUILDING}/unit/{kebab}`;
const UNIT = { name: '{label}', title: '{title}', address: `main/${BUILDING}/{kebab}` };

test.describe('the {kebab} unit', () => {
  test('counts, and saves a note shown back as text', async ({ page }) => {
    await page.goto(ADDRESS);
    const unit = new FrameworkUnit(page, UNIT);
    await expect(unit.value()).toHaveText('0');
    await unit.increment();
    await expect(unit.value()).toHaveText('1');
    await unit.saveNote('<b>hello</b>');
    await expect(unit.sharedNote()).toHaveText('<b>hello</b>');
    await expect(unit.root.locator('b')).toHaveCount(0);
    await expect(unit.root.getByText(`Written by main/${BUILDING}/{kebab}`)).toBeVisible();
  });

  test('an error it throws shows the fallback in its frame; retry brings it back', async ({ page }) => {
    await page.goto(ADDRESS);
    const unit = new FrameworkUnit(page, UNIT);
    await expect(unit.value()).toHaveText('0');
    await unit.breakIt();
    await expect(unit.failure()).toContainText('This unit failed:');
    await unit.retry();
    await expect(unit.value()).toHaveText('0');
  });
});
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_the_three_frameworks_and_refuses_others() {
        assert_eq!(find("svelte").unwrap().unit, "svelte-counter");
        let error = find("angular").unwrap_err();
        assert!(error.contains("react, svelte, vue"), "{error}");
    }

    #[test]
    fn the_spec_names_the_unit_and_its_building() {
        let names = Names::parse("tool-rack").unwrap();
        let spec = find("react").unwrap().spec(&names, "yard");
        assert!(spec.contains("const BUILDING = 'yard';"));
        assert!(spec.contains("title: 'Tool rack'"));
        assert!(spec.contains("/unit/tool-rack`"));
        for placeholder in ["{label}", "{kebab}", "{title}", "{building}"] {
            assert!(!spec.contains(placeholder), "{placeholder} left");
        }
    }
}
