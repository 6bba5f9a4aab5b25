// <gaesup-unit src="units/react-counter.js" unit="apartment/building/unit">
//
// Mounts a unit written with a JavaScript framework. Its module, and with
// it the framework, is imported only when the element is connected: when
// the shell shows a building (or a page) holding the unit. Pages without
// one never load any framework. The module exports
// `mount(element, { unit, fail })`, which renders the unit into `element`
// and returns the function that unmounts it; `fail(error)` is how the unit
// reports an error it could not handle (React's onUncaughtError, Vue's
// errorHandler, a Svelte boundary's onerror).
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
          throw new Error(`${src} exports no mount(element, { unit, fail })`);
        }
        const unmount = module.mount(this, { unit, fail: (error) => this.#fail(error, generation) });
        if (typeof unmount !== 'function') {
          throw new Error(`${src}: mount() must return the function that unmounts the unit`);
        }
        if (generation === this.#generation) this.#unmount = unmount;
        else unmount();
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

customElements.define('gaesup-unit', GaesupUnitElement);
