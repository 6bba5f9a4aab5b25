//! Declarations, access checks, and the apartment a replica serves.

use std::sync::Arc;

use super::{Change, LoadReport, Replica};
use crate::error::{Error, Result};
use crate::id::{ApartmentId, KeyName, UnitAddress};
use crate::key::{KeySpec, SharedKey};
use crate::limits::{MAX_KEYS_PER_DECLARATION, MAX_PRIVATE_KEYS_PER_BUILDING};
use crate::message::Message;
use crate::permission::Action;
use crate::scope::{FullKey, Scope};
use crate::storage::Storage;
use crate::vec_map::VecMap;

/// What declaring a key brought in: writes that were waiting for it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Declared {
    /// Values changed by ops and states held until the key was declared
    /// (another tab wrote it first), and by held restores.
    pub changes: Vec<Change>,
    /// What to broadcast: the writes of restores held for this key.
    pub message: Option<Message>,
    /// Held items refused now that the key's rules are known.
    pub errors: Vec<Error>,
    /// What loading the key's stored entries did, when a storage was
    /// given ([`Replica::declare_from`]); `Err` when the storage could not
    /// list its keys.
    pub loaded: Option<Result<LoadReport>>,
}

impl Replica {
    /// Ties the replica to one apartment: ops, states and events of other
    /// apartments are refused ([`Error::ForeignApartment`]), storage entries
    /// of other apartments are left alone, and local writes must come from
    /// units of this apartment. Binding again to the same apartment is a
    /// no-op; to another one, an error.
    pub fn bind(&mut self, apartment: ApartmentId) -> Result<()> {
        match &self.apartment {
            Some(bound) if *bound != apartment => Err(Error::ForeignApartment {
                key: format!("apartment {apartment}"),
                apartment: bound.clone(),
            }),
            _ => {
                self.apartment = Some(apartment);
                // The key opened last passed the apartment check of an
                // unbound replica (see `Opened`).
                *self.opened.get_mut() = None;
                Ok(())
            }
        }
    }

    /// The apartment this replica serves, once bound.
    pub fn apartment(&self) -> Option<&ApartmentId> {
        self.apartment.as_ref()
    }

    /// Whether `key` belongs to another apartment than the bound one.
    pub(super) fn is_foreign(&self, key: &FullKey) -> bool {
        match (&self.apartment, key.apartment()) {
            (Some(bound), Some(apartment)) => bound.as_str() != apartment,
            _ => false,
        }
    }

