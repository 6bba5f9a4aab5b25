import { test, type Page } from '@playwright/test';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// State operations on the benchmark page (bench/page, not the demo), in the
// same Chromium run as their baselines: zustand's vanilla store loaded into
// the same page, and plain Leptos signals. The page's exported functions
// time N iterations with performance.now() (set-up excluded) and return
// JSON; every measurement is warmed up once, then repeated ROUNDS times and
// reported as the median. Nothing here asserts a time.
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
const here = dirname(fileURLToPath(import.meta.url));
const OUT = resolve(here, '../../target/bench/state-ops.json');
const PAGE = `http://127.0.0.1:${Number(process.env.E2E_BENCH_PORT ?? 4175)}/`;
const ZUSTAND = createRequire(import.meta.url).resolve('zustand/vanilla');

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
const quantile = (values: number[], q: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
};

/** Calls an exported function of the page and parses its JSON. */
async function call(page: Page, name: string, ...args: unknown[]): Promise<any> {
  const text = await page.evaluate(
    async ([name, args]) => (window as any).wasmBindings[name as string](...(args as unknown[])),
    [name, args] as const,
  );
  return JSON.parse(text as string);
}

/** Warm-up, then ROUNDS runs of `run`; returns every round's result. */
async function rounds<T>(run: () => Promise<T>, count = ROUNDS): Promise<T[]> {
  // Two warm-up runs: the first call of a wasm function may still run in
  // Chromium's baseline tier.
  await run();
  await run();
  const results: T[] = [];
  for (let i = 0; i < count; i += 1) results.push(await run());
  return results;
}

/** Loads the page and waits for the wasm; the timer must be precise. */
async function open(page: Page) {
  await page.goto(PAGE);
  await page.waitForFunction(() => (window as any).wasmBindings?.set_bench !== undefined);
  if (!(await page.evaluate(() => crossOriginIsolated))) {
    throw new Error('the benchmark page is not cross-origin isolated: performance.now() would be coarse');
  }
}

async function zustandSet(page: Page, subscribers: number, n: number) {
  return page.evaluate(
    ([subscribers, n]) => {
      const store = (window as any).zustand.createStore(() => ({ n: 0 }));
      let notified = 0;
      for (let s = 0; s < subscribers; s += 1) store.subscribe(() => (notified += 1));
      const start = performance.now();
      for (let i = 0; i < n; i += 1) store.setState({ n: i + 1 });
      const ms = performance.now() - start;
      if (store.getState().n !== n) throw new Error('zustand lost writes');
      return { ms, notified };
    },
    [subscribers, n],
  );
}

/**
 * `cycles` mount/unmount cycles of a `kind` unit after `warmup` of them,
 * `chunk` per task with the event loop turning between tasks (a timer:
 * the microtasks a task queued run first). What the manager and the wasm
 * memory hold is read once the event loop has turned after the last.
 */
async function turningCycles(page: Page, kind: string, warmup: number, cycles: number, chunk: number) {
  const text = await page.evaluate(
    async ([kind, warmup, cycles, chunk]) => {
      const bindings = (window as any).wasmBindings;
      const turn = () => new Promise((resolve) => setTimeout(resolve, 0));
      const run = async (n: number) => {
        let ms = 0;
        let mounted = 0;
        for (let done = 0; done < n; done += chunk) {
          const r = JSON.parse(bindings.mount_cycles(kind, Math.min(chunk, n - done)));
          ms += r.ms;
          mounted = Math.max(mounted, r.subscriptions_mounted);
          await turn();
        }
        return { ms, mounted };
      };
      await run(warmup);
      const before = JSON.parse(bindings.memory_now());
      const { ms, mounted } = await run(cycles);
      const after = JSON.parse(bindings.memory_now());
      return JSON.stringify({
        ms,
        subscriptions_before: before.subscriptions,
        subscriptions_mounted: mounted,
        subscriptions_after: after.subscriptions,
        listeners_before: before.listeners,
        listeners_after: after.listeners,
        bytes_before: before.bytes,
        bytes_after: after.bytes,
      });
    },
    [kind, warmup, cycles, chunk] as const,
  );
  return JSON.parse(text);
}

