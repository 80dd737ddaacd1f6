// Reloads that must fail safely (the old configuration keeps serving, the error names the
// file), the Kubernetes-style `..data` symlink swap of a mounted Secret, and `portcullis
// reload` from the command line.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { readFileSync, writeFileSync, mkdirSync, symlinkSync, renameSync, rmSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { issueCert } from '../../src/pki/issue.js';
import { startEchoUpstream, startCli, tempDir, cleanup, curl, certArgs, runCli, type EchoUpstream, type RunningCli } from '../helpers/proxy.js';

let pki: TestPki;
let up: EchoUpstream;
let cli: RunningCli;
let dir: string;
let cfgPath: string;
let secretDir: string;
let newServer: { chainPem: string; keyPem: string; serial: string };

before(async () => {
  dir = tempDir();
  pki = await makeTestPki(join(dir, 'pki'));
  newServer = await issueCert(pki.handles.root, { type: 'server', cn: 'localhost', dns: ['localhost'], ip: ['127.0.0.1'] });
  // a mounted Secret as the kubelet lays it out: files are links through ..data
  secretDir = join(dir, 'secret');
  mkdirSync(join(secretDir, '..2026_01'), { recursive: true });
  copyFileSync(pki.server.chain, join(secretDir, '..2026_01', 'tls.crt'));
  copyFileSync(pki.server.key, join(secretDir, '..2026_01', 'tls.key'));
  symlinkSync('..2026_01', join(secretDir, '..data'));
  symlinkSync('..data/tls.crt', join(secretDir, 'tls.crt'));
  symlinkSync('..data/tls.key', join(secretDir, 'tls.key'));
  copyFileSync(pki.ca.cert, join(dir, 'ca.crt'));
  up = await startEchoUpstream();
  cli = await startCli(
    {
      workers: 1,
      listeners: [{ name: 'api', address: '127.0.0.1:0', tls: { cert: 'secret/tls.crt', key: 'secret/tls.key', client_ca: 'ca.crt' }, routes: [{ upstream: 'app' }] }],
      upstreams: { app: { endpoints: [up.url] } },
    },
    { dir },
  );
  cfgPath = /-c (\S+)/.exec(cli.proc.spawnargs.join(' '))![1]!;
});

after(async () => {
  await cli?.stop();
  await up?.close();
  cleanup(dir);
});

const admin = (path: string, init?: RequestInit) => fetch(`http://127.0.0.1:${cli.adminPort}${path}`, init);
const reload = async () => (await (await admin('/reload', { method: 'POST' })).json()) as { ok: boolean; generation: number; error?: string };
const served = () =>
  new Promise<string>((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: cli.port, servername: 'localhost', ca: readFileSync(pki.ca.cert), cert: readFileSync(pki.client.cert), key: readFileSync(pki.client.key) }, () => {
      resolve(s.getPeerX509Certificate()!.serialNumber);
      s.end();
    });
    s.on('error', reject);
  });

async function stillServing(): Promise<void> {
  const r = await curl(`https://localhost:${cli.port}/ok`, certArgs(pki.ca.cert, pki.client));
  assert.equal(r.status, 200, r.stderr);
}

