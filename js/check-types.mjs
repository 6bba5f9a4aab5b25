// Type-checks the bindings' declarations (js/gaesup-bindings.d.ts) against
// the units written in TypeScript and every ```ts / ```tsx example of the
// READMEs, with `tsc --noEmit`. Each example is checked as its own module.
//
// Usage: node js/check-types.mjs
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const docs = ['README.md', 'units/README.md'];
const out = join(root, 'target/doc-examples');

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
let count = 0;
for (const doc of docs) {
  const text = readFileSync(join(root, doc), 'utf8');
  const blocks = text.matchAll(/^```(tsx?)\n([\s\S]*?)^```$/gm);
  let n = 0;
  for (const [, , code] of blocks) {
    n += 1;
    const name = `${doc.replace(/[/.]/g, '-')}-${n}.tsx`;
    // Where it came from, so an error points at the doc.
    writeFileSync(join(out, name), `// ${doc}, TypeScript example ${n}\n${code}\nexport {};\n`);
    count += 1;
  }
}
if (count === 0) {
  console.error('check-types: the READMEs have no ```ts or ```tsx example to check');
  process.exit(1);
}
const tsc = spawnSync(
  process.execPath,
  [join(root, 'node_modules/typescript/bin/tsc'), '--noEmit', '-p', join(root, 'js/tsconfig.json')],
  { stdio: 'inherit' },
);
if (tsc.status !== 0) process.exit(tsc.status ?? 1);
console.log(`check-types: the bindings' types, the TypeScript units and ${count} README examples agree`);
