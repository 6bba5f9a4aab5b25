import { test, expect } from './support/fixtures';
import { ApartmentPage, CounterUnit } from './support/apartment';
import { Tab, type KeyRules } from './support/tabs';

const probe = 'main/lobby/probe';
const scopes = ['private', 'building', 'apartment', 'global'] as const;
const lifetimes = ['persistent', 'ephemeral', 'memory'] as const;

test.describe('cross-tab sync', () => {
  test('a write reaches the other tab for every scope and lifetime that syncs, and only there', async ({ context }) => {
    const [a, b] = [await Tab.open(context), await Tab.open(context)];
    const names: string[] = [];
    for (const scope of scopes) {
      for (const lifetime of lifetimes) {
        const name = `${scope}-${lifetime}`;
        names.push(name);
        for (const tab of [a, b]) await tab.declare(probe, name, { scope, lifetime });
      }
    }
    // Where the same names must NOT show the writes: another unit's private
    // key, another building's building key.
    await b.declare('main/lobby/other', 'private-persistent', { scope: 'private', lifetime: 'persistent' });
    await b.declare('main/workshop/probe', 'building-persistent', { scope: 'building', lifetime: 'persistent' });
    for (const tab of [a, b]) await tab.declare(probe, 'sentinel', { scope: 'apartment', lifetime: 'persistent' });

    for (const name of names) await a.set(probe, name, `value of ${name}`);
    // One sender's messages arrive in order: once the sentinel is there,
    // every earlier write has been delivered.
    await a.set(probe, 'sentinel', 'done');
    await expect.poll(() => b.get(probe, 'sentinel')).toBe('done');

    for (const name of names) {
      const expected = name.endsWith('memory') ? null : `value of ${name}`;
      expect(await b.get(probe, name), name).toBe(expected);
    }
    expect(await b.get('main/lobby/other', 'private-persistent')).toBeNull();
    expect(await b.get('main/workshop/probe', 'building-persistent')).toBeNull();
    a.expectNoErrors();
    b.expectNoErrors();
  });

  test('persistent survives reload; ephemeral survives reload but not a new context; memory neither', async ({ context, browser }) => {
    const tab = await Tab.open(context);
    const rules = (lifetime: KeyRules['lifetime']): KeyRules => ({ scope: 'apartment', lifetime });
    const declareAll = async (t: Tab) => {
      for (const lifetime of lifetimes) await t.declare(probe, lifetime, rules(lifetime));
    };
    await declareAll(tab);
    for (const lifetime of lifetimes) await tab.set(probe, lifetime, `kept ${lifetime}`);

    await tab.reload();
    await declareAll(tab);
    expect(await tab.get(probe, 'persistent')).toBe('kept persistent');
    expect(await tab.get(probe, 'ephemeral')).toBe('kept ephemeral');
    expect(await tab.get(probe, 'memory')).toBeNull();

    const otherContext = await browser.newContext();
    const fresh = await Tab.open(otherContext);
    await declareAll(fresh);
    expect(await fresh.get(probe, 'ephemeral')).toBeNull();
    expect(await fresh.get(probe, 'memory')).toBeNull();
    tab.expectNoErrors();
    fresh.expectNoErrors();
    await otherContext.close();
  });

  test('four tabs writing at once end equal, and the sum counts every increment', async ({ context }) => {
    const tabs = await Promise.all([0, 1, 2, 3].map(() => Tab.open(context)));
    const keys: Record<string, KeyRules> = {
      lww: { scope: 'apartment', lifetime: 'persistent', strategy: 'last_write_wins' },
      fww: { scope: 'apartment', lifetime: 'persistent', strategy: 'first_write_wins' },
      merged: { scope: 'apartment', lifetime: 'persistent', strategy: 'merge', default: {} },
      total: { scope: 'apartment', lifetime: 'persistent', strategy: 'sum' },
      picked: { scope: 'apartment', lifetime: 'persistent', strategy: 'user_resolve' },
    };
    for (const tab of tabs) {
      for (const [name, rules] of Object.entries(keys)) await tab.declare(probe, name, rules);
    }
    // Each tab writes as fast as it can for two seconds, yielding to let
    // the other tabs' messages in; it returns how much it added to `total`.
    const increments = await Promise.all(
      tabs.map((tab, index) =>
        tab.page.evaluate(
          async ([address, me]) => {
            const unit = window.gaesup.unit(address);
            let added = 0;
            const end = Date.now() + 2000;
            let round = 0;
            while (Date.now() < end) {
              round += 1;
              const step = 1 + Math.floor(Math.random() * 3);
              unit.increment('total', step);
              added += step;
              unit.set('lww', `${me}:${round}`);
              const merged = (unit.get('merged') ?? {}) as Record<string, unknown>;
              unit.set('merged', { ...merged, [`t${me}`]: round, [`f${round % 7}`]: me });
              unit.set('picked', `${me}:${round}`);
              try {
                unit.set('fww', `first from ${me}`);
              } catch {
                // Refused once a value exists: that is the strategy.
              }
              await new Promise((resolve) => setTimeout(resolve, 0));
            }
            return added;
          },
          [probe, index] as const,
        ),
      ),
    );
    const expectedTotal = increments.reduce((sum, n) => sum + n, 0);
    const snapshot = (tab: Tab) =>
      tab.page.evaluate((address) => {
        const unit = window.gaesup.unit(address);
        return JSON.stringify(['lww', 'fww', 'merged', 'total', 'picked'].map((name) => unit.get(name)));
      }, probe);
    await expect
      .poll(async () => new Set(await Promise.all(tabs.map(snapshot))).size, { timeout: 20_000 })
      .toBe(1);
    for (const tab of tabs) {
      expect(await tab.get(probe, 'total')).toBe(expectedTotal);
      tab.expectNoErrors();
    }
  });
});

