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
//   then the same between two devices whose pages have no WebSocket (the
//   HTTP fallback: pushes, and long polls of the apartment's stream);
// - outbox flush: 1,000 ops made while the relay was down, time from
//   coming back online until the relay acknowledged the last one.
const SAMPLES = Number(process.env.DEVICE_SAMPLES ?? 300);
const HTTP_SAMPLES = Number(process.env.DEVICE_HTTP_SAMPLES ?? 100);
const OUTBOX_OPS = Number(process.env.OUTBOX_OPS ?? 1000);
const here = dirname(fileURLToPath(import.meta.url));
const OUT = process.env.BENCH_OUT_DEVICES ?? resolve(here, '../../target/bench/device-sync.json');

type Device = { context: import('@playwright/test').BrowserContext; page: import('@playwright/test').Page };

/// A browser context of the app linked to the relay of `config`; with
/// `http`, its pages have no WebSocket (as behind a proxy that blocks
/// them), so it syncs through the HTTP fallback.
async function device(browser: import('@playwright/test').Browser, config: { url: string; token: string }, http = false): Promise<Device> {
  const context = await browser.newContext();
  await context.route('**/relay.json', (route) => route.fulfill({ json: config }));
  if (http) await context.addInitScript(() => Reflect.deleteProperty(window, 'WebSocket'));
  const page = await context.newPage();
  await page.goto('/');
  const link = http ? 'HTTP fallback' : 'connected';
  await page.waitForFunction((link) => (window as any).gaesup?.relay('main')?.link === link, link);
  return { context, page };
}

/// `samples` pings from A answered by B (see the top of this file):
/// A's round trips and B's one-way times, in ms. Pings and answers carry
/// `run`, so a device still catching up on an earlier pair's pings (a
/// link reads as connected before its catch-up ends) neither answers nor
/// times them.
async function pingPong(a: Device, b: Device, samples: number, run: string) {
  await b.page.evaluate((run) => {
    const ping = (window as any).gaesup.unit('main/study/notes-a');
    const pong = (window as any).gaesup.unit('main/study/notes-b');
    (window as any).oneWay = [];
    // Unsubscribed at the end, so this device answers no later pair's pings.
    (window as any).stopAnswering = ping.subscribe('notes', (text: string) => {
      if (!text.startsWith('{')) return;
      const ping = JSON.parse(text);
      if (ping.run !== run) return;
      (window as any).oneWay.push(performance.timeOrigin + performance.now() - ping.t);
      pong.set('notes', `${run}:${ping.i}`);
    });
  }, run);
  const roundTrips: number[] = await a.page.evaluate(
    async ({ samples, run }) => {
      const ping = (window as any).gaesup.unit('main/study/notes-a');
      const pong = (window as any).gaesup.unit('main/study/notes-b');
      let waiting: ((text: string) => void) | null = null;
      const stop = pong.subscribe('notes', (text: string) => waiting?.(text));
      const times: number[] = [];
      for (let i = 0; i < samples; i += 1) {
        const answered = new Promise<string>((done) => (waiting = (text) => text === `${run}:${i}` && done(text)));
        const start = performance.now();
        ping.set('notes', JSON.stringify({ run, i, t: performance.timeOrigin + start }));
        await answered;
        times.push(performance.now() - start);
      }
      stop();
      return times;
    },
    { samples, run },
  );
  const oneWay: number[] = await b.page.evaluate(() => {
    (window as any).stopAnswering();
    return (window as any).oneWay;
  });
  return { oneWay: stats(oneWay), halfRoundTrip: stats(roundTrips.map((t) => t / 2)) };
}

test('device sync', async ({ browser, browserName }) => {
  test.setTimeout(600_000);
  const relay = await new Relay().start();
  try {
    const config = { url: relay.url, token: relay.token() };
    const a = await device(browser, config);
    const b = await device(browser, config);

    const propagation = await pingPong(a, b, SAMPLES, 'websocket');

    // The same over the HTTP fallback, between two more devices.
    const httpA = await device(browser, config, true);
    const httpB = await device(browser, config, true);
    // Caught up with the first pair's pings and answers before timing.
    for (const d of [httpA, httpB]) {
      await d.page.waitForFunction(
        (last) => (window as any).gaesup.unit('main/study/notes-b').get('notes') === last,
        `websocket:${SAMPLES - 1}`,
      );
    }
    const httpPropagation = await pingPong(httpA, httpB, HTTP_SAMPLES, 'http');
    await httpA.context.close();
    await httpB.context.close();

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
      propagation,
      http: { samples: HTTP_SAMPLES, propagation: httpPropagation },
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
