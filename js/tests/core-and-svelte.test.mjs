// SharedState, the event helpers and the Svelte stores against a fake
// window.gaesup, with node's test runner.
import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { get, derived } from 'svelte/store';
import { FakeGaesup, installWindow, countReadyListeners, countListeners } from './fake-gaesup.mjs';
import { SharedState, listen, emit, svelteBindings } from '../gaesup-bindings.js';

const UNIT = 'main/studio/svelte';
let page;
let readyListeners;

beforeEach(() => {
  page = installWindow(new EventTarget());
  readyListeners = countReadyListeners(page.window);
});

function ready(values = { count: 0 }) {
  const fake = new FakeGaesup();
  for (const [name, value] of Object.entries(values)) fake.seed(name, value);
  page.publish(fake);
  return fake;
}

test('a state waits for gaesup:ready, then shows the value and follows changes', () => {
  const state = new SharedState(UNIT, 'count', 7);
  const seen = [];
  const stop = state.subscribe(() => seen.push(state.getSnapshot().value));
  assert.equal(state.getSnapshot().value, 7, 'the fallback until ready');
  assert.equal(state.getSnapshot().meta.ready, false);
  assert.equal(readyListeners(), 1);

  const fake = ready({ count: 3 });
  assert.equal(state.getSnapshot().value, 3);
  assert.equal(state.getSnapshot().meta.ready, true);
  fake.write('count', 4, 'main/studio/leptos');
  assert.deepEqual(seen, [3, 4]);
  assert.equal(state.getSnapshot().meta.lastWriter, 'main/studio/leptos');

  stop();
  assert.equal(fake.subscriptions.size, 0, 'the last listener gone, the subscription goes');
  fake.write('count', 5);
  assert.deepEqual(seen, [3, 4], 'nothing after unsubscribe');
});

test('unsubscribing before ready removes the ready listener and never subscribes', () => {
  const state = new SharedState(UNIT, 'count', 0);
  const stop = state.subscribe(() => {});
  assert.equal(readyListeners(), 1);
  stop();
  assert.equal(readyListeners(), 0, 'no gaesup:ready listener left behind');
  const fake = ready();
  assert.equal(fake.subscriptions.size, 0);
  assert.equal(state.listenerCount, 0);
});

test('the snapshot is the same object until something changes (useSyncExternalStore needs it)', () => {
  const fake = ready({ count: 1 });
  const state = new SharedState(UNIT, 'count', 0);
  const stop = state.subscribe(() => {});
  const first = state.getSnapshot();
  assert.equal(state.getSnapshot(), first);
  fake.write('count', 2);
  assert.notEqual(state.getSnapshot(), first);
  stop();
});

test('several listeners share one subscription, released by the last', () => {
  const fake = ready();
  const state = new SharedState(UNIT, 'count', 0);
  const a = state.subscribe(() => {});
  const b = state.subscribe(() => {});
  assert.equal(fake.subscriptions.size, 1);
  a();
  a();
  assert.equal(fake.subscriptions.size, 1, 'calling an unsubscribe twice removes nothing else');
  b();
  assert.equal(fake.subscriptions.size, 0);
});

test('writes: set, updater, increment; a refused write lands in meta.error, not a throw', () => {
  const fake = ready({ count: 1, note: '' });
  const count = new SharedState(UNIT, 'count', 0);
  const stop = count.subscribe(() => {});
  count.set(5);
  count.set((n) => n + 1);
  count.increment(2);
  assert.equal(count.getSnapshot().value, 8);
  assert.equal(count.getSnapshot().meta.lastWriter, UNIT);

  const note = new SharedState(UNIT, 'note', '');
  note.set('refused');
  assert.equal(note.getSnapshot().meta.error?.code, 'permission_denied');
  note.set('fine');
  assert.equal(note.getSnapshot().meta.error, null, 'a successful write clears the error');
  stop();
  assert.equal(fake.subscriptions.size, 0);
});

test('an unknown key is an error in meta, and rules declare it first', () => {
  const fake = ready({});
  const missing = new SharedState(UNIT, 'nope', 'x');
  const stop = missing.subscribe(() => {});
  assert.equal(missing.getSnapshot().meta.error?.code, 'unknown_key');
  assert.equal(missing.getSnapshot().value, 'x');
  stop();

  const declared = new SharedState(UNIT, 'likes', 0, { rules: { scope: 'building', strategy: 'sum' } });
  const stop2 = declared.subscribe(() => {});
  assert.deepEqual(fake.calls.filter(([c]) => c === 'declare'), [['declare', 'likes']]);
  declared.increment(1);
  assert.equal(declared.getSnapshot().value, 1);
  stop2();
  assert.equal(fake.subscriptions.size, 0);
});

