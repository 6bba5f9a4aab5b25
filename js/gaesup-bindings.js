// gaesup-bindings.js: React, Vue and Svelte bindings on window.gaesup.
//
// One small ES module shipped with the site. No framework is bundled in:
// each adapter is handed the framework it binds (`reactBindings(React)`,
// `vueBindings(Vue)`), and Svelte's store contract needs none. Everything
// is scoped to one unit's address, and waits for `gaesup:ready` itself, so
// a unit may start before the wasm has.
//
// Types: gaesup-bindings.d.ts, beside this file.

const READY = 'gaesup:ready';
// Fired on window for each key declared after `gaesup:ready`, with
// `{ apartment, name, scope }` as its detail.
const DECLARED = 'gaesup:declared';

/** window.gaesup, once the wasm has published it. */
function api() {
  return typeof window === 'undefined' ? undefined : window.gaesup;
}

/**
 * Runs `run(window.gaesup)` now if it exists, else once `gaesup:ready`
 * fires. Returns a function that cancels the wait (a no-op once run).
 */
export function whenReady(run) {
  const now = api();
  if (now) {
    run(now);
    return () => {};
  }
  const listener = () => {
    const ready = api();
    if (ready) run(ready);
  };
  window.addEventListener(READY, listener, { once: true });
  return () => window.removeEventListener(READY, listener);
}

// One handle per address and per window.gaesup (a page publishes it once;
// tests may publish several).
const handles = new WeakMap();

function unitHandle(gaesup, address) {
  let byAddress = handles.get(gaesup);
  if (!byAddress) {
    byAddress = new Map();
    handles.set(gaesup, byAddress);
  }
  let unit = byAddress.get(address);
  if (!unit) {
    unit = gaesup.unit(address);
    byAddress.set(address, unit);
  }
  return unit;
}

/** An Error with a stable `code`, like the ones window.gaesup throws. */
function codedError(code, message) {
  const error = new Error(message);
  error.code = code;
  return error;
}

function asError(thrown) {
  if (thrown instanceof Error) return thrown;
  return codedError('error', String(thrown));
}

function metaOf(ready, pending, error, written) {
  return Object.freeze({
    ready,
    pending,
    error,
    lastWriter: written?.lastWriter ?? null,
    version: written?.version ?? null,
  });
}

/**
 * One key (or one path inside it) as seen by one unit: a snapshot
 * `{ value, meta }` replaced on every change, and listeners. The first
 * listener connects to window.gaesup (after `gaesup:ready` if need be,
 * and for a key nobody has declared yet, after `gaesup:declared` names
 * it), the last one to leave disconnects, so nothing outlives its users.
 *
 * This is the part every adapter shares; it is exported for units that
 * use no framework at all.
 */
export class SharedState {
  #address;
  #name;
  #path;
  #rules;
  #listeners = new Set();
  #snapshot;
  #pending = 0;
  #error = null;
  #declared = null;
  #stopWaiting = null;
  #stopWatching = null;
  // Waiting for `gaesup:declared` of this key's name: the subscription
  // found no key of that name yet.
  #stopAwaitingKey = null;
  // The error a read or a subscription left, cleared by the next read
  // that succeeds (an error of a write stays until a write succeeds or
  // clearError).
  #readError = null;
  // Changes heard through the subscription (a write that was heard needs
  // no second read).
  #heard = 0;
  // Listeners are being called, and something changed since they began.
  #notifying = false;
  #changedMeanwhile = false;

  /**
   * @param address `apartment/building/unit`
   * @param name the key's name
   * @param fallback the value shown until the key can be read
   * @param options `{ path, rules }`: watch only `path`; declare the key
   *   with `rules` (`{ scope, lifetime, strategy, default }`) first
   */
  constructor(address, name, fallback, options = {}) {
    this.#address = address;
    this.#name = name;
    this.#path = options.path;
    this.#rules = options.rules;
    this.#snapshot = Object.freeze({ value: fallback, meta: metaOf(false, false, null, null) });
    // Read at once when possible, so a first render shows the real value.
    const gaesup = api();
    if (gaesup) this.#read(gaesup, false);
    const setter = (next) => this.set(next);
    setter.increment = (delta) => this.increment(delta);
    setter.optimistic = (next, confirmation) => this.optimistic(next, confirmation);
    setter.clearError = () => this.clearError();
    /** `set` with `increment`, `optimistic` and `clearError` attached: one stable function. */
    this.setter = setter;
  }

