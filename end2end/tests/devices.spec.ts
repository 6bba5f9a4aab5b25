// Two devices (two browser contexts: separate storage, separate
// BroadcastChannel worlds) syncing through the real relay binary, started
// per test on a free port with a temporary store, and stopped, killed
// (SIGKILL) or cut off behind a proxy for real.
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import { expect, type Page } from '@playwright/test';
import { Device, Proxy, Relay, configFor, test, type RelayJson } from './support/devices';
import { SharedNoteUnit } from './support/units';
import { ApartmentPage, CounterUnit } from './support/apartment';

const counter = 'main/lobby/counter';
const otherBuildingCounter = 'main/workshop/counter';
const notes = 'main/study/notes-a';
const otherNotes = 'main/study/notes-b';
const theme = 'main/settings/theme';
const probe = 'main/lobby/probe';

/** Makes `page`'s `area` refuse to store entries whose key matches
 * `pattern`, as a full storage would (until the page reloads). */
const refuseEntries = (page: import('@playwright/test').Page, area: 'localStorage' | 'sessionStorage', pattern: string) =>
  page.evaluate(
    ([area, pattern]) => {
      const setItem = Storage.prototype.setItem;
      const refused = new RegExp(pattern);
      Storage.prototype.setItem = function (key: string, value: string) {
        if (this === window[area] && refused.test(key)) {
          throw new DOMException('the quota has been exceeded', 'QuotaExceededError');
        }
        setItem.call(this, key, value);
      };
    },
    [area, pattern] as const,
  );

/** Makes `device`'s relay.json fail, as a flaky connection (or a server
 * answering 503) would, until the function returned lets `config`
 * through. */
const failRelayJson = async (device: Device, config: RelayJson) => {
  let reachable = false;
  await device.context.unroute('**/relay.json');
  await device.context.route('**/relay.json', (route) =>
    reachable ? route.fulfill({ json: config }) : route.abort('connectionfailed'),
  );
  return () => {
    reachable = true;
  };
};