/** Lets the microtasks queued so far run (`gaesup:declared` comes in one). */
const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

test('a state subscribed before its key is declared connects once another unit declares it', async () => {
  const declaredListeners = countListeners(page.window, 'gaesup:declared');
  const fake = ready({});
  const late = new SharedState(UNIT, 'late', 'fallback');
  const seen = [];
  const stop = late.subscribe(() => seen.push(late.getSnapshot().value));
  assert.equal(late.getSnapshot().meta.error?.code, 'unknown_key');
  assert.equal(fake.subscriptions.size, 0);
  assert.equal(declaredListeners.size(), 1, 'waiting for the key');

  // Another name, or the same name in another apartment: still waiting,
  // without trying again.
  const tries = () => fake.calls.filter(([call, name]) => call === 'subscribe' && name === 'late').length;
  assert.equal(tries(), 1);
  fake.declareLater('other', 1);
  fake.announce('late', 'elsewhere');
  await settle();
  assert.equal(tries(), 1);
  assert.equal(fake.subscriptions.size, 0);
  assert.equal(late.getSnapshot().meta.error?.code, 'unknown_key');

  fake.declareLater('late', 5);
  await settle();
  assert.equal(fake.subscriptions.size, 1, 'subscribed once the key exists');
  assert.equal(declaredListeners.size(), 0, 'no longer waiting');
  assert.equal(late.getSnapshot().value, 5);
  assert.equal(late.getSnapshot().meta.error, null, 'the error of the missing key is gone');
  assert.equal(late.getSnapshot().meta.ready, true);
  fake.write('late', 6, 'main/studio/leptos');
  assert.deepEqual(seen.slice(-2), [5, 6]);

  stop();
  assert.equal(fake.subscriptions.size, 0);
});

test('a state that stops waiting for its key leaves no listener, and keeps a write error', async () => {
  const declaredListeners = countListeners(page.window, 'gaesup:declared');
  const fake = ready({});
  const late = new SharedState(UNIT, 'late', 0);
  const stop = late.subscribe(() => {});
  assert.equal(declaredListeners.size(), 1);
  stop();
  assert.equal(declaredListeners.size(), 0, 'unsubscribing ends the wait');
  fake.declareLater('late', 5);
  await settle();
  assert.equal(fake.subscriptions.size, 0, 'nobody listens: nothing subscribes');

  // A write's error is not a read's: a read that succeeds keeps it.
  const kept = new SharedState(UNIT, 'late', 0);
  const stop2 = kept.subscribe(() => {});
  kept.set('refused');
  assert.equal(kept.getSnapshot().meta.error?.code, 'permission_denied');
  fake.write('late', 7);
  assert.equal(kept.getSnapshot().value, 7);
  assert.equal(kept.getSnapshot().meta.error?.code, 'permission_denied');
  stop2();
});

test('while waiting for its key: a refused write stays shown, one refused for the missing key goes', async () => {
  const fake = ready({});
  // Refused for another reason while the read had failed: still shown
  // once the key is there and reads.
  const refused = new SharedState(UNIT, 'late', 0);
  const stop = refused.subscribe(() => {});
  refused.set('refused');
  assert.equal(refused.getSnapshot().meta.error?.code, 'permission_denied');
  // Refused because the key did not exist yet: that is over once it does.
  const early = new SharedState(UNIT, 'early', 0);
  const stop2 = early.subscribe(() => {});
  early.set(1);
  assert.equal(early.getSnapshot().meta.error?.code, 'unknown_key');

  fake.declareLater('late', 5);
  fake.declareLater('early', 2);
  await settle();
  assert.equal(refused.getSnapshot().value, 5);
  assert.equal(refused.getSnapshot().meta.error?.code, 'permission_denied');
  assert.equal(early.getSnapshot().value, 2, 'the write made before the key existed did not land');
  assert.equal(early.getSnapshot().meta.error, null);
  stop();
  stop2();
});

test('a subscription refused for another reason than a missing key does not wait for one', async () => {
  const declaredListeners = countListeners(page.window, 'gaesup:declared');
  const fake = ready({ count: 1 });
  const misplaced = new SharedState('not-an-address', 'count', 0);
  const stop = misplaced.subscribe(() => {});
  assert.equal(misplaced.getSnapshot().meta.error?.code, 'invalid_id');
  assert.equal(declaredListeners.size(), 0);
  fake.declareLater('count', 2);
  await settle();
  assert.equal(fake.subscriptions.size, 0);
  stop();
});