  /** The current `{ value, meta }`; the same object until something changes. */
  getSnapshot = () => this.#snapshot;

  /** Calls `listener()` after each change; returns its unsubscribe. */
  subscribe = (listener) => {
    this.#listeners.add(listener);
    if (this.#listeners.size === 1) this.#connect();
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      this.#listeners.delete(listener);
      if (this.#listeners.size === 0) this.#disconnect();
    };
  };

  /** How many listeners are attached (what cleanup tests watch). */
  get listenerCount() {
    return this.#listeners.size;
  }

  /**
   * Writes `next`, or `next(current)` when it is a function. A state of a
   * path writes at that path (the updater gets the sub-value), leaving
   * the rest of the value as it is.
   */
  set(next) {
    const value = typeof next === 'function' ? next(this.#current()) : next;
    if (this.#path === undefined) this.#write((unit) => unit.set(this.#name, value));
    else this.#write((unit) => unit.setPath(this.#name, this.#path, value));
  }

  /** Adds `delta` to a sum key (a whole key: a state of a path refuses). */
  increment(delta) {
    if (this.#refusePath('increment')) return;
    this.#write((unit) => unit.increment(this.#name, delta));
  }

  /** A state of a path cannot `what` (the key's whole value can): says so. */
  #refusePath(what) {
    if (this.#path === undefined) return false;
    this.#fail(
      codedError('invalid_path', `${what} writes the whole of ${this.#name}, not its path ${this.#path}`),
    );
    return true;
  }

  /**
   * Shows `next` at once and keeps it if `confirmation` (a promise, or a
   * function returning one) resolves; if it rejects, the write is taken
   * back (unless someone wrote over it meanwhile) and `meta.error` says
   * why. `meta.pending` is true while waiting. Resolves to whether the
   * write was kept; never rejects.
   */
  async optimistic(next, confirmation) {
    if (this.#refusePath('optimistic')) return false;
    const value = typeof next === 'function' ? next(this.#current()) : next;
    let write;
    this.#write((unit) => {
      write = unit.setOptimistic(this.#name, value);
    });
    if (!write) return false;
    this.#pending += 1;
    this.#publish(this.#snapshot.value);
    try {
      await (typeof confirmation === 'function' ? confirmation() : confirmation);
      write.confirm();
      return true;
    } catch (reason) {
      try {
        write.revert();
        const why = reason instanceof Error ? reason.message : String(reason);
        this.#error = codedError('rejected', `the write to ${this.#name} was rejected: ${why}`);
      } catch (error) {
        this.#error = asError(error);
      }
      return false;
    } finally {
      // Settled: its Rust side is freed now rather than when the
      // collector finds it.
      write.free();
      this.#pending -= 1;
      this.#refreshOrPublish();
    }
  }

  clearError() {
    if (this.#error === null) return;
    this.#error = null;
    this.#publish(this.#snapshot.value);
  }

  #write(action) {
    const gaesup = api();
    if (!gaesup) {
      this.#fail(codedError('not_ready', 'window.gaesup is not ready yet'));
      return;
    }
    const heard = this.#heard;
    const hadError = this.#error !== null;
    try {
      action(this.#unit(gaesup));
      this.#error = null;
    } catch (error) {
      this.#fail(asError(error));
      return;
    }
    // A subscribed state heard the change through its subscription; this
    // read covers the rest: an unchanged value (a new writer), a cleared
    // error, a state nobody subscribes to.
    if (this.#heard === heard || hadError) this.#read(gaesup, true);
  }

  /**
   * What the key (or path) holds now, for an updater. The snapshot lags:
   * nobody may be subscribed, or a change another unit just made is
   * still on its way (deliveries wait for a microtask), and an updater
   * given it would write over that change. The snapshot itself is left
   * as it is: the change's own notification updates it.
   */
  #current() {
    const gaesup = api();
    if (!gaesup) return this.#snapshot.value;
    try {
      const unit = this.#unit(gaesup);
      return this.#path === undefined ? unit.get(this.#name) : unit.getPath(this.#name, this.#path);
    } catch {
      // The write that follows reports what is wrong.
      return this.#snapshot.value;
    }
  }

  #unit(gaesup) {
    const unit = unitHandle(gaesup, this.#address);
    if (this.#rules && this.#declared !== unit) {
      unit.declare(this.#name, this.#rules);
      this.#declared = unit;
    }
    return unit;
  }

  #connect() {
    this.#stopWaiting = whenReady((gaesup) => {
      this.#stopWaiting = null;
      if (this.#listeners.size === 0) return;
      try {
        const unit = this.#unit(gaesup);
        const options = this.#path === undefined ? undefined : { path: this.#path };
        this.#stopWatching = unit.subscribe(
          this.#name,
          () => {
            this.#heard += 1;
            this.#read(gaesup, true);
          },
          options,
        );
        // The key exists now: a write refused while it did not (with
        // `unknown_key`, shown then) no longer describes this state.
        if (this.#error?.code === 'unknown_key') this.#error = null;
      } catch (error) {
        const failed = asError(error);
        // No key of this name yet: another unit may declare it later (a
        // Leptos unit that mounts after this one). Subscribe then.
        if (failed.code === 'unknown_key') this.#awaitKey();
        this.#readError = failed;
        this.#fail(failed);
        return;
      }
      this.#read(gaesup, true);
    });
  }

  /** Connects again once a key of this name is declared in this apartment. */
  #awaitKey() {
    const apartment = this.#address.split('/')[0];
    const listener = (event) => {
      const declared = event.detail;
      if (declared?.name !== this.#name || declared?.apartment !== apartment) return;
      this.#stopAwaitingKey?.();
      if (this.#listeners.size > 0) this.#connect();
    };
    window.addEventListener(DECLARED, listener);
    this.#stopAwaitingKey = () => {
      window.removeEventListener(DECLARED, listener);
      this.#stopAwaitingKey = null;
    };
  }

  #disconnect() {
    this.#stopWaiting?.();
    this.#stopWaiting = null;
    this.#stopWatching?.();
    this.#stopWatching = null;
    this.#stopAwaitingKey?.();
  }

  #read(gaesup, notify) {
    try {
      const unit = this.#unit(gaesup);
      const value =
        this.#path === undefined ? unit.get(this.#name) : unit.getPath(this.#name, this.#path);
      const written = unit.meta(this.#name);
      if (this.#readError !== null && this.#error === this.#readError) this.#error = null;
      this.#readError = null;
      this.#set(value, written, notify);
    } catch (error) {
      this.#error = asError(error);
      this.#readError = this.#error;
      this.#set(this.#snapshot.value, null, notify);
    }
  }

  #refreshOrPublish() {
    const gaesup = api();
    if (gaesup) this.#read(gaesup, true);
    else this.#publish(this.#snapshot.value);
  }

  #fail(error) {
    this.#error = error;
    this.#publish(this.#snapshot.value);
  }

  #publish(value) {
    const { lastWriter, version, ready } = this.#snapshot.meta;
    this.#snapshot = Object.freeze({
      value,
      meta: metaOf(ready, this.#pending > 0, this.#error, { lastWriter, version }),
    });
    this.#notify();
  }

