// js/minify-glue.mjs: the glue is minified and every page's digest of it
// follows, or nothing changes and the build fails.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { transform } from 'esbuild';

import { digest, glueFiles, hashedName, minifyGlue, rewriteIntegrity, staleIntegrity } from '../minify-glue.mjs';

/** A glue as wasm-bindgen prints one: doc comments, a class with a getter. */
const GLUE = `/**
 * The handle \`window.gaesup.unit(address)\` returns.
 */
export class Handle {
    constructor(address) {
        this.inner = address;
    }
    /**
     * \`"apartment/building/unit"\`.
     * @returns {string}
     */
    get address() {
        return this.inner;
    }
}
export default async function init() {
    return new URL('app-1_bg.wasm', import.meta.url).pathname;
}
`;

/** A page loading \`glue\` the way Trunk writes it, with \`integrity\`. */
function page(glue, integrity) {
  return `<!doctype html><html><head>
<link rel="modulepreload" href="/${glue}" crossorigin="anonymous" integrity="${integrity}"><link rel="preload" href="/app-1_bg.wasm" crossorigin="anonymous" integrity="sha384-wasm" as="fetch" type="application/wasm">
<script type="module">import init from '/${glue}';await init();</script>
</head><body></body></html>`;
}

/** A site: the glue (named `glue`), its wasm, another script, and two pages. */
function site(glue = 'app-1.js') {
  const out = mkdtempSync(join(tmpdir(), 'minify-glue-'));
  writeFileSync(join(out, glue), GLUE);
  writeFileSync(join(out, glue.replace(/\.js$/, '_bg.wasm')), 'not read');
  writeFileSync(join(out, 'gaesup-unit.js'), '// not glue\n');
  for (const name of ['index.html', '404.html']) {
    writeFileSync(join(out, name), page(glue, digest('sha384', GLUE)));
  }
  return out;
}

test('the glue is minified, its getter kept, and both pages name its new digest', async () => {
  const out = site();
  try {
    const [done] = await minifyGlue(out, transform);
    const after = readFileSync(join(out, 'app-1.js'), 'utf8');
    assert.equal(done.glue, 'app-1.js');
    assert.equal(done.name, 'app-1.js', 'a name with no hash in it is kept');
    assert.equal(done.replaced, 2);
    assert.ok(after.length < GLUE.length / 2, after);
    assert.ok(!after.includes('@returns'), 'doc comments are gone');
    for (const name of ['index.html', '404.html']) {
      const html = readFileSync(join(out, name), 'utf8');
      assert.ok(html.includes(`integrity="${digest('sha384', after)}"`), html);
      assert.ok(!html.includes(digest('sha384', GLUE)), 'the old digest is gone');
      assert.ok(html.includes('integrity="sha384-wasm"'), "the wasm's digest is left alone");
      assert.deepEqual(staleIntegrity(html, 'app-1.js', after), []);
    }
    // The minified module still works, getter included.
    const module = await import(`data:text/javascript,${encodeURIComponent(after)}`);
    assert.equal(new module.Handle('a/b/c').address, 'a/b/c');
    assert.equal(readFileSync(join(out, 'gaesup-unit.js'), 'utf8'), '// not glue\n', 'other scripts are not touched');
  } finally {
    rmSync(out, { recursive: true });
  }
});

test('a page loading the glue with a digest of another form fails the build and changes nothing', async () => {
  const out = site();
  // A digest this script does not write (say Trunk began to add options):
  // minifying would leave the page refusing its own script.
  const odd = `${digest('sha384', GLUE)}?v=1`;
  writeFileSync(join(out, '404.html'), page('app-1.js', odd));
  try {
    await assert.rejects(minifyGlue(out, transform), /404\.html loads app-1\.js with integrity .*\?v=1/);
    assert.equal(readFileSync(join(out, 'app-1.js'), 'utf8'), GLUE);
    assert.equal(readFileSync(join(out, 'index.html'), 'utf8'), page('app-1.js', digest('sha384', GLUE)));
  } finally {
    rmSync(out, { recursive: true });
  }
});

test('every algorithm a page may name is rewritten; other digests are not', () => {
  const html = ['sha256', 'sha384', 'sha512'].map((a) => `integrity="${digest(a, 'old')}"`).join(' ') + ' integrity="sha384-other"';
  const { html: rewritten, replaced } = rewriteIntegrity(html, 'old', 'new');
  assert.equal(replaced, 3);
  assert.equal(
    rewritten,
    ['sha256', 'sha384', 'sha512'].map((a) => `integrity="${digest(a, 'new')}"`).join(' ') + ' integrity="sha384-other"',
  );
});

test('a stale digest counts only on a tag that loads the glue, and one good digest of several will do', () => {
  const good = digest('sha384', 'text');
  const html = [
    `<link rel="modulepreload" href="/sub/app-1.js" integrity="sha512-stale ${good}">`,
    '<link rel="preload" href="/app-1_bg.wasm" integrity="sha384-unrelated">',
    '<script src="app-1.json" integrity="sha384-lookalike"></script>',
    `<script type="module" src='app-1.js' integrity='sha256-stale'></script>`,
  ].join('\n');
  assert.deepEqual(staleIntegrity(html, 'app-1.js', 'text'), ['sha256-stale']);
});

test('the glue is the script beside a wasm of the same name, nothing else', () => {
  assert.deepEqual(
    glueFiles(['b-2.js', 'b-2_bg.wasm', 'a-1_bg.wasm', 'a-1.js', 'gaesup-unit.js', 'c_bg.wasm', 'index.html']),
    ['a-1.js', 'b-2.js'],
  );
});

test("a glue named after Trunk's hash of its text is renamed after its new text, everywhere", async () => {
  const glue = 'app-0123456789abcdef.js';
  const out = site(glue);
  try {
    const [done] = await minifyGlue(out, transform);
    const after = readFileSync(join(out, done.name), 'utf8');
    assert.equal(done.name, hashedName(glue, after));
    assert.match(done.name, /^app-[0-9a-f]{16}\.js$/);
    assert.notEqual(done.name, glue);
    assert.ok(!existsSync(join(out, glue)), 'the old name is gone');
    assert.ok(existsSync(join(out, 'app-0123456789abcdef_bg.wasm')), 'the wasm keeps its name');
    for (const name of ['index.html', '404.html']) {
      const html = readFileSync(join(out, name), 'utf8');
      assert.ok(!html.includes(glue), html);
      assert.equal(html.split(done.name).length - 1, 2, 'the preload and the import');
      assert.deepEqual(staleIntegrity(html, done.name, after), []);
    }
    // Other bytes, another name; the same bytes, the same name.
    assert.notEqual(hashedName(glue, `${after};`), done.name);
    assert.equal(hashedName('app-ffffffffffffffff.js', after), done.name);
  } finally {
    rmSync(out, { recursive: true });
  }
});
