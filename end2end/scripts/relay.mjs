// The real relay for the device tests: the binary the test command built
// (target/debug/relay), on 127.0.0.1 with a port chosen at run time and a
// temporary store (or a Redis of the test's own, for several nodes);
// killed for real (SIGKILL) and restarted on the same port and store. Plus
// a TCP proxy in front of it that a test can cut, because Playwright's
// offline mode leaves open WebSockets open, or point at another node, as a
// load balancer does when a node dies.

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { once } from 'node:events';
import { freePort } from './ports.mjs';

const root = resolve(import.meta.dirname, '../..');
const targetDir = process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(root, 'target');
export const relayBinary = process.env.RELAY_BIN ?? join(targetDir, 'debug/relay');

/** Debian's redis-server on 127.0.0.1, a free port, a temporary
 * directory, AOF with `appendfsync always`. */
export class RedisServer {
  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'gaesup-redis-'));
    this.child = null;
    this.port = 0;
  }

  get url() {
    return `redis://127.0.0.1:${this.port}/`;
  }

  async start() {
    if (!this.port) this.port = await freePort();
    this.child = spawn(
      'redis-server',
      ['--bind', '127.0.0.1', '--port', String(this.port), '--dir', this.dir, '--appendonly', 'yes',
        '--appendfsync', 'always', '--save', '', '--daemonize', 'no', '--loglevel', 'warning'],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    this.child.stdout.resume();
    // Ready when it answers PING (after loading its AOF).
    for (let attempt = 0; ; attempt += 1) {
      if (await ping(this.port)) return this;
      if (attempt > 200) throw new Error(`redis-server did not answer on ${this.port}`);
      await new Promise((done) => setTimeout(done, 25));
    }
  }

  async stop() {
    if (this.child) {
      const exited = once(this.child, 'exit');
      this.child.kill('SIGKILL');
      await exited;
      this.child = null;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Whether Redis on `port` answers PING with PONG. */
function ping(port) {
  return new Promise((done) => {
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (data) => {
      done(String(data).startsWith('+PONG'));
      socket.destroy();
    });
  });
}

export class Relay {
  /** `redis`: a RedisServer this node shares with others (instead of an
   * embedded store of its own). */
  constructor(args = [], { redis = null } = {}) {
    this.args = redis ? ['--redis', redis.url, ...args] : args;
    this.data = mkdtempSync(join(tmpdir(), 'gaesup-relay-'));
    this.child = null;
    this.port = 0;
  }

  get url() {
    return `ws://127.0.0.1:${this.port}`;
  }

  /** Starts the relay on its port, or on a free one it picks (another
   * process may take that port before the relay binds it: then it picks
   * again, a few times). */
  async start() {
    if (this.port) return this.spawn();
    for (let attempt = 0; ; attempt += 1) {
      this.port = await freePort();
      try {
        return await this.spawn();
      } catch (error) {
        this.port = 0;
        if (attempt >= 4) throw error;
      }
    }
  }

  async spawn() {
    // The relay's log goes to the test output: errors only, unless
    // E2E_RELAY_LOG says more (`E2E_RELAY_LOG=warn` while chasing a failure).
    this.child = spawn(
      relayBinary,
      ['--dev', '--listen', `127.0.0.1:${this.port}`, '--data', this.data, ...this.args],
      { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, RELAY_LOG: process.env.E2E_RELAY_LOG ?? 'error' } },
    );
    // The relay's first line says where it listens: it is ready. If it
    // exits first (its port taken), say so rather than wait for a line
    // that never comes.
    const child = this.child;
    const chunk = await new Promise((resolve, reject) => {
      const done = () => {
        child.stdout.off('data', onData);
        child.off('exit', onExit);
      };
      const onData = (data) => {
        done();
        resolve(data);
      };
      const onExit = (code, signal) => {
        done();
        reject(new Error(`the relay exited (${code ?? signal}) before it listened on ${this.port}`));
      };
      child.stdout.once('data', onData);
      child.once('exit', onExit);
    }).catch((error) => {
      this.child = null;
      throw error;
    });
    if (!String(chunk).includes('listening')) {
      await this.kill();
      throw new Error(`relay said ${chunk}`);
    }
    child.stdout.resume();
    return this;
  }

  /** SIGKILL: no shutdown, mid-whatever. */
  async kill() {
    if (!this.child) return;
    const exited = once(this.child, 'exit');
    this.child.kill('SIGKILL');
    await exited;
    this.child = null;
  }

  async restart() {
    await this.kill();
    // The same port: the port was free a moment ago; retry while the
    // kernel lets go of it.
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await this.start();
      } catch (error) {
        if (attempt > 20) throw error;
        await new Promise((done) => setTimeout(done, 100));
      }
    }
  }

  /** The relay's `/metrics` (Prometheus text). */
  async metrics() {
    return (await fetch(`http://127.0.0.1:${this.port}/metrics`)).text();
  }

  /** How many requests or messages the relay refused with `code`. */
  async refusals(code) {
    const line = new RegExp(`^relay_refusals_total\\{code="${code}"\\} (\\d+)$`, 'm');
    return Number(line.exec(await this.metrics())?.[1] ?? 0);
  }

  /** A token signed with the development secret. */
  token({ apartments = ['main=rw', 'annex=rw', 'atelier=rw'], global = 'rw', ttl = 3600 } = {}) {
    const args = ['mint-token', '--dev', '--ttl', String(ttl)];
    for (const grant of apartments) args.push('--apartment', grant);
    if (global) args.push('--global', global);
    return execFileSync(relayBinary, args, { encoding: 'utf8' }).trim();
  }

  async stop() {
    await this.kill();
    rmSync(this.data, { recursive: true, force: true });
  }
}

