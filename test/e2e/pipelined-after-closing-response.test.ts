// Regression (issue 12, finding 7): after a refused chunked or Expect request, or an
// HTTP/1.0 request, a pipelined follow-up request was executed upstream while the client
// never saw its answer (its connection closed after the first response). The rule now:
// requests on a connection are served one at a time, and a request pipelined behind a
// response that ends the connection is never forwarded. Every request the upstream
// receives is one whose answer the client can read.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useProxy, tlsListener } from '../helpers/proxy.js';
import { connectRaw, rawGet } from '../helpers/raw-http1.js';

const fx = useProxy(({ pki, up }) => ({
  listeners: [tlsListener(pki, { routes: [{ name: 'app', match: { path: '/app' }, upstream: 'app' }] })],
  upstreams: { app: { endpoints: [up.url] } },
}));

/** Sends `bytes` in one write; returns the statuses read until the proxy closed, and what the upstream got. */
async function exchange(bytes: string, expected: number): Promise<{ statuses: number[]; upstream: string[] }> {
  const before = fx.up.received.length;
  const c = await connectRaw(fx.cli.port, fx.pki);
  c.sock.write(bytes);
  const statuses: number[] = [];
  for (let i = 0; i < expected; i++) statuses.push((await c.read()).status);
  await c.closed;
  // a stray forward would reach the upstream within a few ms; give it ample time
  await new Promise((r) => setTimeout(r, 300));
  return { statuses, upstream: fx.up.received.slice(before).map((x) => x.url) };
}

test('a refused chunked POST with a GET pipelined behind it: one 404, the GET never reaches the upstream', async () => {
  const r = await exchange('POST /nowhere HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n' + rawGet('/app/smuggled'), 1);
  assert.deepEqual(r.statuses, [404]);
  assert.deepEqual(r.upstream, []);
});

test('a refused Expect: 100-continue request with a GET pipelined behind it: no 100, one 404, the GET never reaches the upstream', async () => {
  const r = await exchange('PUT /nowhere HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n' + rawGet('/app/smuggled'), 1);
  assert.deepEqual(r.statuses, [404]);
  assert.deepEqual(r.upstream, []);
});

test('an HTTP/1.0 request with a GET pipelined behind it: one answer, only the first request reaches the upstream', async () => {
  const r = await exchange('GET /app/first HTTP/1.0\r\nHost: localhost\r\n\r\n' + rawGet('/app/smuggled'), 1);
  assert.deepEqual(r.statuses, [200]);
  assert.deepEqual(r.upstream, ['/app/first']);
});

test('Connection: close with a GET pipelined behind it: one answer, the GET never reaches the upstream', async () => {
  const r = await exchange(rawGet('/app/first', 'Connection: close\r\n') + rawGet('/app/smuggled'), 1);
  assert.deepEqual(r.statuses, [200]);
  assert.deepEqual(r.upstream, ['/app/first']);
});

test('HTTP/1.0 with Connection: keep-alive and a pipelined GET: both answered, both forwarded, in order', async () => {
  const before = fx.up.received.length;
  const c = await connectRaw(fx.cli.port, fx.pki);
  c.sock.write('GET /app/a HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n' + rawGet('/app/b'));
  const a = await c.read();
  const b = await c.read();
  assert.deepEqual([a.status, b.status], [200, 200]);
  assert.deepEqual(fx.up.received.slice(before).map((x) => x.url), ['/app/a', '/app/b']);
  c.sock.destroy();
});

test('pipelined requests reach the upstream one at a time, never concurrently', async () => {
  const before = fx.up.received.length;
  const c = await connectRaw(fx.cli.port, fx.pki);
  let burst = '';
  for (let i = 0; i < 10; i++) burst += rawGet(`/app/p${i}`);
  c.sock.write(burst);
  for (let i = 0; i < 10; i++) assert.equal((await c.read()).status, 200);
  assert.deepEqual(fx.up.received.slice(before).map((x) => x.url), Array.from({ length: 10 }, (_, i) => `/app/p${i}`));
  c.sock.destroy();
});

test('more than 16 requests waiting behind one in flight close the connection', async () => {
  const c = await connectRaw(fx.cli.port, fx.pki);
  let burst = '';
  for (let i = 0; i < 40; i++) burst += rawGet(`/app/many${i}`);
  c.sock.write(burst);
  await c.closed;
  const answered = c.raw().split('HTTP/1.1 200').length - 1;
  assert.ok(answered < 40, `all ${answered} answered; the queue bound did not apply`);
});
