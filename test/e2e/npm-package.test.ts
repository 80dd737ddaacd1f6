// The npm package works as a package (issue 14, item 1): `npm pack` on a copy of the
// checkout runs `prepack` (the build) and ships only runtime files; the tarball installed
// into an empty folder runs as `npx portcullis`, and `npm install -g` puts `portcullis`
// on PATH. Dependencies install with --prefer-offline (the npm cache holds the
// lockfile's versions after `npm ci`); portcullis itself only ever comes from the tarball.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, relative, sep, delimiter } from 'node:path';
import { REPO_ROOT, tempDir } from '../helpers/proxy.js';

const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as {
  name: string;
  version: string;
  license: string;
  bin: Record<string, string>;
  scripts: Record<string, string>;
  files: string[];
};

/** npm's own lifecycle variables (we may be running under `npm test`) must not steer the nested npm runs. */
function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.toLowerCase().startsWith('npm_') && !['npm_config_cache', 'npm_config_registry', 'npm_config_userconfig'].includes(k.toLowerCase())) continue;
    env[k] = v;
  }
  // the nested npm and npx run on the node that runs this test (Node 20, 22 or 24 in CI)
  env.PATH = `${join(process.execPath, '..')}${delimiter}${process.env.PATH ?? ''}`;
  return { ...env, ...extra };
}

function run(cmd: string, args: string[], cwd: string, timeoutMs: number, env?: NodeJS.ProcessEnv) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: timeoutMs, env: env ?? cleanEnv() });
  const out = `$ ${cmd} ${args.join(' ')}\n${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}`;
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '', out };
}

function listFiles(dir: string, base = dir, out: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) listFiles(p, base, out);
    else out.push(relative(base, p).split(sep).join('/'));
  }
  return out;
}

let work: string;
let tarball: string;
let shipped: string[];
let builtRuntime: string[];

before(() => {
  work = tempDir('pcl-npm-package-');
  // A copy of the checkout as a fresh clone has it: no dist/, no node_modules/. prepack
  // must build dist/ itself; node_modules is linked so the build finds TypeScript.
  const copy = join(work, 'checkout');
  const skip = new Set(['.git', 'node_modules', 'dist', '.tmp', '.ci', join('bench', 'results')]);
  cpSync(REPO_ROOT, copy, {
    recursive: true,
    filter: (src) => {
      const rel = relative(REPO_ROOT, src);
      return !skip.has(rel) && !rel.endsWith('.tgz') && !rel.endsWith('.cpuprofile');
    },
  });
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(copy, 'node_modules'));
  const packed = run('npm', ['pack', '--json', '--pack-destination', work], copy, 240_000);
  assert.equal(packed.status, 0, packed.out);
  const info = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as { filename: string; files: { path: string }[] }[];
  tarball = join(work, info[0]!.filename);
  shipped = info[0]!.files.map((f) => f.path).sort();
  builtRuntime = listFiles(join(copy, 'dist', 'src'))
    .filter((f) => f.endsWith('.js') && !f.endsWith('.test.js'))
    .map((f) => `dist/src/${f}`);
});

after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

test('package.json: bin, files and prepack are set for a runnable package', () => {
  assert.equal(pkg.bin.portcullis, 'bin/portcullis.js');
  assert.equal(pkg.scripts.prepack, 'npm run build');
  assert.equal(readFileSync(join(REPO_ROOT, 'bin', 'portcullis.js'), 'utf8').split('\n')[0], '#!/usr/bin/env node');
});