test.describe('two devices through a relay', () => {
  // Real relay processes, two or three browser contexts each, reconnections
  // with backoff: up to 17 s on a loaded 2-core machine, about twice that on
  // the CI machine. Each step still has the expect timeout of 10 s.
  test.describe.configure({ timeout: 90_000 });
  let relay: InstanceType<typeof Relay>;

  test.beforeEach(async () => {
    relay = await new Relay().start();
  });

  test.afterEach(async () => {
    await relay.stop();
  });

  const devices = async (browser: import('@playwright/test').Browser, url = relay.url) => {
    const config = configFor(url, relay.token());
    const pair = [await Device.open(browser, config), await Device.open(browser, config)] as const;
    for (const device of pair) await expect(device.relayLink()).toHaveText('connected');
    return pair;
  };

  /** Two devices, the second's relay.json failing (its notice shown)
   * until the function returned lets it through. */
  const devicesWithoutRelayJson = async (browser: import('@playwright/test').Browser) => {
    const config = configFor(relay.url, relay.token());
    const a = await Device.open(browser, config);
    const b = await Device.open(browser, config, null);
    const letThrough = await failRelayJson(b, config);
    await b.newPage('/');
    await expect(b.notices().filter({ hasText: "The relay's configuration could not be fetched" })).toHaveCount(1);
    return { a, b, letThrough };
  };

  test('every scope reaches the other device where it should; session and memory state never leave', async ({ browser }) => {
    const [a, b] = await devices(browser);
    await a.set(notes, 'notes', 'private to notes A');
    await a.increment(counter, 'count', 5);
    await a.set(theme, 'theme', 'dark');
    // Apartment scope: the shared note (user-resolve) holds the write.
    const note = new SharedNoteUnit(a.page);
    await note.write('for the whole apartment');
    for (const [name, lifetime] of [['session-only', 'ephemeral'], ['memory-only', 'memory']] as const) {
      for (const device of [a, b]) await device.declare(probe, name, { scope: 'apartment', lifetime });
      await a.set(probe, name, `not for other devices: ${lifetime}`);
    }

    await expect.poll(() => b.get(notes, 'notes')).toBe('private to notes A');
    await expect.poll(() => b.get(counter, 'count')).toBe(5);
    await expect.poll(() => b.get(theme, 'theme')).toBe('dark');
    await expect(new SharedNoteUnit(b.page).field()).toHaveValue('for the whole apartment');
    // Where the same names must not show the writes: another unit's
    // private key, another building's building key.
    expect(await b.get(otherNotes, 'notes')).toBe('');
    expect(await b.get(otherBuildingCounter, 'count')).toBe(0);
    // Session and memory state stay on the device: never in the outbox,
    // never on the other device.
    await expect(a.waiting()).toHaveText('0');
    expect(await a.outbox()).toBe(0);
    expect(await b.get(probe, 'session-only')).toBeNull();
    expect(await b.get(probe, 'memory-only')).toBeNull();
    a.expectNoErrors();
    b.expectNoErrors();
  });

  test('what the relay brings for units a page does not show is applied and saved: a reload offline shows it', async ({ browser }) => {
    const config = configFor(relay.url, relay.token());
    const a = await Device.open(browser, config);
    // B's page shows the settings building alone: no counter, no notes.
    const b = await Device.open(browser, config, '/apartment/main/building/settings');
    for (const device of [a, b]) await expect(device.relayLink()).toHaveText('connected');
    await expect(b.page.getByRole('button', { name: 'Increment' })).toHaveCount(0);
    await a.increment(counter, 'count', 5);
    await a.set(notes, 'notes', 'written where B does not look');
    // The app declared every unit's keys at start: B applies them.
    await expect.poll(() => b.get(counter, 'count')).toBe(5);
    await expect.poll(() => b.get(notes, 'notes')).toBe('written where B does not look');
    // ...and saved them, so its cursor moved past them.
    await expect(a.waiting()).toHaveText('0');
    await expect
      .poll(() => b.page.evaluate(() => Number(localStorage.getItem('gaesup/cursor/apartment:main') ?? 0)))
      .toBeGreaterThanOrEqual(2);
    // With the relay gone, a page showing them has them from storage.
    await relay.stop();
    await b.page.goto('/');
    await b.page.waitForFunction(() => window.gaesup !== undefined);
    const visits = new CounterUnit(new ApartmentPage(b.page).unit('Visitor counter').first());
    await expect(visits.value()).toHaveText('5');
    expect(await b.get(notes, 'notes')).toBe('written where B does not look');
    a.expectNoErrors();
    b.expectNoErrors();
  });

  test('a sum clicked on both devices is exact on both', async ({ browser }) => {
    const [a, b] = await devices(browser);
    await Promise.all([
      (async () => {
        for (let i = 0; i < 20; i += 1) await a.increment(counter, 'count', 1);
      })(),
      (async () => {
        for (let i = 0; i < 20; i += 1) await b.increment(counter, 'count', 2);
      })(),
    ]);
    await expect.poll(() => a.get(counter, 'count')).toBe(60);
    await expect.poll(() => b.get(counter, 'count')).toBe(60);
    await expect(a.waiting()).toHaveText('0');
    await expect(b.waiting()).toHaveText('0');
    a.expectNoErrors();
    b.expectNoErrors();
  });

  test('concurrent edits of a user-resolve key open the dialog on both devices', async ({ browser }) => {
    const [a, b] = await devices(browser);
    await relay.kill();
    const [noteA, noteB] = [new SharedNoteUnit(a.page), new SharedNoteUnit(b.page)];
    await noteA.write('From device A');
    await noteB.write('From device B');
    await relay.restart();
    for (const note of [noteA, noteB]) {
      await expect(note.dialog()).toBeVisible();
      await expect(note.status()).toHaveText('2 conflicting versions: choose the one to keep.');
      await expect(note.dialog()).toContainText('From device A');
      await expect(note.dialog()).toContainText('From device B');
    }
    // Resolving on one device resolves on the other.
    await noteA.choice('Keep current').click();
    for (const note of [noteA, noteB]) await expect(note.dialog()).toBeHidden();
    await expect(noteA.field()).toHaveValue(await noteB.field().inputValue());
    a.expectNoErrors();
    b.expectNoErrors();
  });

  test('relay stopped: edits wait in the outbox, survive a reload, and converge when it is back', async ({ browser }) => {
    const [a, b] = await devices(browser);
    await relay.kill();
    for (let i = 0; i < 5; i += 1) {
      await a.increment(counter, 'count', 1);
      await b.increment(counter, 'count', 10);
    }
    await a.set(notes, 'notes', 'written offline on A');
    await expect(a.waiting()).toHaveText('6');
    // A reloads while the relay is away: its outbox is in localStorage.
    await a.reload();
    expect(await a.outbox()).toBe(6);
    expect(await a.get(counter, 'count')).toBe(5);
    await expect(a.relayLink()).not.toHaveText('connected');

    await relay.restart();
    for (const device of [a, b]) {
      await expect.poll(() => device.get(counter, 'count')).toBe(55);
      await expect.poll(() => device.get(notes, 'notes')).toBe('written offline on A');
      await expect(device.waiting()).toHaveText('0');
    }
    expect(await a.outbox()).toBe(0);
    a.expectNoErrors();
    b.expectNoErrors();
  });

  test('a full outbox refuses the next write with outbox_full, loses nothing, and takes writes again once sent', async ({ browser }) => {
    const a = await Device.open(browser, { ...configFor(relay.url, relay.token()), outbox_limit: 3 });
    const b = await Device.open(browser, configFor(relay.url, relay.token()));
    for (const device of [a, b]) await expect(device.relayLink()).toHaveText('connected');
    await relay.kill();
    for (let i = 0; i < 3; i += 1) await a.increment(counter, 'count', 1);
    await expect(a.waiting()).toHaveText('3');
    const attempt = () =>
      a.page.evaluate(([address]) => {
        try {
          window.gaesup.unit(address).increment('count', 100);
          return 'written';
        } catch (error) {
          return (error as { code?: string }).code ?? 'no code';
        }
      }, [counter] as const);
    // Refused before it applies: a write that cannot be queued would
    // never reach the other device.
    expect(await attempt()).toBe('outbox_full');
    expect(await a.get(counter, 'count')).toBe(3);
    // What never leaves the device is still written.
    await a.declare(probe, 'memory-only', { scope: 'apartment', lifetime: 'memory' });
    await a.set(probe, 'memory-only', 'still written');
    expect(await a.get(probe, 'memory-only')).toBe('still written');

    await relay.restart();
    await expect(a.waiting()).toHaveText('0');
    await expect.poll(() => b.get(counter, 'count')).toBe(3);
    expect(await attempt()).toBe('written');
    for (const device of [a, b]) await expect.poll(() => device.get(counter, 'count')).toBe(103);
    a.expectNoErrors();
    b.expectNoErrors();
  });

  test('a write a tab without the link cannot save in the outbox is carried to the tab holding it, and to the next one when that one closes', async ({ browser }) => {
    const [a, b] = await devices(browser);
    // Opened in this order, the third tab is next in line for the link.
    const third = await a.newPage('/');
    const second = await a.newPage('/');
    await expect(second.getByRole('region', { name: 'Storage and sync: Main apartment' })).toContainText('held by another tab');
    await relay.kill();
    // Every tab's storage refuses outbox entries, as a full one would.
    for (const page of a.pages) await refuseEntries(page, 'localStorage', '^gaesup/outbox/');
    await a.increment(counter, 'count', 2, second);
    await expect(a.notices(second).filter({ hasText: 'A write could not be saved for the relay' })).toHaveCount(1);
    // The tab holding the link holds it in its memory.
    await expect(a.waiting()).toHaveText('1');
    expect(await a.outbox()).toBe(0);
    // It closes, and what it held in memory with it: the writing tab
    // still carries the write, and hands it to the tab that takes over.
    await a.page.close();
    await expect(third.getByRole('region', { name: 'Storage and sync: Main apartment' })).toContainText('held by this tab');
    await expect(a.waiting(third)).toHaveText('1');
    await relay.restart();
    await expect.poll(() => b.get(counter, 'count')).toBe(2);
    for (const page of [third, second]) await expect(a.waiting(page)).toHaveText('0');
    a.expectNoErrors();
    b.expectNoErrors();
  });

  test('writes made while relay.json failed, then cleared from storage with everything else, still reach the other device', async ({ browser }) => {
    const { a, b, letThrough } = await devicesWithoutRelayJson(browser);
    await b.increment(counter, 'count', 5);
    expect(await b.outbox()).toBe(1);
    // No tab holds a link yet to write the outbox back.
    await b.page.evaluate(() => localStorage.clear());
    letThrough();
    await expect.poll(() => a.get(counter, 'count'), { timeout: 45_000 }).toBe(5);
    await expect(b.waiting()).toHaveText('0');
    a.expectNoErrors();
    b.expectNoErrors();
  });

  test('a carried write of a key the tab holding the link never declared still goes, and the relay\'s word comes back', async ({ browser }) => {
    const [a] = await devices(browser);
    const second = await a.newPage('/');
    await expect(second.getByRole('region', { name: 'Storage and sync: Main apartment' })).toContainText('held by another tab');
    // Declared from JavaScript in the second tab only: the relay does not
    // know it either, and refuses it (unknown_key).
    await a.declare(probe, 'only-here', { scope: 'apartment', lifetime: 'persistent' }, second);
    await refuseEntries(second, 'localStorage', '^gaesup/outbox/');
    await a.set(probe, 'only-here', 'carried', second);
    await expect(a.notices(second).filter({ hasText: /The relay refused write \S+ \(unknown_key/ })).toHaveCount(1);
    await expect(a.waiting(second)).toHaveText('0');
    expect(await a.get(probe, 'only-here', second)).toBe('carried');
    a.expectNoErrors();
  });

  test('writes storage refused while relay.json failed reach the other device once it comes', async ({ browser }) => {
    const { a, b, letThrough } = await devicesWithoutRelayJson(browser);
    await refuseEntries(b.page, 'localStorage', '^gaesup/outbox/');
    await b.increment(counter, 'count', 5);
    await b.increment(counter, 'count', 20);
    expect(await b.outbox()).toBe(0);
    letThrough();
    await expect.poll(() => a.get(counter, 'count'), { timeout: 45_000 }).toBe(25);
    await expect(b.waiting()).toHaveText('0');
    a.expectNoErrors();
    b.expectNoErrors();
  });

  test('offline mode with the socket cut: nothing lost, sums exact', async ({ browser }) => {
    const proxy = await new Proxy(relay.port).start();
    try {
      const [a, b] = await devices(browser, proxy.url);
      // Playwright's offline mode leaves an open WebSocket open: the proxy
      // cuts it, and refuses new ones, until it is restored.
      proxy.cut();
      await expect(a.relayLink()).not.toHaveText('connected');
      for (let i = 0; i < 3; i += 1) await a.increment(counter, 'count', 3);
      // A reload while cut off (a page cannot load offline without a
      // service worker, so before going offline): the outbox stays.
      await a.reload();
      expect(await a.outbox()).toBe(3);
      await a.context.setOffline(true);
      for (let i = 0; i < 2; i += 1) await a.increment(counter, 'count', 3);
      await b.increment(counter, 'count', 100);
      expect(await a.outbox()).toBe(5);
      proxy.restore();
      // Back online: the browser's `online` event retries at once.
      await a.context.setOffline(false);
      for (const device of [a, b]) await expect.poll(() => device.get(counter, 'count')).toBe(115);
      await expect(a.waiting()).toHaveText('0');
      a.expectNoErrors();
      b.expectNoErrors();
    } finally {
      await proxy.stop();
    }
  });

  test('a device offline for longer than the compaction horizon: its stale counter writes are carried over, both exact', async ({ browser }) => {
    const day = 24 * 60 * 60 * 1000;
    const proxy = await new Proxy(relay.port).start();
    try {
      // A's clock reads twenty days ago while it writes, as if its writes
      // had waited that long in the outbox.
      const a = await Device.open(browser, configFor(proxy.url, relay.token()), null);
      await a.context.clock.install({ time: Date.now() - 20 * day });
      await a.newPage('/');
      const b = await Device.open(browser, configFor(relay.url, relay.token()));
      for (const device of [a, b]) await expect(device.relayLink()).toHaveText('connected');
      await a.increment(counter, 'count', 1);
      await expect.poll(() => b.get(counter, 'count')).toBe(1);
      proxy.cut();
      await a.context.setOffline(true);
      await expect(a.relayLink()).not.toHaveText('connected');
      await a.increment(counter, 'count', 2);
      await a.increment(counter, 'count', 3);
      await expect(a.waiting()).toHaveText('2');
      // Meanwhile B counts, today: on the relay, A's slot falls behind the
      // counter's fourteen-day horizon, so A's waiting writes are stale.
      await b.increment(counter, 'count', 10);
      await expect.poll(() => b.get(counter, 'count')).toBe(11);
      // A comes back, with its clock right.
      await a.context.clock.setSystemTime(Date.now());
      proxy.restore();
      await a.context.setOffline(false);
      for (const device of [a, b]) await expect.poll(() => device.get(counter, 'count')).toBe(16);
      await expect(a.waiting()).toHaveText('0');
      await expect(a.notices()).toContainText('carried over in a new write');
      // And both count on from there.
      await b.increment(counter, 'count', -1);
      for (const device of [a, b]) await expect.poll(() => device.get(counter, 'count')).toBe(15);
      a.expectNoErrors();
      b.expectNoErrors();
    } finally {
      await proxy.stop();
    }
  });

  test('a device that counts before it first catches up, behind an increment over fourteen days older: it takes the relay\'s count', async ({ browser }) => {
    const day = 24 * 60 * 60 * 1000;
    const proxy = await new Proxy(relay.port).start();
    try {
      const a = await Device.open(browser, configFor(relay.url, relay.token()), null);
      await a.context.clock.install({ time: Date.now() - 20 * day });
      await a.newPage('/');
      await expect(a.relayLink()).toHaveText('connected');
      await a.increment(counter, 'count', 1);
      await expect(a.waiting()).toHaveText('0');
      await a.context.clock.setSystemTime(Date.now());
      // D has never reached the relay when it counts, today.
      proxy.cut();
      const d = await Device.open(browser, configFor(proxy.url, relay.token()));
      await expect(d.relayLink()).not.toHaveText('connected');
      await d.increment(counter, 'count', 10);
      await d.context.setOffline(true);
      proxy.restore();
      await d.context.setOffline(false);
      // D refuses A's old increment as stale (its own write moved its
      // horizon past it), then takes the relay's state whole.
      await expect.poll(() => d.get(counter, 'count')).toBe(11);
      await expect(d.waiting()).toHaveText('0');
      await expect.poll(() => a.get(counter, 'count')).toBe(11);
      a.expectNoErrors();
      d.expectNoErrors();
    } finally {
      await proxy.stop();
    }
  });

  test('a connection that goes silent without closing is noticed by heartbeats and replaced', async ({ browser }) => {
    // A relay with a 1 s heartbeat (the welcome tells devices): a device
    // hearing nothing for three of them drops the socket and reconnects.
    const quick = await new Relay(['--heartbeat-ms', '1000']).start();
    const proxy = await new Proxy(quick.port).start();
    try {
      const config = configFor(proxy.url, quick.token());
      const a = await Device.open(browser, config);
      const b = await Device.open(browser, config);
      for (const device of [a, b]) await expect(device.relayLink()).toHaveText('connected');
      await a.increment(counter, 'count', 1);
      await expect.poll(() => b.get(counter, 'count')).toBe(1);
      // Both devices' sockets (one per apartment of the page: main, annex,
      // atelier) stay open and carry nothing: the browser sees no close and
      // no error.
      proxy.freeze();
      expect(proxy.frozenSockets).toBe(2 * 3);
      await a.increment(counter, 'count', 10);
      // Each device stops trusting its silent socket after three heartbeats
      // (the relay's side of it is gone, but nothing told the browser),
      // opens a new one through the proxy, and the write goes through.
      for (const device of [a, b]) await expect.poll(() => device.get(counter, 'count'), { timeout: 20_000 }).toBe(11);
      await expect.poll(() => proxy.liveSockets).toBe(2 * 3);
      // The old sockets are still open (Chromium waits out a closing
      // handshake nobody answers): no close event could have told the app.
      expect(proxy.frozenSockets).toBe(2 * 3);
      for (const device of [a, b]) await expect(device.relayLink()).toHaveText('connected');
      await expect(a.waiting()).toHaveText('0');
      a.expectNoErrors();
      b.expectNoErrors();
    } finally {
      await proxy.stop();
      await quick.stop();
    }
  });

  test('hellos past the relay\'s read budget are refused for now: no notice, the links come back, writes go through', async ({ browser }) => {
    // One read a second (bursts of two) for the token's subject: the two
    // devices' six sockets (one per apartment of the page) say hello at
    // once, and most are refused and closed, then come back one by one.
    const tight = await new Relay(['--max-reads-per-second', '1']).start();
    try {
      const config = configFor(tight.url, tight.token());
      const [a, b] = [await Device.open(browser, config), await Device.open(browser, config)];
      const refused = () => tight.refusals('rate_limited');
      await expect.poll(refused).toBeGreaterThanOrEqual(3);
      for (const device of [a, b]) await expect(device.relayLink()).toHaveText('connected', { timeout: 30_000 });
      await a.increment(counter, 'count', 2);
      await expect.poll(() => b.get(counter, 'count')).toBe(2);
      for (const device of [a, b]) await expect(device.notices().filter({ hasText: 'rate_limited' })).toHaveCount(0);
      a.expectNoErrors();
      b.expectNoErrors();
    } finally {
      await tight.stop();
    }
  });

  test('a node full of connections refuses the HTTP device\'s long polls for now: no notice, writes still cross both ways', async ({ browser }) => {
    // Three connections at most: device a's three sockets (one per
    // apartment of the page) fill the node, so each long poll of b (on
    // HTTP) is refused as it is about to wait; b asks again 2 s later (then
    // longer each time, up to 10 s), and a pull with news is answered. Both devices have the one token: its
    // subject may hold the whole node.
    const full = await new Relay(['--max-connections', '3', '--max-connections-per-subject', '3']).start();
    try {
      const [a, b] = await overHttp(browser, configFor(full.url, full.token()));
      const refused = () => full.refusals('too_many_connections');
      await expect.poll(refused).toBeGreaterThanOrEqual(1);
      await a.increment(counter, 'count', 3);
      await expect.poll(() => b.get(counter, 'count'), { timeout: 15_000 }).toBe(3);
      await b.increment(counter, 'count', 30);
      await expect.poll(() => a.get(counter, 'count')).toBe(33);
      await expect(b.waiting()).toHaveText('0');
      expect(await refused()).toBeGreaterThanOrEqual(2);
      await expect(b.relayLink()).toHaveText('HTTP fallback');
      await expect(b.notices().filter({ hasText: 'too_many_connections' })).toHaveCount(0);
      a.expectNoErrors();
      b.expectNoErrors();
    } finally {
      await full.stop();
    }
  });

  test('a token subject past its share of the node: its sockets are refused at hello, and its pages sync over HTTP without a notice', async ({ browser }) => {
    // The one token (one subject) may hold two of the node's connections.
    // Device a's page links three apartments: two sockets are welcomed,
    // the third refused at its hello. Then every socket of device b is
    // refused; twice refused, each link syncs over HTTP (pushes hold no
    // connection) rather than wait offline for one.
    const tight = await new Relay(['--max-connections-per-subject', '2']).start();
    try {
      const config = configFor(tight.url, tight.token());
      const refused = () => tight.refusals('too_many_connections');
      const a = await Device.open(browser, config);
      await expect.poll(refused).toBeGreaterThanOrEqual(1);
      // What b's sockets are told: its links go to HTTP because their
      // hellos are refused for the subject's share, not for another reason.
      let helloRefusals = 0;
      const b = await Device.open(browser, config, null);
      await b.newPage('/', async (page) =>
        page.on('websocket', (socket) =>
          socket.on('framereceived', (frame) => {
            if (String(frame.payload).includes('"too_many_connections"')) helloRefusals += 1;
          }),
        ),
      );
      await expect(b.relayLink()).toHaveText('HTTP fallback');
      expect(helloRefusals).toBeGreaterThanOrEqual(2);
      await a.increment(counter, 'count', 3);
      await expect.poll(() => b.get(counter, 'count'), { timeout: 15_000 }).toBe(3);
      await b.increment(counter, 'count', 30);
      await expect.poll(() => a.get(counter, 'count'), { timeout: 15_000 }).toBe(33);
      await expect(b.waiting()).toHaveText('0');
      await expect(b.notices().filter({ hasText: 'too_many_connections' })).toHaveCount(0);
      a.expectNoErrors();
      b.expectNoErrors();
    } finally {
      await tight.stop();
    }
  });

  test('the relay killed (SIGKILL) and restarted while both devices write: nothing lost, nothing counted twice', async ({ browser }) => {
    const [a, b] = await devices(browser);
    let writing = true;
    const written = { a: 0, b: 0 };
    const writer = async (device: Device, name: 'a' | 'b', delta: number) => {
      while (writing) {
        await device.increment(counter, 'count', delta);
        written[name] += delta;
      }
    };
    const writers = [writer(a, 'a', 1), writer(b, 'b', 7)];
    for (let round = 0; round < 3; round += 1) {
      // Let some ops through, then kill mid-stream.
      await expect.poll(() => a.get(counter, 'count').then(Number), { timeout: 10_000 }).toBeGreaterThan(round * 10);
      await relay.restart();
      await expect(a.relayLink()).toHaveText('connected', { timeout: 15_000 });
    }
    writing = false;
    await Promise.all(writers);
    const total = written.a + written.b;
    for (const device of [a, b]) {
      await expect.poll(() => device.get(counter, 'count'), { timeout: 20_000 }).toBe(total);
      await expect(device.waiting()).toHaveText('0');
    }
    a.expectNoErrors();
    b.expectNoErrors();
  });

  /** Device a, and device b whose page has no WebSocket (a proxy that
   * blocks them, as the page sees it), so it syncs over HTTP; `prepare`
   * runs on b before its page opens. */
  const overHttp = async (
    browser: import('@playwright/test').Browser,
    config: ReturnType<typeof configFor>,
    prepare = async (_: Device): Promise<unknown> => undefined,
  ) => {
    const a = await Device.open(browser, config);
    const b = await Device.open(browser, config, null);
    await b.context.addInitScript(() => {
      Reflect.deleteProperty(window, 'WebSocket');
    });
    await prepare(b);
    await b.newPage('/');
    await expect(a.relayLink()).toHaveText('connected');
    await expect(b.relayLink()).toHaveText('HTTP fallback');
    return [a, b] as const;
  };

  test('WebSocket removed from the page: sync goes through the HTTP fallback', async ({ browser }) => {
    const [a, b] = await overHttp(browser, configFor(relay.url, relay.token()));
    await a.increment(counter, 'count', 4);
    await b.increment(counter, 'count', 40);
    for (const device of [a, b]) await expect.poll(() => device.get(counter, 'count')).toBe(44);
    await expect(b.waiting()).toHaveText('0');
    a.expectNoErrors();
    b.expectNoErrors();
  });

  test('on HTTP, a WebSocket tried again and refused leaves the long polls as they are: one per link at a time', async ({ browser }) => {
    // On HTTP a link tries a socket again once the relay answers over
    // HTTP, then every 30 s.
    test.setTimeout(120_000);
    const config = configFor(relay.url, relay.token());
    const a = await Device.open(browser, config);
    const b = await Device.open(browser, config, null);
    // b's sockets never get through (a proxy refusing upgrades, as the
    // page sees it): each closes just after it is made.
    await b.context.addInitScript(() => {
      const w = window as unknown as { WebSocket: unknown; socketsTried: number };
      w.socketsTried = 0;
      w.WebSocket = class {
        readyState = 0;
        onopen: (() => void) | null = null;
        onmessage: (() => void) | null = null;
        onclose: (() => void) | null = null;
        constructor() {
          w.socketsTried += 1;
          setTimeout(() => {
            this.readyState = 3;
            this.onclose?.();
          }, 10);
        }
        send() {
          throw new DOMException('not open', 'InvalidStateError');
        }
        close() {}
      };
    });
    // b's long polls (the first stream of each link waits) in flight.
    let polling = 0;
    let most = 0;
    const longPoll = (url: string) => url.includes('/v1/pull') && !url.includes('wait_ms=0');
    b.context.on('request', (request) => {
      if (!longPoll(request.url())) return;
      polling += 1;
      most = Math.max(most, polling);
    });
    const ended = (request: import('@playwright/test').Request) => {
      if (longPoll(request.url())) polling -= 1;
    };
    b.context.on('requestfinished', ended);
    b.context.on('requestfailed', ended);
    const page = await b.newPage('/');
    await expect(b.relayLink()).toHaveText('HTTP fallback');
    const tried = () => page.evaluate(() => (window as unknown as { socketsTried: number }).socketsTried);
    const before = await tried();
    // Sockets tried again while on HTTP, and refused…
    await expect.poll(tried, { timeout: 60_000 }).toBeGreaterThanOrEqual(before + 3);
    // …while its HTTP loops go on: a write still arrives.
    await a.increment(counter, 'count', 5);
    await expect.poll(() => b.get(counter, 'count')).toBe(5);
    await expect(b.relayLink()).toHaveText('HTTP fallback');
    expect(most, 'long polls of b in flight at once').toBeLessThanOrEqual(3);
    a.expectNoErrors();
    b.expectNoErrors();
  });

  test('over HTTP, a request the relay never answers is given up and the write still arrives', async ({ browser }) => {
    // A request is given up after 20 s.
    test.setTimeout(60_000);
    // The first ask for the relay's limits (made before b's first push)
    // is held open, as a stuck proxy would: b must give it up (after 20 s)
    // rather than hold its writes behind it.
    let held = false;
    const [a, b] = await overHttp(browser, configFor(relay.url, relay.token()), (b) =>
      b.context.route('**/v1/limits', async (route) => {
        if (!held) {
          held = true;
          return;
        }
        await route.continue();
      }),
    );
    await b.increment(counter, 'count', 7);
    await expect.poll(() => held).toBe(true);
    await expect.poll(() => a.get(counter, 'count'), { timeout: 45_000 }).toBe(7);
    await expect(b.waiting()).toHaveText('0');
    a.expectNoErrors();
  });

  test('over HTTP alone, offline writes past a relay\'s push size and rate all arrive, each once', async ({ browser }) => {
    // Its own relay, taking 3 ops a push and 5 a second (bursts of 10):
    // 24 writes made while it is down must go as pushes it takes, paced to
    // its rate, by the page's HTTP loop (a push of more than 3 is refused
    // as too_many_ops for good, and one past the rate as rate_limited).
    const limited = await new Relay(['--max-ops-per-push', '3', '--max-ops-per-second', '5']).start();
    try {
      const [a, b] = await overHttp(browser, configFor(limited.url, limited.token()));
      await limited.kill();
      const writes = 24;
      for (let i = 0; i < writes; i += 1) await b.increment(counter, 'count', 1);
      expect(await b.outbox()).toBe(writes);
      await limited.restart();
      // About 3 s at the relay's rate, more while the page finds it again.
      await expect.poll(() => a.get(counter, 'count'), { timeout: 45_000 }).toBe(writes);
      await expect(b.waiting()).toHaveText('0');
      expect(await b.get(counter, 'count')).toBe(writes);
      // No push went past the relay's limits, and no write was refused:
      // either would show a notice.
      await expect(b.notices()).toHaveCount(0);
      const metrics = await limited.metrics();
      expect(metrics).not.toMatch(/code="too_many_ops"/);
      a.expectNoErrors();
      b.expectNoErrors();
    } finally {
      await limited.stop();
    }
  });

  test('relay.json unreachable at first: asked for again, and writes made meanwhile (a reload among them) reach the other device', async ({ browser }) => {
    const { a, b, letThrough } = await devicesWithoutRelayJson(browser);
    await b.increment(counter, 'count', 5);
    // In the outbox already, not only in the page: a reload keeps it.
    expect(await b.outbox()).toBe(1);
    await b.reload();
    await b.increment(counter, 'count', 20);
    expect(await b.outbox()).toBe(2);
    letThrough();
    // Asked again within 30 s (backoff from one second).
    await expect.poll(() => a.get(counter, 'count'), { timeout: 45_000 }).toBe(25);
    await expect(b.relayLink()).toHaveText('connected');
    await expect(b.waiting()).toHaveText('0');
    a.expectNoErrors();
    b.expectNoErrors();
  });

  test('writes a tab made while its relay.json failed, sent by the tab holding the link, are not sent again once it links', async ({ browser }) => {
    const config = configFor(relay.url, relay.token());
    const [a, b] = await devices(browser);
    // A second tab whose relay.json fails (the first one's came through).
    const letThrough = await failRelayJson(a, config);
    const second = await a.newPage('/');
    await expect(a.notices(second).filter({ hasText: "The relay's configuration could not be fetched" })).toHaveCount(1);
    // Its write waits in the outbox, where the tab holding the link takes
    // it and sends it.
    await a.increment(counter, 'count', 5, second);
    await expect.poll(() => b.get(counter, 'count')).toBe(5);
    await expect(a.waiting()).toHaveText('0');
    letThrough();
    await expect(a.relayLink(second)).toHaveText('connected', { timeout: 45_000 });
    // The holder closes: the second tab takes the link over, with
    // whatever the outbox holds.
    await a.pages[0].close();
    await expect(second.getByRole('region', { name: 'Storage and sync: Main apartment' })).toContainText('held by this tab');
    await expect(a.relayLink(second)).toHaveText('connected');
    await b.increment(counter, 'count', 1);
    await expect.poll(() => a.get(counter, 'count', second)).toBe(6);
    await expect(a.waiting(second)).toHaveText('0');
    // Nothing was pushed twice.
    const metrics = await relay.metrics();
    expect(metrics).toMatch(/^relay_ops_duplicate_total 0$/m);
    a.expectNoErrors();
    b.expectNoErrors();
  });

  test('relay.json held open: given up after 10 s and asked again, and a write made meanwhile reaches the other device', async ({ browser }) => {
    const config = configFor(relay.url, relay.token());
    const a = await Device.open(browser, config);
    const b = await Device.open(browser, config, null);
    // The first request is never answered, as a stuck proxy would.
    let held = false;
    await b.context.unroute('**/relay.json');
    await b.context.route('**/relay.json', (route) => {
      if (held) return route.fulfill({ json: config });
      held = true;
    });
    await b.newPage('/');
    await b.increment(counter, 'count', 3);
    await expect.poll(() => a.get(counter, 'count'), { timeout: 45_000 }).toBe(3);
    await expect(b.relayLink()).toHaveText('connected');
    a.expectNoErrors();
    b.expectNoErrors();
  });

  test('relayed writes this device could not save are fetched again after a reload', async ({ browser }) => {
    const [a, b] = await devices(browser);
    // b's localStorage refuses the counter's entry, as a full one would;
    // its other entries (the relay's cursor among them) still go in.
    await refuseEntries(b.page, 'localStorage', '^gaesup/state/.*/count$');
    await a.increment(counter, 'count', 7);
    await expect.poll(() => b.get(counter, 'count')).toBe(7);
    await expect(b.notices().filter({ hasText: 'Could not save building/main/lobby/count' })).toHaveCount(1);
    // A reload (its storage takes entries again) fetches the write again.
    await b.reload();
    await expect.poll(() => b.get(counter, 'count')).toBe(7);
    // A key the relayed writes do not touch failing to save holds nothing
    // back: b's session key cannot be saved (its sessionStorage refuses
    // it), a's next count still moves the stored cursor.
    await refuseEntries(b.page, 'sessionStorage', '/scratch$');
    await b.declare(probe, 'scratch', { scope: 'apartment', lifetime: 'ephemeral' });
    await b.set(probe, 'scratch', 'not saved here');
    await expect(b.notices().filter({ hasText: /Could not save \S+\/scratch/ })).toHaveCount(1);
    await a.increment(counter, 'count', 1);
    await expect.poll(() => b.get(counter, 'count')).toBe(8);
    // Ops 1 (7) and 2 (1): both applied, and stored.
    await expect
      .poll(() => b.page.evaluate(() => localStorage.getItem('gaesup/cursor/apartment:main')))
      .toBe('2');
    a.expectNoErrors();
  });

  test('a stored entry set aside, then discarded: the stream is taken whole again and what the entry held comes back', async ({ browser }) => {
    const [a, b] = await devices(browser);
    // The cart: a merge key, one field per product.
    const cart = 'main/checkout/cart';
    const tea = ['tea', 450, 1];
    const jam = ['jam', 300, 2];
    const oil = ['oil', 900, 1];
    await a.set(cart, 'cart', { tea });
    await expect.poll(() => b.get(cart, 'cart')).toEqual({ tea });
    const entry = 'gaesup/state/apartment/main/cart';
    await expect.poll(() => b.page.evaluate((entry) => localStorage.getItem(entry), entry)).toContain('"tea"');
    // b's stored entry turns to garbage (a failing disk, an extension): the
    // next load sets it aside, and the key reads its default.
    await b.page.evaluate((entry) => localStorage.setItem(entry, '{ this is not json'), entry);
    await b.reload();
    const setAside = b.notices().filter({ hasText: 'apartment/main/cart was set aside' });
    await expect(setAside).toHaveCount(1);
    expect(await b.get(cart, 'cart')).toEqual({});
    await expect(b.relayLink()).toHaveText('connected');
    // a's next edit sends the field it changed, which is all b gets.
    await a.set(cart, 'cart', { tea, jam });
    await expect.poll(() => b.get(cart, 'cart')).toEqual({ jam });
    // Discarded in a second tab, which does not hold the link: the op that
    // brought tea lies behind b's stored cursor, so the tab holding the
    // link takes the stream whole from the relay when the relay next
    // sends something (here a's next edit), and passes it on.
    const second = await b.newPage();
    await expect(b.relayLink(second)).toHaveText('connected');
    const setAsideThere = b.notices(second).filter({ hasText: 'apartment/main/cart was set aside' });
    await setAsideThere.locator('..').getByRole('button', { name: 'Discard stored value' }).click();
    await expect(setAsideThere).toHaveCount(0);
    await a.set(cart, 'cart', { tea, jam, oil });
    await expect.poll(() => b.get(cart, 'cart', second)).toEqual({ tea, jam, oil });
    // Once the link has caught up (an ack of b's own write says so), the
    // mark is gone.
    await b.increment(counter, 'count', 1);
    await expect.poll(() => b.page.evaluate(() => localStorage.getItem('gaesup/resync/apartment:main'))).toBeNull();
    await b.reload(second);
    expect(await b.get(cart, 'cart', second)).toEqual({ tea, jam, oil });
    a.expectNoErrors();
    b.expectNoErrors();
  });

  test('localStorage cleared by another tab while writes wait: they still reach the other device', async ({ browser }) => {
    const [a, b] = await devices(browser);
    const second = await a.newPage('/');
    await relay.kill();
    // The tab holding the link writes twice; the other clears storage,
    // then writes (the holder reads the outbox again).
    await a.increment(counter, 'count', 2);
    await a.increment(counter, 'count', 3);
    await expect(a.waiting()).toHaveText('2');
    await second.evaluate(() => localStorage.clear());
    // The tab holding the link writes back what it waits on: a crash now
    // would lose nothing. (Read in the tab that cleared, where the clear
    // is certain to have happened.)
    await expect.poll(() => a.outbox(second)).toBe(2);
    await a.increment(counter, 'count', 4, second);
    await expect(a.waiting()).toHaveText('3');
    await relay.restart();
    await expect.poll(() => b.get(counter, 'count')).toBe(9);
    await expect(a.waiting()).toHaveText('0');
    a.expectNoErrors();
    b.expectNoErrors();
  });

  test('localStorage cleared in the tab holding the link while writes wait: written back at once, and they reach the other device', async ({ browser }) => {
    const [a, b] = await devices(browser);
    await relay.kill();
    await a.increment(counter, 'count', 2);
    await a.increment(counter, 'count', 3);
    await expect(a.waiting()).toHaveText('2');
    // In the tab holding the link itself: no storage event there.
    await a.page.evaluate(() => localStorage.clear());
    // Written back without another write or message (a crash now would
    // lose nothing).
    await expect.poll(() => a.outbox()).toBe(2);
    await relay.restart();
    await expect.poll(() => b.get(counter, 'count')).toBe(5);
    await expect(a.waiting()).toHaveText('0');
    a.expectNoErrors();
    b.expectNoErrors();
  });

  test('no localStorage: every tab links itself, and each tab\'s writes reach the other device', async ({ browser }) => {
    const config = configFor(relay.url, relay.token());
    const a = await Device.open(browser, config);
    const b = await Device.open(browser, config, null);
    await b.context.addInitScript(() => {
      // Storage disabled (a privacy setting, or a sandboxed frame).
      Object.defineProperty(window, 'localStorage', {
        get() {
          throw new DOMException('The operation is insecure.', 'SecurityError');
        },
      });
    });
    const first = await b.newPage('/');
    const second = await b.newPage('/');
    for (const page of [first, second]) await expect(b.relayLink(page)).toHaveText('connected');
    // Both tabs write; with one link for the browser, the tab without it
    // would have nowhere to put its writes for the relay.
    await b.increment(counter, 'count', 2, first);
    await b.increment(counter, 'count', 3, second);
    await expect.poll(() => a.get(counter, 'count')).toBe(5);
    await a.increment(counter, 'count', 10);
    for (const page of [first, second]) await expect.poll(() => b.get(counter, 'count', page)).toBe(15);
    a.expectNoErrors();
  });

  test('one connection per browser: the tab holding it relays for the others, and another takes over when it closes', async ({ browser }) => {
    const config = configFor(relay.url, relay.token());
    const a = await Device.open(browser, config);
    const second = await a.newPage('/');
    const b = await Device.open(browser, config);
    await expect(a.relayLink(a.pages[0])).toHaveText('connected');
    await expect(a.page.getByRole('region', { name: 'Storage and sync: Main apartment' })).toContainText('held by this tab');
    await expect(second.getByRole('region', { name: 'Storage and sync: Main apartment' })).toContainText('held by another tab');
    // The tab without the link writes; the other device sees it.
    await a.increment(counter, 'count', 2, second);
    await expect.poll(() => b.get(counter, 'count')).toBe(2);
    // Only the holder opened sockets (one per apartment).
    expect(a.sockets.filter((socket) => socket.page === second)).toEqual([]);
    // The holder closes: the second tab takes the link over.
    await a.pages[0].close();
    await expect(second.getByRole('region', { name: 'Storage and sync: Main apartment' })).toContainText('held by this tab');
    await expect(a.relayLink(second)).toHaveText('connected');
    await b.increment(counter, 'count', 3);
    await expect.poll(() => a.get(counter, 'count', second)).toBe(5);
    a.expectNoErrors();
    b.expectNoErrors();
  });

  test('tabs that each hold a link (no Web Locks) do not write back an op another tab had answered', async ({ browser }) => {
    const token = relay.token();
    const a = await Device.open(browser, configFor(relay.url, token), null);
    await a.context.addInitScript(() => {
      Object.defineProperty(navigator, 'locks', { get: () => undefined });
    });
    const first = await a.newPage('/');
    // The second tab's relay.json names a relay that is never there: its
    // link waits on every op in the outbox and is never answered.
    const second = await a.newPage('/', async (page) => {
      await page.route('**/relay.json', (route) => route.fulfill({ json: configFor('ws://127.0.0.1:9', token) }));
      await page.addInitScript(() => {
        const seen = window as unknown as { outboxRemovals: number };
        seen.outboxRemovals = 0;
        addEventListener('storage', (event) => {
          if (event.key?.startsWith('gaesup/outbox/') && event.newValue === null) seen.outboxRemovals += 1;
        });
      });
    });
    await expect(a.relayLink(first)).toHaveText('connected');
    await relay.kill();
    await a.increment(counter, 'count', 1, first);
    // Both links hold the op.
    for (const page of [first, second]) await expect(a.waiting(page)).toHaveText('1');
    // From here the second tab's timers of 20 ms (its re-read of the
    // outbox) wait until the test runs them.
    await second.evaluate(() => {
      const held: (() => void)[] = [];
      const setTimeout = window.setTimeout;
      const page = window as unknown as { runHeld(): void };
      page.runHeld = () => held.splice(0).forEach((callback) => callback());
      window.setTimeout = ((callback: () => void, ms?: number, ...rest: unknown[]) =>
        ms === 20 ? (held.push(callback), 0) : setTimeout(callback, ms, ...rest)) as typeof window.setTimeout;
    });
    await relay.restart();
    // The first tab's link sends the op, has it answered and removes its
    // entry; the second tab sees the removal.
    await expect(a.waiting(first)).toHaveText('0');
    await expect.poll(() => second.evaluate(() => (window as unknown as { outboxRemovals: number }).outboxRemovals)).toBeGreaterThan(0);
    // Had the removal started a re-read, the second tab would write the
    // entry back, the first remove it again, and so on while the second
    // tab's relay stays away.
    const left = await second.evaluate(() => {
      (window as unknown as { runHeld(): void }).runHeld();
      return Object.keys(localStorage).filter((key) => key.startsWith('gaesup/outbox/')).length;
    });
    expect(left).toBe(0);
    a.expectNoErrors();
  });

  test('a write whose outbox entry becomes readable after its message to the other tabs still reaches the other device', async ({ browser }) => {
    const [a, b] = await devices(browser);
    const second = await a.newPage('/');
    await expect(second.getByRole('region', { name: 'Storage and sync: Main apartment' })).toContainText('held by another tab');
    // localStorage and BroadcastChannel reach another tab on separate
    // paths: on a loaded machine the message about a write can come
    // before its outbox entry is readable there. Made certain here: the
    // second tab's outbox entries land half a second late.
    await second.evaluate(() => {
      const setItem = Storage.prototype.setItem;
      Storage.prototype.setItem = function (key: string, value: string) {
        if (this === localStorage && key.startsWith('gaesup/outbox/')) {
          setTimeout(() => setItem.call(this, key, value), 500);
          return;
        }
        setItem.call(this, key, value);
      };
    });
    await a.increment(counter, 'count', 2, second);
    await expect.poll(() => b.get(counter, 'count')).toBe(2);
    await expect(a.waiting()).toHaveText('0');
    a.expectNoErrors();
    b.expectNoErrors();
  });
});

test.describe('a relay that cannot be used', () => {
  let relay: InstanceType<typeof Relay>;

  test.beforeEach(async () => {
    relay = await new Relay().start();
  });

  test.afterEach(async () => {
    await relay.stop();
  });

  for (const [name, token, words] of [
    ['a bad token', () => 'gs1.not-a-token.at-all', 'refused: bad token'],
    ['an expired token', () => relay.token({ ttl: 0 }), 'refused: token expired'],
  ] as const) {
    test(`${name}: a specific notice, the app keeps working, nothing lost`, async ({ browser }) => {
      const a = await Device.open(browser, configFor(relay.url, token()));
      await expect(a.relayLink()).toHaveText(words);
      await a.increment(counter, 'count', 6);
      expect(await a.get(counter, 'count')).toBe(6);
      await expect(a.notices().filter({ hasText: /relay token|refused this app's token/ })).toHaveCount(1);
      // Kept for a later, valid token.
      await expect(a.waiting()).toHaveText('1');
      expect(await a.outbox()).toBe(1);
      a.expectNoErrors();
    });
  }

  test('a token that expires, then replaced in relay.json: the open page takes the new one and sends what waited', async ({ browser }) => {
    let config = configFor(relay.url, relay.token({ ttl: 0 }));
    const a = await Device.open(browser, config, null);
    await a.context.unroute('**/relay.json');
    await a.context.route('**/relay.json', (route) => route.fulfill({ json: config }));
    await a.newPage('/');
    // A second tab, which waits for the one holding the link.
    const second = await a.newPage('/');
    await expect(a.relayLink()).toHaveText('refused: token expired');
    await a.increment(counter, 'count', 6, second);
    await expect(a.waiting()).toHaveText('1');
    // The deployment rotates the token; nobody reloads.
    config = configFor(relay.url, relay.token());
    const b = await Device.open(browser, config);
    await expect(b.relayLink()).toHaveText('connected');
    // Read again 5 s after the refusal, then 10 s, 20 s…
    await expect.poll(() => b.get(counter, 'count'), { timeout: 45_000 }).toBe(6);
    for (const page of a.pages) await expect(a.relayLink(page)).toHaveText('connected');
    await expect(a.waiting()).toHaveText('0');
    await b.increment(counter, 'count', 1);
    for (const page of a.pages) await expect.poll(() => a.get(counter, 'count', page)).toBe(7);
    a.expectNoErrors();
    b.expectNoErrors();
  });

  test('a tab holding the link with a refused token reads relay.json again as soon as another tab links with a new one', async ({ browser }) => {
    // Waits on purpose for the first tab's third read (15 s).
    test.setTimeout(90_000);
    let config = configFor(relay.url, relay.token({ ttl: 0 }));
    const a = await Device.open(browser, config, null);
    const reads: Page[] = [];
    await a.context.unroute('**/relay.json');
    await a.context.route('**/relay.json', (route) => {
      reads.push(route.request().frame().page());
      return route.fulfill({ json: config });
    });
    const first = await a.newPage('/');
    await expect(a.relayLink(first)).toHaveText('refused: token expired');
    // It reads relay.json again 5 s after the refusal, then 10 s after
    // that: its next turn is 20 s away.
    await expect.poll(() => reads.filter((page) => page === first).length, { timeout: 30_000 }).toBe(3);
    // A tab opened with the same configuration says so too, which is no
    // reason for the first tab to read it again.
    const same = await a.newPage('/');
    await expect(a.relayLink(same)).toHaveText('refused: token expired');
    // The deployment rotates the token, and a tab opened now reads it;
    // the first tab still holds the link (with the old token), and the
    // new one waits for it.
    config = configFor(relay.url, relay.token());
    const second = await a.newPage('/');
    await a.increment(counter, 'count', 4, second);
    const b = await Device.open(browser, config);
    await expect.poll(() => b.get(counter, 'count')).toBe(4);
    for (const page of [first, same, second]) await expect(a.relayLink(page)).toHaveText('connected');
    const order = reads.map((page) => (page === first ? 'first' : page === second ? 'second' : 'another'));
    expect(order.slice(3, order.indexOf('second'))).not.toContain('first');
    expect(order.slice(order.indexOf('second'))).toContain('first');
    a.expectNoErrors();
    b.expectNoErrors();
  });
});

test.describe('no relay, or a broken one', () => {
  test('no relay configured: the app makes no request beyond its own files', async ({ browser, baseURL }) => {
    const context = await browser.newContext();
    const requests: string[] = [];
    context.on('request', (request) => requests.push(request.url()));
    const page = await context.newPage();
    const sockets: string[] = [];
    page.on('websocket', (socket) => sockets.push(socket.url()));
    await page.goto('/');
    await page.waitForFunction(() => window.gaesup !== undefined);
    await page.evaluate(() => window.gaesup.unit('main/lobby/counter').increment('count', 1));
    await expect(page.getByLabel('Relay link')).toHaveCount(0);
    const origin = new URL(baseURL!).origin;
    expect(requests.filter((url) => !url.startsWith(origin) && !url.startsWith('data:'))).toEqual([]);
    expect(sockets).toEqual([]);
    expect(await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('gaesup/outbox/')))).toEqual([]);
    await context.close();
  });

  test('writes made while relay.json is read wait in the outbox, and leave it when it names no relay', async ({ browser }) => {
    const context = await browser.newContext();
    // relay.json answers only once the page has written.
    let answer: (() => void) | null = null;
    await context.route('**/relay.json', (route) => {
      answer = () => void route.fulfill({ json: {} });
    });
    const page = await context.newPage();
    await page.goto('/');
    await page.waitForFunction(() => window.gaesup !== undefined);
    await page.evaluate(() => window.gaesup.unit('main/lobby/counter').increment('count', 1));
    const outbox = () => page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('gaesup/outbox/')).length);
    expect(await outbox()).toBe(1);
    await expect.poll(() => answer !== null).toBe(true);
    answer!();
    await expect.poll(outbox).toBe(0);
    expect(await page.evaluate(() => window.gaesup.unit('main/lobby/counter').get('count'))).toBe(1);
    await context.close();
  });

  test('a relay answering garbage: a specific notice, the app keeps working, nothing lost', async ({ browser }) => {
    const garbage: Server = createServer((_, response) => {
      response.writeHead(200, { 'Content-Type': 'text/plain', 'Access-Control-Allow-Origin': '*', 'Access-Control-Allow-Headers': '*' });
      response.end('{"v":2,"type":"ops","body":[[[');
    });
    garbage.listen(0, '127.0.0.1');
    await once(garbage, 'listening');
    const port = (garbage.address() as { port: number }).port;
    try {
      const a = await Device.open(browser, configFor(`http://127.0.0.1:${port}`, 'gs1.any.token'));
      await a.increment(counter, 'count', 2);
      await expect(a.notices().filter({ hasText: 'The relay reported a problem' }).first()).toBeVisible();
      expect(await a.get(counter, 'count')).toBe(2);
      await expect(a.waiting()).toHaveText('1');
      a.expectNoErrors();
    } finally {
      garbage.close();
    }
  });

  test('relay.json that is not a configuration: a specific notice, sync between tabs goes on', async ({ browser }) => {
    const a = await Device.open(browser, '<!doctype html><p>not json');
    await expect(a.notices().filter({ hasText: 'relay.json is not a relay configuration' }).first()).toBeVisible();
    await a.increment(counter, 'count', 1);
    expect(await a.get(counter, 'count')).toBe(1);
    a.expectNoErrors();
  });
});

