// The container image (issue 14, item 2). No container engine runs here and base images
// cannot be pulled, so the Dockerfile is checked for what it promises, and
// deploy/container/simulate.sh performs its build stage (npm ci, build, production-only
// install of the npm package's files) and runs the result the way the image would: PID 1
// of its own PID namespace, user 10001 without capabilities, the whole root file system
// read-only, the config folder mounted read-only at /etc/portcullis. A client with a
// certificate gets through to a real upstream, the HEALTHCHECK command passes, nothing is
// writable, and SIGTERM lets an in-flight request finish before exit 0.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT, certArgs, curl, startEchoUpstream, tempDir, type EchoUpstream } from '../helpers/proxy.js';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { freePort } from '../helpers/ports.js';

const SIMULATE = join(REPO_ROOT, 'deploy', 'container', 'simulate.sh');

interface Stage {
  from: string;
  name: string | null;
  copies: { from: string | null; sources: string[]; dest: string }[];
  runs: string[];
  env: Record<string, string>;
  user: string;
  expose: string[];
  stopsignal?: string;
  entrypoint?: string[];
  cmd?: string[];
  healthcheck?: { options: Record<string, string>; cmd: string[] };
}

async function dockerfile(): Promise<{ build: Stage; final: Stage; stages: number }> {
  const mod = (await import(pathToFileURL(join(REPO_ROOT, 'deploy', 'container', 'read-dockerfile.mjs')).href)) as {
    readDockerfile(text: string): { build: Stage; final: Stage; stages: number };
  };
  return mod.readDockerfile(readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8'));
}

test('Dockerfile: multi-stage on the Node LTS slim image, non-root, no package managers, HEALTHCHECK, SIGTERM', async () => {
  const text = readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8');
  assert.match(text, /^ARG NODE_IMAGE=node:24-bookworm-slim$/m);
  const { build, final, stages } = await dockerfile();
  assert.equal(stages, 2);
  assert.equal(build.from, '${NODE_IMAGE}');
  assert.equal(final.from, '${NODE_IMAGE}');
  // the build stage installs every dependency and builds; the final stage only copies its result
  assert.deepEqual(build.runs, ['sh deploy/container/build.sh deps', 'sh deploy/container/build.sh app /opt/portcullis']);
  assert.deepEqual(final.copies, [{ from: 'build', sources: ['/opt/portcullis'], dest: '/opt/portcullis' }]);
  assert.equal(final.runs.length, 1);
  const setup = final.runs[0]!;
  for (const gone of ['/usr/local/lib/node_modules', '/usr/local/bin/npm', '/usr/local/bin/npx', '/usr/local/bin/corepack', '/opt/yarn-*']) {
    assert.ok(setup.includes(gone), `the final stage keeps ${gone}`);
  }
  assert.doesNotMatch(setup, /apt-get|\bnpm (ci|install)|\bgcc\b|\bmake\b/);
  assert.match(setup, /useradd --system --uid 10001 /);
  assert.match(setup, /install -d -m 0755 \/etc\/portcullis/);
  // numeric, so Kubernetes' runAsNonRoot can check it
  assert.equal(final.user, '10001:10001');
  assert.equal(final.env.NODE_ENV, 'production');
  assert.equal(final.stopsignal, 'SIGTERM');
  assert.deepEqual(final.entrypoint, ['node', '/opt/portcullis/bin/portcullis.js']);
  assert.deepEqual(final.cmd, ['run', '-c', '/etc/portcullis/portcullis.yaml']);
  assert.deepEqual(final.healthcheck?.cmd, ['node', '/opt/portcullis/healthcheck.mjs']);
  assert.deepEqual(final.expose, ['8443', '9901']);
});

test('.dockerignore sends exactly what the build stage copies: no node_modules, dist or keys', async () => {
  const lines = readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  assert.equal(lines[0], '*', '.dockerignore must start by excluding everything');
  const allowed = lines.slice(1).map((l) => {
    assert.ok(l.startsWith('!'), `${l}: only allowlist entries after "*"`);
    return l.slice(1).replace(/\/$/, '');
  });
  const { build } = await dockerfile();
  const copied = build.copies.flatMap((c) => c.sources);
  for (const src of copied) {
    assert.ok(allowed.some((a) => src === a || src.startsWith(`${a}/`)), `${src} is copied but .dockerignore leaves it out`);
    assert.ok(existsSync(join(REPO_ROOT, src)), `${src} does not exist`);
  }
  for (const a of allowed) assert.ok(copied.some((src) => src === a || src.startsWith(`${a}/`)), `${a} is sent to the builder but never copied`);
});

// ---- the simulated image ----

const canSimulate = (() => {
  if (process.getuid?.() !== 0) return 'simulate.sh run needs root (mount and PID namespaces, chroot); run the suite as root, as .ci/run does';
  const r = spawnSync('unshare', ['--mount', '--pid', '--fork', 'true'], { encoding: 'utf8' });
  if (r.status !== 0) return `this machine does not allow mount and PID namespaces (${(r.stderr || String(r.error)).trim()})`;
  return '';
})();

let state: string;
let cfgDir: string;
let pki: TestPki;
let up: EchoUpstream;
let proc: ChildProcess | undefined;
let stderr = '';
let apiPort = 0;
let adminPort = 0;
let exit: Promise<number | null>;
let onSlow: () => void;
const slowArrived = new Promise<void>((r) => (onSlow = r));

function simulate(args: string[], timeoutMs = 60_000) {
  const r = spawnSync('bash', [SIMULATE, ...args], { encoding: 'utf8', timeout: timeoutMs });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '', out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

before(async () => {
  if (canSimulate) return;
  const work = tempDir('pcl-container-');
  state = join(work, 'state');
  // The config folder as an operator lays it out: certificates public, the key readable
  // by the image's group only.
  cfgDir = join(work, 'etc');
  mkdirSync(join(cfgDir, 'tls'), { recursive: true });
  pki = await makeTestPki(join(work, 'pki'));
  writeFileSync(join(cfgDir, 'tls', 'server.crt'), readFileSync(pki.server.chain));
  writeFileSync(join(cfgDir, 'tls', 'ca.crt'), readFileSync(pki.ca.cert));
  writeFileSync(join(cfgDir, 'tls', 'server.key'), readFileSync(pki.server.key), { mode: 0o640 });
  chownSync(join(cfgDir, 'tls', 'server.key'), 0, 10001);
  chmodSync(join(cfgDir, 'tls', 'server.key'), 0o640);
  up = await startEchoUpstream((req, res) => {
    if (req.url !== '/slow') return false;
    onSlow();
    setTimeout(() => res.end('slow done'), 1500);
    return true;
  });
  adminPort = await freePort();
  writeFileSync(
    join(cfgDir, 'portcullis.yaml'),
    [
      'workers: 1',
      `admin: { address: 127.0.0.1:${adminPort} }`,
      'listeners:',
      '  - name: api',
      '    address: 127.0.0.1:0',
      '    tls: { cert: tls/server.crt, key: tls/server.key, client_ca: tls/ca.crt }',
      '    routes: [{ upstream: app }]',
      'upstreams:',
      `  app: { endpoints: ["${up.url}"] }`,
      '',
    ].join('\n'),
  );

  const built = simulate(['build', state], 600_000);
  assert.equal(built.status, 0, built.out);

  proc = spawn('bash', [SIMULATE, 'run', state, cfgDir], { stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout!.resume();
  exit = new Promise((resolve) => proc!.once('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the simulated container did not start:\n${stderr}`)), 30_000);
    proc!.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
      const m = /"event":"listening","listener":"api","address":"127\.0\.0\.1:(\d+)"/.exec(stderr);
      if (m) {
        apiPort = Number(m[1]);
        clearTimeout(timer);
        resolve();
      }
    });
    proc!.once('exit', (code) => reject(new Error(`the simulated container exited with ${code}:\n${stderr}`)));
  });
});

after(async () => {
  if (proc && proc.exitCode === null) {
    proc.kill('SIGKILL');
    await exit;
  }
  await up?.close();
  if (state) rmSync(join(state, '..'), { recursive: true, force: true });
});

test('simulated image: the build stage installs production dependencies only, from the npm package files', { skip: canSimulate || false }, () => {
  const app = join(state, 'stage', 'opt', 'portcullis');
  for (const f of ['bin/portcullis.js', 'dist/src/cli/main.js', 'assets/openssl-worker.cnf', 'healthcheck.mjs', 'LICENSE', 'node_modules/pino/package.json']) {
    assert.ok(existsSync(join(app, f)), `${f} is missing from the image`);
  }
  for (const f of ['node_modules/typescript', 'node_modules/@types', 'node_modules/undici', 'src', 'test', 'dist/test', 'dist/src/cli/main.js.map', 'dist/src/config/load.test.js']) {
    assert.ok(!existsSync(join(app, f)), `${f} must not be in the image`);
  }
});

test('simulated image: a client with a certificate gets through, and the upstream sees its identity', { skip: canSimulate || false }, async () => {
  const r = await curl(`https://localhost:${apiPort}/hello`, certArgs(pki.ca.cert, pki.client));
  assert.equal(r.status, 200, r.stderr + r.body);
  const seen = up.received.at(-1)!;
  assert.equal(seen.url, '/hello');
  assert.equal(seen.headers['x-client-verify'], 'SUCCESS');
  assert.equal(seen.headers['x-client-spiffe-id'], 'spiffe://example.org/ns/prod/sa/payment');
  // and one without a certificate does not
  const none = await curl(`https://localhost:${apiPort}/hello`, ['--cacert', pki.ca.cert]);
  assert.notEqual(none.status, 200);
  assert.equal(up.received.length, 1);
});

test('simulated image: the HEALTHCHECK command passes against the running proxy', { skip: canSimulate || false }, () => {
  const r = simulate(['healthcheck', state]);
  assert.equal(r.status, 0, r.out);
  // and it really asks: pointed at a port nobody serves, it fails
  const wrong = simulate(['exec', state, 'node', '-e', `process.env.PORTCULLIS_HEALTHCHECK_URL = 'http://127.0.0.1:1/healthz'; import('/opt/portcullis/healthcheck.mjs');`]);
  assert.notEqual(wrong.status, 0, wrong.out);
});

test('simulated image: PID 1 is the proxy as user 10001, and nothing on the file system is writable', { skip: canSimulate || false }, () => {
  const probe = `
    const fs = require('node:fs');
    const out = { uid: process.getuid(), gid: process.getgid(), cmdline: fs.readFileSync('/proc/1/cmdline', 'utf8').split('\\0').filter(Boolean), writes: {} };
    for (const p of ['/tmp/x', '/opt/portcullis/x', '/etc/portcullis/x', '/etc/portcullis/tls/server.key', '/x', '/nonexistent/x']) {
      try { fs.writeFileSync(p, 'x'); out.writes[p] = 'written'; } catch (e) { out.writes[p] = e.code; }
    }
    out.key = fs.readFileSync('/etc/portcullis/tls/server.key', 'utf8').includes('PRIVATE KEY');
    console.log(JSON.stringify(out));`;
  const r = simulate(['exec', state, 'node', '-e', probe]);
  assert.equal(r.status, 0, r.out);
  const got = JSON.parse(r.stdout) as { uid: number; gid: number; cmdline: string[]; writes: Record<string, string>; key: boolean };
  assert.equal(got.uid, 10001);
  assert.equal(got.gid, 10001);
  assert.deepEqual(got.cmdline, ['node', '/opt/portcullis/bin/portcullis.js', 'run', '-c', '/etc/portcullis/portcullis.yaml']);
  for (const [p, result] of Object.entries(got.writes)) assert.ok(result === 'EROFS' || result === 'ENOENT', `${p}: ${result}`);
  assert.equal(got.key, true, 'the key (root:10001, 0640) must be readable by the image user');
});

test('simulated image: SIGTERM (docker stop) lets an in-flight request finish, then exits 0', { skip: canSimulate || false }, async () => {
  const slow = curl(`https://localhost:${apiPort}/slow`, certArgs(pki.ca.cert, pki.client));
  // SIGTERM once the upstream holds the request (it answers /slow after 1.5 s)
  await slowArrived;
  proc!.kill('SIGTERM');
  const r = await slow;
  assert.equal(r.status, 200, r.stderr);
  assert.equal(r.body, 'slow done');
  assert.equal(await exit, 0, stderr);
  assert.match(stderr, /"event":"shutdown","signal":"SIGTERM"/);
});
