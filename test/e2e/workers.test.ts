// Worker processes: a SIGKILLed worker is replaced while the proxy keeps answering, TLS
// sessions resume on any worker (shared ticket keys), and SIGTERM drains every worker.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { useProxy, startCli, tempDir, cleanup, tlsListener, nodeRequest } from '../helpers/proxy.js';

const fx = useProxy(({ pki, up }) => ({ workers: 2, listeners: [tlsListener(pki)], upstreams: { app: { endpoints: [up.url] } } }));

async function workerPids(): Promise<number[]> {
  const s = (await (await fetch(`http://127.0.0.1:${fx.cli.adminPort}/status`)).json()) as { workers: { pid: number; ready: boolean }[] };
  return s.workers.filter((w) => w.ready).map((w) => w.pid);
}

const ca = () => readFileSync(fx.pki.ca.cert);
const get = () => nodeRequest({ host: '127.0.0.1', servername: 'localhost', port: fx.cli.port, path: '/w', ca: ca(), cert: readFileSync(fx.pki.client.cert), key: readFileSync(fx.pki.client.key) });

test('a worker killed with SIGKILL under load is replaced and requests keep succeeding', async () => {
  const pids = await workerPids();
  assert.equal(pids.length, 2);
  let stop = false;
  let ok = 0;
  let failed = 0;
  const load = (async () => {
    while (!stop) {
      const r = await get();
      if (r.status === 200) ok++;
      else failed++;
    }
  })();
  await new Promise((r) => setTimeout(r, 300));
  process.kill(pids[0]!, 'SIGKILL');
  // wait for a replacement worker to be ready
  const deadline = Date.now() + 20_000;
  let now = await workerPids();
  while (!(now.length === 2 && !now.includes(pids[0]!)) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    now = await workerPids();
  }
  await new Promise((r) => setTimeout(r, 300));
  stop = true;
  await load;
  assert.equal(now.length, 2, `workers: ${JSON.stringify(now)}`);
  assert.ok(!now.includes(pids[0]!));
  assert.ok(ok > 10, `ok=${ok}`);
  // only requests that were in flight on the killed worker may fail
  assert.ok(failed <= 2, `failed=${failed} ok=${ok}`);
  await waitForLog(() => fx.cli.stderr().includes('"event":"worker_exited"'));
});

test('TLS sessions resume across workers (shared ticket keys)', async () => {
  let session: Buffer | undefined;
  let reused = 0;
  let fresh = 0;
  for (let i = 0; i < 12; i++) {
    const r = await new Promise<{ reused: boolean; body: string }>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: fx.cli.port, servername: 'localhost', ca: ca(), cert: readFileSync(fx.pki.client.cert), key: readFileSync(fx.pki.client.key), session });
      s.once('session', (buf: Buffer) => (session = buf));
      let body = '';
      s.on('data', (d: Buffer) => (body += d.toString()));
      s.once('secureConnect', () => s.write('GET /r HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'));
      s.once('end', () => resolve({ reused: s.isSessionReused(), body }));
      s.once('error', reject);
    });
    assert.match(r.body, /^HTTP\/1\.1 200/);
    assert.match(r.body, /"x-client-verify":"SUCCESS"/, 'a resumed session keeps its verified identity');
    if (r.reused) reused++;
    else fresh++;
  }
  // with two workers accepting, consecutive connections land on both; every one after the
  // first must resume, whichever worker it reaches
  assert.equal(fresh, 1, `fresh=${fresh} reused=${reused}`);
});

test('a full TLS 1.3 handshake gets one session ticket (assets/openssl-worker.cnf), and it resumes', async () => {
  const connectOnce = (session?: Buffer) =>
    new Promise<{ tickets: Buffer[]; reused: boolean; version: string | null }>((resolve, reject) => {
      const tickets: Buffer[] = [];
      let version: string | null = null;
      let reused = false;
      const s = tls.connect({ host: '127.0.0.1', port: fx.cli.port, servername: 'localhost', ca: ca(), cert: readFileSync(fx.pki.client.cert), key: readFileSync(fx.pki.client.key), minVersion: 'TLSv1.3', session });
      s.on('session', (buf: Buffer) => tickets.push(buf));
      s.on('data', () => undefined);
      s.once('secureConnect', () => {
        version = s.getProtocol();
        reused = s.isSessionReused();
        s.write('GET /t HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
      });
      s.once('close', () => resolve({ tickets, reused, version }));
      s.once('error', reject);
    });
  const first = await connectOnce();
  assert.equal(first.version, 'TLSv1.3');
  // OpenSSL's default is 2 tickets per full handshake
  assert.equal(first.tickets.length, 1, 'one NewSessionTicket after a full handshake');
  const second = await connectOnce(first.tickets[0]);
  assert.equal(second.reused, true, 'the single ticket resumes');
});

async function waitForLog(pred: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('after a reload every worker serves the new certificate (round-robin scheduling reaches each worker)', async () => {
  const { issueCert } = await import('../../src/pki/issue.js');
  const { writeFileSync, copyFileSync } = await import('node:fs');
  const d = tempDir();
  copyFileSync(fx.pki.server.chain, join(d, 'server.crt'));
  copyFileSync(fx.pki.server.key, join(d, 'server.key'));
  copyFileSync(fx.pki.ca.cert, join(d, 'ca.crt'));
  const rr = await startCli(
    { workers: 2, listeners: [{ name: 'api', address: '127.0.0.1:0', tls: { cert: 'server.crt', key: 'server.key', client_ca: 'ca.crt' }, routes: [{ upstream: 'app' }] }], upstreams: { app: { endpoints: [fx.up.url] } } },
    { dir: d, env: { PORTCULLIS_SCHED: 'rr' } },
  );
  try {
    const next = await issueCert(fx.pki.handles.root, { type: 'server', cn: 'localhost', dns: ['localhost'], ip: ['127.0.0.1'] });
    writeFileSync(join(d, 'server.crt'), next.chainPem);
    writeFileSync(join(d, 'server.key'), next.keyPem);
    const r = (await (await fetch(`http://127.0.0.1:${rr.adminPort}/reload`, { method: 'POST' })).json()) as { ok: boolean; error?: string };
    assert.ok(r.ok, r.error);
    const serials: string[] = [];
    for (let i = 0; i < 6; i++) {
      serials.push(
        await new Promise<string>((resolve, reject) => {
          const s = tls.connect({ host: '127.0.0.1', port: rr.port, servername: 'localhost', ca: ca(), cert: readFileSync(fx.pki.client.cert), key: readFileSync(fx.pki.client.key) }, () => {
            resolve(s.getPeerX509Certificate()!.serialNumber);
            s.end();
          });
          s.on('error', reject);
        }),
      );
    }
    assert.deepEqual(new Set(serials), new Set([next.serial]), 'every connection (both workers, alternating) sees the new certificate');
    const st = (await (await fetch(`http://127.0.0.1:${rr.adminPort}/status`)).json()) as { generation: number; workers: { generation: number }[] };
    assert.ok(st.workers.length === 2 && st.workers.every((w) => w.generation === st.generation), JSON.stringify(st.workers));
  } finally {
    await rr.stop();
    cleanup(d);
  }
});
