import { expect, type BrowserContext, type Page } from '@playwright/test';

/** Options of `unit.declare` in window.gaesup. */
export type KeyRules = {
  scope?: 'private' | 'building' | 'apartment' | 'global';
  lifetime?: 'memory' | 'ephemeral' | 'persistent';
  strategy?: 'last_write_wins' | 'first_write_wins' | 'merge' | 'sum' | 'user_resolve';
  default?: unknown;
};

declare global {
  interface Window {
    gaesup: {
      unit(address: string): {
        declare(name: string, rules?: KeyRules): void;
        get(name: string): unknown;
        set(name: string, value: unknown): void;
        increment(name: string, delta: number): void;
      };
    };
  }
}

/**
 * One browser tab of the app, driven through window.gaesup (the same API a
 * unit written in JavaScript uses), with its page errors collected.
 */
export class Tab {
  readonly errors: string[] = [];

  constructor(readonly page: Page) {
    page.on('pageerror', (error) => this.errors.push(`pageerror: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') this.errors.push(`console.error: ${message.text()}`);
    });
  }

  static async open(context: BrowserContext, path = '/'): Promise<Tab> {
    const tab = new Tab(await context.newPage());
    await tab.goto(path);
    return tab;
  }

  async goto(path = '/') {
    await this.page.goto(path);
    await this.ready();
  }

  async reload() {
    await this.page.reload();
    await this.ready();
  }

  async ready() {
    await this.page.waitForFunction(() => window.gaesup !== undefined);
  }

  declare(address: string, name: string, rules: KeyRules) {
    return this.page.evaluate(([a, n, r]) => window.gaesup.unit(a).declare(n, r), [address, name, rules] as const);
  }

  get(address: string, name: string) {
    return this.page.evaluate(([a, n]) => window.gaesup.unit(a).get(n), [address, name] as const);
  }

  set(address: string, name: string, value: unknown) {
    return this.page.evaluate(([a, n, v]) => window.gaesup.unit(a).set(n, v), [address, name, value] as const);
  }

  /** Fails the test if this tab reported a page or console error. */
  expectNoErrors() {
    expect(this.errors, 'the tab reported errors').toEqual([]);
  }
}