  #set(value, written, notify) {
    const ready = written !== null || this.#snapshot.meta.ready;
    const meta = metaOf(
      ready,
      this.#pending > 0,
      this.#error,
      written === null ? this.#snapshot.meta : written,
    );
    // Read again while its listeners run (one wrote, and the manager
    // holds writes made during a delivery until it ends): the same value
    // is not news. Told again, a listener that writes what it heard would
    // be called inside its own call, without end. Its writer and version
    // are still taken (a write of the same value moves them, and the
    // manager delivers nothing for it).
    if (this.#notifying && sameSnapshot(this.#snapshot, value, meta)) {
      const old = this.#snapshot.meta;
      if (old.lastWriter !== meta.lastWriter || old.version !== meta.version) {
        this.#snapshot = Object.freeze({ value: this.#snapshot.value, meta });
      }
      return;
    }
    this.#snapshot = Object.freeze({ value, meta });
    if (notify) this.#notify();
  }

  /**
   * Calls every listener; a change made while they run calls them all
   * again once they return (with the newest snapshot), at most
   * `MAX_NOTIFY_ROUNDS` times in a row. A listener that throws is
   * reported and the others are still called.
   */
  #notify() {
    if (this.#notifying) {
      this.#changedMeanwhile = true;
      return;
    }
    this.#notifying = true;
    try {
      for (let round = 0; round === 0 || this.#changedMeanwhile; round += 1) {
        this.#changedMeanwhile = false;
        if (round === MAX_NOTIFY_ROUNDS) {
          reportError(
            codedError(
              'cascade',
              `${this.#name} changed each time its listeners were told, ${MAX_NOTIFY_ROUNDS} times in a row: stopped telling them`,
            ),
          );
          break;
        }
        for (const listener of [...this.#listeners]) callReporting(listener);
      }
    } finally {
      this.#notifying = false;
    }
  }
}

