import { test, expect } from './support/fixtures';
import { ApartmentPage, CounterUnit } from './support/apartment';
import { FRAMEWORKS, FrameworkUnit, leptosCounter } from './support/frameworks';

// The build made with `--public-url /demo/`, served like GitHub Pages: an
// unknown address answers 404.html (the app itself) with status 404, and
// Chromium reports that status in the console — expected here, nothing else.
test.use({ expectedConsoleErrors: [/status of 404/] });

test.describe('deployed under a sub-path', () => {
  test('the apartment loads at the sub-path root', async ({ page }) => {
    const apartment = new ApartmentPage(page);
    await page.goto('./');
    await expect(apartment.heading('Main apartment')).toBeVisible();
    const counter = new CounterUnit(apartment.unit('Visitor counter'));
    await counter.increment();
    await expect(counter.value()).toHaveText('1');
  });

  test('framework units load their bundles from under the sub-path', async ({ page }) => {
    const requested: string[] = [];
    page.on('request', (request) => requested.push(new URL(request.url()).pathname));
    await page.goto('apartment/atelier/building/studio');
    for (const framework of FRAMEWORKS) {
      await new FrameworkUnit(page, framework).increment();
    }
    await expect(leptosCounter(page).value()).toHaveText('3');
    const bundles = requested.filter((path) => path.includes('/units/'));
    expect(bundles.length).toBeGreaterThanOrEqual(4);
    expect(bundles.filter((path) => !path.startsWith('/demo/units/'))).toEqual([]);
  });

  test('a deep link boots the app through 404.html and routes to the unit', async ({ page }) => {
    const apartment = new ApartmentPage(page);
    const response = await page.goto('apartment/main/building/workshop/unit/counter');
    expect(response?.status()).toBe(404);
    await expect(apartment.heading('Parts counter')).toBeVisible();
    await expect(page).toHaveURL(/\/demo\/apartment\/main\/building\/workshop\/unit\/counter$/);
  });

  test('links stay under the sub-path, and back returns', async ({ page }) => {
    const apartment = new ApartmentPage(page);
    await page.goto('./');
    await apartment.unit('Visitor counter').getByRole('link', { name: 'Visitor counter' }).click();
    await expect(page).toHaveURL(/\/demo\/apartment\/main\/building\/lobby\/unit\/counter$/);
    await expect(apartment.heading('Visitor counter')).toBeVisible();
    await page.goBack();
    await expect(page).toHaveURL(/\/demo\/$/);
    await expect(apartment.heading('Main apartment')).toBeVisible();
  });

  test('an unknown address inside the sub-path shows the app’s 404 page', async ({ page }) => {
    const apartment = new ApartmentPage(page);
    await page.goto('no/such/place');
    await expect(apartment.heading('Page not found')).toBeVisible();
  });
});
