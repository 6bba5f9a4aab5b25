// Types for window.gaesup (published by the wasm: state/web/src/js.rs) and for
// the framework bindings beside this file (gaesup-bindings.js).
//
// `tsc --noEmit -p js/tsconfig.json` (part of `cargo xtask test`) checks
// them against the units written in TypeScript and the README's examples.

import type * as ReactTypes from 'react';
import type { App, ComputedRef } from 'vue';

/** Who shares a key. */
export type Scope = 'private' | 'building' | 'apartment' | 'global';
/** How long a key lives. */
export type Lifetime = 'memory' | 'ephemeral' | 'persistent';
/** How concurrent writes combine. */
export type Strategy = 'last_write_wins' | 'first_write_wins' | 'merge' | 'sum' | 'user_resolve';

/**
 * What JSON can hold: every value written to a key. An integer past what a
 * number holds exactly (beyond ±(2^53 − 1)) is read as a `bigint`, and a
 * `bigint` written is stored exactly (up to 64 bits).
 */
export type Json = null | boolean | number | bigint | string | Json[] | { [field: string]: Json };

/** `declare(name, rules)`: defaults private, memory, last-write-wins, null. */
export interface KeyRules {
  scope?: Scope;
  lifetime?: Lifetime;
  strategy?: Strategy;
  default?: Json;
}

/** Options of `emit` and `on`: scope (default apartment), other tabs too. */
export interface EventOptions {
  scope?: Exclude<Scope, 'private'>;
  crossTab?: boolean;
}

/**
 * What window.gaesup throws: an Error with a stable `code`
 * (`unknown_key`, `permission_denied`, `type_mismatch`, `outbox_full`, …);
 * the bindings add `not_ready`, `rejected`, `no_unit`, `no_scope`, and
 * `invalid_path` for a whole-key write on a state of a path.
 */
export interface GaesupError extends Error {
  code?: string;
}

/** `{ lastWriter, version }` of a key: `null` while it holds its default, and for sum keys. */
export interface WrittenMeta {
  /** `apartment/building/unit` of the unit that wrote the current value. */
  lastWriter: string | null;
  /** The current value's version stamp. */
  version: string | null;
}

/**
 * An optimistic write: keep it, or take it back unless someone wrote over
 * it. Settled once: a second `confirm` or `revert` throws `bad_value`.
 */
export interface GaesupWrite {
  confirm(): void;
  /** `true` when undone; `false` when a later write was kept. */
  revert(): boolean;
  /** Frees it now, rather than when the collector finds it (after settling it). */
  free(): void;
}

/** One unit's handle: `window.gaesup.unit('apartment/building/unit')`. */
export interface GaesupUnit {
  readonly address: string;
  /**
   * Declares `name` for this unit, with `rules` (a new key's defaults:
   * private, memory, last-write-wins, null). A key already declared keeps
   * its rules: a rule given that differs is refused (`key_mismatch`), one
   * left out takes the declared one.
   */
  declare(name: string, rules?: KeyRules): void;
  get(name: string): Json;
  /** The sub-value at `path` (`"items.0.qty"`), `undefined` when absent. */
  getPath(name: string, path: string): Json | undefined;
  meta(name: string): WrittenMeta;
  set(name: string, value: Json): void;
  /**
   * Writes `value` at `path` (`"rows.r1.qty"`) inside the value: sets the
   * object field the last step names, or replaces the array item it names;
   * every step before it must exist (else code `invalid_path`). For a
   * last-write-wins key the write goes to other tabs as the whole value:
   * two tabs writing different paths at once keep one value whole.
   */
  setPath(name: string, path: string, value: Json): void;
  /**
   * Writes several places at once, from `[path, value]` pairs
   * (`Object.entries({ path: value })`): one write, each subscriber told
   * once, all or nothing: code `invalid_path` when a path leads nowhere,
   * two lie one inside the other, or there are none or more than 4,096;
   * `bad_value` for a list that is not of pairs or a value with no JSON
   * form; `too_large` past 448 KiB of JSON in all.
   */
  setPaths(name: string, writes: Array<[string, Json]>): void;
  increment(name: string, delta: number): void;
  setOptimistic(name: string, value: Json): GaesupWrite;
  /**
   * Sets at once; resolves when the relay applied the write, rejects with
   * code `rejected` (after rolling it back) when the relay refused it, and
   * with `unconfirmed` (the write kept) when nobody will say: more than
   * 10,000 writes wait for a word. Throws `no_confirmer` when no relay is
   * configured, and `not_relayed` for session or memory state, which no
   * relay sees (the write is kept).
   */
  setConfirmed(name: string, value: Json): Promise<void>;
  /**
   * Calls back after each change (of `path` only, with its sub-value:
   * `undefined` when the path leads nowhere now); returns the unsubscribe.
   */
  subscribe(name: string, callback: (value: Json | undefined) => void, options?: { path?: string }): () => void;
  /**
   * One callback for several keys, once per change set (a batch, here or
   * from another tab, counts once) with `{ name: newValue }` of the keys
   * that changed; returns the one unsubscribe.
   */
  subscribeBatch(names: string[], callback: (changed: Record<string, Json>) => void): () => void;
  emit(name: string, data: Json, options?: EventOptions): void;
  on(name: string, callback: (data: Json, sender: string) => void, options?: EventOptions): () => void;
}