/**
 * Listens to event `name` of the bus as unit `address`, once window.gaesup
 * is ready: `handler(data, sender)`. Returns the function that stops it
 * (or the wait). A refusal (bad name, bad scope) goes to `onError`.
 */
export function listen(address, name, handler, options = {}, onError = reportError) {
  let stop = null;
  const stopWaiting = whenReady((gaesup) => {
    try {
      const on = options.scope === undefined ? {} : { scope: options.scope };
      stop = unitHandle(gaesup, address).on(name, handler, on);
    } catch (error) {
      onError(asError(error));
    }
  });
  return () => {
    stopWaiting();
    stop?.();
    stop = null;
  };
}

/**
 * Sends event `name` with `data` as unit `address` (`{ scope, crossTab }`).
 * Returns `null`, or the error that refused it (not ready, bad value).
 */
export function emit(address, name, data, options = {}) {
  const gaesup = api();
  if (!gaesup) return codedError('not_ready', 'window.gaesup is not ready yet');
  try {
    unitHandle(gaesup, address).emit(name, data, options);
    return null;
  } catch (error) {
    return asError(error);
  }
}

/** Rounds of listeners one change may set off (see `SharedState`'s `#notify`). */
const MAX_NOTIFY_ROUNDS = 100;

/**
 * Whether a snapshot holding `value` and `meta` would show what `snapshot`
 * shows: the same value, readiness, pending and error. Its writer and
 * version may differ (a write of the value it held moves them, and the
 * manager tells nobody of it): `#set` takes those without telling the
 * listeners again.
 */
function sameSnapshot(snapshot, value, meta) {
  const old = snapshot.meta;
  return (
    old.ready === meta.ready &&
    old.pending === meta.pending &&
    old.error === meta.error &&
    (snapshot.value === value || jsonText(snapshot.value) === jsonText(value))
  );
}

/**
 * `JSON.stringify(value)`, with a `BigInt` (how an integer past 2^53
 * comes from the manager) written as its digits, which
 * `JSON.stringify` refuses.
 */
function jsonText(value) {
  return JSON.stringify(value, (_key, item) => (typeof item === 'bigint' ? bigintJson(item) : item));
}

function bigintJson(big) {
  // An engine without JSON.rawJSON gets no BigInt from the manager.
  return typeof JSON.rawJSON === 'function' ? JSON.rawJSON(big.toString()) : `${big}n`;
}

/** Calls `callback(...args)`; what it throws is reported, not passed on. */
function callReporting(callback, ...args) {
  try {
    callback(...args);
  } catch (error) {
    reportError(error);
  }
}

function reportError(error) {
  // A refused listener is a bug in the unit: the console is where it shows.
  console.error(error);
}

function sameOptions(a, b) {
  return JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
}

/**
 * React bindings: `reactBindings(React)` →
 * `{ UnitProvider, useSharedState, useStatePath, useContainerEvent }`.
 * State is read with `useSyncExternalStore`, so concurrent rendering never
 * tears; subscriptions end when the component unmounts.
 */
