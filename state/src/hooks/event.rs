//! `use_container_event`: a typed event bus between units.

use std::marker::PhantomData;

use gaesup_state_core::{Event, FullKey, KeyName, Scope, UnitAddress};
use leptos::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::containers::{UnitContext, use_unit};
use crate::error::{Result, StateError};

const HOOK: &str = "use_container_event";

/// Options of [`use_container_event_with_options`].
pub struct UseContainerEventOptions<E> {
    cross_tab: bool,
    on_event: Option<Box<dyn Fn(E)>>,
}

impl<E> Default for UseContainerEventOptions<E> {
    fn default() -> Self {
        Self {
            cross_tab: false,
            on_event: None,
        }
    }
}

impl<E> UseContainerEventOptions<E> {
    /// Also deliver this unit's events to the same scope in other tabs.
    #[must_use]
    pub fn cross_tab(mut self, cross_tab: bool) -> Self {
        self.cross_tab = cross_tab;
        self
    }

    /// Runs `handler` for every event received (besides updating `last`).
    #[must_use]
    pub fn on_event(mut self, handler: impl Fn(E) + 'static) -> Self {
        self.on_event = Some(Box::new(handler));
        self
    }
}

/// What [`use_container_event`] returns.
pub struct UseContainerEventReturn<E: Send + Sync + 'static> {
    /// The last event received on this topic (from any unit in scope,
    /// this one included).
    pub last: Signal<Option<E>>,
    /// Who sent the last event.
    pub last_sender: Signal<Option<UnitAddress>>,
    /// Sends events on this topic.
    pub emit: EventEmitter<E>,
    /// Why the bus could not be joined, or the last send failed.
    pub error: Signal<Option<StateError>>,
}

/// Sends typed events on one topic. `Copy`.
pub struct EventEmitter<E: 'static> {
    unit: StoredValue<Option<UnitContext>>,
    name: StoredValue<Option<KeyName>>,
    scope: Scope,
    cross_tab: bool,
    error: RwSignal<Option<StateError>>,
    _type: PhantomData<fn(E)>,
}

impl<E: 'static> Clone for EventEmitter<E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E: 'static> Copy for EventEmitter<E> {}

impl<E: Serialize + 'static> EventEmitter<E> {
    /// Sends `event` to every listener of the topic in scope.
    pub fn emit(&self, event: E) {
        super::record_error(self.error, self.try_emit(event).err());
    }

    /// [`emit`](Self::emit), returning why it failed.
    pub fn try_emit(&self, event: E) -> Result<()> {
        let unit = self
            .unit
            .try_get_value()
            .flatten()
            .ok_or(StateError::NoUnit { hook: HOOK })?;
        let name = self
            .name
            .try_get_value()
            .flatten()
            .ok_or(StateError::NoUnit { hook: HOOK })?;
        let data = serde_json::to_value(event).map_err(|err| {
            StateError::Core(gaesup_state_core::Error::TypeMismatch {
                key: name.to_string(),
                reason: err.to_string(),
            })
        })?;
        let event = Event::new(self.scope, &unit.address, &name, data)?;
        unit.manager.emit(event, self.cross_tab)
    }
}

/// Joins the event topic `name` in `scope` (`Building`: units of this
/// building; `Apartment`: this apartment; `Global`: every apartment).
///
/// ```
/// use gaesup_state::prelude::*;
/// use leptos::prelude::*;
///
/// #[component]
/// fn Announcer() -> impl IntoView {
///     let bus = use_container_event::<String>("announce", Scope::Apartment);
///     let emit = bus.emit;
///     view! {
///         <button on:click=move |_| emit.emit("hello".to_owned())>"Say hello"</button>
///         <p>{move || bus.last.get()}</p>
///     }
/// }
/// ```
pub fn use_container_event<E>(name: &str, scope: Scope) -> UseContainerEventReturn<E>
where
    E: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    use_container_event_with_options(name, scope, UseContainerEventOptions::default())
}

/// [`use_container_event`] with options (cross-tab delivery, a handler).
pub fn use_container_event_with_options<E>(
    name: &str,
    scope: Scope,
    options: UseContainerEventOptions<E>,
) -> UseContainerEventReturn<E>
where
    E: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    let last = RwSignal::new(None);
    let last_sender = RwSignal::new(None);
    let error = RwSignal::new(None);
    let joined = join(name, scope, options.on_event, last, last_sender, error);
    let (unit, name) = match joined {
        Ok((unit, name)) => (Some(unit), Some(name)),
        Err(err) => {
            error.set(Some(err));
            (None, None)
        }
    };
    UseContainerEventReturn {
        last: last.into(),
        last_sender: last_sender.into(),
        emit: EventEmitter {
            unit: StoredValue::new(unit),
            name: StoredValue::new(name),
            scope,
            cross_tab: options.cross_tab,
            error,
            _type: PhantomData,
        },
        error: error.into(),
    }
}

fn join<E>(
    name: &str,
    scope: Scope,
    handler: Option<Box<dyn Fn(E)>>,
    last: RwSignal<Option<E>>,
    last_sender: RwSignal<Option<UnitAddress>>,
    error: RwSignal<Option<StateError>>,
) -> Result<(UnitContext, KeyName)>
where
    E: DeserializeOwned + Clone + Send + Sync + 'static,
{
    let unit = use_unit().ok_or(StateError::NoUnit { hook: HOOK })?;
    let name = KeyName::new(name)?;
    let topic = FullKey::new(scope, &unit.address, &name);
    let manager = unit.manager;
    let id = manager.listen(topic, move |event| match E::deserialize(&event.data) {
        Ok(data) => {
            if let Some(handler) = &handler {
                handler(data.clone());
            }
            let _ = last.try_set(Some(data));
            let _ = last_sender.try_set(Some(event.sender.clone()));
        }
        Err(err) => {
            let _ = error.try_set(Some(StateError::Core(
                gaesup_state_core::Error::TypeMismatch {
                    key: event.topic.to_string(),
                    reason: err.to_string(),
                },
            )));
        }
    })?;
    on_cleanup(move || {
        manager.unlisten(id);
    });
    Ok((unit, name))
}
