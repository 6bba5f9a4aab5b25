// <gaesup-js-counter unit="apartment/building/unit">
//
// A unit written in plain JavaScript: no framework, no build step. It uses
// the same state manager as the Leptos units through window.gaesup, so it
// shares the building's `count` key with the Leptos counter: a click here
// shows there and back, across tabs too.
//
// Values are always rendered with textContent, never as HTML.

const READY = 'gaesup:ready';

class GaesupJsCounter extends HTMLElement {
  connectedCallback() {
    if (!this.output) this.render();
    if (window.gaesup) {
      this.attach();
    } else {
      this.onReady = () => this.attach();
      window.addEventListener(READY, this.onReady, { once: true });
    }
  }

  disconnectedCallback() {
    if (this.onReady) window.removeEventListener(READY, this.onReady);
    this.onReady = undefined;
    if (this.stop) this.stop();
    this.stop = undefined;
  }

  render() {
    const box = document.createElement('div');
    box.className = 'counter';
    this.output = document.createElement('output');
    this.output.className = 'counter-value';
    this.output.setAttribute('aria-live', 'polite');
    this.output.setAttribute('aria-label', 'Count');
    this.output.textContent = '…';
    const actions = document.createElement('div');
    actions.className = 'counter-actions';
    actions.append(
      this.button('−', 'Decrement', () => this.unit?.increment('count', -1)),
      this.button('+', 'Increment', () => this.unit?.increment('count', 1)),
      this.button('Reset', null, () => this.unit?.set('count', 0)),
    );
    this.error = document.createElement('p');
    this.error.className = 'unit-error';
    this.error.setAttribute('role', 'alert');
    box.append(this.output, actions);
    this.replaceChildren(box, this.error);
  }

  button(text, label, action) {
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = text;
    if (label) button.setAttribute('aria-label', label);
    button.addEventListener('click', () => this.guard(action));
    return button;
  }

  attach() {
    this.onReady = undefined;
    this.guard(() => {
      this.unit = window.gaesup.unit(this.getAttribute('unit') ?? '');
      // Finds the key the Rust side declared; the rules must match.
      this.unit.declare('count', { scope: 'building', lifetime: 'persistent', strategy: 'sum' });
      this.show(this.unit.get('count'));
      this.stop = this.unit.subscribe('count', (value) => this.show(value));
    });
  }

  show(value) {
    this.output.textContent = String(value);
  }

  // Errors from the state manager carry a stable `code`; show them in the
  // unit instead of letting them escape.
  guard(action) {
    try {
      action();
      this.error.textContent = '';
    } catch (error) {
      this.error.textContent = `${error.code ?? 'error'}: ${error.message}`;
    }
  }
}

customElements.define('gaesup-js-counter', GaesupJsCounter);
