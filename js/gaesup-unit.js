// <gaesup-unit src="units/react-counter.js" unit="apartment/building/unit">
//
// Mounts a unit written with a JavaScript framework. Its module, and with
// it the framework, is imported only when the element is connected: when
// the shell shows a building (or a page) holding the unit. Pages without
// one never load any framework. The module exports
// `mount(element, { unit, fail, onUnmount })`, which renders the unit into
// `element` and returns the function that unmounts it; `fail(error)` is
// how the unit reports an error it could not handle (React's
// onUncaughtError, Vue's errorHandler, a Svelte boundary's onerror).
// `onUnmount(teardown)` registers that function (or several) as soon as
// there is something to undo: if mount throws after rendering, what it
// registered still runs, so its subscriptions do not outlive it. A
// function both registered and returned runs once.
//
// Any failure (the module does not load, mount throws, the unit calls
// fail) unmounts the unit and fires `gaesup-unit-failed` on the element,
// with the message as `detail`: the shell then shows the unit's fallback
// inside its frame, with a retry. The rest of the page is not touched.

class GaesupUnitElement extends HTMLElement {
  // Bumped on every connect, disconnect and failure: a late import or
  // mount belonging to an older generation is dropped.
  #generation = 0;
  #unmount = null;

  connectedCallback() {
    const generation = ++this.#generation;
    const src = this.getAttribute('src') ?? '';
    const unit = this.getAttribute('unit') ?? '';
    // Relative to <base>, so the site works from a sub-path too.
    import(new URL(src, document.baseURI).href)
      .then((module) => {
        if (generation !== this.#generation) return;
        if (typeof module.mount !== 'function') {
          throw new Error(`${src} exports no mount(element, { unit, fail, onUnmount })`);
        }
        // What the unit registers as it mounts: undone however the unit
        // ends, a throw from mount itself included. Registered once it
        // was undone (late, from a callback of the unit's): undone at once.
        const teardowns = [];
        // Every function ever registered: each runs once, even one
        // registered again after the unit was undone.
        const registered = new Set();
        let undone = false;
        const onUnmount = (teardown) => {
          if (typeof teardown !== 'function' || registered.has(teardown)) return;
          registered.add(teardown);
          if (undone) undo([teardown]);
          else teardowns.push(teardown);
        };
        this.#unmount = () => {
          undone = true;
          undo(teardowns.splice(0));
        };
        const returned = module.mount(this, { unit, fail: (error) => this.#fail(error, generation), onUnmount });
        // Mounting is synchronous: a promise (an async mount) would fail
        // where nobody hears it, with the unit half mounted.
        if (typeof returned?.then === 'function') {
          throw new Error(`${src}: mount() must not be async: it returned a promise`);
        }
        if (typeof returned !== 'function' && (returned !== undefined || registered.size === 0)) {
          throw new Error(
            `${src}: mount() must return the function that unmounts the unit (or register it with onUnmount)`,
          );
        }
        // If the unit failed while mounting, its unmount is queued (see
        // #fail) and runs this too.
        onUnmount(returned);
      })
      .catch((error) => this.#fail(error, generation));
  }

  disconnectedCallback() {
    this.#generation += 1;
    const unmount = this.#unmount;
    this.#unmount = null;
    unmount?.();
  }

  #fail(error, generation) {
    if (generation !== this.#generation) return;
    this.#generation += 1;
    const unmount = this.#unmount;
    this.#unmount = null;
    // Not from inside the framework's own error handling: after it.
    queueMicrotask(() => unmount?.());
    const message = error instanceof Error ? error.message : String(error);
    this.dispatchEvent(new CustomEvent('gaesup-unit-failed', { detail: message }));
  }
}

/**
 * Runs each teardown, the last registered first; one that throws is
 * reported and the others still run.
 */
function undo(teardowns) {
  for (const teardown of teardowns.reverse()) {
    try {
      teardown();
    } catch (error) {
      console.error(error);
    }
  }
}

customElements.define('gaesup-unit', GaesupUnitElement);
