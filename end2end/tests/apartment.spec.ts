import { test, expect } from './support/fixtures';
import { ApartmentPage, CounterUnit } from './support/apartment';

test.describe('the apartment view', () => {
  test('renders its buildings and their units from the manifest', async ({ page }) => {
    const apartment = new ApartmentPage(page);
    await apartment.goto('/');
    await expect(apartment.heading('Main apartment')).toBeVisible();
    for (const [building, unit] of [
      ['Lobby', 'Visitor counter'],
      ['Lobby', 'Visitor counter (plain JS)'],
      ['Workshop', 'Parts counter'],
    ]) {
      const region = apartment.building(building);
      await expect(region).toBeVisible();
      await expect(apartment.unit(unit, region)).toBeVisible();
    }
  });

  test('a building offering several versions of a unit shows the active one', async ({ page }) => {
    const apartment = new ApartmentPage(page);
    await apartment.goto('/');
    const workshop = apartment.building('Workshop');
    const parts = apartment.unit('Parts counter', workshop);
    await expect(parts).toContainText('v0.1.0 (also offered: 0.2.0-beta)');
    await expect(apartment.unit('Parts counter (JS rewrite)')).toHaveCount(0);
    // The active version is the Leptos counter, not the JS element.
    await new CounterUnit(parts).increment();
    await expect(new CounterUnit(parts).value()).toHaveText('1');
    await expect(parts.locator('gaesup-js-counter')).toHaveCount(0);
  });

  test('loads without page or console errors', async ({ page, pageErrors }) => {
    await new ApartmentPage(page).goto('/');
    await expect(page.getByRole('button', { name: 'Increment' }).first()).toBeEnabled();
    // The wasm is running: a click is handled.
    await page.getByRole('button', { name: 'Increment' }).first().click();
    await expect(page.getByRole('status', { name: 'Count' }).first()).toHaveText('1');
    expect(pageErrors).toEqual([]);
  });
});

test.describe('the counter unit', () => {
  test('increments, decrements and resets', async ({ page }) => {
    const apartment = new ApartmentPage(page);
    await apartment.goto('/');
    const counter = new CounterUnit(apartment.unit('Visitor counter'));
    await expect(counter.value()).toHaveText('0');
    await counter.increment();
    await counter.increment();
    await expect(counter.value()).toHaveText('2');
    await counter.decrement();
    await expect(counter.value()).toHaveText('1');
    await counter.reset();
    await expect(counter.value()).toHaveText('0');
  });

  test('each unit instance keeps its own count', async ({ page }) => {
    const apartment = new ApartmentPage(page);
    await apartment.goto('/');
    const lobby = new CounterUnit(apartment.unit('Visitor counter'));
    const workshop = new CounterUnit(apartment.unit('Parts counter'));
    await lobby.increment();
    await expect(lobby.value()).toHaveText('1');
    await expect(workshop.value()).toHaveText('0');
  });
});

test.describe('the plain-JS unit', () => {
  test('and the Leptos counter of its building update each other', async ({ page }) => {
    const apartment = new ApartmentPage(page);
    await apartment.goto('/');
    const leptos = new CounterUnit(apartment.unit('Visitor counter'));
    const js = new CounterUnit(apartment.unit('Visitor counter (plain JS)'));
    await expect(js.value()).toHaveText('0');
    await js.increment();
    await expect(leptos.value()).toHaveText('1');
    await leptos.increment();
    await expect(js.value()).toHaveText('2');
    await js.reset();
    await expect(leptos.value()).toHaveText('0');
    await expect(js.value()).toHaveText('0');
  });

  test('works on its own unit address', async ({ page }) => {
    const apartment = new ApartmentPage(page);
    await apartment.goto('/apartment/main/building/lobby/unit/js-counter');
    const js = new CounterUnit(apartment.unit('Visitor counter (plain JS)'));
    await js.increment();
    await expect(js.value()).toHaveText('1');
  });
});
