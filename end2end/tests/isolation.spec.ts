import { test, expect } from './support/fixtures';
import { ApartmentPage, CounterUnit } from './support/apartment';

test.describe('failure isolation', () => {
  test('a failing unit shows its error and a retry inside its frame; the others keep working', async ({ page }) => {
    const apartment = new ApartmentPage(page);
    await apartment.goto('/');
    const flaky = apartment.unit('Flaky unit');
    await flaky.getByRole('button', { name: 'Break this unit' }).click();

    const failure = flaky.getByRole('alert');
    await expect(failure).toContainText('This unit failed: the flaky unit was told to fail');
    await expect(flaky.getByRole('button', { name: 'Break this unit' })).toHaveCount(0);

    // The rest of the apartment is untouched and still works.
    const counter = new CounterUnit(apartment.unit('Visitor counter'));
    await counter.increment();
    await expect(counter.value()).toHaveText('1');

    // Retrying while the cause persists fails again, visibly.
    await flaky.getByRole('button', { name: 'Retry' }).click();
    await expect(failure).toContainText('told to fail');

    // Once repaired (here through the JS API, as any unit of the apartment
    // could), the unit renders again: its view follows its state.
    await page.evaluate(() => (window as any).gaesup.unit('main/lab/flaky').set('flaky-broken', false));
    await expect(flaky.getByText('Working.')).toBeVisible();
    await expect(flaky.getByRole('alert')).toHaveCount(0);
  });
});
