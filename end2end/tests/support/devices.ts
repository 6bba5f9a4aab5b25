import { test as base, expect, type Browser, type BrowserContext, type Page } from '@playwright/test';
// The real relay binary and a proxy that can cut it off (plain ESM, no types).
// @ts-expect-error: a JavaScript module without declarations
import { Relay, Proxy, RedisServer } from '../../scripts/relay.mjs';

export { Relay, Proxy, RedisServer };

/** What relay.json says for a device: a relay and a token, or none. */
export type RelayJson = { url?: string; token?: string; outbox_limit?: number } | string;

/**
 * What the browser itself logs while a test breaks the network on purpose
 * (relay stopped or killed, proxy cut, offline mode, which also makes
 * Chromium fail requests in flight with ERR_NETWORK_CHANGED): expected.
 * The app's own errors still fail the test.
 */
const networkNoise = [
  /WebSocket connection to .* failed/,
  /Failed to load resource: net::ERR_[A-Z_]+/,
  /Failed to load resource: the server responded with a status of 40[13]/,
  // The relay's rate limit, answered over HTTP (the ops go again).
  /Failed to load resource: the server responded with a status of 429/,
  // A node holding all the connections it may, refusing a long poll.
  /Failed to load resource: the server responded with a status of 503/,
];

declare global {
  interface Window {
    gaesup: {
      unit(address: string): {
        declare(name: string, rules?: Record<string, unknown>): void;
        get(name: string): unknown;
        set(name: string, value: unknown): void;
        increment(name: string, delta: number): void;
      };
    };
  }
}

/** The devices the running test opened (a worker runs one test at a time). */
const opened = new Set<Device>();

/**
 * Playwright's `test`, closing every device a test opened when it ends.
 * The worker's browser outlives the test: an unclosed context keeps its
 * pages running (reconnecting to a relay that is gone, with timers and
 * sockets), and the next tests' pages share the machine with all of them.
 */
export const test = base.extend<{ closeDevices: void }>({
  closeDevices: [
    async ({}, use) => {
      await use();
      const devices = [...opened];
      opened.clear();
      const closed = await Promise.allSettled(devices.map((device) => device.close()));
      for (const result of closed) if (result.status === 'rejected') throw result.reason;
    },
    { auto: true },
  ],
});

/**
 * One device: its own browser context (own localStorage, own
 * BroadcastChannel world), told by its relay.json where the relay is.
 */
export class Device {
  readonly errors: string[] = [];
  readonly pages: Page[] = [];
  /** WebSockets opened to a relay, by the page that opened them. */
  readonly sockets: { page: Page; url: string }[] = [];

  private constructor(readonly context: BrowserContext) {}

  static async open(browser: Browser, relay: RelayJson, path: string | null = '/'): Promise<Device> {
    const device = new Device(await browser.newContext());
    opened.add(device);
    await device.context.route('**/relay.json', (route) =>
      typeof relay === 'string'
        ? route.fulfill({ status: 200, contentType: 'application/json', body: relay })
        : route.fulfill({ json: relay }),
    );
    if (path !== null) await device.newPage(path);
    return device;
  }

  get page(): Page {
    return this.pages[0];
  }

  /** Opens `path` in a new tab, once `prepare` (if any) set the page up. */
  async newPage(path = '/', prepare?: (page: Page) => Promise<unknown>): Promise<Page> {
    const page = await this.context.newPage();
    await prepare?.(page);
    page.on('pageerror', (error) => this.errors.push(`pageerror: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() !== 'error') return;
      if (networkNoise.some((pattern) => pattern.test(message.text()))) return;
      this.errors.push(`console.error: ${message.text()}`);
    });
    page.on('websocket', (socket) => {
      if (socket.url().includes('/v1/ws')) this.sockets.push({ page, url: socket.url() });
    });
    this.pages.push(page);
    await page.goto(path);
    await page.waitForFunction(() => window.gaesup !== undefined);
    return page;
  }

  async reload(page = this.page) {
    await page.reload();
    await page.waitForFunction(() => window.gaesup !== undefined);
  }

  get(address: string, name: string, page = this.page) {
    return page.evaluate(([a, n]) => window.gaesup.unit(a).get(n), [address, name] as const);
  }

  set(address: string, name: string, value: unknown, page = this.page) {
    return page.evaluate(([a, n, v]) => window.gaesup.unit(a).set(n, v), [address, name, value] as const);
  }

  increment(address: string, name: string, delta: number, page = this.page) {
    return page.evaluate(([a, n, d]) => window.gaesup.unit(a).increment(n, d), [address, name, delta] as const);
  }

  declare(address: string, name: string, rules: Record<string, unknown>, page = this.page) {
    return page.evaluate(([a, n, r]) => window.gaesup.unit(a).declare(n, r), [address, name, rules] as const);
  }

  /** The relay line of the main apartment's sync panel. */
  relayLink(page = this.page) {
    return page.getByRole('region', { name: 'Storage and sync: Main apartment' }).getByLabel('Relay link');
  }

  waiting(page = this.page) {
    return page.getByRole('region', { name: 'Storage and sync: Main apartment' }).getByLabel('Waiting to send');
  }

  notices(page = this.page) {
    return page.getByRole('region', { name: 'Storage and sync: Main apartment' }).getByRole('alert');
  }

  /** Ops in this device's outbox (localStorage, shared by its tabs). */
  outbox(page = this.page) {
    return page.evaluate(() => Object.keys(localStorage).filter((key) => key.startsWith('gaesup/outbox/')).length);
  }

  expectNoErrors() {
    expect(this.errors, 'the device reported errors').toEqual([]);
  }

  async close() {
    opened.delete(this);
    await this.context.close();
  }
}

/** relay.json for `relay` (or a proxy in front of it). */
export function configFor(url: string, token: string): RelayJson {
  return { url, token };
}
