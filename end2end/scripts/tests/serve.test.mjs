// serve.mjs --while-stdin-open: a static server Playwright started must not
// outlive Playwright, even when Playwright is killed (SIGKILL) and cannot
// stop it. Playwright gives it a pipe as standard input; here a parent
// process does the same, then is killed for real.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { freePort } from '../ports.mjs';

const serve = resolve(import.meta.dirname, '../serve.mjs');

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Polls `check` every 20 ms until it holds or `ms` pass. */
async function within(ms, check) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await check()) return true;
    await new Promise((done) => setTimeout(done, 20));
  }
  return check();
}

/** A parent that starts serve.mjs as Playwright does (stdin a pipe,
 * its own process group), says the server's pid once it serves, and
 * waits; the test then kills the parent with SIGKILL. */
async function serverUnderKilledParent(flags) {
  const dist = mkdtempSync(join(tmpdir(), 'gaesup-serve-'));
  writeFileSync(join(dist, 'index.html'), '<!doctype html><p>hello</p>');
  const port = await freePort();
  const parentCode = `
    const { spawn } = require('node:child_process');
    const child = spawn(process.execPath, ${JSON.stringify([serve, dist, String(port), '/', ...flags])},
      { stdio: ['pipe', 'pipe', 'inherit'], detached: true });
    child.stdout.once('data', () => console.log(child.pid));
    setInterval(() => {}, 1000);
  `;
  const parent = spawn(process.execPath, ['-e', parentCode], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = await once(parent.stdout, 'data');
  const pid = Number(String(line).trim());
  const page = await fetch(`http://127.0.0.1:${port}/`);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /hello/);
  const exited = once(parent, 'exit');
  parent.kill('SIGKILL');
  await exited;
  return { pid, port, cleanup: () => rmSync(dist, { recursive: true, force: true }) };
}

test('with --while-stdin-open the server exits once its parent is killed', async () => {
  const { pid, cleanup } = await serverUnderKilledParent(['--while-stdin-open']);
  try {
    assert.ok(await within(10_000, () => !alive(pid)), `server ${pid} outlived its killed parent`);
  } finally {
    if (alive(pid)) process.kill(pid, 'SIGKILL');
    cleanup();
  }
});

test('without it the server outlives its parent (what the flag is for)', async () => {
  const { pid, port, cleanup } = await serverUnderKilledParent([]);
  try {
    // Its stdin closed too: a server that still answers did not notice.
    const page = await fetch(`http://127.0.0.1:${port}/`);
    assert.equal(page.status, 200);
    assert.ok(alive(pid), 'the server stopped without the flag');
  } finally {
    process.kill(pid, 'SIGKILL');
    cleanup();
  }
});
