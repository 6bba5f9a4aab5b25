import type { Page } from '@playwright/test';
import { test, expect } from './support/fixtures';
import { ApartmentPage, CounterUnit } from './support/apartment';
import { InspectorUnit } from './support/inspector';

/** How far the page scrolls sideways (0: it fits the viewport). */
function sidewaysOverflow(page: Page): Promise<number> {
  return page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
}

test.describe('at a phone width (360 px)', () => {
  test.use({ viewport: { width: 360, height: 740 } });

  for (const [name, path] of [
    ['the apartment view', '/'],
    ['the inspector', '/apartment/main/building/devtools/unit/inspector'],
    ['the todo unit', '/apartment/main/building/desk/unit/todo'],
  ] as const) {
    test(`${name} fits without sideways scrolling`, async ({ page }) => {
      await page.goto(path);
      await expect(page.getByRole('main')).toBeVisible();
      await page.waitForFunction(() => (window as any).gaesup !== undefined);
      expect(await sidewaysOverflow(page)).toBe(0);
    });
  }

  test("the inspector's wide keys table scrolls inside its own region", async ({ page }) => {
    await page.goto('/apartment/main/building/devtools/unit/inspector');
    const inspector = new InspectorUnit(page);
    const table = inspector.root.getByRole('region', { name: 'Keys table' });
    await expect(table.getByRole('table')).toBeVisible();
    expect(await sidewaysOverflow(page)).toBe(0);
    // Reachable from the keyboard, so it can be scrolled without a mouse.
    await table.focus();
    await expect(table).toBeFocused();
  });
});

test.describe('keyboard', () => {
  test('a unit works from the keyboard alone, with a visible focus ring', async ({ page }) => {
    const apartment = new ApartmentPage(page);
    await apartment.goto('/');
    const counter = new CounterUnit(apartment.unit('Visitor counter'));
    const increment = counter.root.getByRole('button', { name: 'Increment' });
    // Tab from the decrement button to the increment button.
    await counter.root.getByRole('button', { name: 'Decrement' }).focus();
    await page.keyboard.press('Tab');
    await expect(increment).toBeFocused();
    const outline = await increment.evaluate((el) => getComputedStyle(el).outlineStyle);
    expect(outline).not.toBe('none');
    await page.keyboard.press('Enter');
    await page.keyboard.press('Space');
    await expect(counter.value()).toHaveText('2');
  });
});