/** `window.gaesup.relay(apartment)`: the apartment's link to the relay. */
export interface RelayLink {
  /** `off`, `offline`, `connecting`, `connected`, `HTTP fallback` or `refused: …`. */
  link: string;
  /** Writes in the outbox, not yet acknowledged by the relay. */
  waiting: number;
  /** When the relay last confirmed a write (ms since the epoch). */
  lastAck: number | null;
  /** Whether this tab holds the browser's link (another tab does otherwise). */
  here: boolean;
}

/** window.gaesup. */
export interface Gaesup {
  readonly version: string;
  unit(address: string): GaesupUnit;
  /** The relay link of `apartment`; `null` when it has none on this page (no relay configured). */
  relay(apartment: string): RelayLink | null;
}

declare global {
  interface Window {
    /** Present once the wasm has started; `gaesup:ready` on window announces it. */
    gaesup?: Gaesup;
  }
  interface WindowEventMap {
    'gaesup:ready': Event;
    /** A key declared after `gaesup:ready`, by a Rust or a JavaScript unit. */
    'gaesup:declared': CustomEvent<{ apartment: string; name: string; scope: Scope }>;
  }
}

/** Pending writes, the last error, and who wrote last. */
export interface StateMeta extends WrittenMeta {
  /** window.gaesup was reached and the key read. */
  ready: boolean;
  /** An optimistic write waits for its confirmation. */
  pending: boolean;
  /** The last refusal (a write, a read, a rejected optimistic write). */
  error: GaesupError | null;
}

/** What resolves or rejects an optimistic write. */
export type Confirmation = PromiseLike<unknown> | (() => PromiseLike<unknown>);

/**
 * `set(value)` or `set(current => next)`, with the other writes attached.
 * With a `path` option it writes at that path and leaves the rest of the
 * value; `increment` and `optimistic` then refuse (code `invalid_path`).
 */
export interface Setter<T> {
  (next: T | ((current: T) => T)): void;
  /** Adds `delta` to a sum key. */
  increment(delta: number): void;
  /** Shows `next` at once; taken back if `confirmation` rejects. Resolves to whether it was kept. */
  optimistic(next: T | ((current: T) => T), confirmation: Confirmation): Promise<boolean>;
  clearError(): void;
}

export interface SharedStateOptions {
  /** Watch only this path inside the value, and write there (`set`). */
  path?: string;
  /** Declare the key with these rules first (a Rust unit usually declares it). */
  rules?: KeyRules;
}

export interface Snapshot<T> {
  readonly value: T;
  readonly meta: StateMeta;
}

/**
 * One key as one unit sees it (what every adapter is built on). A key no
 * unit has declared yet shows `unknown_key` in `meta.error`; the state
 * subscribes once `gaesup:declared` names it, and the error goes.
 */
export class SharedState<T = Json> {
  constructor(address: string, name: string, fallback: T, options?: SharedStateOptions);
  readonly setter: Setter<T>;
  readonly listenerCount: number;
  getSnapshot(): Snapshot<T>;
  /**
   * Calls `listener` after each change. A listener that throws is
   * reported (the console) and the others are still called. A change
   * made while listeners run (one of them wrote) calls them all again
   * once they return; past 100 such rounds in a row they are not called
   * again for it, and a `cascade` error is reported.
   */
  subscribe(listener: () => void): () => void;
  /** An updater (`current => next`) gets what the key holds now. */
  set(next: T | ((current: T) => T)): void;
  increment(delta: number): void;
  optimistic(next: T | ((current: T) => T), confirmation: Confirmation): Promise<boolean>;
  clearError(): void;
}

