import { test } from '@playwright/test';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stats } from './stats';

// Cross-tab propagation latency: page A writes a key, page B's subscriber
// runs. Each sample waits for B's acknowledgement before the next write, so
// no queue builds up. One-way time uses the shared wall clock
// (performance.timeOrigin + now); the round trip A → B → A halved is
// reported beside it as a cross-check that needs no shared clock.
const SAMPLES = Number(process.env.LATENCY_SAMPLES ?? 1000);
const here = dirname(fileURLToPath(import.meta.url));
const OUT = process.env.BENCH_OUT ?? resolve(here, '../../target/bench/cross-tab-latency.json');

async function measure(browser: import('@playwright/test').Browser, withoutBroadcastChannel: boolean) {
  const context = await browser.newContext();
  if (withoutBroadcastChannel) {
    // Forces the storage-event fallback, as in a browser without BroadcastChannel.
    await context.addInitScript(() => {
      // @ts-expect-error deliberately removed
      delete window.BroadcastChannel;
    });
  }
  const [a, b] = [await context.newPage(), await context.newPage()];
  for (const page of [a, b]) {
    await page.goto('/');
    await page.waitForFunction(() => (window as any).gaesup !== undefined);
    await page.evaluate(() => {
      const unit = (window as any).gaesup.unit('main/lobby/latency');
      unit.declare('ping', { scope: 'apartment', lifetime: 'ephemeral', default: null });
      unit.declare('ack', { scope: 'apartment', lifetime: 'ephemeral', default: null });
    });
  }
  // B: on each ping, record the one-way time and acknowledge.
  await b.evaluate(() => {
    const unit = (window as any).gaesup.unit('main/lobby/latency');
    (window as any).oneWay = [];
    unit.subscribe('ping', (ping: { i: number; t: number } | null) => {
      if (!ping) return;
      (window as any).oneWay.push(performance.timeOrigin + performance.now() - ping.t);
      unit.set('ack', ping.i);
    });
  });
  const roundTrips: number[] = await a.evaluate(async (samples) => {
    const unit = (window as any).gaesup.unit('main/lobby/latency');
    let waiting: ((i: number) => void) | null = null;
    unit.subscribe('ack', (i: number | null) => {
      if (i !== null && waiting) waiting(i);
    });
    const times: number[] = [];
    for (let i = 0; i < samples; i += 1) {
      const acked = new Promise<number>((done) => (waiting = done));
      const start = performance.now();
      unit.set('ping', { i, t: performance.timeOrigin + start });
      await acked;
      times.push(performance.now() - start);
    }
    return times;
  }, SAMPLES);
  const oneWay: number[] = await b.evaluate(() => (window as any).oneWay);
  await context.close();
  return { oneWay: stats(oneWay), halfRoundTrip: stats(roundTrips.map((t) => t / 2)) };
}

test('cross-tab latency', async ({ browser, browserName }) => {
  const broadcastChannel = await measure(browser, false);
  const storageEvent = await measure(browser, true);
  const result = {
    browser: `${browserName} ${browser.version()}`,
    samples: SAMPLES,
    broadcastChannel,
    storageEvent,
  };
  mkdirSync(dirname(OUT), { recursive: true });
  writeFileSync(OUT, JSON.stringify(result, null, 2));
  const row = (name: string, s: Stats) =>
    `| ${name} | ${s.n} | ${s.p50.toFixed(2)} | ${s.p95.toFixed(2)} | ${s.p99.toFixed(2)} | ${s.mean.toFixed(2)} |`;
  console.log(
    [
      `cross-tab latency, ms (${result.browser})`,
      '| path | samples | p50 | p95 | p99 | mean |',
      '|---|---:|---:|---:|---:|---:|',
      row('BroadcastChannel, one way', broadcastChannel.oneWay),
      row('BroadcastChannel, round trip / 2', broadcastChannel.halfRoundTrip),
      row('storage event, one way', storageEvent.oneWay),
      row('storage event, round trip / 2', storageEvent.halfRoundTrip),
    ].join('\n'),
  );
});