test('npm pack runs prepack (the build) and ships every runtime file and nothing else', () => {
  assert.ok(existsSync(tarball), tarball);
  // prepack built dist/ in a copy that had none, so dist files in the tarball prove it ran
  assert.ok(builtRuntime.length > 50, `only ${builtRuntime.length} compiled runtime files`);
  for (const f of builtRuntime) assert.ok(shipped.includes(f), `${f} is built but not shipped`);
  for (const f of ['package.json', 'README.md', 'LICENSE', 'CHANGELOG.md', 'bin/portcullis.js', 'assets/openssl-worker.cnf', 'dist/src/cli/main.js']) {
    assert.ok(shipped.includes(f), `${f} is missing from the tarball`);
  }
  const unexpected = shipped.filter(
    (f) => !['package.json', 'README.md', 'LICENSE', 'CHANGELOG.md'].includes(f) && !f.startsWith('bin/') && !f.startsWith('assets/') && !builtRuntime.includes(f),
  );
  assert.deepEqual(unexpected, [], 'files shipped that are not runtime files');
  assert.deepEqual(shipped.filter((f) => /\.test\.js$|\.map$|\.ts$|^(src|test|bench|deploy)\//.test(f)), []);
});

test('LICENSE is the Apache License 2.0 that package.json names', () => {
  assert.equal(pkg.license, 'Apache-2.0');
  const text = readFileSync(join(REPO_ROOT, 'LICENSE'), 'utf8');
  assert.match(text, /^\s*Apache License\s+Version 2\.0, January 2004\s+http:\/\/www\.apache\.org\/licenses\//);
  assert.match(text, /TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION/);
  assert.match(text, /END OF TERMS AND CONDITIONS/);
});

test('CHANGELOG has an entry for the version in package.json', () => {
  const text = readFileSync(join(REPO_ROOT, 'CHANGELOG.md'), 'utf8');
  assert.ok(text.includes(`## [${pkg.version}]`), `CHANGELOG.md has no "## [${pkg.version}]" section`);
});

test('installed from the tarball into an empty folder: npx portcullis --version and demo --exit work', () => {
  const dir = join(work, 'project');
  mkdirSync(dir);
  // a package.json of its own, so npm does not walk up to some other project
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'pcl-install-check', private: true }));
  const inst = run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball], dir, 180_000);
  assert.equal(inst.status, 0, inst.out);
  const installed = JSON.parse(readFileSync(join(dir, 'node_modules', 'portcullis', 'package.json'), 'utf8')) as { version: string };
  assert.equal(installed.version, pkg.version);
  // only runtime dependencies come along
  assert.ok(!existsSync(join(dir, 'node_modules', 'typescript')), 'typescript (a dev dependency) was installed');

  const version = run('npx', ['--no-install', 'portcullis', '--version'], dir, 60_000);
  assert.equal(version.status, 0, version.out);
  assert.equal(version.stdout.trim(), pkg.version);

  const demo = run('npx', ['--no-install', 'portcullis', 'demo', '--exit', '--port', '0'], dir, 120_000);
  assert.equal(demo.status, 0, demo.out);
  assert.match(demo.stdout, /demo OK/);
  assert.match(demo.stdout, /"x-client-verify": "SUCCESS"/);
});

test('npm install -g puts portcullis on PATH', () => {
  const prefix = join(work, 'global');
  const inst = run('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', tarball], work, 180_000);
  assert.equal(inst.status, 0, inst.out);
  const env = cleanEnv();
  env.PATH = `${join(prefix, 'bin')}${delimiter}${env.PATH}`;
  const which = run('sh', ['-c', 'command -v portcullis'], work, 10_000, env);
  assert.equal(which.stdout.trim(), join(prefix, 'bin', 'portcullis'), which.out);
  const version = run('portcullis', ['--version'], work, 30_000, env);
  assert.equal(version.status, 0, version.out);
  assert.equal(version.stdout.trim(), pkg.version);
  // the installed command is the whole CLI, not only --version
  const help = run('portcullis', ['--help'], work, 30_000, env);
  for (const verb of ['run', 'check', 'demo', 'ca', 'cert', 'doctor', 'reload']) assert.match(help.stdout, new RegExp(`\\n  ${verb}\\b`), help.out);
});
