// Admin access control (issue 15 item 2): a non-loopback admin address is refused at start
// (run and check) unless admin.tls and admin.allow are set; with them, the admin API wants
// a client certificate from its own client_ca (not the listeners' CA) that admin.allow
// names, checked with real curl; `portcullis reload` reaches it with --admin-cert/-key/-ca;
// and admin.probe_address serves /healthz and /readyz in plain HTTP and nothing else.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { startEchoUpstream, startCli, tempDir, cleanup, tlsListener, curl, runCli, type EchoUpstream, type RunningCli } from '../helpers/proxy.js';
import { freePort } from '../helpers/upstream-process.js';
import { jsonError } from '../helpers/raw-clients.js';
import { issueCert } from '../../src/pki/issue.js';

let pki: TestPki;
let up: EchoUpstream;
let cli: RunningCli;
let dir: string;
let probePort: number;
/** certificates from "Other Root CA", the admin listener's own client CA */
const ops: Record<'admin' | 'viewer', { cert: string; key: string }> = {} as never;

function config(admin: Record<string, unknown>): Record<string, unknown> {
  return {
    admin,
    listeners: [tlsListener(pki, { name: 'api' })],
    upstreams: { app: { endpoints: [up.url] } },
  };
}

const adminTls = () => ({ cert: pki.server.chain, key: pki.server.key, client_ca: pki.otherCa.cert });

before(async () => {
  dir = tempDir();
  pki = await makeTestPki(join(dir, 'pki'));
  for (const [name, cn] of [['admin', 'ops-admin'], ['viewer', 'ops-viewer']] as const) {
    const c = await issueCert(pki.handles.other, { type: 'client', cn, o: ['Example Ops'] });
    ops[name] = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
    writeFileSync(ops[name].cert, c.certPem);
    writeFileSync(ops[name].key, c.keyPem, { mode: 0o600 });
  }
  up = await startEchoUpstream();
  probePort = await freePort();
  cli = await startCli(config({ address: '0.0.0.0:0', tls: adminTls(), allow: [{ cn: 'ops-admin' }], probe_address: `127.0.0.1:${probePort}` }), { dir });
  await cli.waitLog(/"event":"probe_listening"/);
});

after(async () => {
  await cli?.stop();
  await up?.close();
  cleanup(dir);
});

const adminUrl = (path: string) => `https://localhost:${cli.adminPort}${path}`;
const who = (c?: { cert: string; key: string }) => ['--cacert', pki.ca.cert, ...(c ? ['--cert', c.cert, '--key', c.key] : [])];

