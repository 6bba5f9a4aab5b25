import { defineConfig } from '@playwright/test';

// The release build (dist/) served as a static site on loopback, driven in
// Debian's Chromium. Playwright never downloads a browser here.
const port = 4173;
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
  webServer: {
    command: `node scripts/serve.mjs ../dist ${port}`,
    url: `http://127.0.0.1:${port}/`,
    reuseExistingServer: false,
    timeout: 30_000,
  },
});
