import { test, expect } from './support/fixtures';
import { ApartmentPage } from './support/apartment';
import { InspectorUnit } from './support/inspector';
import { COUNT_KEY, FRAMEWORKS, FrameworkUnit, ATELIER, STUDIO, leptosCounter } from './support/frameworks';
import { unitFrame } from './support/units';

// React, Svelte and Vue units (bundled from units/*-counter/js/ by
// js/build.mjs, mounted by <gaesup-unit>) next to Leptos units, on the
// same state manager through window.gaesup and the framework bindings.

for (const framework of FRAMEWORKS) {
  test.describe(`the ${framework.name} unit`, () => {
    test(`shares the count with the Leptos counter in one tab, both ways`, async ({ page }) => {
      await page.goto(STUDIO);
      const unit = new FrameworkUnit(page, framework);
      const leptos = leptosCounter(page);
      await expect(unit.value()).toHaveText('0');

      await unit.increment();
      await expect(leptos.value()).toHaveText('1');
      await leptos.increment();
      await leptos.increment();
      await expect(unit.value()).toHaveText('3');
      await unit.decrement();
      await expect(leptos.value()).toHaveText('2');
      await unit.reset();
      await expect(leptos.value()).toHaveText('0');
    });

    test(`shares the count with the Leptos counter across two tabs`, async ({ page, context }) => {
      await page.goto(STUDIO);
      const other = await context.newPage();
      await other.goto(STUDIO);
      const here = new FrameworkUnit(page, framework);
      const there = leptosCounter(other);
      await expect(here.value()).toHaveText('0');
      await expect(there.value()).toHaveText('0');

      await here.increment();
      await expect(there.value()).toHaveText('1');
      await there.increment();
      await expect(here.value()).toHaveText('2');
      // And the framework unit of the other tab heard both.
      await expect(new FrameworkUnit(other, framework).value()).toHaveText('2');
    });

    test('a thrown error shows the fallback in its frame; the rest keeps working; retry remounts it', async ({ page }) => {
      await page.goto(STUDIO);
      const unit = new FrameworkUnit(page, framework);
      await expect(unit.value()).toHaveText('0');
      await unit.breakIt();
      await expect(unit.failure()).toContainText(
        `This unit failed: the ${framework.name} counter was told to fail`,
      );
      await expect(unit.root.getByRole('button', { name: 'Increment' })).toHaveCount(0);

      const leptos = leptosCounter(page);
      await leptos.increment();
      await expect(leptos.value()).toHaveText('1');
      for (const neighbour of FRAMEWORKS.filter((f) => f !== framework)) {
        await expect(new FrameworkUnit(page, neighbour).value()).toHaveText('1');
      }

      await unit.retry();
      await expect(unit.failure()).toHaveCount(0);
      await expect(unit.value()).toHaveText('1');
      await unit.increment();
      await expect(leptos.value()).toHaveText('2');
    });
  });
}

