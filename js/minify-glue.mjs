// Minifies wasm-bindgen's JavaScript glue in a release build, and keeps
// the pages' subresource integrity right.
//
// Trunk writes the glue (`<name>-<hash>.js`, beside `<name>-<hash>_bg.wasm`)
// as wasm-bindgen prints it, every doc comment included: the app's was
// 77 KB, 10.9 KB brotli. Trunk's own minifier (`minify = "on_release"`)
// is not used: the crate it calls drops class getters (trunk-rs/trunk#761),
// and the glue's classes have them. esbuild, which already bundles the
// framework units, is used here instead.
//
// The glue is renamed after its new text (Trunk's name hashes the text it
// wrote), so one name never stands for two texts.
//
// Trunk has already written each glue's digest into the pages
// (`integrity="sha384-…"` of its modulepreload link), so each digest of the
// old text is replaced by the new text's, in every page of the site. A page
// that would still load the glue with a digest that does not match fails
// the build: a browser refuses such a script, and the page would never
// start.
//
// Usage: node js/minify-glue.mjs [out-dir] [--dev]
// Trunk runs it as a post-build hook (for every page built with this
// Trunk.toml, the bench's probes too, so sizes compare like with like):
// out-dir defaults to $TRUNK_STAGING_DIR; a debug build
// ($TRUNK_PROFILE=debug) or --dev leaves the glue as it is.
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';

/** The digest algorithms a page's `integrity` may name. */
const ALGORITHMS = ['sha256', 'sha384', 'sha512'];

/** `algorithm-base64` of `text`, as an `integrity` attribute spells it. */
export function digest(algorithm, text) {
  return `${algorithm}-${createHash(algorithm).update(text).digest('base64')}`;
}

/**
 * `html` with every digest of `before` (in any of the three algorithms)
 * replaced by the same algorithm's digest of `after`, and how many it
 * replaced.
 */
export function rewriteIntegrity(html, before, after) {
  let replaced = 0;
  for (const algorithm of ALGORITHMS) {
    const old = digest(algorithm, before);
    const parts = html.split(old);
    replaced += parts.length - 1;
    html = parts.join(digest(algorithm, after));
  }
  return { html, replaced };
}

/** The glue files of `files` (the names in a site's root). */
export function glueFiles(files) {
  const names = new Set(files);
  return files
    .filter((file) => file.endsWith('_bg.wasm'))
    .map((wasm) => wasm.replace(/_bg\.wasm$/, '.js'))
    .filter((glue) => names.has(glue))
    .sort();
}

/**
 * The `integrity` values of `html`'s tags that load `glue` (a `src` or
 * `href` naming it) and that are not a digest of `text`: what a browser
 * would refuse once the glue holds `text`.
 */
export function staleIntegrity(html, glue, text) {
  const valid = new Set(ALGORITHMS.map((algorithm) => digest(algorithm, text)));
  const name = glue.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const names = new RegExp(`\\b(?:src|href)\\s*=\\s*["'](?:[^"']*/)?${name}["']`);
  const stale = [];
  for (const [tag] of html.matchAll(/<[^>]*>/g)) {
    if (!names.test(tag)) {
      continue;
    }
    for (const [, value] of tag.matchAll(/\bintegrity\s*=\s*["']([^"']*)["']/g)) {
      // An attribute may list several digests; one that matches will do.
      if (!value.split(/\s+/).some((one) => valid.has(one))) {
        stale.push(value);
      }
    }
  }
  return stale;
}

/**
 * The name of a glue `glue` holding `text`: Trunk's name hashes the text
 * it wrote, so the 16 hex digits of that hash are replaced by those of a
 * digest of `text`. A host that caches hashed names for good must never
 * get other bytes under one (an esbuild of another version minifies the
 * same glue to other bytes; the page's digest would then refuse the copy
 * it cached). A name without such a hash (`filehash = false`) is kept.
 */
export function hashedName(glue, text) {
  const named = glue.match(/^(.*)-[0-9a-f]{16}\.js$/);
  if (!named) {
    return glue;
  }
  return `${named[1]}-${createHash('sha256').update(text).digest('hex').slice(0, 16)}.js`;
}

/**
 * Minifies every glue of the site in `out` with `transform` (esbuild's),
 * renaming it after its new text ([`hashedName`]) and rewriting the
 * pages' references and digests. Returns what it did, for the log;
 * throws, changing nothing of that glue, when a page would be left
 * loading it with a digest that does not match (Trunk wrote it in a form
 * not known here).
 */
export async function minifyGlue(out, transform) {
  const files = readdirSync(out);
  const pages = files.filter((file) => file.endsWith('.html'));
  const done = [];
  for (const glue of glueFiles(files)) {
    const path = join(out, glue);
    const before = readFileSync(path, 'utf8');
    const { code: after } = await transform(before, {
      loader: 'js',
      format: 'esm',
      target: 'es2022',
      minify: true,
      legalComments: 'none',
    });
    const name = hashedName(glue, after);
    let replaced = 0;
    const rewritten = pages.map((page) => {
      const result = rewriteIntegrity(readFileSync(join(out, page), 'utf8'), before, after);
      replaced += result.replaced;
      return [page, result.html.split(glue).join(name)];
    });
    for (const [page, html] of rewritten) {
      const stale = staleIntegrity(html, name, after);
      if (stale.length > 0) {
        throw new Error(`${page} loads ${glue} with integrity ${stale.join(', ')}, which is not a digest of its text: left unminified`);
      }
    }
    writeFileSync(join(out, name), after);
    if (name !== glue) {
      rmSync(path);
    }
    for (const [page, html] of rewritten) {
      writeFileSync(join(out, page), html);
    }
    done.push({ glue, name, before: Buffer.byteLength(before), after: Buffer.byteLength(after), replaced });
  }
  return done;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const out = args.find((a) => !a.startsWith('--')) ?? process.env.TRUNK_STAGING_DIR;
  const dev = args.includes('--dev') || process.env.TRUNK_PROFILE === 'debug';
  if (!out) {
    console.error('usage: node js/minify-glue.mjs <out-dir> [--dev] (or run from Trunk)');
    process.exit(2);
  }
  if (dev) {
    process.exit(0);
  }
  let esbuild;
  try {
    esbuild = await import('esbuild');
  } catch (error) {
    console.error(`js/minify-glue.mjs: esbuild is missing (${error.message}); run \`cargo xtask setup\``);
    process.exit(1);
  }
  try {
    const done = await minifyGlue(out, esbuild.transform);
    if (done.length === 0) {
      console.warn(`js/minify-glue.mjs: no wasm-bindgen glue in ${out} (no <name>.js beside a <name>_bg.wasm): nothing minified`);
    }
    for (const { glue, name, before, after, replaced } of done) {
      console.log(`js/minify-glue.mjs: ${glue} ${before} → ${name} ${after} bytes, ${replaced} digest(s) rewritten`);
    }
  } catch (error) {
    console.error(`js/minify-glue.mjs: ${error.message}`);
    process.exit(1);
  }
}