    pub(super) fn check_apartment(&self, key: &FullKey) -> Result<()> {
        match &self.apartment {
            Some(bound) if self.is_foreign(key) => Err(Error::ForeignApartment {
                key: key.to_string(),
                apartment: bound.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Declares a key. Declaring the same key again with the same rules is
    /// a no-op (units re-mount); with different rules or another Rust type
    /// it is [`Error::KeyMismatch`].
    ///
    /// Writes to the key that arrived before it was declared here (another
    /// tab has more units mounted) were kept: they are admitted now, as are
    /// restores that named it, and [`Declared`] reports what they changed.
    pub fn declare<T>(&mut self, key: &SharedKey<T>) -> Result<Declared> {
        self.declare_from(key, None)
    }

    /// [`declare`](Self::declare), loading a newly declared key's stored
    /// entries from `storage` (that of its lifetime) *before* the writes
    /// held for it are admitted, as a page does when a unit shows.
    ///
    /// The order matters for a merge key: ops applied over what is stored
    /// are judged field by field, while a stored state joined over a newer
    /// fold could lose the fields the fold does not name (see
    /// [`MergeState`](crate::MergeState)).
    pub fn declare_from<T>(
        &mut self,
        key: &SharedKey<T>,
        storage: Option<&mut dyn Storage>,
    ) -> Result<Declared> {
        let spec = key.spec();
        let by_name = self.specs.get_or_default(spec.scope());
        match by_name.get(spec.name().as_str()) {
            Some(existing) if Arc::ptr_eq(existing, spec) => Ok(Declared::default()),
            Some(existing) => existing
                .same_declaration(spec)
                .map(|()| Declared::default())
                .map_err(|reason| Error::KeyMismatch {
                    key: spec.label(),
                    reason,
                }),
            None => {
                by_name.insert(spec.name().clone(), Arc::clone(spec));
                let loaded = storage.map(|storage| self.load_declared(spec, storage));
                let mut declared = self.release_held(spec);
                declared.loaded = loaded;
                Ok(declared)
            }
        }
    }

    /// The declaration a typed key refers to, checked to be the same.
    pub(super) fn registered(&self, spec: &Arc<KeySpec>) -> Result<Arc<KeySpec>> {
        let found = self
            .specs
            .get(&spec.scope())
            .and_then(|by_name| by_name.get(spec.name().as_str()))
            .ok_or_else(|| Error::UnknownKey { key: spec.label() })?;
        if !Arc::ptr_eq(found, spec) {
            found
                .same_declaration(spec)
                .map_err(|reason| Error::KeyMismatch {
                    key: spec.label(),
                    reason,
                })?;
        }
        Ok(Arc::clone(found))
    }

    /// The declaration behind a full key (from the wire or storage).
    pub fn spec_for(&self, key: &FullKey) -> Result<Arc<KeySpec>> {
        self.specs
            .get(&key.scope())
            .and_then(|by_name| by_name.get(key.name()))
            .cloned()
            .ok_or_else(|| Error::UnknownKey {
                key: key.to_string(),
            })
    }

    /// Every declared key.
    pub fn specs(&self) -> impl Iterator<Item = &Arc<KeySpec>> {
        self.specs.values().flat_map(VecMap::values)
    }

    pub(super) fn check_access(
        spec: &KeySpec,
        key: &FullKey,
        unit: &UnitAddress,
        action: Action,
    ) -> Result<()> {
        let access = match action {
            Action::Read | Action::Subscribe => &spec.permissions().read,
            Action::Write => &spec.permissions().write,
        };
        if !key.reachable_by(unit) {
            return Err(Error::OutOfScope {
                key: key.clone(),
                unit: unit.clone(),
            });
        }
        if !access.allows(unit) {
            return Err(Error::PermissionDenied {
                key: key.clone(),
                unit: unit.clone(),
                action,
            });
        }
        Ok(())
    }

    /// Resolves a typed key for `unit` and checks `action` is allowed.
    pub(super) fn open<T>(
        &self,
        unit: &UnitAddress,
        key: &SharedKey<T>,
        action: Action,
    ) -> Result<(Arc<KeySpec>, FullKey)> {
        self.open_spec(unit, key.spec(), action)
    }

    /// [`open`](Self::open) for a key given by its spec.
    pub(super) fn open_spec(
        &self,
        unit: &UnitAddress,
        spec: &Arc<KeySpec>,
        action: Action,
    ) -> Result<(Arc<KeySpec>, FullKey)> {
        let (spec, full, allowed) = match self.last_opened(unit, spec, action) {
            Some(opened) => opened,
            None => {
                let registered = self.registered(spec)?;
                let full = self.full_key(&registered, unit);
                self.check_apartment(&full)?;
                *self.opened.borrow_mut() = Some(Opened {
                    asked: Arc::clone(spec),
                    unit: unit.clone(),
                    spec: Arc::clone(&registered),
                    full: full.clone(),
                    may_read: false,
                    may_write: false,
                });
                (registered, full, false)
            }
        };
        if !allowed {
            Self::check_access(&spec, &full, unit, action)?;
            if let Some(opened) = self.opened.borrow_mut().as_mut() {
                opened.allow(action);
            }
        }
        Ok((spec, full))
    }

    /// The declaration and full key [`open_spec`](Self::open_spec) found
    /// last, if it was asked for the same declaration (the same `Arc`) and
    /// an equal unit address, and whether `action` passed
    /// [`check_access`](Self::check_access) for them since.
    fn last_opened(
        &self,
        unit: &UnitAddress,
        spec: &Arc<KeySpec>,
        action: Action,
    ) -> Option<(Arc<KeySpec>, FullKey, bool)> {
        let opened = self.opened.borrow();
        let opened = opened.as_ref()?;
        (Arc::ptr_eq(&opened.asked, spec) && opened.unit == *unit).then(|| {
            (
                Arc::clone(&opened.spec),
                opened.full.clone(),
                opened.allows(action),
            )
        })
    }

    /// The full key of `spec` as seen from `unit`, sharing the text of
    /// the one this replica holds a state for (no allocation), if any.
    pub(super) fn full_key(&self, spec: &KeySpec, unit: &UnitAddress) -> FullKey {
        FullKey::find_or_new(spec.scope(), unit, spec.name(), |text| {
            self.states.get_key_value(text).map(|(key, _)| key)
        })
    }

    /// Checks that one more full key of `spec` may be created (a state for
    /// `key` does not exist yet).
    pub(super) fn check_room(&self, spec: &KeySpec, key: &FullKey) -> Result<()> {
        if self.states.contains_key(key) {
            return Ok(());
        }
        self.counts.room(None, spec, key)
    }

    /// Records that a state for `key` now exists.
    pub(super) fn count_key(&mut self, spec: &KeySpec, key: &FullKey) {
        if !self.states.contains_key(key) {
            self.counts.add(spec, key);
        }
    }
}

/// How many full keys each declaration has, against its bounds: at most
/// [`MAX_KEYS_PER_DECLARATION`] in all, and for a private declaration at
/// most [`MAX_PRIVATE_KEYS_PER_BUILDING`] in any one building.
///
/// The second bound is what a peer allowed to write one building (a relay
/// token narrowed to it) can take: inventing units there fills that
/// building's share, and leaves the others room for their own units'
/// first writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct KeyCounts {
    /// Per declaration (scope, name).
    all: VecMap<Scope, VecMap<KeyName, usize>>,
    /// Per private declaration (name), by `apartment/building`.
    buildings: VecMap<KeyName, VecMap<String, usize>>,
}

impl KeyCounts {
    fn all_of(&self, spec: &KeySpec) -> usize {
        self.all
            .get(&spec.scope())
            .and_then(|names| names.get(spec.name().as_str()))
            .copied()
            .unwrap_or(0)
    }

    fn in_building(&self, spec: &KeySpec, building: &str) -> usize {
        self.buildings
            .get(spec.name().as_str())
            .and_then(|buildings| buildings.get(building))
            .copied()
            .unwrap_or(0)
    }

    /// The building `key` counts in (`apartment/building`) for a private
    /// declaration; `None` for any other.
    fn building_of<'k>(spec: &KeySpec, key: &'k FullKey) -> Option<&'k str> {
        (spec.scope() == Scope::Private)
            .then(|| key.building_path())
            .flatten()
    }

    /// Checks that `key`, which holds no state yet, may be created with
    /// the keys counted in `beside` created too (a batch's or a group's
    /// new keys, not yet in the replica).
    pub(super) fn room(&self, beside: Option<&Self>, spec: &KeySpec, key: &FullKey) -> Result<()> {
        let all = self.all_of(spec) + beside.map_or(0, |more| more.all_of(spec));
        if all >= MAX_KEYS_PER_DECLARATION {
            return Err(Error::TooManyKeys {
                key: spec.label(),
                limit: MAX_KEYS_PER_DECLARATION,
            });
        }
        if let Some(building) = Self::building_of(spec, key) {
            let count = self.in_building(spec, building)
                + beside.map_or(0, |more| more.in_building(spec, building));
            if count >= MAX_PRIVATE_KEYS_PER_BUILDING {
                return Err(Error::TooManyKeys {
                    key: format!("{} in building {building}", spec.label()),
                    limit: MAX_PRIVATE_KEYS_PER_BUILDING,
                });
            }
        }
        Ok(())
    }

    /// Counts `key`, which held no state, as created. Allocates only for a
    /// declaration's or a building's first key.
    pub(super) fn add(&mut self, spec: &KeySpec, key: &FullKey) {
        let names = self.all.get_or_default(spec.scope());
        bump(names, spec.name().as_str(), || spec.name().clone());
        if let Some(building) = Self::building_of(spec, key) {
            let buildings = match self.buildings.get_mut(spec.name().as_str()) {
                Some(buildings) => buildings,
                None => self.buildings.get_or_default(spec.name().clone()),
            };
            bump(buildings, building, || building.to_owned());
        }
    }
}

/// Adds one to `key`'s count in `counts`, making the entry (`owned`) if
/// there is none.
fn bump<K: Ord + std::borrow::Borrow<Q>, Q: Ord + ?Sized>(
    counts: &mut VecMap<K, usize>,
    key: &Q,
    owned: impl FnOnce() -> K,
) {
    match counts.get_mut(key) {
        Some(count) => *count += 1,
        None => {
            counts.insert(owned(), 1);
        }
    }
}

/// What [`Replica::open_spec`] found last: a unit writing or reading one
/// key again and again (a counter, a text field) skips the lookup of the
/// declaration and the building of the key's text. It cannot go stale: a
/// declaration is never replaced once registered, an `Arc<KeySpec>`
/// never changes, a full key follows from the declaration and the unit
/// address alone, and the `Arc` asked for is kept here, so its address is
/// not reused while it is compared against. Only a key of this replica's
/// apartment is kept ([`Replica::check_apartment`] passed); binding the
/// replica to an apartment forgets it, and the binding never changes
/// after that.
#[derive(Debug)]
pub(super) struct Opened {
    /// The declaration the caller held.
    asked: Arc<KeySpec>,
    unit: UnitAddress,
    /// The declaration registered for it.
    spec: Arc<KeySpec>,
    full: FullKey,
    /// Reads (and subscriptions) passed [`Replica::check_access`]: its
    /// answer follows from the declaration, the full key and the unit
    /// alone, all fixed here.
    may_read: bool,
    /// Writes passed it.
    may_write: bool,
}

impl Opened {
    fn allows(&self, action: Action) -> bool {
        match action {
            Action::Read | Action::Subscribe => self.may_read,
            Action::Write => self.may_write,
        }
    }

    fn allow(&mut self, action: Action) {
        match action {
            Action::Read | Action::Subscribe => self.may_read = true,
            Action::Write => self.may_write = true,
        }
    }
}
