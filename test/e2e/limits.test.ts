// Listener limits through the real CLI: oversized headers get 431 and oversized bodies
// 413 (SPEC §5 JSON), and what is refused never reaches the upstream whole — in particular
// a chunked body over the limit is never passed on as if it were complete.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import http2 from 'node:http2';
import { readFileSync } from 'node:fs';
import type http from 'node:http';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { startEchoUpstream, startCli, tempDir, curl, certArgs, cleanup, tlsListener, type EchoUpstream, type RunningCli } from '../helpers/proxy.js';

const MAX_HEADER = 1024;
const MAX_BODY = 1000;

let pki: TestPki;
let dir: string;
let cli: RunningCli;
let up: EchoUpstream;

/** Every request the upstream saw begin, by path: body bytes so far and whether it ended normally. */
const seen = new Map<string, { bytes: number; complete: boolean }>();

before(async () => {
  dir = tempDir();
  pki = await makeTestPki(`${dir}/pki`);
  up = await startEchoUpstream((req) => {
    const path = req.url ?? '';
    const s = { bytes: 0, complete: false };
    seen.set(path, s);
    req.on('data', (c: Buffer) => (s.bytes += c.length));
    req.on('end', () => (s.complete = true));
    return false; // the echo answers once the body has ended
  });
  cli = await startCli(
    {
      listeners: [tlsListener(pki, { limits: { max_header_bytes: MAX_HEADER, max_body_bytes: MAX_BODY } })],
      upstreams: { app: { endpoints: [up.url] } },
    },
    { dir },
  );
});

after(async () => {
  await cli?.stop();
  await up?.close();
  cleanup(dir);
});

const url = (path: string) => `https://localhost:${cli.port}${path}`;

interface Res {
  status?: number;
  headers?: http.IncomingHttpHeaders;
  body: string;
  error?: NodeJS.ErrnoException;
}

/**
 * A POST with the good client certificate. `chunks` are written one by one, `gapMs` apart
 * (no content-length: chunked), or `body` is sent whole with its content-length.
 */
function post(path: string, opts: { body?: Buffer; chunks?: Buffer[]; gapMs?: number }): Promise<Res> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (r: Res) => {
      if (!settled) {
        settled = true;
        resolve(r);
      }
    };
    const req = https.request(
      {
        host: '127.0.0.1',
        servername: 'localhost',
        port: cli.port,
        path,
        method: 'POST',
        agent: false,
        headers: opts.body ? { 'content-type': 'application/octet-stream', 'content-length': opts.body.length } : { 'content-type': 'application/octet-stream' },
        ca: readFileSync(pki.ca.cert),
        cert: readFileSync(pki.client.cert),
        key: readFileSync(pki.client.key),
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => done({ status: res.statusCode, headers: res.headers, body }));
        res.on('error', (error) => done({ status: res.statusCode, headers: res.headers, body, error }));
      },
    );
    // a proxy that answers early may reset while the client is still writing
    req.on('error', (error) => done({ body: '', error }));
    if (opts.body) {
      req.end(opts.body);
      return;
    }
    const chunks = [...(opts.chunks ?? [])];
    const next = () => {
      if (req.destroyed) return;
      const c = chunks.shift();
      if (!c) {
        req.end();
        return;
      }
      req.write(c);
      setTimeout(next, opts.gapMs ?? 0);
    };
    next();
  });
}

function assertJsonError(body: string, code: string): void {
  let j: { error?: string; message?: string; request_id?: string };
  try {
    j = JSON.parse(body) as typeof j;
  } catch {
    assert.fail(`expected a JSON error body, got: ${body}`);
  }
  assert.deepEqual(Object.keys(j).sort(), ['error', 'message', 'request_id']);
  assert.equal(j.error, code);
  assert.ok(typeof j.message === 'string' && j.message.length > 10);
  assert.ok(typeof j.request_id === 'string' && j.request_id.length > 0);
}

for (const proto of ['--http1.1', '--http2'] as const) {
  test(`headers over max_header_bytes (${MAX_HEADER}) get 431 headers_too_large and never reach the upstream (curl ${proto})`, async () => {
    const path = `/big-header${proto}`;
    const r = await curl(url(path), [...certArgs(pki.ca.cert, pki.client), proto, '-H', `X-Big: ${'a'.repeat(4096)}`]);
    assert.equal(r.status, 431, `${r.stderr}${r.body}`);
    assertJsonError(r.body, 'headers_too_large');
    assert.equal(seen.has(path), false);
  });

  test(`headers within max_header_bytes pass (curl ${proto})`, async () => {
    const path = `/small-header${proto}`;
    const r = await curl(url(path), [...certArgs(pki.ca.cert, pki.client), proto, '-H', `X-Small: ${'a'.repeat(400)}`]);
    assert.equal(r.status, 200, `${r.stderr}${r.body}`);
    assert.equal(seen.get(path)?.complete, true);
  });
}