test('state ops', async ({ page, browser, browserName }) => {
  // zustand's vanilla store, served from node_modules to the same page.
  await page.route('**/zustand-vanilla.mjs', (route) =>
    route.fulfill({ path: ZUSTAND.replace(/vanilla\.js$/, 'esm/vanilla.mjs'), contentType: 'text/javascript' }),
  );
  // Memory first, each kind of unit on a fresh page: wasm memory only
  // grows, and the other measurements would leave it large. `plain` (a
  // plain signal in the same containers) is the baseline; `bare` (a plain
  // signal, no containers) is Leptos alone; `providers` adds three nested
  // Leptos <Provider>s, what the containers are made of.
  //
  // Twice for each kind, each on a fresh page. First as a page mounts
  // units: CHUNK cycles per task, the event loop turning between them
  // (what outlives the cycles is a leak). Then every cycle in one task:
  // Leptos ends each render effect's task only when the event loop runs
  // it, so one task of many cycles holds them all until it ends; a second
  // such task shows whether that memory was freed (and is reused).
  const CHUNK = 100;
  const memory: Record<string, any> = { cycles: 10_000, warmup_cycles: 1_000, chunk: CHUNK };
  for (const kind of ['bare', 'providers', 'containers', 'keys', 'plain', 'all', 'shared', 'path', 'event']) {
    await open(page);
    const turning = await turningCycles(page, kind, memory.warmup_cycles, memory.cycles, CHUNK);
    await open(page);
    const warmup = await call(page, 'mount_cycles', kind, memory.warmup_cycles);
    const oneTask = await call(page, 'mount_cycles', kind, memory.cycles);
    const again = await call(page, 'mount_cycles', kind, memory.cycles);
    memory[kind] = { ...turning, one_task: { warmup, ...oneTask, again } };
  }
  await open(page);
  await page.addScriptTag({
    type: 'module',
    content: "import { createStore } from '/zustand-vanilla.mjs'; window.zustand = { createStore };",
  });
  await page.waitForFunction(() => (window as any).zustand !== undefined);

  // 1. set, with 0 and 1 subscriber, against zustand.
  // zustand is run for more writes so that its round also lasts tens of
  // milliseconds; the ratio compares time per write.
  const SET_N = 20_000;
  const ZUSTAND_N = 500_000;
  // Warm every write path first, long enough for Chromium to move the hot
  // wasm functions to its optimizing tier (it does so in the background,
  // after a budget of calls): otherwise whichever row runs first is
  // measured partly in the baseline tier.
  for (let i = 0; i < 3; i += 1) {
    for (const subscribers of [0, 1]) await call(page, 'set_bench', subscribers, 5 * SET_N);
    await call(page, 'core_set_bench', 5 * SET_N, false);
    await call(page, 'core_set_bench', 5 * SET_N, true);
    await call(page, 'floor_set_bench', 5 * SET_N);
    await zustandSet(page, 1, ZUSTAND_N);
  }
  const set: Record<string, any> = {};
  for (const subscribers of [0, 1]) {
    // Rounds of ours and zustand's alternate, so a slower stretch of this
    // shared machine weighs on both sides of the ratio.
    const pairs = await rounds(async () => ({
      ours: await call(page, 'set_bench', subscribers, SET_N),
      theirs: await zustandSet(page, subscribers, ZUSTAND_N),
    }));
    const ours = pairs.map((p) => p.ours);
    const theirs = pairs.map((p) => p.theirs);
    const oursUs = (median(ours.map((r) => r.ms)) / SET_N) * 1000;
    const theirsUs = (median(theirs.map((r) => r.ms)) / ZUSTAND_N) * 1000;
    // Each round's own ratio too: how far one round strays from the
    // median says how sure the ratio is on this machine.
    const each = pairs.map((p) => (p.ours.ms / SET_N) / (p.theirs.ms / ZUSTAND_N));
    set[`subscribers_${subscribers}`] = {
      gaesup: { n: SET_N, us_per_op: oursUs, ops_per_s: 1e6 / oursUs, notified: ours[0].notified },
      zustand: { n: ZUSTAND_N, us_per_op: theirsUs, ops_per_s: 1e6 / theirsUs, notified: theirs[0].notified },
      ratio: oursUs / theirsUs,
      round_ratios: { rounds: each.length, min: Math.min(...each), max: Math.max(...each) },
    };
  }

  // Where a write's time goes: the core's Replica alone (system clock, then a
  // fixed clock), against the whole manager above.
  const core = {
    n: SET_N,
    store_us_per_op: (median((await rounds(() => call(page, 'core_set_bench', SET_N, false))).map((r) => r.ms)) / SET_N) * 1000,
    store_fixed_clock_us_per_op:
      (median((await rounds(() => call(page, 'core_set_bench', SET_N, true))).map((r) => r.ms)) / SET_N) * 1000,
  };
  set.core = core;

  // The floor: the least a replicated last-write-wins write does (JSON
  // value, clock, hybrid stamp, map, one subscriber), against zustand in
  // alternating rounds, as the rows above.
  const floorPairs = await rounds(async () => ({
    ours: await call(page, 'floor_set_bench', SET_N),
    theirs: await zustandSet(page, 1, ZUSTAND_N),
  }));
  if (floorPairs.some((p) => p.ours.notified !== SET_N)) {
    throw new Error(`floor bench: ${floorPairs[0].ours.notified} notifications for ${SET_N} writes`);
  }
  const floorUs = (median(floorPairs.map((p) => p.ours.ms)) / SET_N) * 1000;
  const floorZustandUs = (median(floorPairs.map((p) => p.theirs.ms)) / ZUSTAND_N) * 1000;
  set.floor = { n: SET_N, us_per_op: floorUs, zustand_us_per_op: floorZustandUs, ratio: floorUs / floorZustandUs };

  // A unit's write through its hook, against a plain signal: each with
  // synchronous readers (ImmediateEffect), the hook's of the value, the
  // last writer and the error, the signal's of its value. Calls alternate.
  const HOOK_N = 20_000;
  for (let i = 0; i < 3; i += 1) {
    await call(page, 'hook_set_bench', 5 * HOOK_N, false);
    await call(page, 'hook_set_bench', 5 * HOOK_N, true);
  }
  const hookPairs = await rounds(async () => ({
    hook: await call(page, 'hook_set_bench', HOOK_N, false),
    plain: await call(page, 'hook_set_bench', HOOK_N, true),
  }));
  for (const { hook, plain } of hookPairs) {
    // Each write wakes the value's reader once (plus its first run).
    if (hook.reads !== HOOK_N + 1 || plain.reads !== HOOK_N + 1) {
      throw new Error(`hook bench: ${hook.reads} / ${plain.reads} reads for ${HOOK_N} writes`);
    }
  }
  const hookUs = (median(hookPairs.map((p) => p.hook.ms)) / HOOK_N) * 1000;
  const signalUs = (median(hookPairs.map((p) => p.plain.ms)) / HOOK_N) * 1000;
  set.hook = { n: HOOK_N, us_per_op: hookUs, signal_us_per_op: signalUs, ratio: hookUs / signalUs };

  // 2. The 1,000-row table, state manager against plain signals. Each call
  // builds the table and runs 20 update rounds; calls alternate.
  const ROWS = 1000;
  const TABLE_ROUNDS = 20;
  // state: set_items of the changed rows; state-whole: get + set of the
  // whole list.
  const tables: Record<string, { create: number[]; update: number[]; write: number[]; ticks: number }> = {
    signals: { create: [], update: [], write: [], ticks: 0 },
    state: { create: [], update: [], write: [], ticks: 0 },
    'state-whole': { create: [], update: [], write: [], ticks: 0 },
  };
  for (let call_ = 0; call_ <= ROUNDS; call_ += 1) {
    for (const kind of ['signals', 'state', 'state-whole']) {
      const r = await call(page, 'table_bench', kind, ROWS, TABLE_ROUNDS);
      if (call_ === 0) continue; // warm-up
      tables[kind].create.push(r.create_ms);
      tables[kind].update.push(...r.update_ms);
      tables[kind].write.push(...r.write_ms);
      tables[kind].ticks += r.ticks;
    }
  }
  const table = {
    rows: ROWS,
    rows_changed_per_update: ROWS / 10,
    updates: tables.state.update.length,
    signals: {
      create_ms: median(tables.signals.create),
      update_ms: median(tables.signals.update),
      write_ms: median(tables.signals.write),
    },
    state: {
      create_ms: median(tables.state.create),
      update_ms: median(tables.state.update),
      write_ms: median(tables.state.write),
    },
    state_whole: {
      create_ms: median(tables['state-whole'].create),
      update_ms: median(tables['state-whole'].update),
      write_ms: median(tables['state-whole'].write),
    },
    update_ratio: median(tables.state.update) / median(tables.signals.update),
    whole_update_ratio: median(tables['state-whole'].update) / median(tables.signals.update),
    create_ratio: median(tables.state.create) / median(tables.signals.create),
  };

  // 3. Selective subscriptions: N subscribers on distinct paths, one path
  // changes per update.
  // A sparse or path update costs about a microsecond: 200 of them took
  // 0.2 to 0.4 ms, where the garbage of subscribing 10,000 paths and one
  // collection decided the result (runs of the same N ranged 1.5 to 13 µs
  // per update). 5,000 a run put every N at about 0.9 µs. A whole-value
  // update of 10,000 fields costs a millisecond: 200 of those.
  const UPDATES: Record<string, number> = { sparse: 5_000, whole: 200, path: 5_000 };
  const SIZES = [100, 1_000, 10_000];
  const paths: any[] = [];
  // sparse: the value is {p0} whatever N; whole: it holds N fields and
  // each update sets a copy of it; path: the same N fields, each update a
  // set_path of p0.
  for (const value of ['sparse', 'whole', 'path']) {
    const updates = UPDATES[value];
    // Each round runs every N, so a slower stretch of this shared machine
    // weighs on all of them alike.
    const runs = await rounds(async () => {
      const byN = [];
      for (const n of SIZES) byN.push(await call(page, 'path_bench', n, updates, value));
      return byN;
    }, 5);
    SIZES.forEach((n, i) => {
      const ms = median(runs.map((r) => r[i].ms));
      paths.push({
        subscribers: n,
        value,
        dense: value !== 'sparse',
        updates,
        subscriptions: runs[0][i].subscriptions,
        notified_per_update: runs[0][i].notified / updates,
        us_per_update: (ms / updates) * 1000,
      });
    });
  }

  // 4. A batch of 1,000 writes over 10 keys, one subscriber per key.
  const batchRuns = await rounds(() => call(page, 'batch_bench', 10, 1_000), 5);
  const batch = {
    writes: 1_000,
    keys: 10,
    limit: batchRuns[0].limit,
    whole: {
      error: batchRuns[0].whole.error,
      ms: median(batchRuns.map((r) => r.whole.ms)),
      notified: batchRuns[0].whole.notified,
    },
    chunked: {
      batches: batchRuns[0].chunked.batches,
      ms: median(batchRuns.map((r) => r.chunked.ms)),
      notified: batchRuns[0].chunked.notified,
    },
    single: {
      ms: median(batchRuns.map((r) => r.single.ms)),
      notified: batchRuns[0].single.notified,
    },
  };

  // 5. Hydration: 100 KiB persisted, cold start to rendered value.
  const planted = await call(page, 'plant', 100 * 1024);
  const hydrations = await rounds(() => call(page, 'hydrate'), 30);
  const hydration = {
    planted,
    samples: hydrations.length,
    items_rendered: hydrations[0].items,
    ms: median(hydrations.map((r) => r.ms)),
    p95_ms: quantile(hydrations.map((r) => r.ms), 0.95),
    connect_ms: median(hydrations.map((r) => r.connect_ms)),
    mount_ms: median(hydrations.map((r) => r.mount_ms)),
  };


  const result = {
    browser: `${browserName} ${browser.version()}`,
    rounds: ROUNDS,
    set,
    table,
    paths,
    batch,
    hydration,
    memory,
  };
  mkdirSync(dirname(OUT), { recursive: true });
  writeFileSync(OUT, JSON.stringify(result, null, 2));
  console.log(JSON.stringify(result, null, 2));
});