test('a non-loopback admin address without admin.tls and admin.allow is refused by run and check with one sentence', () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ address: '0.0.0.0:0' }, /admin\.address: 0\.0\.0\.0:0 is not a loopback address and admin\.tls and admin\.allow are not set, but the admin API can reload the proxy and shows its state; keep it on 127\.0\.0\.1 \(for Kubernetes probes set admin\.probe_address\), or add admin\.tls \(cert, key, client_ca\) and admin\.allow rules naming the clients that may use it/],
    [{ address: '0.0.0.0:0', tls: adminTls() }, /admin\.address: 0\.0\.0\.0:0 is not a loopback address and admin\.allow is not set/],
    [{ address: '0.0.0.0:0', allow_remote: true }, /admin\.allow_remote: no longer accepted: .*admin\.probe_address.*admin\.tls/],
  ];
  for (const [admin, sentence] of cases) {
    const file = join(dir, `refused-${Math.random().toString(16).slice(2)}.json`);
    writeFileSync(file, JSON.stringify({ workers: 1, ...config(admin) }));
    for (const verb of ['check', 'run']) {
      const r = runCli([verb, '-c', file], { timeoutMs: 15_000 });
      assert.equal(r.status, 1, `${verb} ${JSON.stringify(admin)}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, sentence, `${verb}: ${r.stderr}`);
    }
  }
});

test('mTLS admin: no client certificate gets 401 client_certificate_required', async () => {
  const r = await curl(adminUrl('/status'), who());
  assert.equal(r.status, 401, r.stderr);
  assert.equal(jsonError(r.body).error, 'client_certificate_required');
  assert.match(jsonError(r.body).message ?? '', /admin\.tls\.client_ca/);
});

test('mTLS admin: a certificate from another CA (the listeners\' own) gets 403 client_certificate_invalid naming unknown_ca', async () => {
  const r = await curl(adminUrl('/status'), who(pki.client));
  assert.equal(r.status, 403, r.stderr);
  const body = jsonError(r.body);
  assert.equal(body.error, 'client_certificate_invalid');
  assert.match(body.message ?? '', /^unknown_ca: the client certificate is not signed by a CA this listener trusts/);
  await cli.waitLog(/"event":"admin_refused".*"reason":"unknown_ca"/);
});

test('mTLS admin: a certificate of the right CA that admin.allow does not name gets 403 forbidden, also for POST /reload', async () => {
  for (const [method, path] of [['GET', '/status'], ['POST', '/reload']] as const) {
    const r = await curl(adminUrl(path), [...who(ops.viewer), '-X', method]);
    assert.equal(r.status, 403, r.stderr);
    const body = jsonError(r.body);
    assert.equal(body.error, 'forbidden');
    assert.match(body.message ?? '', /not allowed to use the admin API \(no allow rule matched\); add a rule for it to admin\.allow/);
  }
  const status = jsonError((await curl(adminUrl('/status'), who(ops.admin))).body) as { generation?: number };
  assert.equal(status.generation, 1, 'the refused POST /reload did not reload');
});

test('mTLS admin: the allowed certificate gets /status and POST /reload works', async () => {
  const s = await curl(adminUrl('/status'), who(ops.admin));
  assert.equal(s.status, 200, s.stderr);
  assert.ok((JSON.parse(s.body) as { listeners: unknown[] }).listeners.length > 0);
  const m = await curl(adminUrl('/metrics'), who(ops.admin));
  assert.equal(m.status, 200);
  assert.match(m.body, /portcullis_tls_handshakes_total/);
  const r = await curl(adminUrl('/reload'), [...who(ops.admin), '-X', 'POST']);
  assert.equal(r.status, 200, r.body);
  assert.equal((JSON.parse(r.body) as { ok: boolean }).ok, true);
});

test('portcullis reload reaches the mTLS admin with --admin-cert/--admin-key/--admin-ca, and says what it needs without them', () => {
  const target = `127.0.0.1:${cli.adminPort}`;
  const ok = runCli(['reload', '--admin', target, '--admin-cert', ops.admin.cert, '--admin-key', ops.admin.key, '--admin-ca', pki.ca.cert]);
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /^reloaded: now serving generation \d+/);
  const refused = runCli(['reload', '--admin', target, '--admin-cert', ops.viewer.cert, '--admin-key', ops.viewer.key, '--admin-ca', pki.ca.cert]);
  assert.equal(refused.status, 1);
  assert.match(refused.stderr, /refused this client \(HTTP 403\): this client certificate is not allowed to use the admin API/);
  const half = runCli(['reload', '--admin', target, '--admin-cert', ops.admin.cert]);
  assert.equal(half.status, 2);
  assert.match(half.stderr, /--admin-cert, --admin-key and --admin-ca go together/);
  const file = join(dir, 'tls-admin.json');
  writeFileSync(file, JSON.stringify({ admin: { address: target, tls: adminTls(), allow: [{ cn: 'ops-admin' }] } }));
  const none = runCli(['reload', '-c', file]);
  assert.equal(none.status, 2);
  assert.match(none.stderr, /requires a client certificate \(admin\.tls\); pass --admin-cert, --admin-key and --admin-ca/);
});

test('probe_address serves /healthz and /readyz in plain HTTP and 404s everything else, /status and /reload included', async () => {
  const probe = (path: string, init?: RequestInit) => fetch(`http://127.0.0.1:${probePort}${path}`, init);
  assert.equal((await probe('/healthz')).status, 200);
  const ready = await probe('/readyz');
  assert.equal(ready.status, 200);
  assert.deepEqual(await ready.json(), { status: 'ready' });
  for (const [path, init] of [['/status', undefined], ['/metrics', undefined], ['/reload', { method: 'POST' }], ['/ui', undefined]] as const) {
    const r = await probe(path, init);
    assert.equal(r.status, 404, path);
    const body = (await r.json()) as { error: string; message: string };
    assert.equal(body.error, 'not_found');
    assert.match(body.message, /it serves only GET \/healthz and GET \/readyz; the admin API is on admin\.address/);
  }
  assert.equal((await probe('/readyz', { method: 'POST' })).status, 405);
  // nothing reloaded through the probe port
  const s = JSON.parse((await curl(adminUrl('/status'), who(ops.admin))).body) as { last_reload_trigger?: string; generation: number };
  assert.ok(s.generation >= 2);
});

test('a reload applies changed admin.allow rules to new admin connections (no restart)', async () => {
  const before = await curl(adminUrl('/status'), who(ops.viewer));
  assert.equal(before.status, 403);
  const file = join(dir, readdirSync(dir).find((f) => /^portcullis-.*\.json$/.test(f))!);
  const cfg = JSON.parse(readFileSync(file, 'utf8')) as { admin: { allow: unknown[] } };
  cfg.admin.allow = [{ cn: ['ops-admin', 'ops-viewer'] }];
  writeFileSync(file, JSON.stringify(cfg, null, 2));
  const r = await curl(adminUrl('/reload'), [...who(ops.admin), '-X', 'POST']);
  assert.equal(r.status, 200, r.body);
  const after = await curl(adminUrl('/status'), who(ops.viewer));
  assert.equal(after.status, 200, after.body);
});
