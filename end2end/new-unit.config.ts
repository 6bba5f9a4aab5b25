import { defineConfig } from '@playwright/test';
import base from './playwright.config';

// Only for the new-unit stage of `cargo xtask test`: it runs in a scratch
// copy of the repository where `cargo xtask new-unit` has just made a unit,
// and runs that unit's generated spec (named on the command line) against
// the copy's own build (../dist), on the free port the stage picked.
const port = Number(process.env.E2E_NEW_UNIT_PORT ?? 4175);

export default defineConfig({
  ...base,
  use: { ...base.use, baseURL: `http://127.0.0.1:${port}` },
  projects: [{ name: 'new-unit' }],
  webServer: {
    command: `node scripts/serve.mjs ../dist ${port} --while-stdin-open`,
    url: `http://127.0.0.1:${port}/`,
    reuseExistingServer: false,
    timeout: 30_000,
  },
});