test('optimistic writes: pending while waiting, kept on success, taken back on rejection', async () => {
  const fake = ready({ note: 'a' });
  const note = new SharedState(UNIT, 'note', '');
  const stop = note.subscribe(() => {});

  let confirm;
  const kept = note.optimistic('b', new Promise((resolve) => (confirm = resolve)));
  assert.equal(note.getSnapshot().value, 'b', 'shown at once');
  assert.equal(note.getSnapshot().meta.pending, true);
  confirm();
  assert.equal(await kept, true);
  assert.equal(note.getSnapshot().meta.pending, false);
  assert.equal(note.getSnapshot().value, 'b');

  const dropped = await note.optimistic('c', () => Promise.reject(new Error('server said no')));
  assert.equal(dropped, false);
  assert.equal(note.getSnapshot().value, 'b', 'rolled back');
  assert.equal(note.getSnapshot().meta.error?.code, 'rejected');
  assert.match(note.getSnapshot().meta.error.message, /server said no/);
  assert.equal(note.getSnapshot().meta.pending, false);
  note.clearError();
  assert.equal(note.getSnapshot().meta.error, null);

  // Someone writes over it while it waits: the rollback keeps their write.
  let reject;
  const overtaken = note.optimistic('d', new Promise((_, no) => (reject = no)));
  fake.write('note', 'theirs');
  reject(new Error('late'));
  assert.equal(await overtaken, false);
  assert.equal(note.getSnapshot().value, 'theirs');
  // Each write settled once, then freed at once.
  const settled = fake.calls.filter(([call]) => ['confirm', 'revert', 'free'].includes(call));
  assert.deepEqual(settled.map(([call]) => call), ['confirm', 'free', 'revert', 'free', 'revert', 'free']);
  stop();
  assert.equal(fake.subscriptions.size, 0);
});

test('a path state hears only its path', () => {
  const fake = ready({ cart: { items: [{ qty: 1 }], owner: 'x' } });
  const qty = new SharedState(UNIT, 'cart', 0, { path: 'items.0.qty' });
  const seen = [];
  const stop = qty.subscribe(() => seen.push(qty.getSnapshot().value));
  fake.write('cart', { items: [{ qty: 1 }], owner: 'y' });
  fake.write('cart', { items: [{ qty: 2 }], owner: 'y' });
  assert.deepEqual(seen, [1, 2]);
  stop();
  assert.equal(fake.subscriptions.size, 0);
});

test('a path state writes at its path and keeps the rest; increment and optimistic refuse', async () => {
  const fake = ready({ cart: { items: [{ qty: 1, name: 'tea' }], owner: 'x' } });
  const qty = new SharedState(UNIT, 'cart', 0, { path: 'items.0.qty' });
  const stop = qty.subscribe(() => {});
  qty.set(3);
  qty.setter((n) => n + 1);
  assert.deepEqual(fake.keys.get('cart').value, { items: [{ qty: 4, name: 'tea' }], owner: 'x' });
  assert.equal(qty.getSnapshot().value, 4);
  assert.equal(qty.getSnapshot().meta.error, null);
  qty.increment(1);
  assert.equal(qty.getSnapshot().meta.error?.code, 'invalid_path');
  assert.equal(await qty.optimistic(9, Promise.resolve()), false);
  assert.equal(qty.getSnapshot().meta.error?.code, 'invalid_path');
  // Neither touched the value.
  assert.deepEqual(fake.keys.get('cart').value, { items: [{ qty: 4, name: 'tea' }], owner: 'x' });
  assert.equal(fake.calls.filter(([call]) => call === 'set' || call === 'increment').length, 0);
  stop();
});

test('events: listen waits for ready, hears emits, and stops', () => {
  const heard = [];
  const stop = listen(UNIT, 'wave', (data, sender) => heard.push([data, sender]));
  assert.equal(emit(UNIT, 'wave', 1)?.code, 'not_ready');
  const fake = ready();
  assert.equal(fake.listeners.size, 1);
  assert.equal(emit(UNIT, 'wave', { hi: 1 }, { scope: 'building' }), null);
  assert.deepEqual(heard, [[{ hi: 1 }, UNIT]]);
  stop();
  assert.equal(fake.listeners.size, 0);

  const early = listen(UNIT, 'wave', () => {});
  early();
  assert.equal(fake.listeners.size, 0);
});

