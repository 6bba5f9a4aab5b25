// Where the time of a bench-page export goes, in the browser: a sampling
// profile (Chrome DevTools Protocol) of one call, summed per wasm function,
// self and inclusive. The release build the bench measures has its names
// stripped by wasm-opt, so profile a build without it:
//
//   cargo build --release --target wasm32-unknown-unknown -p bench-page
//   wasm-bindgen --target web --out-dir target/profile --out-name page \
//     target/wasm32-unknown-unknown/release/bench-page.wasm
//   cd end2end && node scripts/wasm-profile.mjs ../target/profile 'set_bench(1, 1000000)'
//
// The expression is called on the module's exports, once to warm up and
// once under the profiler (sampled every 20 µs). Numbers are shares of the
// samples, not times: run it twice before trusting a small difference.
//
// Usage: node wasm-profile.mjs <wasm-bindgen-out-dir> <expression> [rows]
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { chromium } from '@playwright/test';

const [dirArg, expression, rowsArg = '40'] = process.argv.slice(2);
if (!dirArg || !expression) {
  console.error('usage: node wasm-profile.mjs <wasm-bindgen-out-dir> <expression> [rows]');
  process.exit(2);
}
const root = resolve(dirArg);
const rows = Number(rowsArg);

// The stage element is where the views of `table_bench` mount.
const page = `<!doctype html><meta charset="utf-8"><div id="stage"></div><script type="module">
import init, * as exports from './page.js';
window.ready = init().then(() => { window.exports = exports; });
</script>`;
const types = { '.js': 'text/javascript', '.wasm': 'application/wasm' };
const server = createServer(async (req, res) => {
  const path = new URL(req.url, 'http://x').pathname;
  // Cross-origin isolated, as the bench page is served: precise timers.
  const headers = {
    'cross-origin-opener-policy': 'same-origin',
    'cross-origin-embedder-policy': 'require-corp',
  };
  if (path === '/') {
    res.writeHead(200, { ...headers, 'content-type': 'text/html' }).end(page);
    return;
  }
  const file = normalize(join(root, path));
  if (!file.startsWith(root + sep)) {
    res.writeHead(403).end();
    return;
  }
  try {
    const body = await readFile(file);
    res.writeHead(200, { ...headers, 'content-type': types[extname(file)] ?? 'application/octet-stream' });
    res.end(body);
  } catch {
    res.writeHead(404).end();
  }
});
await new Promise((done) => server.listen(0, '127.0.0.1', done));

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const tab = await browser.newPage();
  await tab.goto(`http://127.0.0.1:${server.address().port}/`);
  await tab.evaluate(() => window.ready);
  const call = (text) => tab.evaluate((text) => Function('exports', `return exports.${text}`)(window.exports), text);
  await call(expression);
  const cdp = await tab.context().newCDPSession(tab);
  await cdp.send('Profiler.enable');
  await cdp.send('Profiler.setSamplingInterval', { interval: 20 });
  await cdp.send('Profiler.start');
  const answer = await call(expression);
  const { profile } = await cdp.send('Profiler.stop');
  console.log(`${expression} -> ${answer}`);
  report(profile);
} finally {
  await browser.close();
  server.close();
}

/** Prints each function's share of the samples, self and inclusive. */
function report(profile) {
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const name = (node) => node.callFrame.functionName || '(anonymous)';
  const hits = new Map();
  for (const id of profile.samples) hits.set(id, (hits.get(id) ?? 0) + 1);
  const self = new Map();
  const inclusive = new Map();
  let total = 0;
  for (const [id, count] of hits) {
    total += count;
    const own = name(nodes.get(id));
    self.set(own, (self.get(own) ?? 0) + count);
    // Each function once per sample, however deep it recurses.
    const seen = new Set();
    for (let at = id; at !== undefined; at = parent.get(at)) {
      const fn = name(nodes.get(at));
      if (!seen.has(fn)) {
        seen.add(fn);
        inclusive.set(fn, (inclusive.get(fn) ?? 0) + count);
      }
    }
  }
  console.log(`${total} samples`);
  for (const [title, table] of [['self', self], ['inclusive', inclusive]]) {
    console.log(`\n${title} (% of samples)`);
    const top = [...table].sort((a, b) => b[1] - a[1]).slice(0, rows);
    for (const [fn, count] of top) console.log(`${((100 * count) / total).toFixed(1).padStart(5)}  ${fn}`);
  }
}
