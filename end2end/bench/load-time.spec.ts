import { expect, test, type Browser } from '@playwright/test';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stats, type Stats } from './stats';

// What a visitor feels: from the start of navigation to the apartment page
// rendered and interactive, for the app's release build and, loaded the
// same way, the bare Leptos page `bench/hello` (a routed counter). Both are
// served with brotli, as a CDN would. Every load is cold: a new browser
// context and the cache disabled. Each build is loaded LOADS times
// unthrottled and LOADS times over a 4G profile.
//
// "Interactive" is when the page's first button exists: both pages render
// on the client, so Leptos attaches a button's handler when it creates it.
// After timing, a click is checked to be handled (not timed).
const LOADS = Number(process.env.LOAD_SAMPLES ?? 20);
const here = dirname(fileURLToPath(import.meta.url));
const OUT = resolve(here, '../../target/bench/load-time.json');
const APP = `http://127.0.0.1:${Number(process.env.E2E_PORT ?? 4173)}/`;
const HELLO = `http://127.0.0.1:${Number(process.env.E2E_BENCH_HELLO_PORT ?? 4176)}/`;

/** A 4G connection: 9 Mbit/s down, 1.5 Mbit/s up, 60 ms round trip. */
const FOUR_G = { latency: 60, downloadThroughput: 9_000_000 / 8, uploadThroughput: 1_500_000 / 8 };

type Build = { name: string; url: string; button: string; status?: string };
const BUILDS: Build[] = [
  { name: 'app', url: APP, button: 'Increment', status: 'Count' },
  { name: 'hello', url: HELLO, button: 'Count' },
];

/** Milliseconds from navigation start to the first button named `name`. */
async function load(browser: Browser, build: Build, throttled: boolean): Promise<{ ms: number; bytes: number }> {
  const context = await browser.newContext();
  try {
    // Runs before any script of the page: records when the button appears.
    await context.addInitScript((name: string) => {
      const named = (b: Element) => (b.getAttribute('aria-label') ?? b.textContent ?? '').trim() === name;
      const look = () => {
        if ((window as any).__ready === undefined && [...document.querySelectorAll('button')].some(named)) {
          (window as any).__ready = performance.now();
          observer.disconnect();
        }
      };
      const observer = new MutationObserver(look);
      observer.observe(document, { childList: true, subtree: true });
    }, build.button);
    const page = await context.newPage();
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
    if (throttled) {
      await cdp.send('Network.emulateNetworkConditions', { offline: false, ...FOUR_G });
    }
    let bytes = 0;
    cdp.on('Network.loadingFinished', (event: { encodedDataLength: number }) => {
      bytes += event.encodedDataLength;
    });
    await page.goto(build.url);
    await page.waitForFunction(() => (window as any).__ready !== undefined, undefined, { timeout: 60_000 });
    const ms = await page.evaluate(() => (window as any).__ready as number);
    // The page really is interactive: the button's click is handled.
    await page.getByRole('button', { name: build.button }).first().click();
    const status = build.status ? page.getByRole('status', { name: build.status }) : page.getByRole('status');
    await expect(status.first()).toHaveText('1');
    return { ms, bytes };
  } finally {
    await context.close();
  }
}

test('cold loads to an interactive page, app beside bare Leptos', async ({ browser }) => {
  const results: Record<string, { unthrottled: Stats; four_g: Stats; bytes: number }> = {};
  for (const build of BUILDS) {
    const runs: Record<string, number[]> = { unthrottled: [], four_g: [] };
    let bytes = 0;
    // One warm-up load each, so the first sample does not pay for starting
    // the browser's network service.
    await load(browser, build, false);
    for (let i = 0; i < LOADS; i += 1) {
      // Interleaved, so a slow spell of the machine hits both profiles.
      runs.unthrottled.push((await load(browser, build, false)).ms);
      const throttled = await load(browser, build, true);
      runs.four_g.push(throttled.ms);
      bytes = throttled.bytes;
    }
    results[build.name] = { unthrottled: stats(runs.unthrottled), four_g: stats(runs.four_g), bytes };
  }
  mkdirSync(dirname(OUT), { recursive: true });
  writeFileSync(
    OUT,
    JSON.stringify({ loads: LOADS, profile_4g: { down_mbit: 9, up_mbit: 1.5, rtt_ms: 60 }, ...results }, null, 2),
  );
});