/** A TCP proxy to `target` that can be cut (every connection dropped,
 * new ones refused) and restored. */
export class Proxy {
  /** `targetPort` may change: later connections go to the new one. */
  constructor(targetPort) {
    this.targetPort = targetPort;
    /** Each connection: the device's socket, the relay's, and whether frozen. */
    this.pairs = new Set();
    this.cutOff = false;
    this.server = createServer((client) => {
      if (this.cutOff) {
        client.destroy();
        return;
      }
      const relay = connect(this.targetPort, '127.0.0.1');
      // No Nagle on either leg, as on the browser's and the relay's own
      // sockets: the proxy must not add delays of its own.
      client.setNoDelay(true);
      relay.setNoDelay(true);
      const pair = { client, relay, frozen: false, websocket: false };
      this.pairs.add(pair);
      client.once('data', (head) => {
        pair.websocket = /^upgrade: *websocket/im.test(String(head));
      });
      // One side closing closes the other, except in a frozen pair: there
      // the device's socket stays open, and silent, until the device itself
      // gives up on it.
      const closeBoth = () => {
        if (pair.frozen) return;
        client.destroy();
        relay.destroy();
      };
      for (const socket of [client, relay]) {
        socket.on('error', () => socket.destroy());
        socket.on('close', closeBoth);
      }
      client.on('close', () => this.pairs.delete(pair));
      client.pipe(relay);
      relay.pipe(client);
    });
  }

  async start() {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = this.server.address().port;
    return this;
  }

  get url() {
    return `ws://127.0.0.1:${this.port}`;
  }

  /** Closes every connection and refuses new ones until `restore`. */
  cut() {
    this.cutOff = true;
    for (const { client, relay } of this.pairs) {
      client.destroy();
      relay.destroy();
    }
  }

  restore() {
    this.cutOff = false;
  }

  /**
   * A network that drops everything without a word: every open connection
   * stops carrying bytes either way and its relay side is closed, but the
   * device's socket stays open (no FIN, no RST), so only the device's own
   * heartbeats can tell it is dead. New connections pass as usual.
   */
  freeze() {
    for (const pair of this.pairs) {
      pair.frozen = true;
      pair.client.unpipe(pair.relay);
      pair.relay.unpipe(pair.client);
      pair.relay.destroy();
      // Read and drop what the device sends, so its writes never block
      // (`unpipe` paused the socket: resume it).
      pair.client.on('data', () => {});
      pair.client.resume();
    }
  }

  /** WebSockets open and carrying bytes. */
  get liveSockets() {
    return [...this.pairs].filter((pair) => pair.websocket && !pair.frozen && !pair.client.destroyed).length;
  }

  /** Frozen WebSockets the device has not closed yet. */
  get frozenSockets() {
    return [...this.pairs].filter((pair) => pair.websocket && pair.frozen && !pair.client.destroyed).length;
  }

  async stop() {
    this.cut();
    this.server.close();
  }
}
