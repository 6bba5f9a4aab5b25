import AxeBuilder from '@axe-core/playwright';
import { test, expect } from './support/fixtures';

// axe-core on the pages people land on: zero serious or critical
// violations, in the light and the dark theme.
for (const scheme of ['light', 'dark'] as const) {
  test.describe(`accessibility (${scheme})`, () => {
    test.use({ colorScheme: scheme });

    for (const [name, path] of [
      ['the apartment view', '/'],
      ['a focused unit', '/apartment/main/building/desk/unit/todo'],
      ['the annex apartment', '/apartment/annex'],
      ['the 404 page', '/no/such/place'],
    ] as const) {
      test(`${name} has no serious or critical violation`, async ({ page }) => {
        await page.goto(path);
        await expect(page.getByRole('main')).toBeVisible();
        await page.waitForFunction(() => (window as any).gaesup !== undefined);
        const results = await new AxeBuilder({ page }).analyze();
        const serious = results.violations
          .filter((v) => v.impact === 'serious' || v.impact === 'critical')
          .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
        expect(serious).toEqual([]);
      });
    }
  });
}
