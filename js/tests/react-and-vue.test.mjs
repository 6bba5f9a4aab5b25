// The React and Vue bindings, mounted for real (react-dom, Vue's runtime)
// in happy-dom, against a fake window.gaesup.
import { test, beforeEach, after } from 'node:test';
import assert from 'node:assert/strict';
import { Window } from 'happy-dom';
import { FakeGaesup, installWindow, countReadyListeners } from './fake-gaesup.mjs';

const browser = new Window({ url: 'http://127.0.0.1/' });
globalThis.window = browser;
globalThis.document = browser.document;
globalThis.IS_REACT_ACT_ENVIRONMENT = true;
// react-dom and Vue's runtime read these globals.
for (const name of ['HTMLElement', 'HTMLIFrameElement', 'SVGElement', 'Element', 'Node', 'Event', 'navigator']) {
  globalThis[name] ??= browser[name];
}

const React = await import('react');
const { createRoot } = await import('react-dom/client');
const Vue = await import('vue');
const { reactBindings, vueBindings } = await import('../gaesup-bindings.js');

const { act, createElement: h } = React;
const react = reactBindings(React);
const vue = vueBindings(Vue);
const UNIT = 'main/studio/react';

let page;
let readyListeners;

beforeEach(() => {
  page = installWindow(browser);
  readyListeners = countReadyListeners(browser);
});

after(() => browser.close());

function ready(values = { count: 0 }) {
  const fake = new FakeGaesup();
  for (const [name, value] of Object.entries(values)) fake.seed(name, value);
  page.publish(fake);
  return fake;
}

async function render(element, options = {}) {
  const container = document.createElement('div');
  document.body.append(container);
  const root = createRoot(container, options);
  await act(async () => root.render(element));
  return {
    container,
    text: () => container.textContent,
    async unmount() {
      await act(async () => root.unmount());
      container.remove();
    },
  };
}

function Counter() {
  const [count, setCount, meta] = react.useSharedState('count', -1);
  const [note] = react.useSharedState('note', '');
  window.renderedCount = count;
  return h(
    'p',
    null,
    `${count}|${meta.lastWriter ?? 'nobody'}|${meta.error?.code ?? 'ok'}|${note}`,
    h('button', { onClick: () => setCount.increment(1) }, '+'),
  );
}

test('react: useSharedState renders the value, follows changes, writes, and unsubscribes on unmount', async () => {
  const fake = ready({ count: 2, note: '<b>x</b>' });
  const view = await render(h(react.UnitProvider, { address: UNIT }, h(Counter)));
  assert.match(view.text(), /^2\|nobody\|ok\|<b>x<\/b>/, 'values are text');
  assert.equal(fake.subscriptions.size, 2);

  await act(async () => fake.write('count', 5, 'main/studio/leptos'));
  assert.match(view.text(), /^5\|main\/studio\/leptos\|ok/);

  await act(async () => view.container.querySelector('button').click());
  assert.match(view.text(), /^6\|main\/studio\/react\|ok/);
  assert.deepEqual(fake.calls.filter(([c]) => c === 'increment'), [['increment', 'count', 1]]);

  await view.unmount();
  assert.equal(fake.subscriptions.size, 0, 'no subscription left after unmount');
});

test('react: a unit rendered before gaesup:ready shows the fallback, then the value; unmounting early leaves no listener', async () => {
  const early = await render(h(react.UnitProvider, { address: UNIT }, h(Counter)));
  assert.match(early.text(), /^-1\|nobody\|ok\|/);
  assert.equal(readyListeners(), 2, 'one wait per hook');
  await early.unmount();
  assert.equal(readyListeners(), 0, 'unmounted before ready: the waits are gone');

  const view = await render(h(react.UnitProvider, { address: UNIT }, h(Counter)));
  const fake = await act(async () => ready({ count: 4, note: 'n' }));
  assert.match(view.text(), /^4\|nobody\|ok\|n/);
  await view.unmount();
  assert.equal(fake.subscriptions.size, 0);
  assert.equal(readyListeners(), 0);
});

test('react: StrictMode mounts twice and still leaves exactly one subscription per hook, then none', async () => {
  const fake = ready({ count: 1, note: '' });
  const view = await render(
    h(React.StrictMode, null, h(react.UnitProvider, { address: UNIT }, h(Counter))),
  );
  assert.equal(fake.subscriptions.size, 2);
  await view.unmount();
  assert.equal(fake.subscriptions.size, 0);
});

test('react: errors go to meta.error, and a hook outside UnitProvider throws a coded error', async () => {
  const fake = ready({ note: '' });
  const view = await render(h(react.UnitProvider, { address: UNIT }, h(Counter)));
  assert.match(view.text(), /unknown_key/, 'count is not declared here');
  await view.unmount();
  assert.equal(fake.subscriptions.size, 0, 'the refused key left nothing either');

  function Orphan() {
    react.useSharedState('count', 0);
    return null;
  }
  // act() hands the uncaught render error back.
  await assert.rejects(render(h(Orphan), { onUncaughtError: () => {} }), { code: 'no_unit' });
});

