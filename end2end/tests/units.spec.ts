import type { BrowserContext, Page } from '@playwright/test';
import { test, expect } from './support/fixtures';
import { Tab } from './support/tabs';
import {
  ADDRESS,
  CartUnit,
  CatalogUnit,
  PrivateNotesUnit,
  STORED,
  SharedNoteUnit,
  ThemeUnit,
  dataTheme,
  deafen,
  installSyncSwitches,
  mute,
  resync,
  stored,
  undeafen,
  unmute,
} from './support/units';

// The theme, notes, catalog and cart units. Every test starts from a fresh
// browser context, so from an empty localStorage; `/` shows the main
// apartment with every unit.

test.describe('theme', () => {
  test('picking a theme sets data-theme on the page and survives a reload', async ({ page }) => {
    await page.goto('/');
    const theme = new ThemeUnit(page);
    await expect(theme.option('System')).toBeChecked();
    expect(await dataTheme(page)).toBeUndefined();

    await theme.pick('Dark');
    await expect(theme.option('Dark')).toBeChecked();
    await expect.poll(() => dataTheme(page)).toBe('dark');

    await page.reload();
    await expect(theme.option('Dark')).toBeChecked();
    await expect.poll(() => dataTheme(page)).toBe('dark');

    await theme.pick('System');
    await expect.poll(() => dataTheme(page)).toBeUndefined();
  });

  test('the radio group is keyboard usable', async ({ page }) => {
    await page.goto('/');
    const theme = new ThemeUnit(page);
    await theme.option('System').focus();
    await page.keyboard.press('ArrowDown');
    await expect(theme.option('Light')).toBeChecked();
    await expect(theme.option('Light')).toBeFocused();
    await expect.poll(() => dataTheme(page)).toBe('light');
  });

  test('a choice reaches another tab, and back', async ({ page, context }) => {
    await page.goto('/');
    const here = new ThemeUnit(page);
    await here.pick('Dark');
    await expect.poll(() => dataTheme(page)).toBe('dark');

    const other = await Tab.open(context, '/');
    const there = new ThemeUnit(other.page);
    await expect(there.option('Dark')).toBeChecked();
    await expect.poll(() => dataTheme(other.page)).toBe('dark');

    await there.pick('Light');
    await expect(here.option('Light')).toBeChecked();
    await expect.poll(() => dataTheme(page)).toBe('light');
    other.expectNoErrors();
  });

  test('the theme is global: the annex apartment uses it too', async ({ page }) => {
    await page.goto('/');
    await new ThemeUnit(page).pick('Dark');
    await expect.poll(() => stored(page, STORED.theme)).toContain('"dark"');

    await page.goto(ADDRESS.annex);
    const annex = new ThemeUnit(page);
    await expect(annex.option('Dark')).toBeChecked();
    await expect.poll(() => dataTheme(page)).toBe('dark');
  });
});

test.describe('private notes', () => {
  test('two notes units never see each other and both persist', async ({ page }) => {
    await page.goto('/');
    const a = new PrivateNotesUnit(page, 'Notes A');
    const b = new PrivateNotesUnit(page, 'Notes B');
    await a.field().fill('alpha <b>not bold</b>');
    await expect(b.field()).toHaveValue('');
    await b.field().fill('beta');
    await expect(a.field()).toHaveValue('alpha <b>not bold</b>');

    await page.reload();
    await expect(a.field()).toHaveValue('alpha <b>not bold</b>');
    await expect(b.field()).toHaveValue('beta');
    await expect(a.root.locator('b')).toHaveCount(0);

    // The unit's own page shows the same, private, note.
    await page.goto(ADDRESS.notesB);
    await expect(new PrivateNotesUnit(page, 'Notes B').field()).toHaveValue('beta');
  });
});

test.describe('catalog and cart', () => {
  test('what the catalog adds shows in the cart of another building', async ({ page, context }) => {
    await page.goto('/');
    const catalog = new CatalogUnit(page);
    const cart = new CartUnit(page);
    await expect(cart.emptyMessage()).toBeVisible();
    await catalog.add('Mug');
    await catalog.add('Mug');
    await catalog.add('Green tea');
    await expect(catalog.inCart('Mug')).toHaveText('2');
    await expect(cart.quantity('Mug')).toHaveText('2');
    await expect(cart.quantity('Green tea')).toHaveText('1');
    await expect(cart.total()).toHaveText('$28.50');
    await expect(cart.emptyMessage()).toHaveCount(0);

    // The cart's own page, in another tab, has it too.
    const other = await Tab.open(context, ADDRESS.cart);
    const otherCart = new CartUnit(other.page);
    await expect(otherCart.quantity('Mug')).toHaveText('2');
    await expect(otherCart.total()).toHaveText('$28.50');
    other.expectNoErrors();
  });

  test('two tabs adding different products at the same moment keep both', async ({ page, context }) => {
    await installSyncSwitches(context);
    await page.goto('/');
    const other = await Tab.open(context, '/');
    // Neither tab hears of the other's add before making its own.
    await mute(page);
    await deafen(other.page);

    await new CatalogUnit(page).add('Green tea');
    await expect.poll(() => stored(page, STORED.cart)).toContain('green-tea');
    await expect(new CartUnit(other.page).quantity('Green tea')).toHaveCount(0);
    await new CatalogUnit(other.page).add('Teapot');

    await unmute(page);
    await undeafen(other.page);
    await resync(page);
    await resync(other.page);
    for (const tab of [page, other.page]) {
      const cart = new CartUnit(tab);
      await expect(cart.quantity('Green tea')).toHaveText('1');
      await expect(cart.quantity('Teapot')).toHaveText('1');
      await expect(cart.total()).toHaveText('$38.50');
    }
    other.expectNoErrors();
  });

  test('cart lines: +, −, remove, empty, and the total', async ({ page }) => {
    await page.goto('/');
    const catalog = new CatalogUnit(page);
    const cart = new CartUnit(page);
    await expect(cart.total()).toHaveText('$0.00');
    await expect(cart.emptyCart()).toBeDisabled();
    await catalog.add('Green tea');
    await catalog.add('Mug');
    await expect(cart.lines()).toHaveCount(2);

    await cart.addOne('Green tea');
    await expect(cart.quantity('Green tea')).toHaveText('2');
    await expect(catalog.inCart('Green tea')).toHaveText('2');
    await expect(cart.total()).toHaveText('$21.00');

    // Quantity 0 removes the line.
    await cart.removeOne('Mug');
    await expect(cart.quantity('Mug')).toHaveCount(0);
    await expect(cart.lines()).toHaveCount(1);
    await expect(cart.total()).toHaveText('$9.00');

    await cart.remove('Green tea');
    await expect(cart.emptyMessage()).toBeVisible();
    await expect(cart.total()).toHaveText('$0.00');

    await catalog.add('Teapot');
    await catalog.add('Coffee beans');
    await expect(cart.total()).toHaveText('$50.50');
    await cart.emptyCart().click();
    await expect(cart.emptyMessage()).toBeVisible();
    await expect(cart.total()).toHaveText('$0.00');
    await expect(catalog.inCart('Teapot')).toHaveText('0');

    // And it stays empty after a reload.
    await page.reload();
    await expect(new CartUnit(page).emptyMessage()).toBeVisible();
  });
});

