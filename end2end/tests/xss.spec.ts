import { test, expect } from './support/fixtures';
import { ApartmentPage } from './support/apartment';

// Values from state are always rendered as text. Every text-holding key is
// written with markup that would run script if it were parsed as HTML.
const payload = '<img src=x onerror="window.__xss = true"><script>window.__xss = true</script>';

test.describe('values are text, never markup', () => {
  test('markup written to every text-holding key is shown, not run', async ({ page }) => {
    const apartment = new ApartmentPage(page);
    await apartment.goto('/');
    await page.waitForFunction(() => (window as any).gaesup !== undefined);

    // Through the same API any unit uses.
    await page.evaluate((text) => {
      const gaesup = (window as any).gaesup;
      gaesup.unit('main/study/notes-a').set('notes', text);
      gaesup.unit('main/study/shared-note').set('shared-note', text);
      gaesup.unit('main/checkout/cart').set('cart', { tea: [text, 450, 1] });
    }, payload);

    // Through the UI.
    const todos = apartment.unit('Todos');
    await todos.getByPlaceholder('What needs to be done?').fill(payload);
    await todos.getByPlaceholder('What needs to be done?').press('Enter');

    await expect(todos.getByText(payload)).toBeVisible();
    await expect(apartment.unit('Notes A').getByLabel('Private notes')).toHaveValue(payload);
    await expect(apartment.unit('Shared note').getByRole('textbox', { name: 'Shared note', exact: true })).toHaveValue(payload);
    await expect(apartment.unit('Cart').getByText(payload).first()).toBeVisible();
    // The inspector's op log shows the written values too, as text.
    await expect(apartment.unit('Inspector').getByRole('region', { name: 'Latest operations' })).toContainText(
      '<img src=x onerror=',
    );

    // Nothing was parsed: no injected element, no script ran.
    expect(await page.locator('img[src="x"]').count()).toBe(0);
    expect(await page.evaluate(() => (window as any).__xss)).toBeUndefined();

    // And after a reload, from storage.
    await page.reload();
    await expect(apartment.unit('Todos').getByText(payload)).toBeVisible();
    expect(await page.locator('img[src="x"]').count()).toBe(0);
    expect(await page.evaluate(() => (window as any).__xss)).toBeUndefined();
  });

  test('an address made of markup is shown as text on the 404 page', async ({ page }) => {
    // (No dot in it: the static server treats a dotted path as a file.)
    const markup = '<img src=x onerror=alert(1)>';
    page.on('dialog', () => {
      throw new Error('a dialog opened: the address was run as markup');
    });
    await page.goto(`/${encodeURIComponent(markup)}`);
    // The address is shown as the browser holds it (percent-encoded), as text.
    await expect(page.getByText(`/${encodeURIComponent(markup)}`)).toBeVisible();
    await expect(page.getByRole('heading', { name: 'Page not found' })).toBeVisible();
    expect(await page.locator('img[src="x"]').count()).toBe(0);
    expect(await page.evaluate(() => (window as any).__xss)).toBeUndefined();
  });
});
