// <gaesup-unit> (js/gaesup-unit.js) with node's test runner, on a minimal
// stand-in for the DOM: the element's life (connect, mount, fail,
// disconnect) and what it undoes, with units given as data: modules.
import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';

let Element;
globalThis.HTMLElement = class {
  attributes = {};
  listeners = {};
  getAttribute(name) {
    return this.attributes[name] ?? null;
  }
  addEventListener(type, listener) {
    (this.listeners[type] ??= []).push(listener);
  }
  dispatchEvent(event) {
    for (const listener of this.listeners[event.type] ?? []) listener(event);
    return true;
  }
};
globalThis.customElements = {
  define(name, element) {
    assert.equal(name, 'gaesup-unit');
    Element = element;
  },
};
globalThis.document = { baseURI: 'http://site.test/' };
await import('../gaesup-unit.js');

// What the units of a test did, in order, and what was reported.
let log;
let reported;
beforeEach(() => {
  log = [];
  reported = [];
  globalThis.unitLog = log;
});
console.error = (error) => reported.push(error instanceof Error ? error.message : String(error));

/** A `<gaesup-unit>` whose module is `source`, connected. */
function connect(source) {
  const element = new Element();
  element.attributes = { src: `data:text/javascript,${encodeURIComponent(source)}`, unit: 'main/b/u' };
  element.addEventListener('gaesup-unit-failed', (event) => log.push(`failed: ${event.detail}`));
  globalThis.unitElement = element;
  element.connectedCallback();
  return element;
}

/** Lets the import, the mount and the microtasks after them run until `done()`. */
async function until(done) {
  for (let turn = 0; turn < 1000 && !done(); turn += 1) {
    await new Promise((resolve) => setImmediate(resolve));
  }
  assert.ok(done(), `never happened; log: ${JSON.stringify(log)}`);
}

test('what mount registered is undone when mount throws after rendering', async () => {
  connect(`export function mount(element, { onUnmount }) {
    onUnmount(() => unitLog.push('undone'));
    unitLog.push('rendered');
    throw new Error('broke after rendering');
  }`);
  await until(() => log.includes('undone'));
  assert.deepEqual(log, ['rendered', 'failed: broke after rendering', 'undone']);
});

test('a disconnect undoes each teardown once, the last registered first, past one that throws', async () => {
  const element = connect(`export function mount(element, { onUnmount }) {
    const returned = () => unitLog.push('returned');
    onUnmount(() => unitLog.push('first'));
    onUnmount(() => { throw new Error('teardown threw'); });
    onUnmount(returned);
    unitLog.push('mounted');
    return returned;
  }`);
  await until(() => log.includes('mounted'));
  element.disconnectedCallback();
  element.disconnectedCallback();
  assert.deepEqual(log, ['mounted', 'returned', 'first']);
  assert.deepEqual(reported, ['teardown threw']);
});

test('a teardown runs once however often it is registered, before or after the unit ends', async () => {
  const element = connect(`let register;
    const teardown = () => unitLog.push('undone');
    export function mount(element, { onUnmount }) {
      register = onUnmount;
      onUnmount(teardown);
      unitElement.disconnectedCallback();
      unitLog.push('disconnected while mounting');
      return teardown;
    }
    globalThis.registerAgain = () => register(teardown);
    globalThis.registerLate = () => register(() => unitLog.push('late one undone at once'));`);
  await until(() => log.includes('disconnected while mounting'));
  await until(() => globalThis.registerAgain !== undefined);
  globalThis.registerAgain();
  globalThis.registerLate();
  element.disconnectedCallback();
  assert.deepEqual(log, ['undone', 'disconnected while mounting', 'late one undone at once']);
});

test('fail called while mounting: the fallback, then each teardown once', async () => {
  connect(`export function mount(element, { fail, onUnmount }) {
    const teardown = () => unitLog.push('undone');
    onUnmount(teardown);
    fail(new Error('told to fail'));
    fail(new Error('told again'));
    return teardown;
  }`);
  await until(() => log.includes('undone'));
  assert.deepEqual(log, ['failed: told to fail', 'undone']);
});

test('a mount that is async, returns something else, or leaves nothing to undo fails loudly', async () => {
  connect(`export async function mount(element, { onUnmount }) {
    onUnmount(() => unitLog.push('async one undone'));
  }`);
  await until(() => log.includes('async one undone'));
  assert.match(log[0], /^failed: .*mount\(\) must not be async/);

  log.length = 0;
  connect(`export function mount(element, { onUnmount }) {
    onUnmount(() => unitLog.push('undone'));
    return { destroy() {} };
  }`);
  await until(() => log.includes('undone'));
  assert.match(log[0], /^failed: .*must return the function that unmounts the unit/);

  log.length = 0;
  connect('export function mount() {}');
  await until(() => log.length > 0);
  assert.match(log[0], /^failed: .*must return the function that unmounts the unit/);

  // Registering only is enough.
  log.length = 0;
  const element = connect(`export function mount(element, { onUnmount }) {
    onUnmount(() => unitLog.push('undone'));
    unitLog.push('mounted');
  }`);
  await until(() => log.includes('mounted'));
  element.disconnectedCallback();
  assert.deepEqual(log, ['mounted', 'undone']);
});
