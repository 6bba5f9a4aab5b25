import { test } from '@playwright/test';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stats } from './stats';
// @ts-expect-error: a JavaScript module without declarations
import { Relay } from '../scripts/relay.mjs';

// Between devices: two browser contexts and the real relay (debug build,
// durable store: every push committed before it is acknowledged) on
// loopback.
//
// - propagation: device A writes, device B's subscriber runs; B answers
//   through the relay and A halves the round trip (no shared clock
//   needed), and the one-way time on the shared wall clock beside it;
// - outbox flush: 1,000 ops made while the relay was down, time from
//   coming back online until the relay acknowledged the last one.
const SAMPLES = Number(process.env.DEVICE_SAMPLES ?? 300);
const OUTBOX_OPS = Number(process.env.OUTBOX_OPS ?? 1000);
const here = dirname(fileURLToPath(import.meta.url));
const OUT = process.env.BENCH_OUT_DEVICES ?? resolve(here, '../../target/bench/device-sync.json');

async function device(browser: import('@playwright/test').Browser, config: { url: string; token: string }) {
  const context = await browser.newContext();
  await context.route('**/relay.json', (route) => route.fulfill({ json: config }));
  const page = await context.newPage();
  await page.goto('/');
  await page.waitForFunction(() => (window as any).gaesup?.relay('main')?.link === 'connected');
  return { context, page };
}

test('device sync', async ({ browser, browserName }) => {
  test.setTimeout(600_000);
  const relay = await new Relay().start();
  try {
    const config = { url: relay.url, token: relay.token() };
    const a = await device(browser, config);
    const b = await device(browser, config);

    // B: on each ping (notes of notes-a), record the one-way time and
    // answer on notes of notes-b.
    await b.page.evaluate(() => {
      const ping = (window as any).gaesup.unit('main/study/notes-a');
      const pong = (window as any).gaesup.unit('main/study/notes-b');
      (window as any).oneWay = [];
      ping.subscribe('notes', (text: string) => {
        if (!text.startsWith('{')) return;
        const { i, t } = JSON.parse(text);
        (window as any).oneWay.push(performance.timeOrigin + performance.now() - t);
        pong.set('notes', String(i));
      });
    });
    const roundTrips: number[] = await a.page.evaluate(async (samples) => {
      const ping = (window as any).gaesup.unit('main/study/notes-a');
      const pong = (window as any).gaesup.unit('main/study/notes-b');
      let waiting: ((i: string) => void) | null = null;
      pong.subscribe('notes', (text: string) => waiting?.(text));
      const times: number[] = [];
      for (let i = 0; i < samples; i += 1) {
        const answered = new Promise<string>((done) => (waiting = (text) => text === String(i) && done(text)));
        const start = performance.now();
        ping.set('notes', JSON.stringify({ i, t: performance.timeOrigin + start }));
        await answered;
        times.push(performance.now() - start);
      }
      return times;
    }, SAMPLES);
    const oneWay: number[] = await b.page.evaluate(() => (window as any).oneWay);

    // Outbox flush: the relay goes away, A makes OUTBOX_OPS increments,
    // the relay comes back; the clock starts when A is told it is online.
    await relay.kill();
    await a.page.waitForFunction(() => (window as any).gaesup.relay('main').link !== 'connected');
    await a.page.evaluate((n) => {
      const unit = (window as any).gaesup.unit('main/lobby/counter');
      for (let i = 0; i < n; i += 1) unit.increment('count', 1);
    }, OUTBOX_OPS);
    await a.page.waitForFunction((n) => (window as any).gaesup.relay('main').waiting >= n, OUTBOX_OPS);
    await relay.restart();
    await a.context.setOffline(true);
    const started = Date.now();
    await a.context.setOffline(false);
    await a.page.waitForFunction(() => (window as any).gaesup.relay('main').waiting === 0, undefined, {
      polling: 10,
      timeout: 120_000,
    });
    const flushMs = Date.now() - started;

    const result = {
      browser: `${browserName} ${browser.version()}`,
      samples: SAMPLES,
      propagation: { oneWay: stats(oneWay), halfRoundTrip: stats(roundTrips.map((t) => t / 2)) },
      outbox: { ops: OUTBOX_OPS, flushMs },
    };
    mkdirSync(dirname(OUT), { recursive: true });
    writeFileSync(OUT, JSON.stringify(result, null, 2));
    console.log(JSON.stringify(result));
    await a.context.close();
    await b.context.close();
  } finally {
    await relay.stop();
  }
});
