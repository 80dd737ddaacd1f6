// Regression tests for issue 15's findings about `portcullis doctor`'s verdict and output:
// - "says 'no problem found' (exit 0) when the request got a 502";
// - "prints ~140 system root CA names twice when run without --ca";
// - "says 'may be optional' on a require listener".
// Each runs the real doctor as a process against the real proxy (or a Node https server).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import tls from 'node:tls';
import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { CLI, cleanup, startCli, startEchoUpstream, tempDir, tlsListener, type EchoUpstream, type RunningCli } from '../helpers/proxy.js';

let pki: TestPki;
let dir: string;
let up: EchoUpstream;
let proxy: RunningCli;
let deadPort: number;

/** A port nothing listens on: the upstream that makes the proxy answer 502. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

before(async () => {
  dir = tempDir('pcl-doctor-verdict-');
  pki = await makeTestPki(join(dir, 'pki'));
  up = await startEchoUpstream();
  deadPort = await closedPort();
  proxy = await startCli(
    {
      listeners: [
        tlsListener(pki, {
          name: 'api',
          routes: [
            { name: 'down', match: { path: '/down' }, upstream: 'dead' },
            { name: 'ok', match: { path: '/' }, upstream: 'app' },
          ],
        }),
        tlsListener(pki, { name: 'opt', tls: { client_auth: 'optional' } }),
      ],
      upstreams: { app: { endpoints: [up.url] }, dead: { endpoints: [`http://127.0.0.1:${deadPort}`] } },
    },
    { dir },
  );
});
after(async () => {
  await proxy?.stop();
  await up?.close();
  cleanup(dir);
});

function doctor(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, 'doctor', ...args]);
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('close', (code) => resolve({ code: code ?? -1, out, err }));
  });
}

const good = () => ['--cert', pki.client.cert, '--key', pki.client.key];
const url = (path = '/', listener = 'api') => `https://localhost:${proxy.ports[listener]}${path}`;

test('doctor-502-not-no-problem: a 502 from the proxy is a problem named with its cause, and exit 1', async () => {
  const r = await doctor(url('/down'), '--ca', pki.ca.cert, ...good());
  assert.equal(r.code, 1, r.out);
  assert.doesNotMatch(r.out, /no problem found/);
  assert.match(r.out, /GET \/down -> 502/);
  assert.match(r.out, /Diagnosis: .*502 upstream_unavailable/);
  assert.match(r.out, /Fix: +\S/);
  const j = JSON.parse((await doctor(url('/down'), '--ca', pki.ca.cert, '--json', ...good())).out);
  assert.equal(j.ok, false);
  assert.equal(j.problems[0].code, 'http_502');
  // the upstream behind the good route is fine: same connection set-up, 200, exit 0
  const fine = await doctor(url('/'), '--ca', pki.ca.cert, ...good());
  assert.equal(fine.code, 0, fine.out);
  assert.match(fine.out, /Diagnosis: no problem found/);
});

test('doctor-non-2xx-not-no-problem: any answer outside 2xx (a plain server answering 500 or 404) exits 1', async (t) => {
  for (const status of [500, 404, 301]) {
    const s = https.createServer({ cert: readFileSync(pki.server.chain), key: readFileSync(pki.server.key) }, (_req, res) => {
      res.writeHead(status, status === 301 ? { location: 'https://localhost/elsewhere' } : {});
      res.end('nope');
    });
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    t.after(() => new Promise((r) => { s.closeAllConnections(); s.close(r); }));
    const r = await doctor(`https://localhost:${(s.address() as AddressInfo).port}/`, '--ca', pki.ca.cert);
    assert.equal(r.code, 1, `${status}: ${r.out}`);
    assert.doesNotMatch(r.out, /no problem found/);
    assert.match(r.out, new RegExp(`Diagnosis: .*${status}`));
  }
});

test('doctor-root-ca-names-without-ca: without --ca the system store is counted, never listed', async () => {
  const r = await doctor(url('/'), ...good());
  assert.equal(r.code, 1, r.out); // the proxy's certificate is from a private CA
  const roots = tls.rootCertificates.map((p) => new X509Certificate(p).subject.split('\n').reverse().join(','));
  const named = roots.filter((s) => r.out.includes(s));
  assert.deepEqual(named, [], 'system root CA names printed');
  assert.match(r.out, new RegExp(`${roots.length} (trusted )?CAs? (of|in) the system`));
  assert.ok(r.out.length < 6000, `output is ${r.out.length} characters long`);
});

test('doctor-require-not-optional: on a require listener doctor never says the certificate may be optional', async () => {
  for (const args of [good(), ['--cert', pki.untrusted.cert, '--key', pki.untrusted.key], ['--cert', pki.expired.cert, '--key', pki.expired.key], []]) {
    const r = await doctor(url('/'), '--ca', pki.ca.cert, ...args);
    assert.doesNotMatch(r.out, /may be optional/, `${args.join(' ')}:\n${r.out}`);
    assert.match(r.out, /the server requires a client certificate/, `${args.join(' ')}:\n${r.out}`);
    const j = JSON.parse((await doctor(url('/'), '--ca', pki.ca.cert, '--json', ...args)).out);
    assert.equal(j.client.requestState, 'required', args.join(' '));
  }
});

test('on an optional listener doctor says so: asked for, and answered without one', async () => {
  const r = await doctor(url('/', 'opt'), '--ca', pki.ca.cert, '--json', ...good());
  const j = JSON.parse(r.out);
  assert.equal(j.client.requestState, 'requested');
  const human = await doctor(url('/', 'opt'), '--ca', pki.ca.cert, ...good());
  assert.match(human.out, /asks for a client certificate and also answers without one/);
  assert.equal(human.code, 0, human.out);
});
