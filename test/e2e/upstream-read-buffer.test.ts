// A cleartext HTTP/1.1 upstream is read into one buffer per connection, and response body
// bytes go to the client as views of it (src/upstream/h1-conn.ts, "Read buffer"). The next
// read must never overwrite bytes still queued for a client. These downloads are random
// bytes (any overwrite changes the hash), sent by the upstream in pieces of varying size,
// to clients that stop reading now and then so the proxy's writes queue up: HTTP/1.1 and
// HTTP/2 clients, one at a time and several at once over the same upstream connections.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { request as plainRequest } from 'node:http';
import http2 from 'node:http2';
import { readFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import type http from 'node:http';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { startEchoUpstream, startCli, tempDir, cleanup, tlsListener, type EchoUpstream, type RunningCli } from '../helpers/proxy.js';

const MB = 1024 * 1024;
const BODY = randomBytes(24 * MB);
const SHA = createHash('sha256').update(BODY).digest('hex');

let pki: TestPki;
let dir: string;
let cli: RunningCli;
let up: EchoUpstream;
let tls: { ca: Buffer; cert: Buffer; key: Buffer };

/**
 * Sends BODY with a content-length, in pieces of 1 B to 200 KiB, waiting for 'drain'.
 * drip: 1-4 KiB pieces, each on its own turn of the event loop, so the proxy's reads are
 * small and arrive while its writes to a paused client are still queued.
 */
async function sendBody(res: http.ServerResponse, drip: boolean): Promise<void> {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BODY.length });
  let off = 0;
  for (let i = 0; off < BODY.length; i++) {
    const want = drip ? 1024 + ((i * 7919) % 3072) : i % 7 === 0 ? 1 + (i % 13) : 1 + ((i * 7919) % (200 * 1024));
    const n = Math.min(BODY.length - off, want);
    const ok = res.write(BODY.subarray(off, off + n));
    off += n;
    if (!ok) await new Promise((r) => res.once('drain', r));
    else if (drip) await new Promise((r) => setImmediate(r));
    if (res.destroyed) return;
  }
  res.end();
}

before(async () => {
  dir = tempDir();
  pki = await makeTestPki(`${dir}/pki`);
  tls = { ca: readFileSync(pki.ca.cert), cert: readFileSync(pki.client.cert), key: readFileSync(pki.client.key) };
  up = await startEchoUpstream((req, res) => {
    if (!req.url?.startsWith('/random')) return false;
    req.resume();
    void sendBody(res, req.url.includes('drip'));
    return true;
  });
  // a plain listener too (loopback): its client socket holds unsent bytes by reference
  const plain = { name: 'plain', address: '127.0.0.1:0', routes: [{ upstream: 'app' }] };
  cli = await startCli({ workers: 1, listeners: [tlsListener(pki), plain], upstreams: { app: { endpoints: [up.url] } } }, { dir });
});

after(async () => {
  await cli?.stop();
  await up?.close();
  cleanup(dir);
});

/** Reads a response stream, pausing for 20 ms after every ~1 MB; resolves with its length and sha256. */
function slowRead(stream: NodeJS.ReadableStream & { pause(): unknown; resume(): unknown }): Promise<{ bytes: number; sha: string }> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    let n = 0;
    let since = 0;
    stream.on('data', (c: Buffer) => {
      h.update(c);
      n += c.length;
      since += c.length;
      if (since >= MB) {
        since = 0;
        stream.pause();
        setTimeout(() => stream.resume(), 20);
      }
    });
    stream.on('end', () => resolve({ bytes: n, sha: h.digest('hex') }));
    stream.on('error', reject);
  });
}

function h1Download(path = '/random', plain = false): Promise<{ status?: number; bytes: number; sha: string }> {
  return new Promise((resolve, reject) => {
    const onRes = (res: http.IncomingMessage) => {
      slowRead(res).then((r) => resolve({ status: res.statusCode, ...r }), reject);
    };
    const req = plain
      ? plainRequest({ host: '127.0.0.1', port: cli.ports.plain, path, agent: false }, onRes)
      : https.request({ host: '127.0.0.1', servername: 'localhost', port: cli.port, path, agent: false, ...tls }, onRes);
    req.on('error', reject);
    req.end();
  });
}

async function h2Downloads(count: number): Promise<{ status?: number; bytes: number; sha: string }[]> {
  const s = http2.connect(`https://localhost:${cli.port}`, tls);
  try {
    return await Promise.all(
      Array.from({ length: count }, () => {
        const st = s.request({ ':path': '/random' });
        const status = new Promise<number>((r) => st.once('response', (h) => r(Number(h[':status']))));
        st.end();
        return Promise.all([status, slowRead(st)]).then(([status, r]) => ({ status, ...r }));
      }),
    );
  } finally {
    s.close();
  }
}

test('HTTP/1.1: a 24 MB random download to a client that pauses arrives byte-exact', async () => {
  const r = await h1Download();
  assert.equal(r.status, 200);
  assert.equal(r.bytes, BODY.length);
  assert.equal(r.sha, SHA);
});

test('HTTP/1.1: four such downloads at once, then four more on the reused upstream connections, all byte-exact', async () => {
  for (let round = 0; round < 2; round++) {
    const all = await Promise.all([h1Download(), h1Download(), h1Download(), h1Download()]);
    for (const r of all) assert.deepEqual(r, { status: 200, bytes: BODY.length, sha: SHA });
  }
});

test('HTTP/1.1: a download the upstream sends in small pieces, to a client that pauses, arrives byte-exact', async () => {
  const all = await Promise.all([h1Download('/random/drip'), h1Download('/random/drip')]);
  for (const r of all) assert.deepEqual(r, { status: 200, bytes: BODY.length, sha: SHA });
});

test('HTTP/1.1 on a plain listener: downloads in large and small pieces to clients that pause arrive byte-exact', async () => {
  const all = await Promise.all([h1Download('/random', true), h1Download('/random/drip', true)]);
  for (const r of all) assert.deepEqual(r, { status: 200, bytes: BODY.length, sha: SHA });
});

test('HTTP/2: three streams of one session downloading at once with pauses, all byte-exact', async () => {
  const all = await h2Downloads(3);
  for (const r of all) assert.deepEqual(r, { status: 200, bytes: BODY.length, sha: SHA });
});