export function reactBindings(React) {
  const { createContext, createElement, useCallback, useContext, useEffect, useRef } = React;
  const { useSyncExternalStore } = React;
  const Address = createContext(null);

  /** Gives the hooks below the unit's address. */
  function UnitProvider({ address, children }) {
    return createElement(Address.Provider, { value: address }, children);
  }

  function useAddress(hook) {
    const address = useContext(Address);
    if (typeof address !== 'string') {
      throw codedError('no_unit', `${hook} must be used inside <UnitProvider address="…">`);
    }
    return address;
  }

  // One SharedState per (address, name, options), kept across renders.
  function useShared(hook, name, fallback, options) {
    const address = useAddress(hook);
    const held = useRef(null);
    const current = held.current;
    if (
      current === null ||
      current.address !== address ||
      current.name !== name ||
      !sameOptions(current.options, options)
    ) {
      held.current = {
        address,
        name,
        options,
        state: new SharedState(address, name, fallback, options),
      };
    }
    const { state } = held.current;
    return [state, useSyncExternalStore(state.subscribe, state.getSnapshot, state.getSnapshot)];
  }

  /** `[value, set, meta]` of key `name`; `set` also has `increment`, `optimistic`, `clearError`. */
  function useSharedState(name, fallback, options) {
    const [state, snapshot] = useShared('useSharedState', name, fallback, options);
    return [snapshot.value, state.setter, snapshot.meta];
  }

  /** `[value, meta]` of `path` inside key `name`: only a change there re-renders. */
  function useStatePath(name, path, fallback) {
    const [, snapshot] = useShared('useStatePath', name, fallback, { path });
    return [snapshot.value, snapshot.meta];
  }

  /** Calls `handler(data, sender)` for event `name`; returns `emit(data)`. */
  function useContainerEvent(name, handler, options = {}) {
    const address = useAddress('useContainerEvent');
    const latest = useRef(handler);
    useEffect(() => {
      latest.current = handler;
    });
    const { scope, crossTab } = options;
    useEffect(
      () => listen(address, name, (data, sender) => latest.current?.(data, sender), { scope }),
      [address, name, scope],
    );
    return useCallback(
      (data) => emit(address, name, data, { scope, crossTab }),
      [address, name, scope, crossTab],
    );
  }

  return { UnitProvider, useSharedState, useStatePath, useContainerEvent };
}

/**
 * Vue 3 bindings: `vueBindings(Vue)` →
 * `{ provideUnit, useSharedState, useStatePath, useContainerEvent }`.
 * Each composable keeps a shallow ref and is cleaned up with the effect
 * scope it was called in (a component's setup, or an `effectScope`).
 */
export function vueBindings(Vue) {
  const { computed, getCurrentScope, inject, onScopeDispose, shallowRef } = Vue;
  const ADDRESS = Symbol('gaesup unit address');

  /** Gives the app's composables the unit's address: `provideUnit(app, address)`. */
  function provideUnit(app, address) {
    app.provide(ADDRESS, address);
  }

  function scoped(hook) {
    if (!getCurrentScope()) {
      throw codedError('no_scope', `${hook} needs an effect scope: call it in setup()`);
    }
    const address = inject(ADDRESS, null);
    if (typeof address !== 'string') {
      throw codedError('no_unit', `${hook} needs provideUnit(app, address) first`);
    }
    return address;
  }

  function follow(state) {
    const current = shallowRef(state.getSnapshot());
    const stop = state.subscribe(() => {
      current.value = state.getSnapshot();
    });
    current.value = state.getSnapshot();
    onScopeDispose(stop);
    return current;
  }

  /** `{ value, set, meta }`: `value` and `meta` are readonly refs. */
  function useSharedState(name, fallback, options) {
    const address = scoped('useSharedState');
    const state = new SharedState(address, name, fallback, options);
    const current = follow(state);
    return {
      value: computed(() => current.value.value),
      set: state.setter,
      meta: computed(() => current.value.meta),
    };
  }

  /** `{ value, meta }` of `path` inside key `name`, as readonly refs. */
  function useStatePath(name, path, fallback) {
    const address = scoped('useStatePath');
    const current = follow(new SharedState(address, name, fallback, { path }));
    return {
      value: computed(() => current.value.value),
      meta: computed(() => current.value.meta),
    };
  }

  /** Calls `handler(data, sender)` for event `name`; returns `emit(data)`. */
  function useContainerEvent(name, handler, options = {}) {
    const address = scoped('useContainerEvent');
    const { scope, crossTab } = options;
    onScopeDispose(listen(address, name, handler, { scope }));
    return (data) => emit(address, name, data, { scope, crossTab });
  }

  return { provideUnit, useSharedState, useStatePath, useContainerEvent };
}

