// Prints raw / gzip / brotli sizes of the wasm and JS files of a build and
// writes them as JSON. Usage: node size.mjs <dist-dir> <out.json>
//
// The first table is what every page loads. The second is what each unit
// written with a JavaScript framework adds when a page shows it: its
// bundle in units/ with every chunk it imports, the bindings included.
import { existsSync, readdirSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
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

function measure(path, file) {
  const bytes = readFileSync(path);
  return {
    file,
    raw: bytes.length,
    gzip: gzipSync(bytes, { level: 9 }).length,
    brotli: brotliCompressSync(bytes, {
      params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: bytes.length },
    }).length,
  };
}

const sum = (file, rows) =>
  rows.reduce((s, r) => ({ file, raw: s.raw + r.raw, gzip: s.gzip + r.gzip, brotli: s.brotli + r.brotli }), {
    raw: 0,
    gzip: 0,
    brotli: 0,
  });

const rows = files.map((file) => measure(join(dist, file), file));
const total = sum('total', rows);

const kib = (n) => `${(n / 1024).toFixed(1)} KiB`;
const pad = (s, n) => String(s).padEnd(n);
function table(title, lines) {
  console.log(`${pad(title, 40)} ${pad('raw', 12)} ${pad('gzip', 12)} brotli`);
  for (const r of lines) {
    const name = r.file.replace(/-[0-9a-f]{16}(?=[._])/, '-…');
    console.log(`${pad(name, 40)} ${pad(kib(r.raw), 12)} ${pad(kib(r.gzip), 12)} ${kib(r.brotli)}`);
  }
}
table('file (loaded by every page)', [...rows, total]);

// Framework units: each entry of units/ (not a chunk, not the bindings)
// with the files it imports, followed transitively.
const unitsDir = join(dist, 'units');
const units = [];
if (existsSync(unitsDir)) {
  const imports = (file) =>
    [...readFileSync(join(unitsDir, file), 'utf8').matchAll(/(?:from|import)\s*["']\.\/([^"']+\.js)["']/g)].map(
      (m) => m[1],
    );
  const entries = readdirSync(unitsDir)
    .filter((f) => f.endsWith('.js') && !f.startsWith('chunk-') && f !== 'gaesup-bindings.js')
    .sort();
  for (const entry of entries) {
    const seen = new Set();
    const visit = (file) => {
      if (seen.has(file)) return;
      seen.add(file);
      imports(file).forEach(visit);
    };
    visit(entry);
    const parts = [...seen].map((file) => measure(join(unitsDir, file), file));
    units.push({ ...sum(`units/${entry}`, parts), files: [...seen] });
  }
  console.log('');
  table('framework unit (on demand, with imports)', units);
}
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify({ files: rows, total, units }, null, 2));