test('broken reloads keep the old configuration serving, and the error names the file', async () => {
  const before = await reload();
  assert.ok(before.ok, before.error);
  const gen = before.generation;
  const cases: { name: string; breakIt: () => void; fixIt: () => void; expect: RegExp }[] = [
    {
      name: 'truncated key',
      breakIt: () => writeFileSync(join(dir, 'cfg-key.key'), readFileSync(pki.server.key, 'utf8').slice(0, 60)),
      fixIt: () => undefined,
      expect: /cfg-key\.key/,
    },
    {
      name: 'invalid YAML/JSON config',
      breakIt: () => writeFileSync(cfgPath, readFileSync(cfgPath, 'utf8').replace('"listeners"', '"listeners" "oops"')),
      fixIt: () => undefined,
      expect: /PCL_ERR_CONFIG_PARSE|position|line/,
    },
    {
      name: 'missing CA file',
      breakIt: () => rmSync(join(dir, 'ca.crt')),
      fixIt: () => copyFileSync(pki.ca.cert, join(dir, 'ca.crt')),
      expect: /client_ca: file not found: .*ca\.crt/,
    },
    {
      name: 'empty CA bundle',
      breakIt: () => writeFileSync(join(dir, 'ca.crt'), ''),
      fixIt: () => copyFileSync(pki.ca.cert, join(dir, 'ca.crt')),
      expect: /client_ca: file is empty: .*ca\.crt/,
    },
  ];
  const goodConfig = readFileSync(cfgPath, 'utf8');
  for (const c of cases) {
    if (c.name === 'truncated key') {
      // point the config at a truncated key file
      c.breakIt();
      writeFileSync(cfgPath, goodConfig.replace('secret/tls.key', 'cfg-key.key'));
    } else {
      c.breakIt();
    }
    try {
      const r = await reload();
      assert.equal(r.ok, false, `${c.name}: reload should fail`);
      assert.equal(r.generation, gen, `${c.name}: generation unchanged`);
      assert.match(r.error ?? '', c.expect, `${c.name}: ${r.error}`);
      await stillServing();
      const s = (await (await admin('/status')).json()) as { last_reload: { ok: boolean; error: string } };
      assert.equal(s.last_reload.ok, false);
      assert.match(s.last_reload.error, c.expect);
    } finally {
      c.fixIt();
      writeFileSync(cfgPath, goodConfig);
    }
  }
  // a key that does not match its certificate, written by hand into the Secret folder
  copyFileSync(pki.client.key, join(secretDir, '..2026_01', 'tls.key'));
  const mismatch = await reload();
  assert.equal(mismatch.ok, false);
  assert.match(mismatch.error ?? '', /tls\.key: .* does not match the certificate in .*tls\.crt/);
  await stillServing();
  copyFileSync(pki.server.key, join(secretDir, '..2026_01', 'tls.key'));
  const back = await reload();
  assert.ok(back.ok, back.error);
  const metrics = await (await admin('/metrics')).text();
  assert.match(metrics, /portcullis_reloads_total\{result="failure"\} [5-9]/);
});

test('a Kubernetes-style ..data symlink swap triggers a reload and the new certificate is served', async () => {
  const gen = ((await (await admin('/status')).json()) as { generation: number }).generation;
  mkdirSync(join(secretDir, '..2026_02'));
  writeFileSync(join(secretDir, '..2026_02', 'tls.crt'), newServer.chainPem);
  writeFileSync(join(secretDir, '..2026_02', 'tls.key'), newServer.keyPem, { mode: 0o600 });
  symlinkSync('..2026_02', join(secretDir, '..data_tmp'));
  renameSync(join(secretDir, '..data_tmp'), join(secretDir, '..data'));
  const end = Date.now() + 10_000;
  let now = gen;
  while (now <= gen && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 100));
    now = ((await (await admin('/status')).json()) as { generation: number }).generation;
  }
  assert.ok(now > gen, 'the symlink swap should have reloaded');
  assert.equal(await served(), newServer.serial);
});

test('portcullis reload -c FILE reloads through the admin address and reports failures', async () => {
  const withAdmin = JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>;
  withAdmin.admin = { address: `127.0.0.1:${cli.adminPort}` };
  const cfg2 = join(dir, 'reload-cli.json');
  writeFileSync(cfg2, JSON.stringify(withAdmin));
  const ok = runCli(['reload', '-c', cfg2]);
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /reloaded: now serving generation \d+/);
  rmSync(join(dir, 'ca.crt'));
  const bad = runCli(['reload', '-c', cfg2]);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /reload failed, still serving generation \d+: .*ca\.crt.*\[PCL_ERR_RELOAD_FAILED\]/);
  copyFileSync(pki.ca.cert, join(dir, 'ca.crt'));
  const none = runCli(['reload', '--admin', '127.0.0.1:1']);
  assert.equal(none.status, 1);
  assert.match(none.stderr, /no portcullis admin listener answers/);
});

test('portcullis reload -c FILE with an unparsable FILE refuses, naming the file and --admin, instead of reloading whatever listens on the default address', async () => {
  const broken = join(dir, 'broken.yaml');
  writeFileSync(broken, 'listeners: [\n  - name: x\n   oops: {');
  const r = runCli(['reload', '-c', broken]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /cannot read the admin address from .*broken\.yaml.*pass --admin HOST:PORT/);
  assert.match(r.stderr, /PCL_ERR_CONFIG_PARSE/);
  assert.doesNotMatch(r.stdout, /reloaded/);
  // --admin still reaches the instance whatever the file says
  const ok = runCli(['reload', '-c', broken, '--admin', `127.0.0.1:${cli.adminPort}`]);
  assert.equal(ok.status, 0, ok.stderr);
});
