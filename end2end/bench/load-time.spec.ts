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
//
// Then a few more unthrottled loads of each, traced, say where the time
// went: when the wasm had arrived, and how long V8 spent compiling wasm
// functions on their first call (it compiles lazily: only what runs, on
// the main thread, when it first runs) before the button appeared. Tracing
// slows a load down, so these loads are not among the timed ones.
const LOADS = Number(process.env.LOAD_SAMPLES ?? 20);
const TRACED = Number(process.env.LOAD_TRACED ?? 5);
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
async function load(
  browser: Browser,
  build: Build,
  throttled: boolean,
  traced = false,
): Promise<{ ms: number; bytes: number; trace?: Trace }> {
  const context = await browser.newContext();
  try {
    // Runs before any script of the page: records when the button appears.
    await context.addInitScript((name: string) => {
      const named = (b: Element) => (b.getAttribute('aria-label') ?? b.textContent ?? '').trim() === name;
      const look = () => {
        if ((window as any).__ready === undefined && [...document.querySelectorAll('button')].some(named)) {
          (window as any).__ready = performance.now();
          // Marks the moment in a trace (a no-op when nothing traces).
          console.timeStamp('gaesup-ready');
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
    const events: TraceEvent[] = [];
    if (traced) {
      cdp.on('Tracing.dataCollected', (event: { value: TraceEvent[] }) => events.push(...event.value));
      await cdp.send('Tracing.start', { categories: 'v8.wasm,devtools.timeline', transferMode: 'ReportEvents' });
    }
    await page.goto(build.url);
    await page.waitForFunction(() => (window as any).__ready !== undefined, undefined, { timeout: 60_000 });
    const ms = await page.evaluate(() => (window as any).__ready as number);
    let trace: Trace | undefined;
    if (traced) {
      const complete = new Promise((done) => cdp.once('Tracing.tracingComplete', done));
      await cdp.send('Tracing.end');
      await complete;
      const wasmFetched = await page.evaluate(
        () =>
          performance
            .getEntriesByType('resource')
            .find((entry) => entry.name.endsWith('.wasm')) as PerformanceResourceTiming | undefined,
      );
      trace = breakdown(events, ms, wasmFetched?.responseEnd);
    }
    // The page really is interactive: the button's click is handled.
    await page.getByRole('button', { name: build.button }).first().click();
    const status = build.status ? page.getByRole('status', { name: build.status }) : page.getByRole('status');
    await expect(status.first()).toHaveText('1');
    return { ms, bytes, trace };
  } finally {
    await context.close();
  }
}

type TraceEvent = { name: string; ph: string; ts: number; dur?: number; pid: number; tid: number; args?: any };

/** Where one traced load's time went (ms from navigation). */
type Trace = { ready_ms: number; wasm_fetched_ms: number; lazy_compile_ms: number; lazy_functions: number };

/**
 * The main thread's lazy wasm compiles before the button appeared, found
 * from the `console.timeStamp` the init script made at that moment.
 */
function breakdown(events: TraceEvent[], readyMs: number, wasmFetchedMs: number | undefined): Trace {
  const mark = events.find((e) => e.name === 'TimeStamp' && e.args?.data?.message === 'gaesup-ready');
  if (!mark) throw new Error('the trace holds no ready mark: did the init script run?');
  if (wasmFetchedMs === undefined) throw new Error('the page loaded no .wasm');
  const start = mark.ts - readyMs * 1000;
  const lazy = events.filter(
    (e) =>
      e.name === 'wasm.CompileLazy' &&
      e.ph === 'X' &&
      e.pid === mark.pid &&
      e.tid === mark.tid &&
      e.ts >= start &&
      e.ts <= mark.ts,
  );
  if (lazy.length === 0) throw new Error('no lazy wasm compile in the trace: does V8 still compile lazily?');
  return {
    ready_ms: readyMs,
    wasm_fetched_ms: wasmFetchedMs,
    lazy_compile_ms: lazy.reduce((sum, e) => sum + (e.dur ?? 0), 0) / 1000,
    lazy_functions: lazy.length,
  };
}

const median = (values: number[]) => stats(values).p50;

test('cold loads to an interactive page, app beside bare Leptos', async ({ browser }) => {
  const results: Record<string, { unthrottled: Stats; four_g: Stats; bytes: number; traced: Trace }> = {};
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
    const traces: Trace[] = [];
    for (let i = 0; i < TRACED; i += 1) {
      const { trace } = await load(browser, build, false, true);
      if (trace) traces.push(trace);
    }
    const traced = {
      ready_ms: median(traces.map((t) => t.ready_ms)),
      wasm_fetched_ms: median(traces.map((t) => t.wasm_fetched_ms)),
      lazy_compile_ms: median(traces.map((t) => t.lazy_compile_ms)),
      lazy_functions: median(traces.map((t) => t.lazy_functions)),
    };
    results[build.name] = { unthrottled: stats(runs.unthrottled), four_g: stats(runs.four_g), bytes, traced };
  }
  mkdirSync(dirname(OUT), { recursive: true });
  writeFileSync(
    OUT,
    JSON.stringify({ loads: LOADS, traced: TRACED, profile_4g: { down_mbit: 9, up_mbit: 1.5, rtt_ms: 60 }, ...results }, null, 2),
  );
});