test(`a ${MAX_BODY * 5}-byte content-length body gets 413 body_too_large and the upstream never sees the request`, async () => {
  const r = await post('/cl-too-big', { body: Buffer.alloc(MAX_BODY * 5, 0x61) });
  assert.equal(r.status, 413, r.error?.message);
  assertJsonError(r.body, 'body_too_large');
  assert.equal(seen.has('/cl-too-big'), false, 'the upstream saw the request');
  // and over HTTP/2, where the length is announced in the content-length header too
  const c = await curl(url('/cl-too-big-h2'), [...certArgs(pki.ca.cert, pki.client), '--http2', '--data-binary', 'x'.repeat(MAX_BODY + 1)]);
  assert.equal(c.status, 413, `${c.stderr}${c.body}`);
  assertJsonError(c.body, 'body_too_large');
  assert.equal(seen.has('/cl-too-big-h2'), false);
});

test('a content-length body of exactly max_body_bytes passes intact', async () => {
  const r = await post('/cl-at-limit', { body: Buffer.alloc(MAX_BODY, 0x62) });
  assert.equal(r.status, 200, r.error?.message);
  assert.deepEqual(seen.get('/cl-at-limit'), { bytes: MAX_BODY, complete: true });
  assert.equal((JSON.parse(r.body) as { bodyBytes: number }).bodyBytes, MAX_BODY);
});

test('a chunked body over max_body_bytes gets 413 (or a reset) and the upstream never receives it whole', async (t) => {
  const chunks = Array.from({ length: 10 }, (_, i) => Buffer.alloc(500, 0x30 + i)); // 5000 bytes
  const r = await post('/chunked-too-big', { chunks, gapMs: 20 });
  if (r.status !== undefined) {
    assert.equal(r.status, 413, `got ${r.status} ${r.body}`);
    assertJsonError(r.body, 'body_too_large');
  } else {
    assert.match(String(r.error?.code), /ECONNRESET|EPIPE/, `neither a 413 nor a reset: ${r.error?.message}`);
  }
  // give the upstream side a moment to see its request end, however it ends
  await new Promise((res) => setTimeout(res, 200));
  const s = seen.get('/chunked-too-big');
  t.diagnostic(`client: ${r.status ?? r.error?.code}; upstream: ${s ? `${s.bytes} bytes, complete=${s.complete}` : 'never saw it'}`);
  if (s) {
    assert.equal(s.complete, false, `the upstream was handed a complete body of ${s.bytes} bytes: the proxy ended a body it had cut`);
    assert.ok(s.bytes <= MAX_BODY, `the upstream received ${s.bytes} bytes, more than max_body_bytes ${MAX_BODY}`);
  }
});

test('a chunked body within max_body_bytes passes intact', async () => {
  const chunks = Array.from({ length: 4 }, (_, i) => Buffer.alloc(200, 0x41 + i)); // 800 bytes
  const r = await post('/chunked-ok', { chunks, gapMs: 5 });
  assert.equal(r.status, 200, r.error?.message);
  assert.deepEqual(seen.get('/chunked-ok'), { bytes: 800, complete: true });
});

test('an HTTP/2 body without content-length over max_body_bytes gets 413 (or a stream reset) and the upstream never receives it whole', async (t) => {
  const session = http2.connect(`https://localhost:${cli.port}`, {
    ca: readFileSync(pki.ca.cert),
    cert: readFileSync(pki.client.cert),
    key: readFileSync(pki.client.key),
  });
  t.after(() => session.close());
  session.on('error', () => undefined);
  const r = await new Promise<{ status?: number; body: string; error?: string }>((resolve) => {
    const req = session.request({ ':method': 'POST', ':path': '/h2-too-big', 'content-type': 'application/octet-stream' });
    let status: number | undefined;
    let body = '';
    req.setEncoding('utf8');
    req.on('response', (h) => (status = Number(h[':status'])));
    req.on('data', (d: string) => (body += d));
    req.on('end', () => resolve({ status, body }));
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ status, body, error: e.code ?? e.message }));
    let i = 0;
    const next = () => {
      if (req.destroyed || req.writableEnded) return;
      if (i++ === 10) return void req.end();
      req.write(Buffer.alloc(500, 0x61));
      setTimeout(next, 20);
    };
    next();
  });
  if (r.status !== undefined) {
    assert.equal(r.status, 413, `got ${r.status} ${r.body}`);
    assertJsonError(r.body, 'body_too_large');
  } else {
    assert.ok(r.error, 'neither a response nor an error');
  }
  await new Promise((res) => setTimeout(res, 200));
  const s = seen.get('/h2-too-big');
  t.diagnostic(`client: ${r.status ?? r.error}; upstream: ${s ? `${s.bytes} bytes, complete=${s.complete}` : 'never saw it'}`);
  if (s) {
    assert.equal(s.complete, false, `the upstream was handed a complete body of ${s.bytes} bytes`);
    assert.ok(s.bytes <= MAX_BODY, `the upstream received ${s.bytes} bytes, more than max_body_bytes ${MAX_BODY}`);
  }
});
