// A fake window.gaesup for the bindings' unit tests: the same surface as
// the wasm's (state/web/src/js.rs), in memory, counting what is attached so a
// test can tell that a cleanup really removed it.

function coded(code, message) {
  const error = new Error(message);
  error.code = code;
  return error;
}

function at(value, path) {
  let current = value;
  for (const segment of path.split('.')) {
    if (current === null || typeof current !== 'object' || !(segment in current)) return undefined;
    current = current[segment];
  }
  return current;
}

/** As the manager's (`state/src/manager/notify.rs`). */
const MAX_CASCADE_DEPTH = 100;

// A BigInt (how the manager hands an integer past 2^53) survives the
// copy, as it does a write to the manager and back.
const BIGINT = '\u0000bigint:';
const text = (value) => JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? `${BIGINT}${v}` : v));
const copy = (value) =>
  value === undefined
    ? undefined
    : JSON.parse(text(value), (_k, v) => (typeof v === 'string' && v.startsWith(BIGINT) ? BigInt(v.slice(BIGINT.length)) : v));

export class FakeGaesup {
  /** key name → { value, lastWriter, version } */
  keys = new Map();
  /** live subscriptions: { name, callback, path } */
  subscriptions = new Set();
  /** live event listeners: { name, callback } */
  listeners = new Set();
  /** every call of unit(), declare(), set()…, for assertions */
  calls = [];
  #stamp = 0;

  /** Declares `name` with `value` (what the Rust side of a unit does). */
  seed(name, value) {
    this.keys.set(name, { value, lastWriter: null, version: null });
  }

  /**
   * Another unit declares `name` after start-up: as the wasm does, the
   * key is there at once and `gaesup:declared` follows in a microtask.
   */
  declareLater(name, value, apartment = 'main') {
    this.seed(name, value);
    this.announce(name, apartment);
  }

  /** `gaesup:declared` for `name`, in a microtask (as the wasm sends it). */
  announce(name, apartment = 'main') {
    queueMicrotask(() =>
      globalThis.window.dispatchEvent(
        new CustomEvent('gaesup:declared', { detail: { apartment, name, scope: 'apartment' } }),
      ),
    );
  }

  #dispatching = false;
  #events = [];

