// Regressions for the HTTP/1.1 fuzz findings (test/e2e/fuzz.test.ts, seed 1), each named
// after its finding and input id: over a real mTLS socket, the exact bytes the fuzz sent
// (reduced), what the client reads back, and what the upstream received.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useProxy, tlsListener } from '../helpers/proxy.js';
import { connectRaw } from '../helpers/raw-http1.js';

const fx = useProxy(({ pki, up }) => ({
  listeners: [tlsListener(pki, { routes: [{ name: 'app', match: { path: '/app' }, upstream: 'app' }, { name: 'options', match: { methods: ['OPTIONS'] }, upstream: 'app' }] })],
  upstreams: { app: { endpoints: [up.url] } },
}));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Writes `bytes`, reads until the proxy closes; returns the raw answer and what the upstream got. */
async function exchange(bytes: string | Buffer): Promise<{ raw: string; statuses: number[]; upstream: string[] }> {
  const before = fx.up.received.length;
  const c = await connectRaw(fx.cli.port, fx.pki);
  c.sock.write(bytes);
  await Promise.race([c.closed, sleep(4000)]);
  c.sock.destroy();
  // a stray forward would reach the upstream within a few ms; give it ample time
  await sleep(200);
  const raw = c.raw();
  const statuses = [...raw.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
  return { raw, statuses, upstream: fx.up.received.slice(before).map((x) => x.url) };
}

// h1:41's finding was the body of the HEAD answer below; these two guard the brief's
// reading of it (a 400 written after an answer that closed), which main already handled
test('malformed-response (h1:41, guard): a parse error in the body of a refused chunked request writes no second response', async () => {
  // a refused chunked POST (404, lingering close) whose body then turns into garbage
  const r = await exchange('POST /nowhere HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n\r\n');
  assert.deepEqual(r.statuses, [404], `one answer only, got: ${JSON.stringify(r.raw)}`);
});

test('malformed-response (h1:41): the 400 for an unparsable HEAD request has no body', async () => {
  const r = await exchange(Buffer.from('HEAD /app/x\xff\xfe HTTP/1.1\r\nHost: localhost\r\n\r\n', 'latin1'));
  assert.deepEqual(r.statuses, [400], r.raw);
  assert.ok(r.raw.endsWith('\r\n\r\n'), `nothing after the head of the answer to HEAD, got: ${JSON.stringify(r.raw)}`);
});

test('more-responses-than-requests (h1:262): a client that half-closes inside an answered request body gets no second answer', async () => {
  const before = fx.up.received.length;
  const c = await connectRaw(fx.cli.port, fx.pki);
  c.sock.write('PUT /nowhere HTTP/1.1\r\nHost: localhost\r\nContent-Length: 00000000000000000000000007\r\n\r\nabc');
  assert.equal((await c.read()).status, 404);
  c.sock.end();
  await Promise.race([c.closed, sleep(4000)]);
  const statuses = [...c.raw().matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
  assert.deepEqual(statuses, [404], c.raw());
  assert.equal(fx.up.received.length, before);
});

test('malformed-response (h1:41, guard): a parse error after a Connection: close answer writes no second response', async () => {
  const r = await exchange('GET /app/a HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n\x01\x02 not http\r\n\r\n');
  assert.deepEqual(r.statuses, [200], `one answer only, got: ${JSON.stringify(r.raw)}`);
  assert.deepEqual(r.upstream, ['/app/a']);
});

test('invalid-request-forwarded (h1:46): Transfer-Encoding in an HTTP/1.0 request gets 400 and close, nothing forwarded', async () => {
  const r = await exchange('POST /app/te10 HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /app/after HTTP/1.1\r\nHost: localhost\r\n\r\n');
  assert.deepEqual(r.statuses, [400], r.raw);
  assert.match(r.raw, /Transfer-Encoding/);
  assert.deepEqual(r.upstream, []);
});

test('invalid-request-forwarded (h1:104): HTTP/2.0 in an HTTP/1.1 request line gets 400, nothing forwarded', async () => {
  const r = await exchange('GET /app/v2 HTTP/2.0\r\nHost: localhost\r\n\r\n');
  assert.deepEqual(r.statuses, [400], r.raw);
  assert.match(r.raw, /HTTP\/2\.0/);
  assert.deepEqual(r.upstream, []);
});

test('invalid-request-forwarded (h1:533): an HTTP/0.9-style request line gets 400, nothing forwarded', async () => {
  const r = await exchange('GET /app/v09\r\nX-Client-CN: forged HTTP/1.1\r\nHost: localhost\r\n\r\n');
  assert.deepEqual(r.statuses, [400], r.raw);
  assert.deepEqual(r.upstream, []);
});

test('invalid-request-forwarded (h1:731): an invalid Host beside an absolute-form target gets 400, nothing forwarded', async () => {
  const r = await exchange('GET https://localhost/app/abs-bad-host HTTP/1.1\r\nHost: evil@localhost\r\nConnection: close\r\n\r\n');
  assert.deepEqual(r.statuses, [400], r.raw);
  assert.deepEqual(r.upstream, []);
});

test('invalid-request-forwarded (h1:1973): HTTP/1.1 with an absolute-form target and no Host gets 400, nothing forwarded', async () => {
  const r = await exchange('GET https://localhost/app/abs-no-host HTTP/1.1\r\nConnection: close\r\n\r\n');
  assert.deepEqual(r.statuses, [400], r.raw);
  assert.deepEqual(r.upstream, []);
});

test('absolute-form with a valid Host is still forwarded (the target wins)', async () => {
  const r = await exchange('GET https://localhost/app/abs-ok HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n');
  assert.deepEqual(r.statuses, [200], r.raw);
  assert.deepEqual(r.upstream, ['/app/abs-ok']);
});

test('malformed-request-to-upstream (h1:1209): a "*" target with GET gets 400, nothing forwarded', async () => {
  const r = await exchange('GET * HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
  assert.deepEqual(r.statuses, [400], r.raw);
  assert.match(r.raw, /only valid with OPTIONS/);
  assert.deepEqual(r.upstream, []);
});

test('OPTIONS * is still forwarded', async () => {
  const r = await exchange('OPTIONS * HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
  assert.deepEqual(r.statuses, [200], r.raw);
  assert.deepEqual(r.upstream, ['*']);
});
