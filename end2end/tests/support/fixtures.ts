import { test as base, expect } from '@playwright/test';

/**
 * Every test fails if the page reports an uncaught error or a console error:
 * a wasm that loads but dies (a trap, a failed instantiation, a panic) shows
 * up there even when the DOM looks fine.
 */
export const test = base.extend<{ pageErrors: string[]; expectedConsoleErrors: RegExp[] }>({
  // Console errors a test expects (matched by text), e.g. the browser's own
  // report of a 404 document on a static host. Empty by default.
  expectedConsoleErrors: [[], { option: true }],
  pageErrors: [
    async ({ page, expectedConsoleErrors }, use) => {
      const errors: string[] = [];
      page.on('pageerror', (error) => errors.push(`pageerror: ${error.message}`));
      page.on('console', (message) => {
        if (message.type() !== 'error') return;
        if (expectedConsoleErrors.some((pattern) => pattern.test(message.text()))) return;
        errors.push(`console.error: ${message.text()}`);
      });
      await use(errors);
      expect(errors, 'the page reported errors').toEqual([]);
    },
    { auto: true },
  ],
});

export { expect };