test.describe('shared note', () => {
  test('saves on Save, reaches another tab and says who saved it', async ({ page, context }) => {
    await page.goto('/');
    const other = await Tab.open(context, '/');
    const here = new SharedNoteUnit(page);
    const there = new SharedNoteUnit(other.page);

    await here.field().fill('Meeting at noon');
    // Not saved yet: the other tab still shows nothing.
    await expect(here.root).toContainText('Unsaved changes');
    await expect(there.field()).toHaveValue('');

    await here.root.getByRole('button', { name: 'Save', exact: true }).click();
    await expect(there.field()).toHaveValue('Meeting at noon');
    await expect(here.root).toContainText('Current version saved by main/study/shared-note in this tab.');
    await expect(there.root).toContainText('Current version saved by main/study/shared-note in another tab.');
    await expect(here.dialog()).toBeHidden();
    other.expectNoErrors();
  });

  /** Opens `/` in `page` and in a second tab, with the sync switches in place. */
  async function twoTabs(page: Page, context: BrowserContext): Promise<Tab> {
    await installSyncSwitches(context);
    await page.goto('/');
    return Tab.open(context, '/');
  }

  /**
   * Tab A saves "From tab A" while its messages are held back and tab B
   * ignores storage writes; then tab B saves "From tab B" without having
   * seen it. B's save is the later one, so it is the current version.
   */
  async function concurrentSaves(page: Page, other: Tab) {
    const a = new SharedNoteUnit(page);
    const b = new SharedNoteUnit(other.page);
    await mute(page);
    await deafen(other.page);
    await a.write('From tab A');
    await expect.poll(() => stored(page, STORED.sharedNote)).toContain('From tab A');
    await expect(b.field()).toHaveValue('');
    await b.write('From tab B');
    await unmute(page);
    await undeafen(other.page);
    await resync(page);
    await resync(other.page);
    for (const note of [a, b]) {
      await expect(note.dialog()).toBeVisible();
      await expect(note.status()).toHaveText('2 conflicting versions: choose the one to keep.');
    }
    return [a, b] as const;
  }

  test('concurrent saves in two tabs open the dialog in both; Keep current resolves both', async ({ page, context }) => {
    const other = await twoTabs(page, context);
    const [a, b] = await concurrentSaves(page, other);
    await expect(a.dialog()).toContainText('From tab A');
    await expect(a.dialog()).toContainText('From tab B');

    await a.choice('Keep current').click();
    for (const note of [a, b]) {
      await expect(note.dialog()).toBeHidden();
      await expect(note.field()).toHaveValue('From tab B');
      await expect(note.status()).toHaveText('');
    }
    other.expectNoErrors();
  });

  test('Take incoming 1 in the other tab resolves both to the earlier save', async ({ page, context }) => {
    const other = await twoTabs(page, context);
    const [a, b] = await concurrentSaves(page, other);

    await b.choice('Take incoming 1').click();
    for (const note of [a, b]) {
      await expect(note.dialog()).toBeHidden();
      await expect(note.field()).toHaveValue('From tab A');
    }
    // The choice is a save like any other: it survives a reload.
    await page.reload();
    await expect(new SharedNoteUnit(page).field()).toHaveValue('From tab A');
    await expect(new SharedNoteUnit(page).dialog()).toBeHidden();
    other.expectNoErrors();
  });

  test('a custom value must not be blank, then resolves both', async ({ page, context }) => {
    const other = await twoTabs(page, context);
    const [a, b] = await concurrentSaves(page, other);

    await a.choice('Use custom value').click();
    await expect(a.dialog().getByRole('alert')).toHaveText(
      'Write the note to keep, or pick one of the versions above.',
    );
    await expect(a.dialog()).toBeVisible();

    await a.customValue().fill('  From both tabs  ');
    await a.choice('Use custom value').click();
    for (const note of [a, b]) {
      await expect(note.dialog()).toBeHidden();
      await expect(note.field()).toHaveValue('From both tabs');
    }
    other.expectNoErrors();
  });
});