test.describe('framework units together', () => {
  test('a note saved in React shows as text in Svelte, Vue and the Leptos shared note, with its writer', async ({ page }) => {
    await page.goto(STUDIO);
    const [react, svelte, vue] = FRAMEWORKS.map((f) => new FrameworkUnit(page, f));
    const payload = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>';
    await react.saveNote(payload);

    for (const unit of [react, svelte, vue]) {
      await expect(unit.sharedNote()).toHaveText(payload);
      await expect(unit.root.getByText('Written by atelier/studio/react')).toBeVisible();
      await expect(unit.root.locator('img')).toHaveCount(0);
    }
    await expect(unitFrame(page, 'Shared note').getByRole('textbox', { name: 'Shared note' })).toHaveValue(payload);

    await vue.saveNote('from Vue');
    await expect(svelte.sharedNote()).toHaveText('from Vue');
    await expect(react.root.getByText('Written by atelier/studio/vue')).toBeVisible();
    expect(await page.evaluate(() => (window as any).__xss)).toBeUndefined();
  });

  test('unmounting framework units leaves no subscription behind (the inspector counts them)', async ({ page }) => {
    const apartment = new ApartmentPage(page);
    await page.goto(ATELIER);
    const inspector = new InspectorUnit(page);
    const react = new FrameworkUnit(page, FRAMEWORKS[0]);
    await react.increment();
    // The Leptos counter and the three framework units each hold one.
    const subscribers = await inspector.cell(COUNT_KEY, 'Subscribers');
    await expect(subscribers).toHaveText('4');

    // A failed unit is unmounted: its subscription goes, and comes back
    // with the retry.
    await react.breakIt();
    await expect(react.failure()).toBeVisible();
    await expect(await inspector.cell(COUNT_KEY, 'Subscribers')).toHaveText('3');
    await react.retry();
    await expect(react.value()).toHaveText('1');
    await expect(await inspector.cell(COUNT_KEY, 'Subscribers')).toHaveText('4');

    // Leaving the studio (in the app, no reload) unmounts every unit of it.
    for (let round = 0; round < 2; round += 1) {
      await apartment.building('Devtools').getByRole('link', { name: 'Devtools' }).click();
      await expect(apartment.heading('Devtools', 2)).toBeVisible();
      await expect(await inspector.cell(COUNT_KEY, 'Subscribers')).toHaveText('0');
      await page.getByRole('navigation', { name: 'Apartments' }).getByRole('link', { name: 'Atelier apartment' }).click();
      await expect(react.value()).toHaveText('1');
      await expect(await inspector.cell(COUNT_KEY, 'Subscribers')).toHaveText('4');
    }
  });

  test('a unit whose mount throws after rendering leaves no subscription behind', async ({ page }) => {
    // The Svelte unit's bundle, replaced by one that subscribes to a key
    // of its own (nobody else watches it), writes it, registers its
    // teardown, renders, then throws.
    await page.route('**/units/svelte-counter.js', (route) =>
      route.fulfill({
        contentType: 'text/javascript',
        body: `import { SharedState } from './gaesup-bindings.js';
          export function mount(element, { unit, onUnmount }) {
            const probe = new SharedState(unit, 'mount-probe', 0, { rules: { scope: 'building' } });
            onUnmount(probe.subscribe(() => {}));
            probe.set(1);
            element.textContent = 'rendered';
            throw new Error('mount broke after rendering');
          }`,
      }),
    );
    await page.goto(ATELIER);
    const svelte = new FrameworkUnit(page, FRAMEWORKS[1]);
    await expect(svelte.failure()).toContainText('This unit failed: mount broke after rendering');
    // Its one subscription went with it.
    const inspector = new InspectorUnit(page);
    await expect(await inspector.cell('building/atelier/studio/mount-probe', 'Subscribers')).toHaveText('0');
  });

  test('a state subscribed before any unit declares its key connects once one does', async ({ page }) => {
    // What a framework unit that mounts before the Leptos unit owning its
    // key sees: the bindings as the site serves them, on the real wasm.
    await page.goto('/');
    await page.waitForFunction(() => (window as any).gaesup !== undefined);
    await page.addScriptTag({
      type: 'module',
      content: "import { SharedState } from './units/gaesup-bindings.js'; window.bindingsUnderTest = { SharedState };",
    });
    await page.waitForFunction(() => (window as any).bindingsUnderTest !== undefined);
    const seen = await page.evaluate(async () => {
      const { SharedState } = (window as any).bindingsUnderTest;
      const state = new SharedState('main/lobby/late-reader', 'latecomer', 'fallback');
      const snapshots: unknown[] = [];
      const snapshot = () => {
        const { value, meta } = state.getSnapshot();
        return { value, error: meta.error?.code ?? null };
      };
      const stop = state.subscribe(() => snapshots.push(snapshot()));
      const before = snapshot();
      const writer = (window as any).gaesup.unit('main/lobby/late-writer');
      writer.declare('latecomer', { scope: 'apartment', default: 'declared' });
      // `gaesup:declared` comes in a microtask: one task later it was heard.
      await new Promise((resolve) => setTimeout(resolve, 0));
      const declared = snapshot();
      writer.set('latecomer', 'written');
      const written = snapshot();
      stop();
      return { before, declared, written, last: snapshots[snapshots.length - 1] };
    });
    expect(seen).toEqual({
      before: { value: 'fallback', error: 'unknown_key' },
      declared: { value: 'declared', error: null },
      written: { value: 'written', error: null },
      last: { value: 'written', error: null },
    });
  });

  test('the home page loads no framework; the Atelier apartment loads each once', async ({ page }) => {
    const requested: string[] = [];
    page.on('request', (request) => requested.push(new URL(request.url()).pathname));
    const apartment = new ApartmentPage(page);
    await page.goto('/');
    await expect(apartment.heading('Main apartment')).toBeVisible();
    await page.waitForFunction(() => (window as any).gaesup !== undefined);
    await page.waitForLoadState('networkidle');
    expect(requested.filter((path) => path.startsWith('/units/'))).toEqual([]);

    await page.getByRole('navigation', { name: 'Apartments' }).getByRole('link', { name: 'Atelier apartment' }).click();
    for (const framework of FRAMEWORKS) {
      await expect(new FrameworkUnit(page, framework).value()).toHaveText('0');
    }
    const units = requested.filter((path) => path.startsWith('/units/'));
    for (const bundle of ['react-counter.js', 'svelte-counter.js', 'vue-counter.js', 'gaesup-bindings.js']) {
      expect(units.filter((path) => path === `/units/${bundle}`), bundle).toHaveLength(1);
    }
  });
});
