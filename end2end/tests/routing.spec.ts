import { test, expect } from './support/fixtures';
import { ApartmentPage, CounterUnit } from './support/apartment';

const unitAddress = '/apartment/main/building/workshop/unit/counter';

test.describe('routing', () => {
  test('a deep link to a unit address renders that unit alone', async ({ page }) => {
    const apartment = new ApartmentPage(page);
    await apartment.goto(unitAddress);
    await expect(apartment.heading('Parts counter')).toBeVisible();
    await expect(apartment.breadcrumb()).toContainText('Main apartment');
    await expect(apartment.breadcrumb()).toContainText('Workshop');
    await expect(apartment.unit('Visitor counter')).toHaveCount(0);
    const counter = new CounterUnit(apartment.unit('Parts counter'));
    await counter.increment();
    await expect(counter.value()).toHaveText('1');
  });

  test("a path inside a unit's address still shows that unit", async ({ page }) => {
    const apartment = new ApartmentPage(page);
    await apartment.goto(`${unitAddress}/some/inner/route`);
    await expect(apartment.heading('Parts counter')).toBeVisible();
  });

  test('the focused unit has a way back to the apartment', async ({ page }) => {
    const apartment = new ApartmentPage(page);
    await apartment.goto(unitAddress);
    await page.getByRole('link', { name: '← Back to Main apartment' }).click();
    await expect(page).toHaveURL('/apartment/main');
    await expect(apartment.building('Lobby')).toBeVisible();
  });

  test('a unit title links to its address, and back returns', async ({ page }) => {
    const apartment = new ApartmentPage(page);
    await apartment.goto('/');
    await apartment.unit('Visitor counter').getByRole('link', { name: 'Visitor counter' }).click();
    await expect(page).toHaveURL('/apartment/main/building/lobby/unit/counter');
    await expect(apartment.heading('Visitor counter')).toBeVisible();
    await page.goBack();
    await expect(page).toHaveURL('/');
    await expect(apartment.heading('Main apartment')).toBeVisible();
  });

  test('a building address shows that building', async ({ page }) => {
    const apartment = new ApartmentPage(page);
    await apartment.goto('/apartment/main/building/lobby');
    await expect(apartment.building('Lobby')).toBeVisible();
    await expect(apartment.building('Workshop')).toHaveCount(0);
  });

  test('an unknown address shows the 404 page', async ({ page }) => {
    const apartment = new ApartmentPage(page);
    await apartment.goto('/no/such/place');
    await expect(apartment.heading('Page not found')).toBeVisible();
    await expect(page.getByText('/no/such/place')).toBeVisible();
    await page.getByRole('link', { name: 'Go to the apartment' }).click();
    await expect(apartment.heading('Main apartment')).toBeVisible();
  });

  test('a unit address naming a missing unit shows the 404 page', async ({ page }) => {
    const apartment = new ApartmentPage(page);
    await apartment.goto('/apartment/main/building/lobby/unit/ghost');
    await expect(apartment.heading('Page not found')).toBeVisible();
    await expect(page.getByText('Building "lobby" has no unit "ghost".')).toBeVisible();
  });
});
