import { defineConfig } from '@playwright/test';
import base from './playwright.config';

// Measurements, not tests: `cargo xtask bench` runs these against the
// release build and writes their numbers to target/bench/. Nothing here
// asserts a time.
export default defineConfig({
  ...base,
  testDir: './bench',
  fullyParallel: false,
  workers: 1,
  timeout: 300_000,
});