test.describe('writes confirmed by the relay', () => {
  let relay: InstanceType<typeof Relay>;

  test.beforeEach(async () => {
    relay = await new Relay().start();
  });

  test.afterEach(async () => {
    await relay.stop();
  });

  test('setConfirmed resolves once the relay applied the write; gaesup.relay() reads the link', async ({ browser }) => {
    const a = await Device.open(browser, configFor(relay.url, relay.token()));
    await expect(a.relayLink()).toHaveText('connected');
    const outcome = await a.page.evaluate(async () => {
      const unit = window.gaesup.unit('main/study/notes-a') as unknown as {
        setConfirmed(name: string, value: unknown): Promise<void>;
        get(name: string): unknown;
      };
      await unit.setConfirmed('notes', 'confirmed by the relay');
      const relay = (window.gaesup as unknown as { relay(apartment: string): { link: string; waiting: number; here: boolean } }).relay('main');
      return { value: unit.get('notes'), link: relay.link, here: relay.here };
    });
    expect(outcome).toEqual({ value: 'confirmed by the relay', link: 'connected', here: true });
    // The inspector lists what the relay said, by key.
    await expect(a.page.getByRole('region', { name: 'Relay confirmations' })).toContainText(/confirmed by the relay: \S*notes/);
    a.expectNoErrors();
  });

  test('a confirmed write that a later write on another device beats resolves, and shows the relay\'s value', async ({ browser }) => {
    const config = configFor(relay.url, relay.token());
    const a = await Device.open(browser, config);
    const b = await Device.open(browser, config);
    for (const device of [a, b]) await expect(device.relayLink()).toHaveText('connected');
    await relay.kill();
    // A's write waits for the relay; B writes the same last-write-wins key
    // after it (a later stamp) while both are cut off.
    await a.page.evaluate(() => {
      const unit = window.gaesup.unit('main/study/notes-a') as unknown as {
        setConfirmed(name: string, value: unknown): Promise<void>;
      };
      (window as unknown as { outcome: Promise<string> }).outcome = unit
        .setConfirmed('notes', 'from A, confirmed')
        .then(() => 'resolved', (error: { code: string }) => error.code);
    });
    expect(await a.get(notes, 'notes')).toBe('from A, confirmed');
    await b.set(notes, 'notes', 'from B, later');
    await relay.restart();
    // The relay applied A's write (so it is confirmed, not rolled back),
    // and its canonical value is B's: A is corrected to it.
    expect(await a.page.evaluate(() => (window as unknown as { outcome: Promise<string> }).outcome)).toBe('resolved');
    for (const device of [a, b]) await expect.poll(() => device.get(notes, 'notes')).toBe('from B, later');
    a.expectNoErrors();
    b.expectNoErrors();
  });

  test('a write the relay refuses is rolled back and the promise rejects with code "rejected"', async ({ browser }) => {
    // Read-only: the relay refuses every write to the apartment.
    const readOnly = relay.token({ apartments: ['main=r'], global: 'r' });
    const a = await Device.open(browser, configFor(relay.url, readOnly));
    await expect(a.relayLink()).toHaveText('connected');
    await a.set('main/study/notes-a', 'notes', 'before');
    const outcome = await a.page.evaluate(async () => {
      const unit = window.gaesup.unit('main/study/notes-a') as unknown as {
        setConfirmed(name: string, value: unknown): Promise<void>;
        get(name: string): unknown;
      };
      try {
        await unit.setConfirmed('notes', 'refused by the relay');
        return { code: 'resolved', value: unit.get('notes') };
      } catch (error) {
        return { code: (error as { code: string }).code, value: unit.get('notes') };
      }
    });
    expect(outcome).toEqual({ code: 'rejected', value: 'before' });
    await expect(a.page.getByRole('region', { name: 'Relay confirmations' })).toContainText(/refused by the relay: \S*notes/);
    a.expectNoErrors();
  });

  test('a write the relay refuses, made in a tab that does not hold the link: that tab says so too', async ({ browser }) => {
    const readOnly = relay.token({ apartments: ['main=r'], global: 'r' });
    const a = await Device.open(browser, configFor(relay.url, readOnly));
    const second = await a.newPage('/');
    await expect(a.relayLink()).toHaveText('connected');
    await expect(second.getByRole('region', { name: 'Storage and sync: Main apartment' })).toContainText('held by another tab');
    await a.set('main/study/notes-a', 'notes', 'refused by the relay', second);
    const refused = (page: import('@playwright/test').Page) =>
      a.notices(page).filter({ hasText: /The relay refused write \S+ \(forbidden/ });
    await expect(refused(second)).toHaveCount(1);
    await expect(refused(a.page)).toHaveCount(1);
    a.expectNoErrors();
  });

  test('session and memory state never reach the relay: setConfirmed keeps the write and throws not_relayed', async ({ browser }) => {
    const a = await Device.open(browser, configFor(relay.url, relay.token()));
    await expect(a.relayLink()).toHaveText('connected');
    for (const lifetime of ['ephemeral', 'memory']) {
      await a.declare(probe, lifetime, { scope: 'apartment', lifetime });
      const outcome = await a.page.evaluate(([address, name]) => {
        const unit = window.gaesup.unit(address) as unknown as {
          setConfirmed(name: string, value: unknown): Promise<void>;
          get(name: string): unknown;
        };
        try {
          void unit.setConfirmed(name, 'kept');
          return { code: 'none', value: unit.get(name) };
        } catch (error) {
          return { code: (error as { code: string }).code, value: unit.get(name) };
        }
      }, [probe, lifetime] as const);
      expect(outcome).toEqual({ code: 'not_relayed', value: 'kept' });
    }
    a.expectNoErrors();
  });

  test('without a relay, setConfirmed keeps the write and throws no_confirmer', async ({ browser }) => {
    const a = await Device.open(browser, {});
    const outcome = await a.page.evaluate(() => {
      const unit = window.gaesup.unit('main/study/notes-a') as unknown as {
        setConfirmed(name: string, value: unknown): Promise<void>;
        get(name: string): unknown;
      };
      try {
        void unit.setConfirmed('notes', 'kept');
        return { code: 'none', value: unit.get('notes') };
      } catch (error) {
        return { code: (error as { code: string }).code, value: unit.get('notes') };
      }
    });
    expect(outcome).toEqual({ code: 'no_confirmer', value: 'kept' });
    a.expectNoErrors();
  });
});
