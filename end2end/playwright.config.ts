import { defineConfig } from '@playwright/test';

// The release build (dist/) served as a static site on loopback, driven in
// Debian's Chromium. Playwright never downloads a browser here.
// Ports can be moved (E2E_PORT, E2E_SUBPATH_PORT) to run two suites side by side.
const port = Number(process.env.E2E_PORT ?? 4173);
// The same app built with `--public-url /demo/` into dist-demo/, served the
// way a static host without SPA rewrites does (404.html for unknown paths).
const subPathPort = Number(process.env.E2E_SUBPATH_PORT ?? 4174);
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

export default defineConfig({
  testDir: './tests',
  fullyParallel: true,
  workers: 2,
  // Flakiness must show, not be retried away.
  retries: 0,
  forbidOnly: true,
  reporter: 'list',
  timeout: 30_000,
  expect: { timeout: 10_000 },
  use: {
    baseURL: `http://127.0.0.1:${port}`,
    browserName: 'chromium',
    launchOptions: {
      executablePath: '/usr/bin/chromium',
      args: [
        ...(isRoot ? ['--no-sandbox'] : []),
        // The closed network otherwise floods the log with refused connections.
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--disable-dev-shm-usage',
      ],
    },
    trace: 'retain-on-failure',
  },
  projects: [
    { name: 'root', testIgnore: /sub-path\.spec\.ts/ },
    {
      name: 'sub-path',
      testMatch: /sub-path\.spec\.ts/,
      use: { baseURL: `http://127.0.0.1:${subPathPort}/demo/` },
    },
  ],
  webServer: [
    {
      command: `node scripts/serve.mjs ../dist ${port} --while-stdin-open`,
      url: `http://127.0.0.1:${port}/`,
      reuseExistingServer: false,
      timeout: 30_000,
    },
    {
      command: `node scripts/serve.mjs ../dist-demo ${subPathPort} /demo/ --not-found-page --while-stdin-open`,
      url: `http://127.0.0.1:${subPathPort}/demo/`,
      reuseExistingServer: false,
      timeout: 30_000,
    },
  ],
});
