import AxeBuilder from '@axe-core/playwright';
import type { Page } from '@playwright/test';
import { test, expect } from './support/fixtures';
import { InspectorUnit } from './support/inspector';
import { FRAMEWORKS, FrameworkUnit, ATELIER } from './support/frameworks';

/** axe's serious and critical violations on the page as it is now. */
async function seriousViolations(page: Page): Promise<string[]> {
  const results = await new AxeBuilder({ page }).analyze();
  return results.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

// axe-core on the pages people land on: zero serious or critical
// violations, in the light and the dark theme.
for (const scheme of ['light', 'dark'] as const) {
  test.describe(`accessibility (${scheme})`, () => {
    test.use({ colorScheme: scheme });

    for (const [name, path] of [
      ['the apartment view', '/'],
      ['a focused unit', '/apartment/main/building/desk/unit/todo'],
      ['the annex apartment', '/apartment/annex'],
      ['the inspector', '/apartment/main/building/devtools/unit/inspector'],
      ['the 404 page', '/no/such/place'],
    ] as const) {
      test(`${name} has no serious or critical violation`, async ({ page }) => {
        await page.goto(path);
        await expect(page.getByRole('main')).toBeVisible();
        await page.waitForFunction(() => (window as any).gaesup !== undefined);
        expect(await seriousViolations(page)).toEqual([]);
      });
    }

    test('the atelier apartment, its React, Svelte and Vue units mounted, has no serious or critical violation', async ({ page }) => {
      await page.goto(ATELIER);
      for (const framework of FRAMEWORKS) {
        await expect(new FrameworkUnit(page, framework).value()).toHaveText('0');
      }
      expect(await seriousViolations(page)).toEqual([]);
    });

    test('the inspector in use (log, snapshot, errors) has no serious or critical violation', async ({ page }) => {
      await page.goto('/');
      const inspector = new InspectorUnit(page);
      await inspector.button('Break the flaky unit').click();
      await inspector.button('Export snapshot').click();
      await expect(inspector.exported()).toBeVisible();
      await inspector.toRestore().fill('not a snapshot');
      await inspector.button('Restore snapshot').click();
      await expect(inspector.root.getByRole('alert')).toBeVisible();
      await expect(inspector.log()).not.toHaveCount(0);
      expect(await seriousViolations(page)).toEqual([]);
    });
  });
}
