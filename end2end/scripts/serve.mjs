// A static file server for the release build, as a static host would serve
// it: files as they are, and index.html for any other address below the base
// (SPA fallback) so deep links work. Missing assets (paths with an extension)
// are real 404s, so a broken asset reference fails loudly.
//
// With --not-found-page it behaves like GitHub Pages instead: an unknown
// address gets 404.html with status 404 (the build makes 404.html the app
// itself, so deep links still work there).
//
// With --compress it serves brotli (quality 11, as the size report
// measures) to clients that accept it, as a CDN would: the load-time
// benchmark transfers what a visitor would.
//
// With --while-stdin-open it exits once its standard input closes:
// Playwright starts it with a pipe there, which closes when Playwright
// exits however it exits (killed too), so no server outlives its run.
//
// Usage: node serve.mjs <dist-dir> <port> [base-path] [--not-found-page] [--isolated] [--compress] [--while-stdin-open]
import { createServer } from 'node:http';
import { brotliCompressSync, constants } from 'node:zlib';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize, resolve, sep } from 'node:path';

const flags = process.argv.slice(2).filter((a) => a.startsWith('--'));
const [distArg, portArg, baseArg = '/'] = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const notFoundPage = flags.includes('--not-found-page');
// --isolated: cross-origin isolation (COOP + COEP), which makes Chromium's
// performance.now() precise to 5 µs instead of 100 µs (the benchmark page).
const isolation = flags.includes('--isolated')
  ? { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' }
  : {};
const compress = flags.includes('--compress');
// Compressed once per file: the files do not change while serving.
const compressed = new Map();
if (!distArg || !portArg) {
  console.error('usage: node serve.mjs <dist-dir> <port> [base-path]');
  process.exit(2);
}
const dist = resolve(distArg);
const port = Number(portArg);
const base = baseArg.endsWith('/') ? baseArg : `${baseArg}/`;

const types = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.json': 'application/json',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};

async function send(req, res, status, file) {
  let body = await readFile(file);
  const encoding = {};
  if (compress && /\bbr\b/.test(req.headers['accept-encoding'] ?? '')) {
    if (!compressed.has(file)) {
      compressed.set(file, brotliCompressSync(body, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }));
    }
    body = compressed.get(file);
    encoding['content-encoding'] = 'br';
  }
  res.writeHead(status, {
    'content-type': types[extname(file)] ?? 'application/octet-stream',
    'cache-control': 'no-store',
    ...encoding,
    ...isolation,
  });
  res.end(body);
}

async function isFile(path) {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

const server = createServer(async (req, res) => {
  try {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = decodeURIComponent(url.pathname);
    if (!path.startsWith(base) && `${path}/` !== base) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`outside ${base}`);
      return;
    }
    const relative = normalize(path.slice(base.length - 1)).replace(/^[/\\]+/, '');
    // A directory address means its index.html, as on every static host.
    const file = join(dist, relative, relative === '' || path.endsWith('/') ? 'index.html' : '');
    if (file !== dist && !file.startsWith(dist + sep)) {
      res.writeHead(400, { 'content-type': 'text/plain' }).end('bad path');
      return;
    }
    if (await isFile(file)) {
      await send(req, res, 200, file);
    } else if (notFoundPage) {
      await send(req, res, 404, join(dist, '404.html'));
    } else if (extname(relative) === '') {
      await send(req, res, 200, join(dist, 'index.html'));
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
    }
  } catch (error) {
    res.writeHead(500, { 'content-type': 'text/plain' }).end(String(error));
  }
});

if (flags.includes('--while-stdin-open')) {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
}

server.listen(port, '127.0.0.1', () => {
  console.log(`serving ${dist} at http://127.0.0.1:${port}${base}`);
});