test('svelte: a shared store follows the store contract and works with svelte/store helpers', () => {
  const fake = ready({ count: 2 });
  const { sharedStore } = svelteBindings(UNIT);
  const count = sharedStore('count', 0);
  assert.equal(get(count), 2, 'get() subscribes and unsubscribes');
  assert.equal(fake.subscriptions.size, 0);

  const doubled = derived(count, (n) => n * 2);
  const seen = [];
  const stop = doubled.subscribe((n) => seen.push(n));
  count.set(3);
  count.update((n) => n + 1);
  count.increment(1);
  assert.deepEqual(seen, [4, 6, 8, 10]);
  stop();
  assert.equal(fake.subscriptions.size, 0, 'derived released the store');
});

test('svelte: subscribe calls back at once, once; meta is a store; destroy ends everything', () => {
  const fake = ready({ note: 'x' });
  const { sharedStore } = svelteBindings(UNIT);
  const note = sharedStore('note', '');
  const values = [];
  const metas = [];
  note.subscribe((v) => values.push(v));
  note.meta.subscribe((m) => metas.push(m.lastWriter));
  assert.deepEqual(values, ['x']);
  fake.write('note', 'y', 'main/studio/react');
  assert.deepEqual(values, ['x', 'y']);
  assert.equal(metas.at(-1), 'main/studio/react');
  assert.equal(fake.subscriptions.size, 1, 'value and meta share one subscription');
  note.destroy();
  assert.equal(fake.subscriptions.size, 0);
  fake.write('note', 'z');
  assert.deepEqual(values, ['x', 'y']);
});

test('svelte: a store made before ready waits, and unsubscribing before ready leaves nothing', () => {
  const { sharedStore, eventStore } = svelteBindings(UNIT);
  const count = sharedStore('count', 9);
  const values = [];
  const stop = count.subscribe((v) => values.push(v));
  const events = eventStore('wave');
  const stopEvents = events.subscribe(() => {});
  assert.equal(readyListeners(), 2);
  stop();
  stopEvents();
  assert.equal(readyListeners(), 0);
  const fake = ready({ count: 1 });
  assert.equal(fake.subscriptions.size, 0);
  assert.equal(fake.listeners.size, 0);
  assert.deepEqual(values, [9]);
});

test('svelte: an event store holds the last event and emits', () => {
  const fake = ready();
  const { eventStore } = svelteBindings(UNIT);
  const wave = eventStore('wave', { scope: 'building' });
  const seen = [];
  const stop = wave.subscribe((event) => seen.push(event));
  wave.emit('hello');
  assert.deepEqual(seen, [null, { data: 'hello', sender: UNIT }]);
  stop();
  assert.equal(fake.listeners.size, 0);
  wave.subscribe(() => {});
  wave.destroy();
  assert.equal(fake.listeners.size, 0);

  // The same function subscribed twice is two subscriptions.
  const run = () => {};
  const first = wave.subscribe(run);
  const second = wave.subscribe(run);
  first();
  assert.equal(fake.listeners.size, 1, 'the second still listens');
  second();
  assert.equal(fake.listeners.size, 0);
});

test('a write is heard once: one notification per change, not two', () => {
  const fake = ready({ count: 0 });
  const count = new SharedState(UNIT, 'count', 0);
  let notified = 0;
  const stop = count.subscribe(() => (notified += 1));
  notified = 0;
  count.increment(1);
  assert.equal(notified, 1);
  assert.equal(count.getSnapshot().value, 1);
  stop();
  assert.equal(fake.subscriptions.size, 0);
});

test('svelte: a path store', () => {
  const fake = ready({ profile: { name: 'Ann', age: 3 } });
  const { pathStore } = svelteBindings(UNIT);
  const name = pathStore('profile', 'name', '');
  const seen = [];
  const stop = name.subscribe((v) => seen.push(v));
  fake.write('profile', { name: 'Ann', age: 4 });
  fake.write('profile', { name: 'Bo', age: 4 });
  assert.deepEqual(seen, ['Ann', 'Bo']);
  stop();
  assert.equal(fake.subscriptions.size, 0);
});

test('a listener that writes what it heard is not called inside its own call without end', () => {
  // The manager holds a change made during a delivery until it ends; the
  // state read again meanwhile used to tell its listeners at once, inside
  // the listener's own call, for ever (about 140,000 writes a second).
  const fake = ready({ note: '' });
  const note = new SharedState(UNIT, 'note', '');
  let calls = 0;
  const stop = note.subscribe(() => {
    calls += 1;
    // A valve, so the test ends either way.
    if (calls <= 1000) note.set((text) => text.trim());
  });
  calls = 0;
  fake.write('note', '  hi  ');
  assert.equal(note.getSnapshot().value, 'hi');
  assert.equal(fake.keys.get('note').value, 'hi');
  // The trimmed text, told once more, is written again unchanged, which
  // tells nobody: the echo ends there.
  assert.ok(calls <= 3, `${calls} calls`);
  stop();
});

