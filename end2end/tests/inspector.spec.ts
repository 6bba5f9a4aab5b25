import { test, expect } from './support/fixtures';
import { ApartmentPage, CounterUnit } from './support/apartment';
import { InspectorUnit } from './support/inspector';
import { CartUnit, CatalogUnit } from './support/units';

// The inspector (Devtools building of the main apartment): keys with their
// metadata, sync status, the live op log, snapshots, and the failure drill.

test.describe('the inspector', () => {
  test('lists keys with scope, lifetime, strategy, version, writer and subscribers, live', async ({ page }) => {
    const apartment = new ApartmentPage(page);
    await apartment.goto('/');
    const inspector = new InspectorUnit(page);

    // The two visitor counters of the lobby watch one building key.
    const visits = 'building/main/lobby/count';
    await expect(inspector.keyRow(visits)).toHaveCount(1);
    await expect(await inspector.cell(visits, 'Scope')).toHaveText('building');
    await expect(await inspector.cell(visits, 'Lifetime')).toHaveText('persistent');
    await expect(await inspector.cell(visits, 'Strategy')).toHaveText('sum');
    await expect(await inspector.cell(visits, 'Subscribers')).toHaveText('2');

    // A write shows up at once: a new version, its writer, and the log.
    const catalog = new CatalogUnit(page);
    await catalog.add('Green tea');
    const cart = 'apartment/main/cart';
    await expect(await inspector.cell(cart, 'Strategy')).toHaveText('merge');
    await expect(await inspector.cell(cart, 'Last writer')).toHaveText('main/shop/catalog');
    await expect(await inspector.cell(cart, 'Version')).toHaveText(/^\d+\.\d+@/);
    await expect(inspector.log().first()).toContainText(`local ${cart}:`);
    await expect(inspector.log().first()).toContainText('Green tea');

    // Moving (in the app) to the Devtools building alone unmounts the
    // counters: their subscriptions go, the key's value stays.
    await new CounterUnit(apartment.unit('Visitor counter')).increment();
    await apartment.building('Devtools').getByRole('link', { name: 'Devtools' }).click();
    await expect(apartment.heading('Devtools', 2)).toBeVisible();
    await expect(await inspector.cell(visits, 'Subscribers')).toHaveText('0');
    await expect(await inspector.cell(visits, 'Version')).toHaveText(/^\d+\.\d+@/);
    await expect(await inspector.cell(visits, 'Last writer')).toHaveText('main/lobby/counter');
  });

  test('shows the sync status and sees another tab write', async ({ page, context }) => {
    await page.goto('/');
    const inspector = new InspectorUnit(page);
    await expect(inspector.fact('Other tabs')).toHaveText('linked');
    await expect(inspector.fact('Last sync')).toHaveText('never');

    const other = await context.newPage();
    await other.goto('/');
    await new CounterUnit(new ApartmentPage(other).unit('Visitor counter')).increment();

    await expect(inspector.log().first()).toContainText('remote building/main/lobby/count: 0 → 1');
    await expect(inspector.fact('Last sync')).toHaveText(/^\d\d:\d\d:\d\d UTC$/);
    await expect(inspector.fact('Storage used')).toHaveText(/\d/);
    await expect(inspector.fact('Dropped messages')).toHaveText('0');
  });

  test('breaks the flaky unit and repairs it; the failure stays in its frame', async ({ page }) => {
    const apartment = new ApartmentPage(page);
    await apartment.goto('/');
    const inspector = new InspectorUnit(page);
    const flaky = apartment.unit('Flaky unit');

    await inspector.button('Break the flaky unit').click();
    await expect(flaky.getByRole('alert')).toContainText('the flaky unit was told to fail');
    await expect(flaky.getByRole('button', { name: 'Retry' })).toBeVisible();
    await expect(inspector.root.getByText('The flaky unit is broken.')).toBeVisible();

    // Everything else still works, the inspector included.
    const counter = new CounterUnit(apartment.unit('Visitor counter'));
    await counter.increment();
    await expect(counter.value()).toHaveText('1');

    await inspector.button('Repair the flaky unit').click();
    await expect(flaky.getByText('Working.')).toBeVisible();
    await expect(flaky.getByRole('alert')).toHaveCount(0);
  });

  test('exports a scope and restores it; a bad snapshot changes nothing', async ({ page }) => {
    await page.goto('/');
    const inspector = new InspectorUnit(page);
    const catalog = new CatalogUnit(page);
    const cart = new CartUnit(page);

    await catalog.add('Green tea');
    await catalog.add('Green tea');
    await expect(cart.quantity('Green tea')).toHaveText('2');

    await expect(inspector.scope()).toHaveValue('apartment');
    await inspector.button('Export snapshot').click();
    await expect(inspector.root.getByRole('status')).toHaveText('Exported the apartment scope.');
    const snapshot = await inspector.exported().inputValue();
    expect(JSON.parse(snapshot)).toMatchObject({ format: 'gaesup-snapshot', scope: 'apartment' });
    await expect(inspector.root.getByRole('link', { name: 'Download snapshot' })).toHaveAttribute(
      'href',
      /^data:application\/json/,
    );

    await cart.remove('Green tea');
    await expect(cart.quantity('Green tea')).toHaveCount(0);

    // Garbage first: refused with a reason, the cart untouched.
    await inspector.toRestore().fill('<img src=x onerror="window.__xss=1">');
    await inspector.button('Restore snapshot').click();
    await expect(inspector.root.getByRole('alert')).toContainText('Nothing was restored:');
    await expect(cart.quantity('Green tea')).toHaveCount(0);
    expect(await page.evaluate(() => (window as any).__xss)).toBeUndefined();

    await inspector.toRestore().fill(snapshot);
    await inspector.button('Restore snapshot').click();
    await expect(inspector.root.getByRole('status')).toHaveText(/^Restored \d+ keys?\.$/);
    await expect(cart.quantity('Green tea')).toHaveText('2');
  });
});