test('react: useStatePath and useContainerEvent, cleaned up on unmount', async () => {
  const fake = ready({ cart: { items: [{ qty: 1 }] } });
  let renders = 0;
  let emitWave;
  const heard = [];
  function Cart() {
    renders += 1;
    const [qty] = react.useStatePath('cart', 'items.0.qty', 0);
    emitWave = react.useContainerEvent('wave', (data, sender) => heard.push([data, sender]), {
      scope: 'building',
    });
    return h('span', null, String(qty));
  }
  const view = await render(h(react.UnitProvider, { address: UNIT }, h(Cart)));
  assert.equal(view.text(), '1');
  const before = renders;
  await act(async () => fake.write('cart', { items: [{ qty: 1 }], other: true }));
  assert.equal(renders, before, 'a change elsewhere does not re-render');
  await act(async () => fake.write('cart', { items: [{ qty: 3 }] }));
  assert.equal(view.text(), '3');

  assert.equal(emitWave('hi'), null);
  assert.deepEqual(heard, [['hi', UNIT]]);
  assert.equal(fake.listeners.size, 1);
  await view.unmount();
  assert.equal(fake.subscriptions.size, 0);
  assert.equal(fake.listeners.size, 0, 'the event listener went with the component');
});

test('vue: useSharedState gives readonly refs and a setter, cleaned up with its effect scope', async () => {
  const fake = ready({ count: 2 });
  const app = Vue.createApp({});
  vue.provideUnit(app, 'main/studio/vue');
  const scope = Vue.effectScope();
  const state = app.runWithContext(() => scope.run(() => vue.useSharedState('count', 0)));
  assert.equal(state.value.value, 2);
  assert.equal(fake.subscriptions.size, 1);

  fake.write('count', 3, 'main/studio/leptos');
  assert.equal(state.value.value, 3);
  assert.equal(state.meta.value.lastWriter, 'main/studio/leptos');
  state.set.increment(2);
  assert.equal(state.value.value, 5);
  assert.equal(Vue.isReadonly(state.value), true, 'the value ref is readonly');

  scope.stop();
  assert.equal(fake.subscriptions.size, 0, 'stopping the scope unsubscribes');
  fake.write('count', 9);
  assert.equal(state.value.value, 5);
});

test('vue: a component mounts, renders as text, re-renders on change, and unmount leaves nothing', async () => {
  const fake = ready({ note: '<img src=x onerror=alert(1)>' });
  const heard = [];
  const Note = Vue.defineComponent({
    setup() {
      const { value, meta } = vue.useSharedState('note', '');
      const emitWave = vue.useContainerEvent('wave', (data) => heard.push(data));
      const first = vue.useStatePath('note', 'length', 0);
      return () => [
        Vue.h('p', null, value.value),
        Vue.h('span', null, meta.value.lastWriter ?? 'nobody'),
        Vue.h('button', { onClick: () => emitWave('hey') }, String(first.value.value ?? '')),
      ];
    },
  });
  const app = Vue.createApp(Note);
  vue.provideUnit(app, 'main/studio/vue');
  const container = document.createElement('div');
  app.mount(container);
  assert.equal(container.querySelector('p').textContent, '<img src=x onerror=alert(1)>');
  assert.equal(container.querySelector('img'), null, 'no element made from a value');

  fake.write('note', 'plain', 'main/studio/react');
  await Vue.nextTick();
  assert.equal(container.querySelector('p').textContent, 'plain');
  assert.equal(container.querySelector('span').textContent, 'main/studio/react');
  container.querySelector('button').click();
  assert.deepEqual(heard, ['hey']);
  assert.equal(fake.subscriptions.size, 2);
  assert.equal(fake.listeners.size, 1);

  app.unmount();
  assert.equal(fake.subscriptions.size, 0);
  assert.equal(fake.listeners.size, 0);
});

test('vue: outside a scope or without provideUnit, a coded error; before ready, the scope cancels the wait', () => {
  assert.throws(() => vue.useSharedState('count', 0), { code: 'no_scope' });
  const scope = Vue.effectScope();
  assert.throws(() => scope.run(() => vue.useSharedState('count', 0)), { code: 'no_unit' });
  scope.stop();

  const app = Vue.createApp({});
  vue.provideUnit(app, 'main/studio/vue');
  const waiting = Vue.effectScope();
  const state = app.runWithContext(() => waiting.run(() => vue.useSharedState('count', 8)));
  assert.equal(state.value.value, 8);
  assert.equal(readyListeners(), 1);
  waiting.stop();
  assert.equal(readyListeners(), 0);
  const fake = ready({ count: 1 });
  assert.equal(fake.subscriptions.size, 0);
});