test('a listener that fails every time it writes is told at most 100 times in a row', () => {
  const fake = ready({ note: '' });
  const note = new SharedState(UNIT, 'note', '');
  const reported = [];
  const original = console.error;
  console.error = (error) => reported.push(error);
  let calls = 0;
  try {
    const stop = note.subscribe(() => {
      calls += 1;
      if (calls <= 1000) note.set('refused');
    });
    calls = 0;
    fake.write('note', 'x');
    stop();
  } finally {
    console.error = original;
  }
  assert.ok(calls <= 101, `${calls} calls`);
  assert.ok(reported.some((error) => error.code === 'cascade'), String(reported));
  assert.equal(note.getSnapshot().meta.error?.code, 'permission_denied');
});

test('a listener that throws is reported; the others still hear, and optimistic settles', async () => {
  const fake = ready({ count: 0 });
  const count = new SharedState(UNIT, 'count', 0);
  const reported = [];
  const original = console.error;
  console.error = (error) => reported.push(error);
  try {
    const stopThrowing = count.subscribe(() => {
      if (count.getSnapshot().meta.pending) throw new Error('boom');
    });
    let heard = 0;
    const stopHearing = count.subscribe(() => (heard += 1));
    heard = 0;
    assert.equal(await count.optimistic(5, Promise.resolve()), true);
    assert.equal(count.getSnapshot().meta.pending, false);
    assert.equal(count.getSnapshot().value, 5);
    assert.ok(heard >= 2, `${heard}`);
    assert.ok(reported.some((error) => error.message === 'boom'));
    const settled = fake.calls.filter(([call]) => call === 'confirm' || call === 'free');
    assert.deepEqual(settled, [['confirm', 'count'], ['free', 'count']]);
    stopThrowing();
    stopHearing();
  } finally {
    console.error = original;
  }
});

test('an updater gets what the key holds now, subscribed or not', async () => {
  const fake = ready({ items: ['a'] });
  const items = new SharedState(UNIT, 'items', []);
  // Another unit writes; nobody subscribes to this state, so its snapshot
  // still holds ['a'].
  fake.write('items', ['a', 'b']);
  items.set((list) => [...list, 'c']);
  assert.deepEqual(fake.keys.get('items').value, ['a', 'b', 'c']);
  fake.write('items', ['a', 'b', 'c', 'd']);
  assert.equal(await items.optimistic((list) => [...list, 'e'], Promise.resolve()), true);
  assert.deepEqual(fake.keys.get('items').value, ['a', 'b', 'c', 'd', 'e']);
});

test('svelte: update gets what the key holds now', () => {
  const fake = ready({ items: [] });
  const items = svelteBindings(UNIT).sharedStore('items', []);
  fake.write('items', ['a', 'b']);
  items.update((list) => [...list, 'c']);
  assert.deepEqual(fake.keys.get('items').value, ['a', 'b', 'c']);
  items.destroy();
});

test("a listener's write of the value it heard still moves meta's writer", () => {
  const fake = ready({ note: 'x' });
  const note = new SharedState(UNIT, 'note', '');
  // Armed for one write, after the call subscribing makes.
  let armed = false;
  const stop = note.subscribe(() => {
    if (!armed) return;
    armed = false;
    note.set(note.getSnapshot().value);
  });
  armed = true;
  fake.write('note', 'y');
  assert.equal(note.getSnapshot().value, 'y');
  assert.equal(fake.keys.get('note').lastWriter, UNIT);
  assert.equal(note.getSnapshot().meta.lastWriter, UNIT);
  stop();
});

test('an integer past 2^53, a BigInt, is a value like any other', () => {
  // The manager hands such integers as BigInts, which JSON.stringify
  // refuses: comparing snapshots with it threw inside the listener's
  // write, and the state stopped following the key.
  const big = 2n ** 60n + 1n;
  const fake = ready({ row: { id: big } });
  const row = new SharedState(UNIT, 'row', null);
  let calls = 0;
  const stop = row.subscribe(() => {
    calls += 1;
    if (calls <= 1000) row.set(row.getSnapshot().value);
  });
  calls = 0;
  fake.write('row', { id: big + 1n });
  assert.deepEqual(row.getSnapshot().value, { id: big + 1n });
  assert.equal(row.getSnapshot().meta.error, null);
  assert.equal(fake.keys.get('row').lastWriter, UNIT);
  // Written again unchanged from inside the listener: not news.
  assert.ok(calls <= 2, `${calls} calls`);
  stop();
});
