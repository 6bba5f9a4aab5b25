import { defineConfig } from '@playwright/test';
import base from './playwright.config';

// Measurements, not tests: `cargo xtask bench` runs these and writes their
// numbers to target/bench/. Nothing here asserts a time. Two static
// servers: the app's release build (cross-tab latency) and the benchmark
// page (bench/page, built into target/bench/page), each on its own port.
const port = Number(process.env.E2E_PORT ?? 4173);
const benchPagePort = Number(process.env.E2E_BENCH_PORT ?? 4175);

export default defineConfig({
  ...base,
  testDir: './bench',
  fullyParallel: false,
  workers: 1,
  timeout: 600_000,
  projects: [{ name: 'bench' }],
  webServer: [
    {
      command: `node scripts/serve.mjs ../dist ${port}`,
      url: `http://127.0.0.1:${port}/`,
      reuseExistingServer: false,
      timeout: 30_000,
    },
    {
      command: `node scripts/serve.mjs ../target/bench/page ${benchPagePort} / --isolated`,
      url: `http://127.0.0.1:${benchPagePort}/`,
      reuseExistingServer: false,
      timeout: 30_000,
    },
  ],
});
