// The OCSP lookup without the proxy: HTTP failures become outcomes (never exceptions),
// concurrent handshakes of one certificate share one request, answers are cached for
// ocsp.cache but never past nextUpdate, and failures only briefly.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { createCA, issueCert } from '../pki/issue.js';
import { buildIdentity } from '../pki/identity.js';
import { buildOcspCheck, cachedUntil, clearOcspCache, postOcsp, queryOcsp } from './ocsp-check.js';
import { writeIndex, writeCaFiles, respondOnce, type ResponderFiles } from '../../test/helpers/ocsp-responder.js';

let dir: string;
let server: http.Server;
let url: string;
let requests = 0;
/** what the test server does with the next requests */
let behaviour: 'respond' | 'http500' | 'huge' | 'hang' = 'respond';
let files: ResponderFiles;
let issuer: X509Certificate;
let leaf: X509Certificate;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pcl-ocspc-'));
  const ca = await createCA({ name: 'Check CA' });
  const l = await issueCert(ca, { type: 'client', cn: 'leaf' });
  issuer = new X509Certificate(ca.certPem);
  leaf = new X509Certificate(l.certPem);
  const caFiles = writeCaFiles(dir, 'ca', ca);
  const index = join(dir, 'index.txt');
  writeIndex(index, [{ serial: l.serial }]);
  files = { index, ca: caFiles.cert, signerCert: caFiles.cert, signerKey: caFiles.key, nmin: 10 };
  server = http.createServer((req, res) => {
    requests++;
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => {
      if (behaviour === 'hang') return;
      if (behaviour === 'http500') return void res.writeHead(500).end('no');
      if (behaviour === 'huge') return void res.writeHead(200).end(Buffer.alloc(100_000));
      // a little latency, so concurrent lookups overlap
      setTimeout(() => res.writeHead(200, { 'content-type': 'application/ocsp-response' }).end(respondOnce(dir, files, Buffer.concat(chunks))), 100);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  rmSync(dir, { recursive: true, force: true });
});

test('HTTP errors, oversized answers and silence are failures with a reason', async () => {
  behaviour = 'http500';
  await assert.rejects(postOcsp(url, Buffer.from('x'), 2000), /HTTP 500/);
  behaviour = 'huge';
  await assert.rejects(postOcsp(url, Buffer.from('x'), 2000), /larger than 65536 bytes/);
  behaviour = 'hang';
  const t = Date.now();
  const o = await queryOcsp(url, leaf, issuer, 300);
  assert.equal(o.kind, 'failed');
  assert.match(o.detail, /unreachable: no answer within 300 ms/);
  assert.ok(Date.now() - t < 2000);
  behaviour = 'respond';
});

test('concurrent handshakes of one certificate share one lookup, and the answer is cached', async () => {
  clearOcspCache();
  const check = buildOcspCheck({ mode: 'hard', responder: url, cache: 60_000, timeout: 5000 }, [issuer])!;
  const id = buildIdentity(leaf, []);
  const before = requests;
  const results = await Promise.all(Array.from({ length: 5 }, () => check(leaf, [], id)));
  assert.deepEqual(results, [undefined, undefined, undefined, undefined, undefined]);
  assert.equal(requests - before, 1);
  assert.equal(await check(leaf, [], id), undefined);
  assert.equal(requests - before, 1);
});

test('cache lifetime: ocsp.cache, never past nextUpdate; failures at most 10 s', () => {
  const t = 1_000_000;
  assert.equal(cachedUntil({ kind: 'good', detail: '', fetchedAt: t, nextUpdate: undefined }, 300_000), t + 300_000);
  assert.equal(cachedUntil({ kind: 'good', detail: '', fetchedAt: t, nextUpdate: t + 60_000 }, 300_000), t + 60_000);
  assert.equal(cachedUntil({ kind: 'revoked', detail: '', fetchedAt: t, nextUpdate: t + 600_000 }, 300_000), t + 300_000);
  assert.equal(cachedUntil({ kind: 'failed', detail: '', fetchedAt: t, nextUpdate: undefined }, 300_000), t + 10_000);
  assert.equal(cachedUntil({ kind: 'good', detail: '', fetchedAt: t, nextUpdate: undefined }, 0), t);
});

test('mode off builds no check', () => {
  assert.equal(buildOcspCheck({ mode: 'off', cache: 1, timeout: 1 }, []), undefined);
});