test.describe('storage faults', () => {
  const lobbyCount = 'gaesup/state/building/main/lobby/count';
  const workshopCount = 'gaesup/state/building/main/workshop/count';

  test('corrupt and newer-schema values: the app boots, says so, and keeps the raw value', async ({ page }) => {
    await page.goto('/');
    await page.evaluate(
      ([lobby, workshop]) => {
        localStorage.setItem(lobby, '{ this is not json');
        localStorage.setItem(workshop, JSON.stringify({ schema: 99, state: { strategy: 'sum', data: {} } }));
      },
      [lobbyCount, workshopCount] as const,
    );
    await page.reload();
    const apartment = new ApartmentPage(page);
    await expect(new CounterUnit(apartment.unit('Visitor counter')).value()).toHaveText('0');
    await expect(new CounterUnit(apartment.unit('Parts counter')).value()).toHaveText('0');
    const panel = page.getByRole('region', { name: 'Storage and sync: Main apartment' });
    await expect(panel.getByRole('alert').filter({ hasText: 'building/main/lobby/count' }).first()).toBeVisible();
    await expect(panel.getByRole('alert').filter({ hasText: 'building/main/workshop/count' }).first()).toBeVisible();
    // Writing does not overwrite what was set aside.
    await new CounterUnit(apartment.unit('Visitor counter')).increment();
    await expect(new CounterUnit(apartment.unit('Visitor counter')).value()).toHaveText('1');
    expect(await page.evaluate((k) => localStorage.getItem(k), lobbyCount)).toBe('{ this is not json');
  });

  test('localStorage.clear() in one tab: every tab keeps and agrees on the values', async ({ context }) => {
    const [a, b] = [await Tab.open(context), await Tab.open(context)];
    const counterIn = (tab: Tab) => new CounterUnit(new ApartmentPage(tab.page).unit('Visitor counter'));
    await counterIn(a).increment();
    await counterIn(a).increment();
    await expect(counterIn(b).value()).toHaveText('2');
    await b.page.evaluate(() => localStorage.clear());
    await counterIn(b).increment();
    await expect(counterIn(a).value()).toHaveText('3');
    await expect(counterIn(b).value()).toHaveText('3');
    await a.reload();
    await expect(counterIn(a).value()).toHaveText('3');
    a.expectNoErrors();
    b.expectNoErrors();
  });

  test('a full storage: a notice, nothing lost in memory, saved once there is room', async ({ page }) => {
    await page.goto('/');
    // Fill localStorage to the brim.
    await page.evaluate(() => {
      const chunk = 'x'.repeat(256 * 1024);
      for (let i = 0; ; i += 1) {
        try {
          localStorage.setItem(`filler/${i}`, chunk);
        } catch {
          break;
        }
      }
      for (let size = 128 * 1024; size >= 16; size = Math.floor(size / 2)) {
        try {
          localStorage.setItem(`filler/small/${size}`, 'x'.repeat(size));
        } catch {
          // this size no longer fits; try a smaller one
        }
      }
    });
    const counter = new CounterUnit(new ApartmentPage(page).unit('Visitor counter'));
    await counter.increment();
    await expect(counter.value()).toHaveText('1');
    const panel = page.getByRole('region', { name: 'Storage and sync: Main apartment' });
    await expect(panel.getByRole('alert').filter({ hasText: /full|quota/i }).first()).toBeVisible();
    await expect(counter.value()).toHaveText('1');

    await page.evaluate(() => {
      for (const key of Object.keys(localStorage)) if (key.startsWith('filler/')) localStorage.removeItem(key);
    });
    await counter.increment();
    await expect(counter.value()).toHaveText('2');
    await expect.poll(() => page.evaluate((k) => localStorage.getItem(k) !== null, lobbyCount)).toBe(true);
    await page.reload();
    await expect(counter.value()).toHaveText('2');
  });

  test('a hostile message on the channel is dropped and counted', async ({ page }) => {
    await page.goto('/');
    const panel = page.getByRole('region', { name: 'Storage and sync: Main apartment' });
    const dropped = panel.getByRole('status', { name: 'Dropped messages' });
    await expect(dropped).toHaveText('0');
    await page.evaluate(() => {
      const channel = new BroadcastChannel('gaesup');
      channel.postMessage('{"type":"ops","body":{"ops":[{"key":"../../etc"}]}}');
      channel.postMessage('<img src=x onerror=alert(1)>');
      channel.postMessage({ not: 'text' });
      channel.close();
    });
    await expect(dropped).toHaveText('3');
    const counter = new CounterUnit(new ApartmentPage(page).unit('Visitor counter'));
    await counter.increment();
    await expect(counter.value()).toHaveText('1');
  });
});
