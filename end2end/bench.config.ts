import { defineConfig } from '@playwright/test';
import base from './playwright.config';

// Measurements, not tests: `cargo xtask bench` runs these and writes their
// numbers to target/bench/. Nothing here asserts a time. Three static
// servers, each on its own port: the app's release build (cross-tab
// latency, load time), the benchmark page (bench/page, built into
// target/bench/page) and the bare Leptos page (bench/hello, load time).
// The two that are loaded cold serve brotli, as a CDN would.
const port = Number(process.env.E2E_PORT ?? 4173);
const benchPagePort = Number(process.env.E2E_BENCH_PORT ?? 4175);
const helloPort = Number(process.env.E2E_BENCH_HELLO_PORT ?? 4176);

export default defineConfig({
  ...base,
  testDir: './bench',
  fullyParallel: false,
  workers: 1,
  timeout: 600_000,
  projects: [{ name: 'bench' }],
  webServer: [
    {
      command: `node scripts/serve.mjs ../dist ${port} / --compress --while-stdin-open`,
      url: `http://127.0.0.1:${port}/`,
      reuseExistingServer: false,
      timeout: 30_000,
    },
    {
      command: `node scripts/serve.mjs ../target/bench/page ${benchPagePort} / --isolated --while-stdin-open`,
      url: `http://127.0.0.1:${benchPagePort}/`,
      reuseExistingServer: false,
      timeout: 30_000,
    },
    {
      command: `node scripts/serve.mjs ../target/bench/hello ${helloPort} / --compress --while-stdin-open`,
      url: `http://127.0.0.1:${helloPort}/`,
      reuseExistingServer: false,
      timeout: 30_000,
    },
  ],
});