  /**
   * Delivers an event as the wasm does: one emitted by a listener waits
   * until that listener returns, then reaches every listener after the
   * events emitted before it.
   */
  dispatch(name, data, sender) {
    this.#events.push([name, copy(data), sender]);
    if (this.#dispatching) return;
    this.#dispatching = true;
    try {
      while (this.#events.length > 0) {
        const [topic, payload, from] = this.#events.shift();
        for (const listener of [...this.listeners]) {
          if (listener.name === topic) listener.callback(copy(payload), from);
        }
      }
    } finally {
      this.#dispatching = false;
    }
  }

  #delivering = false;
  #depth = 0;
  #waiting = [];
  /** Changes dropped past the cascade bound (the manager reports each). */
  cutOff = 0;

  /**
   * A write from another unit or tab. As the manager does: the value
   * changes at once (a write of the same value tells nobody), and a
   * change made while subscribers are being told
   * of another waits until they return, one step deeper; past
   * `MAX_CASCADE_DEPTH` steps it is not delivered.
   */
  write(name, value, writer = 'main/other/unit') {
    const key = this.keys.get(name);
    if (!key) throw coded('unknown_key', `unknown key ${name}`);
    const old = key.value;
    key.value = copy(value);
    key.lastWriter = writer;
    key.version = `${++this.#stamp}.0@1`;
    const now = key.value;
    // As the manager: a write of the value held moves its writer and
    // version, and nobody is told (nothing changed).
    if (text(old) === text(now)) return;
    const deliveries = [];
    for (const sub of [...this.subscriptions]) {
      if (sub.name !== name) continue;
      if (sub.path === undefined) deliveries.push(() => sub.callback(copy(now)));
      else if (text(at(old, sub.path)) !== text(at(now, sub.path))) {
        deliveries.push(() => sub.callback(copy(at(now, sub.path))));
      }
    }
    if (this.#delivering) {
      this.#waiting.push(...deliveries.map((delivery) => [delivery, this.#depth + 1]));
      return;
    }
    this.#delivering = true;
    try {
      for (const delivery of deliveries) delivery();
      while (this.#waiting.length > 0) {
        const [delivery, depth] = this.#waiting.shift();
        if (depth > MAX_CASCADE_DEPTH) {
          this.cutOff += 1;
          continue;
        }
        this.#depth = depth;
        delivery();
      }
    } finally {
      this.#delivering = false;
      this.#depth = 0;
      this.#waiting = [];
    }
  }

  unit(address) {
    this.calls.push(['unit', address]);
    if (address.split('/').length !== 3) throw coded('invalid_id', `bad address ${address}`);
    const fake = this;
    const key = (name) => {
      const found = fake.keys.get(name);
      if (!found) throw coded('unknown_key', `unknown key ${name}`);
      return found;
    };
    return {
      address,
      declare(name, rules = {}) {
        fake.calls.push(['declare', name]);
        if (fake.keys.has(name)) return;
        fake.seed(name, rules.default ?? (rules.strategy === 'sum' ? 0 : null));
        fake.announce(name, address.split('/')[0]);
      },
      get: (name) => copy(key(name).value),
      getPath: (name, path) => copy(at(key(name).value, path)),
      meta(name) {
        const { lastWriter, version } = key(name);
        return { lastWriter, version };
      },
      set(name, value) {
        fake.calls.push(['set', name, value]);
        if (value === 'refused') throw coded('permission_denied', 'refused on purpose');
        key(name);
        fake.write(name, value, address);
      },
      setPath(name, path, value) {
        fake.calls.push(['setPath', name, path, value]);
        const whole = copy(key(name).value);
        const segments = path.split('.');
        const last = segments.pop();
        const parent = segments.length === 0 ? whole : at(whole, segments.join('.'));
        if (parent === null || typeof parent !== 'object') {
          throw coded('invalid_path', `${path} leads nowhere in ${name}`);
        }
        parent[last] = copy(value);
        fake.write(name, whole, address);
      },
      increment(name, delta) {
        fake.calls.push(['increment', name, delta]);
        fake.write(name, key(name).value + delta, address);
      },
      setOptimistic(name, value) {
        const before = copy(key(name).value);
        this.set(name, value);
        const written = fake.#stamp;
        // As the real one: settled once, then freed.
        let settled = false;
        const settle = () => {
          if (settled) {
            throw Object.assign(new Error('bad value: this write was already confirmed or reverted'), { code: 'bad_value' });
          }
          settled = true;
        };
        return {
          confirm() {
            settle();
            fake.calls.push(['confirm', name]);
          },
          revert() {
            settle();
            fake.calls.push(['revert', name]);
            if (fake.#stamp !== written) return false;
            fake.write(name, before, address);
            return true;
          },
          free() {
            fake.calls.push(['free', name]);
          },
        };
      },
      subscribe(name, callback, options = {}) {
        fake.calls.push(['subscribe', name]);
        key(name);
        const sub = { name, callback, path: options.path };
        fake.subscriptions.add(sub);
        return () => fake.subscriptions.delete(sub);
      },
      emit(name, data, options = {}) {
        fake.calls.push(['emit', name, data, options]);
        fake.dispatch(name, data, address);
      },
      on(name, callback) {
        const listener = { name, callback };
        fake.listeners.add(listener);
        return () => fake.listeners.delete(listener);
      },
    };
  }
}

/**
 * Puts a `window` (an EventTarget, or the one given) on globalThis with no
 * gaesup yet; `publish(fake)` then does what the wasm does at start-up.
 */
export function installWindow(win = globalThis.window ?? new EventTarget()) {
  globalThis.window = win;
  delete win.gaesup;
  return {
    window: win,
    publish(fake) {
      win.gaesup = fake;
      win.dispatchEvent(new (win.Event ?? Event)('gaesup:ready'));
    },
  };
}

/** Counts `gaesup:ready` listeners on `win` (what waiting leaves behind). */
export function countReadyListeners(win) {
  // A `once` listener that fired is gone too (this one is not counted).
  win.addEventListener('gaesup:ready', () => count.clear());
  const count = countListeners(win, 'gaesup:ready');
  return () => count.size();
}

/** Counts the live listeners of events `type` on `win`: `{ size(), clear() }`. */
export function countListeners(win, type) {
  const add = win.addEventListener.bind(win);
  const remove = win.removeEventListener.bind(win);
  const live = new Set();
  win.addEventListener = (kind, listener, options) => {
    if (kind === type) live.add(listener);
    add(kind, listener, options);
  };
  win.removeEventListener = (kind, listener, options) => {
    if (kind === type) live.delete(listener);
    remove(kind, listener, options);
  };
  return { size: () => live.size, clear: () => live.clear() };
}
