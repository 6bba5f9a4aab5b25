// ports.mjs: free ports come from below the kernel's ephemeral range.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { once } from 'node:events';

import { freePort, quietBand } from '../ports.mjs';

test('the band lies below the ephemeral range, above the privileged ports', () => {
  assert.deepEqual(quietBand('32768\t60999\n'), [16384, 32767]);
  assert.deepEqual(quietBand('49152 65535'), [24576, 49151]);
  assert.equal(quietBand('1500 65535'), null);
  assert.equal(quietBand('0 65535'), null);
  assert.equal(quietBand(''), null);
  assert.equal(quietBand('many'), null);
});

test('a free port is in the band, and free', async () => {
  let band = null;
  try {
    band = quietBand(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8'));
  } catch {
    // Not Linux: any free port.
  }
  const port = await freePort();
  if (band) assert.ok(port >= band[0] && port <= band[1], `${port} outside ${band}`);
  const server = createServer().listen(port, '127.0.0.1');
  await once(server, 'listening');
  server.close();
  await once(server, 'close');
});

test('a band whose every port is taken gives a port the kernel picks', async () => {
  const holder = createServer().listen(0, '127.0.0.1');
  await once(holder, 'listening');
  const taken = holder.address().port;
  try {
    const port = await freePort([taken, taken]);
    assert.ok(port > 0);
    assert.notEqual(port, taken);
  } finally {
    holder.close();
    await once(holder, 'close');
  }
});
