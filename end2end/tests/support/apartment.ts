import type { Locator, Page } from '@playwright/test';

/** Locators for the apartment shell, by role and accessible name only. */
export class ApartmentPage {
  constructor(readonly page: Page) {}

  async goto(path = '/') {
    await this.page.goto(path);
  }

  heading(name: string | RegExp, level = 1): Locator {
    return this.page.getByRole('heading', { name, level, exact: true });
  }

  building(name: string): Locator {
    return this.page.getByRole('region', { name, exact: true });
  }

  unit(name: string, within: Locator | Page = this.page): Locator {
    return within.getByRole('article', { name, exact: true });
  }

  breadcrumb(): Locator {
    return this.page.getByRole('navigation', { name: 'Breadcrumb' });
  }
}

/** Locators for one counter unit. */
export class CounterUnit {
  constructor(readonly root: Locator) {}

  value(): Locator {
    return this.root.getByRole('status', { name: 'Count' });
  }

  increment(): Promise<void> {
    return this.root.getByRole('button', { name: 'Increment' }).click();
  }

  decrement(): Promise<void> {
    return this.root.getByRole('button', { name: 'Decrement' }).click();
  }

  reset(): Promise<void> {
    return this.root.getByRole('button', { name: 'Reset' }).click();
  }
}
