import type { Page } from '@playwright/test';
import { test, expect } from './support/fixtures';
import { ApartmentPage } from './support/apartment';

// The template unit on its own address: its note is saved, shown back as
// text and kept after a reload; a too-long note is refused with a reason;
// a ping reaches the unit itself (it listens on its building's topic).
// `cargo xtask new-unit` copies this spec for the new unit: it renames the
// unit id and rewrites BUILDING and TITLE to where the unit is mounted.
const BUILDING = 'garage';
const TITLE = 'Template';
const ADDRESS = `/apartment/main/building/${BUILDING}/unit/template`;

/** Opens the unit's address; its frame and controls, by role and name. */
async function open(page: Page) {
  const apartment = new ApartmentPage(page);
  await apartment.goto(ADDRESS);
  const unit = apartment.unit(TITLE);
  return {
    unit,
    note: unit.getByRole('textbox', { name: 'Note', exact: true }),
    saved: unit.getByRole('status', { name: 'Saved note', exact: true }),
    lastPing: unit.getByRole('status', { name: 'Last ping', exact: true }),
    ping: unit.getByRole('button', { name: 'Ping the building', exact: true }),
  };
}

test.describe('the template unit', () => {
  test('saves the note as text and keeps it after a reload', async ({ page }) => {
    const { unit, note, saved } = await open(page);
    await note.fill('<b>oil change</b>');
    await expect(saved).toHaveText('<b>oil change</b>');
    await expect(unit.locator('b')).toHaveCount(0);
    await page.reload();
    await expect(note).toHaveValue('<b>oil change</b>');
  });

  test('refuses a too-long note and says why', async ({ page }) => {
    const { unit, note, saved } = await open(page);
    await note.fill('short');
    await note.fill('x'.repeat(281));
    await expect(unit.getByRole('alert')).toHaveText(/: the note has 281 characters; at most 280 are kept$/);
    await expect(saved).toHaveText('short');
  });

  test('a ping shows what was sent and by which unit', async ({ page }) => {
    const { note, lastPing, ping } = await open(page);
    await expect(lastPing).toHaveText('');
    await note.fill('hello');
    await ping.click();
    await expect(lastPing).toHaveText(`“hello” from main/${BUILDING}/template`);
  });
});
