// The admin listener and metrics end to end: a request through the proxy moves the right
// counters, a failed handshake is classified, /readyz follows the workers, /status shows
// the certificates.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { useProxy, tempDir, curl, certArgs, cleanup, tlsListener, CLI } from '../helpers/proxy.js';

const fx = useProxy(({ pki, up }) => ({
    listeners: [tlsListener(pki, { routes: [{ name: 'echo', upstream: 'app' }] })],
    upstreams: { app: { endpoints: [up.url] } } }));

const admin = (path: string, init?: RequestInit) => fetch(`http://127.0.0.1:${fx.cli.adminPort}${path}`, init);

function metricValue(text: string, name: string, labels: Record<string, string>): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{')) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}

test('healthz and readyz answer once the workers listen', async () => {
  assert.equal((await admin('/healthz')).status, 200);
  const r = await admin('/readyz');
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), { status: 'ready' });
});

test('a request through the proxy moves requests_total, authz and the duration histogram', async () => {
  const before = await (await admin('/metrics')).text();
  const n0 = metricValue(before, 'portcullis_requests_total', { listener: 'api', route: 'echo', code: '200' });
  const r = await curl(`https://localhost:${fx.cli.port}/m`, certArgs(fx.pki.ca.cert, fx.pki.client));
  assert.equal(r.status, 200);
  const text = await (await admin('/metrics')).text();
  assert.equal(metricValue(text, 'portcullis_requests_total', { listener: 'api', route: 'echo', code: '200' }), n0 + 1);
  assert.ok(metricValue(text, 'portcullis_authz_decisions_total', { listener: 'api', route: 'echo', decision: 'allow' }) >= 1);
  assert.ok(metricValue(text, 'portcullis_request_duration_seconds_count', { listener: 'api', route: 'echo' }) >= 1);
  assert.ok(metricValue(text, 'portcullis_tls_handshakes_total', { listener: 'api', result: 'ok' }) >= 1);
});

test('a failed handshake with an expired certificate increments result="expired"', async () => {
  const before = metricValue(await (await admin('/metrics')).text(), 'portcullis_tls_handshakes_total', { listener: 'api', result: 'expired' });
  const r = await curl(`https://localhost:${fx.cli.port}/x`, certArgs(fx.pki.ca.cert, fx.pki.expired));
  assert.notEqual(r.code, 0);
  const after = metricValue(await (await admin('/metrics')).text(), 'portcullis_tls_handshakes_total', { listener: 'api', result: 'expired' });
  assert.equal(after, before + 1);
  const none = await curl(`https://localhost:${fx.cli.port}/x`, certArgs(fx.pki.ca.cert));
  assert.notEqual(none.code, 0);
  assert.ok(metricValue(await (await admin('/metrics')).text(), 'portcullis_tls_handshakes_total', { listener: 'api', result: 'no_cert' }) >= 1);
});

test('certificate expiry gauges cover the server certificate and the client CA', async () => {
  const text = await (await admin('/metrics')).text();
  const lines = text.split('\n').filter((l) => l.startsWith('portcullis_certificate_expiry_timestamp_seconds{'));
  assert.ok(lines.some((l) => l.includes('role="server"') && l.includes('subject="CN=localhost"')), lines.join('\n'));
  assert.ok(lines.some((l) => l.includes('role="client_ca"') && l.includes('CN=Test Root CA')), lines.join('\n'));
  const v = Number(lines[0]!.slice(lines[0]!.lastIndexOf(' ') + 1));
  assert.ok(v > Date.now() / 1000, 'expiry is in the future, in seconds');
});

test('/status lists version, workers, listeners and certificates with days left', async () => {
  const s = (await (await admin('/status')).json()) as { version: string; workers: unknown[]; listeners: { name: string }[]; certificates: { role: string; days_left: number; not_after: string }[]; generation: number };
  assert.match(s.version, /^\d+\.\d+\.\d+/);
  assert.equal(s.workers.length, 1);
  assert.equal(s.listeners[0]!.name, 'api');
  const server = s.certificates.find((c) => c.role === 'server')!;
  assert.ok(server.days_left > 80 && server.days_left <= 90, String(server.days_left));
  assert.equal(s.generation, 1);
});

test('/readyz is 503 before the listeners are bound', async () => {
  // a worker that cannot bind (port taken by the running proxy) never becomes ready
  const d = tempDir();
  const cfg = join(d, 'p.json');
  writeFileSync(cfg, JSON.stringify({ workers: 1, admin: { address: '127.0.0.1:0' }, log: { level: 'info', access: 'off' }, listeners: [tlsListener(fx.pki, { address: `127.0.0.1:${fx.cli.port}` })], upstreams: { app: { endpoints: [fx.up.url] } } }));
  const p = spawn(process.execPath, [CLI, 'run', '-c', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  const adminPort = await new Promise<number>((resolve, reject) => {
    p.stderr.on('data', (b: Buffer) => {
      err += b.toString();
      const m = /"event":"admin_listening","address":"[^"]*:(\d+)"/.exec(err);
      if (m) resolve(Number(m[1]));
    });
    p.once('exit', () => reject(new Error(err)));
  });
  // the admin listener is up before any worker is forked; this worker will fail to bind
  const r = await fetch(`http://127.0.0.1:${adminPort}/readyz`);
  assert.equal(r.status, 503);
  assert.deepEqual(await r.json(), { status: 'not_ready' });
  const code = await new Promise<number | null>((resolve) => p.once('exit', (c) => resolve(c)));
  assert.equal(code, 1, err);
  assert.match(err, /cannot listen on|EADDRINUSE/);
  cleanup(d);
});
