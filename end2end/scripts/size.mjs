// Prints raw / gzip / brotli sizes of the wasm and JS files of a build and
// writes them as JSON. Usage: node size.mjs <dist-dir> <out.json>
import { readdirSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { gzipSync, brotliCompressSync, constants } from 'node:zlib';

const [dist, out] = process.argv.slice(2);
if (!dist || !out) {
  console.error('usage: node size.mjs <dist-dir> <out.json>');
  process.exit(2);
}

const files = readdirSync(dist).filter((f) => f.endsWith('.wasm') || f.endsWith('.js')).sort();
if (!files.some((f) => f.endsWith('.wasm'))) {
  console.error(`no .wasm file in ${dist}`);
  process.exit(1);
}

const rows = files.map((file) => {
  const bytes = readFileSync(join(dist, file));
  return {
    file,
    raw: bytes.length,
    gzip: gzipSync(bytes, { level: 9 }).length,
    brotli: brotliCompressSync(bytes, {
      params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: bytes.length },
    }).length,
  };
});
const total = rows.reduce(
  (sum, r) => ({ file: 'total', raw: sum.raw + r.raw, gzip: sum.gzip + r.gzip, brotli: sum.brotli + r.brotli }),
  { raw: 0, gzip: 0, brotli: 0 },
);

const kib = (n) => `${(n / 1024).toFixed(1)} KiB`;
const pad = (s, n) => String(s).padEnd(n);
console.log(`${pad('file', 40)} ${pad('raw', 12)} ${pad('gzip', 12)} brotli`);
for (const r of [...rows, total]) {
  const name = r.file.replace(/-[0-9a-f]{16}(?=[._])/, '-…');
  console.log(`${pad(name, 40)} ${pad(kib(r.raw), 12)} ${pad(kib(r.gzip), 12)} ${kib(r.brotli)}`);
}
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify({ files: rows, total }, null, 2));
