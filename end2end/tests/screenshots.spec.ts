import { test, expect } from './support/fixtures';
import { ApartmentPage } from './support/apartment';
import { fileURLToPath } from 'node:url';
import { dirname, resolve } from 'node:path';

// The README's pictures of the apartment, made from the release build on
// every run so they never go stale.
const out = resolve(dirname(fileURLToPath(import.meta.url)), '../../docs/screenshots');

for (const scheme of ['light', 'dark'] as const) {
  test(`screenshot of the apartment (${scheme})`, async ({ page }) => {
    await page.emulateMedia({ colorScheme: scheme });
    await page.setViewportSize({ width: 1280, height: 900 });
    const apartment = new ApartmentPage(page);
    await apartment.goto('/');
    await expect(apartment.heading('Main apartment')).toBeVisible();
    await page.waitForFunction(() => (window as any).gaesup !== undefined);
    await expect(apartment.unit('Visitor counter (plain JS)').getByRole('status', { name: 'Count' })).toHaveText('0');
    await page.screenshot({ path: `${out}/apartment-${scheme}.png`, fullPage: true });
  });
}
