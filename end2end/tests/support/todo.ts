import type { Locator, Page } from '@playwright/test';

/** The todo unit's own address (manifest: apartment main, building desk). */
export const TODO_ADDRESS = '/apartment/main/building/desk/unit/todo';

/** The filter routes inside the unit's address. */
export type FilterName = 'All' | 'Active' | 'Completed';

export function filterAddress(filter: FilterName): string {
  return filter === 'All' ? TODO_ADDRESS : `${TODO_ADDRESS}/${filter.toLowerCase()}`;
}

/**
 * localStorage entry of the list: `gaesup/state/` + the full key
 * `private/{apartment}/{building}/{unit}/todos`.
 */
export const TODOS_STORAGE_KEY = 'gaesup/state/private/main/desk/todo/todos';

/**
 * A schema-1 entry, as the v1 unit stored it: `{"schema":1,"state":…}` with
 * the merge strategy's state holding a v1 array (no ids, `done`). It is
 * byte for byte what the state core itself writes for that key at schema 1;
 * `cargo test -p unit-todo` checks both strings above against the core.
 */
export const V1_ENTRY =
  '{"schema":1,"state":{"strategy":"merge","data":{"base":{"stamp":{"wall_ms":1700000000000,"counter":0,"tab":"00000000000000a1"},"id":{"tab":"00000000000000a1","seq":1},"writer":"main/desk/todo","value":[{"done":false,"title":"Buy milk"},{"done":true,"title":"Walk the dog"},{"done":false,"title":"<b>not bold</b>"}]}}}}';

/**
 * Puts `value` under `key` in localStorage before the app's first load in
 * `page`, once: a later reload sees whatever the app stored since.
 */
export async function plantBeforeLoad(page: Page, key: string, value: string): Promise<void> {
  await page.addInitScript(
    ([key, value]) => {
      const flag = 'e2e/planted/' + key;
      if (sessionStorage.getItem(flag) === null) {
        localStorage.setItem(key, value);
        sessionStorage.setItem(flag, '1');
      }
    },
    [key, value],
  );
}

/** The raw localStorage entry of the list in `page`, if any. */
export function storedTodos(page: Page): Promise<string | null> {
  return page.evaluate((key) => localStorage.getItem(key), TODOS_STORAGE_KEY);
}

/**
 * The shared fixture checks only the default `page`; this applies the same
 * rule (no uncaught error, no console error) to an extra page.
 */
export function watchErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(`pageerror: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console.error: ${message.text()}`);
  });
  return errors;
}

/**
 * Locators and actions for the TodoMVC unit. Labels where TodoMVC has them
 * (placeholder, "Mark all as complete", link and button names); the
 * specification's own classes where it has nothing else (`todo-list`,
 * `todo-count`, `selected`).
 */
export class TodoUnit {
  readonly root: Locator;

  /** `within`: where the unit renders (defaults to the whole page). */
  constructor(
    readonly page: Page,
    within: Locator | Page = page,
  ) {
    this.root = within.locator('.todoapp');
  }

  async goto(filter: FilterName = 'All'): Promise<void> {
    await this.page.goto(filterAddress(filter));
    await this.newTodo().waitFor();
  }

  newTodo(): Locator {
    return this.root.getByPlaceholder('What needs to be done?');
  }

  /** Types each title into new-todo and presses Enter. */
  async add(...titles: string[]): Promise<void> {
    for (const title of titles) {
      await this.newTodo().fill(title);
      await this.newTodo().press('Enter');
    }
  }

  items(): Locator {
    return this.root.locator('.todo-list > li');
  }

  /** The titles shown, in order. */
  titles(): Locator {
    return this.items().locator('label');
  }

  item(title: string): Locator {
    return this.items().filter({ has: this.page.getByText(title, { exact: true }) });
  }

  toggle(title: string): Locator {
    return this.item(title).getByRole('checkbox');
  }

  async destroy(title: string): Promise<void> {
    const item = this.item(title);
    // TodoMVC shows the button on hover.
    await item.hover();
    await item.getByRole('button', { name: 'Delete' }).click();
  }

  /** Double-clicks a title and returns the edit input (focused). */
  async startEditing(title: string): Promise<Locator> {
    const item = this.item(title);
    await item.getByText(title, { exact: true }).dblclick();
    return item.getByRole('textbox', { name: 'Edit' });
  }

  toggleAll(): Locator {
    return this.root.getByLabel('Mark all as complete');
  }

  main(): Locator {
    return this.root.locator('.main');
  }

  footer(): Locator {
    return this.root.locator('.footer');
  }

  count(): Locator {
    return this.root.locator('.todo-count');
  }

  filter(name: FilterName): Locator {
    return this.root.getByRole('link', { name, exact: true });
  }

  selectedFilter(): Locator {
    return this.root.locator('.filters a.selected');
  }

  clearCompleted(): Locator {
    return this.root.getByRole('button', { name: 'Clear completed' });
  }
}
