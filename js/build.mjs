// Bundles the units written with JavaScript frameworks, with esbuild.
//
// Every units/<name>/js/main.{js,jsx,ts,tsx} is an entry: it becomes
// <out>/units/<name>.js, an ES module exporting mount() for <gaesup-unit>
// (js/gaesup-unit.js). Code shared by several units (React itself, when
// two units use it) goes to chunks beside them, loaded once. The bindings,
// js/gaesup-bindings.js, stay one file of the site (units/gaesup-bindings.js)
// that every unit imports as `gaesup-bindings`: no framework is bundled
// into it, and no unit carries its own copy.
//
// A release build also minifies, in place, the shell's own scripts that
// index.html copies (gaesup-unit.js, js-counter.js): every page loads them.
//
// Usage: node js/build.mjs [out-dir] [--dev]
// Trunk runs it as a post-build hook: out-dir defaults to
// $TRUNK_STAGING_DIR, and a debug build ($TRUNK_PROFILE=debug) or --dev
// keeps the frameworks' development builds and skips minifying.
import { existsSync, mkdirSync, readdirSync, copyFileSync } from 'node:fs';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const out = args.find((a) => !a.startsWith('--')) ?? process.env.TRUNK_STAGING_DIR;
const dev = args.includes('--dev') || process.env.TRUNK_PROFILE === 'debug';

if (!out) {
  console.error('usage: node js/build.mjs <out-dir> [--dev] (or run from Trunk)');
  process.exit(2);
}

let esbuild;
let sveltePlugin;
try {
  esbuild = await import('esbuild');
  sveltePlugin = (await import('esbuild-svelte')).default;
} catch (error) {
  console.error(`js/build.mjs: the npm packages are missing (${error.message}); run \`cargo xtask setup\``);
  process.exit(1);
}

/** units/<name>/js/main.* of every unit written with a framework. */
function entries(unitsDir = join(root, 'units')) {
  const found = [];
  for (const name of readdirSync(unitsDir).sort()) {
    for (const ext of ['tsx', 'ts', 'jsx', 'js']) {
      const main = join(unitsDir, name, 'js', `main.${ext}`);
      if (existsSync(main)) {
        found.push({ in: main, out: name });
        break;
      }
    }
  }
  return found;
}

const units = join(out, 'units');
mkdirSync(units, { recursive: true });

// The import of `gaesup-bindings` stays an import, of the site's one copy.
const bindings = {
  name: 'gaesup-bindings',
  setup(build) {
    build.onResolve({ filter: /^gaesup-bindings$/ }, () => ({
      path: './gaesup-bindings.js',
      external: true,
    }));
  },
};

await esbuild.build({
  entryPoints: entries(),
  outdir: units,
  bundle: true,
  splitting: true,
  format: 'esm',
  target: 'es2022',
  minify: !dev,
  sourcemap: dev,
  chunkNames: 'chunk-[hash]',
  jsx: 'automatic',
  // Svelte's runtime is picked by these conditions (browser, not server;
  // production or development build).
  conditions: ['svelte', 'browser', dev ? 'development' : 'production'],
  mainFields: ['svelte', 'browser', 'module', 'main'],
  define: {
    'process.env.NODE_ENV': JSON.stringify(dev ? 'development' : 'production'),
    __VUE_OPTIONS_API__: 'false',
    __VUE_PROD_DEVTOOLS__: 'false',
    __VUE_PROD_HYDRATION_MISMATCH_DETAILS__: 'false',
  },
  plugins: [bindings, sveltePlugin({ compilerOptions: { dev } })],
  logLevel: 'warning',
});

if (dev) {
  copyFileSync(join(root, 'js/gaesup-bindings.js'), join(units, 'gaesup-bindings.js'));
} else {
  // One file each, minified, nothing bundled into it.
  const minify = (from, to) =>
    esbuild.build({
      entryPoints: [from],
      outfile: to,
      allowOverwrite: from === to,
      format: 'esm',
      target: 'es2022',
      minify: true,
      logLevel: 'warning',
    });
  await minify(join(root, 'js/gaesup-bindings.js'), join(units, 'gaesup-bindings.js'));
  // The shell's own scripts, which every page loads: Trunk copies them as
  // they are, comments and all (index.html's copy-file); minified in place.
  for (const name of ['gaesup-unit.js', 'js-counter.js']) {
    const file = join(out, name);
    if (!existsSync(file)) {
      console.warn(`js/build.mjs: ${name} is not in the site (did index.html stop copying it?): not minified`);
      continue;
    }
    await minify(file, file);
  }
}