/**
 * Svelte stores for unit `address`: `svelteBindings(address)` →
 * `{ sharedStore, pathStore, eventStore }`. They follow the store contract
 * (`subscribe` calls back at once and returns its unsubscribe), so `$store`
 * works in Svelte 5 as in Svelte 4; `destroy()` ends every subscription a
 * store still has.
 */
export function svelteBindings(address) {
  function readable(state, pick) {
    const stops = new Set();
    function subscribe(run) {
      let seen;
      const notify = () => {
        const snapshot = state.getSnapshot();
        if (snapshot === seen) return;
        seen = snapshot;
        run(pick(snapshot));
      };
      const stop = state.subscribe(notify);
      notify();
      const unsubscribe = () => {
        stops.delete(unsubscribe);
        stop();
      };
      stops.add(unsubscribe);
      return unsubscribe;
    }
    function destroy() {
      for (const stop of [...stops]) stop();
    }
    return { subscribe, destroy };
  }

  /**
   * A writable store of key `name`: `subscribe`, `set`, `update`,
   * `increment`, `optimistic`, `clearError`, `destroy`, and `meta` (a
   * readable store of `{ ready, pending, error, lastWriter, version }`).
   */
  function sharedStore(name, fallback, options) {
    const state = new SharedState(address, name, fallback, options);
    const value = readable(state, (snapshot) => snapshot.value);
    const meta = readable(state, (snapshot) => snapshot.meta);
    return {
      subscribe: value.subscribe,
      set: (next) => state.set(next),
      // An updater: given what the key holds now, not the last value heard.
      update: (change) => state.set(change),
      increment: (delta) => state.increment(delta),
      optimistic: (next, confirmation) => state.optimistic(next, confirmation),
      clearError: () => state.clearError(),
      meta: { subscribe: meta.subscribe },
      destroy() {
        value.destroy();
        meta.destroy();
      },
    };
  }

  /** A readable store of `path` inside key `name`, with `meta` and `destroy`. */
  function pathStore(name, path, fallback) {
    const state = new SharedState(address, name, fallback, { path });
    const value = readable(state, (snapshot) => snapshot.value);
    const meta = readable(state, (snapshot) => snapshot.meta);
    return {
      subscribe: value.subscribe,
      meta: { subscribe: meta.subscribe },
      destroy() {
        value.destroy();
        meta.destroy();
      },
    };
  }

  /**
   * Event `name` as a store of the last event heard (`{ data, sender }`,
   * `null` before any), with `emit(data)` and `destroy`.
   */
  function eventStore(name, options = {}) {
    let last = null;
    // One entry per subscription, even for the same function twice.
    const subscribers = new Set();
    let stop = null;
    const { scope, crossTab } = options;
    function subscribe(run) {
      const subscriber = { run };
      subscribers.add(subscriber);
      if (subscribers.size === 1) {
        stop = listen(
          address,
          name,
          (data, sender) => {
            last = { data, sender };
            for (const each of [...subscribers]) callReporting(each.run, last);
          },
          { scope },
        );
      }
      run(last);
      return () => {
        if (!subscribers.delete(subscriber) || subscribers.size > 0) return;
        stop?.();
        stop = null;
      };
    }
    return {
      subscribe,
      emit: (data) => emit(address, name, data, { scope, crossTab }),
      destroy() {
        subscribers.clear();
        stop?.();
        stop = null;
      },
    };
  }

  return { sharedStore, pathStore, eventStore };
}
