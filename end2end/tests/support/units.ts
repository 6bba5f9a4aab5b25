import type { BrowserContext, Locator, Page } from '@playwright/test';

// Page objects for the theme, notes, catalog and cart units, by role and
// accessible name only. Manifest layout they expect: apartment `main` with
// buildings `shop` (unit "Catalog"), `checkout` ("Cart"), `study` ("Notes
// A", "Notes B", "Shared note") and `settings` ("Theme"); apartment `annex`
// with building `settings` ("Theme").

/** Addresses of the units' own pages. */
export const ADDRESS = {
  catalog: '/apartment/main/building/shop/unit/catalog',
  cart: '/apartment/main/building/checkout/unit/cart',
  notesA: '/apartment/main/building/study/unit/notes-a',
  notesB: '/apartment/main/building/study/unit/notes-b',
  sharedNote: '/apartment/main/building/study/unit/shared-note',
  theme: '/apartment/main/building/settings/unit/theme',
  annex: '/apartment/annex',
} as const;

/** localStorage entries (`gaesup/state/` + the full key). */
export const STORED = {
  theme: 'gaesup/state/global/theme',
  cart: 'gaesup/state/apartment/main/cart',
  sharedNote: 'gaesup/state/apartment/main/shared-note',
} as const;

/** A unit's frame: an article named by the unit's title. */
export function unitFrame(page: Page, title: string): Locator {
  return page.getByRole('article', { name: title, exact: true });
}

/** The raw localStorage entry `key` in `page`, if any. */
export function stored(page: Page, key: string): Promise<string | null> {
  return page.evaluate((k) => localStorage.getItem(k), key);
}

/** `document.documentElement.dataset.theme` in `page`. */
export function dataTheme(page: Page): Promise<string | undefined> {
  return page.evaluate(() => document.documentElement.dataset.theme);
}

declare global {
  interface Window {
    __e2eMuted?: boolean;
    __e2eDeaf?: boolean;
  }
}

/**
 * Lets a test hold back cross-tab sync in chosen tabs (`mute`, `deafen`).
 * Call before opening the context's pages: the switches must be in place
 * before the app starts, because listeners on one target run in the order
 * they were added (a `storage` listener added later, even capturing, runs
 * after the app's). Off until switched on; they change nothing else.
 */
export function installSyncSwitches(context: BrowserContext): Promise<void> {
  return context.addInitScript(() => {
    const post = BroadcastChannel.prototype.postMessage;
    BroadcastChannel.prototype.postMessage = function (this: BroadcastChannel, message: unknown) {
      if (!window.__e2eMuted) post.call(this, message);
    };
    window.addEventListener(
      'storage',
      (event) => {
        if (window.__e2eDeaf) event.stopImmediatePropagation();
      },
      true,
    );
  });
}

/**
 * Holds back this tab's cross-tab messages (`BroadcastChannel.postMessage`
 * drops them) until `unmute`. The tab still writes its own storage.
 */
export function mute(page: Page): Promise<void> {
  return page.evaluate(() => {
    window.__e2eMuted = true;
  });
}

export function unmute(page: Page): Promise<void> {
  return page.evaluate(() => {
    window.__e2eMuted = false;
  });
}

/**
 * Stops this tab from noticing other tabs' storage writes (the `storage`
 * event never reaches the app) until `undeafen`. With `mute` on the other
 * tab, the two tabs write without seeing each other, as two tabs do when
 * they write at the same moment.
 */
export function deafen(page: Page): Promise<void> {
  return page.evaluate(() => {
    window.__e2eDeaf = true;
  });
}

export function undeafen(page: Page): Promise<void> {
  return page.evaluate(() => {
    window.__e2eDeaf = false;
  });
}

/** What a tab does when it becomes visible again: re-read storage, ask the others. */
export function resync(page: Page): Promise<void> {
  return page.evaluate(() => {
    document.dispatchEvent(new Event('visibilitychange'));
  });
}

export type ThemeName = 'System' | 'Light' | 'Dark';

/** The theme switcher: a radio group named "Theme". */
export class ThemeUnit {
  readonly root: Locator;

  constructor(readonly page: Page) {
    this.root = unitFrame(page, 'Theme');
  }

  group(): Locator {
    return this.root.getByRole('group', { name: 'Theme', exact: true });
  }

  option(name: ThemeName): Locator {
    return this.group().getByRole('radio', { name, exact: true });
  }

  pick(name: ThemeName): Promise<void> {
    return this.option(name).check();
  }
}

/** One private-notes unit, by its title ("Notes A", "Notes B"). */
export class PrivateNotesUnit {
  readonly root: Locator;

  constructor(page: Page, title: string) {
    this.root = unitFrame(page, title);
  }

  field(): Locator {
    return this.root.getByRole('textbox', { name: 'Private notes', exact: true });
  }
}

/** The shared note and its conflict dialog. */
export class SharedNoteUnit {
  readonly root: Locator;

  constructor(readonly page: Page) {
    this.root = unitFrame(page, 'Shared note');
  }

  field(): Locator {
    return this.root.getByRole('textbox', { name: 'Shared note', exact: true });
  }

  async write(text: string): Promise<void> {
    await this.field().fill(text);
    await this.root.getByRole('button', { name: 'Save', exact: true }).click();
  }

  /** The conflict line ("N conflicting versions…"). */
  status(): Locator {
    return this.root.getByRole('status');
  }

  dialog(): Locator {
    return this.page.getByRole('dialog', { name: 'Conflicting edits: Shared note', exact: true });
  }

  choice(name: 'Keep current' | `Take incoming ${number}` | 'Use custom value' | 'Decide later'): Locator {
    return this.dialog().getByRole('button', { name, exact: true });
  }

  customValue(): Locator {
    return this.dialog().getByRole('textbox', { name: 'Custom value', exact: true });
  }
}

/** The catalog: "Add {name} to cart" buttons and "{name} in cart" counts. */
export class CatalogUnit {
  readonly root: Locator;

  constructor(page: Page) {
    this.root = unitFrame(page, 'Catalog');
  }

  add(name: string): Promise<void> {
    return this.root.getByRole('button', { name: `Add ${name} to cart`, exact: true }).click();
  }

  inCart(name: string): Locator {
    return this.root.getByRole('status', { name: `${name} in cart`, exact: true });
  }
}

/** The cart: lines with −/+/Remove, the total, "Empty cart". */
export class CartUnit {
  readonly root: Locator;

  constructor(page: Page) {
    this.root = unitFrame(page, 'Cart');
  }

  quantity(name: string): Locator {
    return this.root.getByRole('status', { name: `${name} quantity`, exact: true });
  }

  addOne(name: string): Promise<void> {
    return this.root.getByRole('button', { name: `Add one ${name}`, exact: true }).click();
  }

  removeOne(name: string): Promise<void> {
    return this.root.getByRole('button', { name: `Remove one ${name}`, exact: true }).click();
  }

  remove(name: string): Promise<void> {
    return this.root.getByRole('button', { name: `Remove ${name}`, exact: true }).click();
  }

  total(): Locator {
    return this.root.getByRole('status', { name: 'Cart total', exact: true });
  }

  lines(): Locator {
    return this.root.getByRole('list', { name: 'Cart lines', exact: true }).getByRole('listitem');
  }

  /** The empty-state message (text: it is a paragraph, not a control). */
  emptyMessage(): Locator {
    return this.root.getByText('Your cart is empty.', { exact: true });
  }

  emptyCart(): Locator {
    return this.root.getByRole('button', { name: 'Empty cart', exact: true });
  }
}