/** Runs `run(window.gaesup)` once it exists; returns the cancel. */
export function whenReady(run: (gaesup: Gaesup) => void): () => void;

/** Listens to event `name` as unit `address`, once ready; returns the stop. */
export function listen<D = Json>(
  address: string,
  name: string,
  handler: (data: D, sender: string) => void,
  options?: EventOptions,
  onError?: (error: GaesupError) => void,
): () => void;

/** Sends event `name`; `null`, or the error that refused it. */
export function emit(address: string, name: string, data: Json, options?: EventOptions): GaesupError | null;

/** What `<gaesup-unit>` hands a unit's `mount(element, options)`. */
export interface MountOptions {
  /** The unit's address, `apartment/building/unit`. */
  unit: string;
  /** Reports an error the unit could not handle: the shell shows its fallback. */
  fail(error: unknown): void;
  /**
   * Registers what unmounts the unit, as soon as there is something to
   * undo: it runs however the unit ends, even if `mount` throws after
   * rendering. A function both registered and returned runs once.
   */
  onUnmount(teardown: () => void): void;
}

/** The parts of React the bindings use (pass `React` itself). */
export type ReactLike = Pick<
  typeof ReactTypes,
  'createContext' | 'createElement' | 'useCallback' | 'useContext' | 'useEffect' | 'useRef' | 'useSyncExternalStore'
>;

export interface ReactBindings {
  UnitProvider(props: { address: string; children?: ReactTypes.ReactNode }): ReactTypes.ReactElement;
  useSharedState<T = Json>(name: string, fallback: T, options?: SharedStateOptions): [T, Setter<T>, StateMeta];
  useStatePath<T = Json>(name: string, path: string, fallback: T): [T, StateMeta];
  useContainerEvent<D = Json>(
    name: string,
    handler: (data: D, sender: string) => void,
    options?: EventOptions,
  ): (data: Json) => GaesupError | null;
}

export function reactBindings(React: ReactLike): ReactBindings;

/** The parts of Vue the bindings use (pass `Vue`, or just these). */
export interface VueLike {
  computed: typeof import('vue').computed;
  getCurrentScope: typeof import('vue').getCurrentScope;
  inject: typeof import('vue').inject;
  onScopeDispose: typeof import('vue').onScopeDispose;
  shallowRef: typeof import('vue').shallowRef;
}

export interface VueBindings {
  provideUnit(app: App, address: string): void;
  useSharedState<T = Json>(
    name: string,
    fallback: T,
    options?: SharedStateOptions,
  ): { value: ComputedRef<T>; set: Setter<T>; meta: ComputedRef<StateMeta> };
  useStatePath<T = Json>(name: string, path: string, fallback: T): { value: ComputedRef<T>; meta: ComputedRef<StateMeta> };
  useContainerEvent<D = Json>(
    name: string,
    handler: (data: D, sender: string) => void,
    options?: EventOptions,
  ): (data: Json) => GaesupError | null;
}

export function vueBindings(Vue: VueLike): VueBindings;

/** Svelte's store contract. */
export interface Readable<T> {
  subscribe(run: (value: T) => void, invalidate?: () => void): () => void;
}

export interface SharedStore<T> extends Readable<T> {
  set(next: T): void;
  update(change: (current: T) => T): void;
  increment(delta: number): void;
  optimistic(next: T | ((current: T) => T), confirmation: Confirmation): Promise<boolean>;
  clearError(): void;
  meta: Readable<StateMeta>;
  destroy(): void;
}

export interface PathStore<T> extends Readable<T> {
  meta: Readable<StateMeta>;
  destroy(): void;
}

export interface EventStore<D> extends Readable<{ data: D; sender: string } | null> {
  emit(data: Json): GaesupError | null;
  destroy(): void;
}

export interface SvelteBindings {
  sharedStore<T = Json>(name: string, fallback: T, options?: SharedStateOptions): SharedStore<T>;
  pathStore<T = Json>(name: string, path: string, fallback: T): PathStore<T>;
  eventStore<D = Json>(name: string, options?: EventOptions): EventStore<D>;
}

export function svelteBindings(address: string): SvelteBindings;
