import type { Locator, Page } from '@playwright/test';
import { unitFrame } from './units';

/** The inspector unit of the main apartment, by role and accessible name. */
export class InspectorUnit {
  readonly root: Locator;

  constructor(page: Page) {
    this.root = unitFrame(page, 'Inspector');
  }

  section(name: string): Locator {
    return this.root.getByRole('region', { name, exact: true });
  }

  /** The keys table row whose header cell is the full key `key`. */
  keyRow(key: string): Locator {
    return this.section('Keys')
      .getByRole('row')
      .filter({ has: this.root.page().getByRole('rowheader', { name: key, exact: true }) });
  }

  /** The cell of `row` under column `column`. */
  async cell(key: string, column: string): Promise<Locator> {
    const headers = await this.section('Keys').getByRole('columnheader').allTextContents();
    const index = headers.indexOf(column);
    if (index < 0) throw new Error(`no column ${column} in ${headers.join(', ')}`);
    return this.keyRow(key).getByRole(index === 0 ? 'rowheader' : 'cell').nth(index === 0 ? 0 : index - 1);
  }

  log(): Locator {
    return this.root.getByRole('region', { name: 'Latest operations' }).getByRole('listitem');
  }

  /** The value shown after `term` in the sync facts. */
  fact(term: string): Locator {
    return this.section('Sync status').locator('dt', { hasText: term }).locator('xpath=following-sibling::dd[1]');
  }

  button(name: string): Locator {
    return this.root.getByRole('button', { name, exact: true });
  }

  scope(): Locator {
    return this.root.getByRole('combobox', { name: 'Scope' });
  }

  exported(): Locator {
    return this.root.getByRole('textbox', { name: 'Exported snapshot' });
  }

  toRestore(): Locator {
    return this.root.getByRole('textbox', { name: 'Snapshot to restore' });
  }
}
