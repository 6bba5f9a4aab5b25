// A loopback port for a server a test starts, and may kill and start
// again on the same port.
//
// Ports come from below the kernel's ephemeral range (16384 to 32767 with
// Linux's default range, 32768 to 60999). The kernel draws on that range
// for every outgoing connection's own port and every listen on port 0, so
// a port chosen there could be taken by a connection of anything running
// before its server binds it, or while a killed server is down, and the
// server would not start. Below the range only a process that names the
// port can take it. Where there is no such range (not Linux), the kernel
// picks.

import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { once } from 'node:events';

/** The band below an ephemeral range written as the kernel writes it
 * (`"32768\t60999\n"`), or null when there is no room for one above the
 * privileged ports. */
export function quietBand(range) {
  const low = Number.parseInt(String(range).trim().split(/\s+/)[0], 10);
  if (!Number.isInteger(low)) return null;
  const [start, end] = [Math.floor(low / 2), low - 1];
  return start >= 1024 && start <= end ? [start, end] : null;
}

function ephemeralBand() {
  try {
    return quietBand(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8'));
  } catch {
    return null;
  }
}

/** Whether 127.0.0.1:`port` can be listened on now (0: any), and which. */
async function tryListen(port) {
  const server = createServer();
  const listening = await new Promise((settle) => {
    server.once('listening', () => settle(true));
    server.once('error', () => settle(false));
    server.listen(port, '127.0.0.1');
  });
  if (!listening) return 0;
  const chosen = server.address().port;
  server.close();
  await once(server, 'close');
  return chosen;
}

/** A free port on 127.0.0.1, below the ephemeral range where there is
 * one (`band` for tests). */
export async function freePort(band = ephemeralBand()) {
  if (band) {
    const [low, high] = band;
    const span = high - low + 1;
    // Parallel workers start at random places, each going up from there.
    const start = Math.floor(Math.random() * span);
    for (let step = 0; step < Math.min(span, 256); step += 1) {
      const port = await tryListen(low + ((start + step) % span));
      if (port) return port;
    }
  }
  const port = await tryListen(0);
  if (!port) throw new Error('no free port on 127.0.0.1');
  return port;
}
