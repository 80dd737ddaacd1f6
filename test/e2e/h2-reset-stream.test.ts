// Regression (fuzz finding incomplete-request-forwarded-as-complete, h2:7 and 217 more):
// an HTTP/2 stream the client reset (RST_STREAM, any code) before END_STREAM reached the
// upstream as a complete request. Node ends a server stream's readable side the same way
// for END_STREAM and for a reset, and pipe() then ended the request body normally, so the
// upstream got a truncated body (or a body-less request) as if the client had sent it all.
// A reset request must fail upstream, never complete there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { useProxy, tlsListener } from '../helpers/proxy.js';
import { h2Request } from '../helpers/raw-clients.js';
import { F, PREFACE, T, frame, settings, u32 } from '../helpers/fuzz-h2-wire.js';

const fx = useProxy(({ pki, up }) => ({
  listeners: [tlsListener(pki, { routes: [{ name: 'app', match: { path: '/app' }, upstream: 'app' }] })],
  upstreams: { app: { endpoints: [up.url] } },
}));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const lit = (n: string, v: string) => Buffer.concat([Buffer.from([0, n.length]), Buffer.from(n), Buffer.from([v.length]), Buffer.from(v)]);

/**
 * Raw frames, so the wire is exactly what the test says: HEADERS without END_STREAM, then
 * `chunk` as DATA without END_STREAM, then (after the proxy has started forwarding)
 * RST_STREAM with `code`. Node's http2 client cannot do this with close(): it sends an
 * empty END_STREAM DATA frame before its RST_STREAM.
 */
async function resetMidRequest(path: string, method: string, chunk: string | undefined, code: number): Promise<void> {
  const s = tls.connect({ host: '127.0.0.1', port: fx.cli.port, servername: 'localhost', ALPNProtocols: ['h2'], ca: readFileSync(fx.pki.ca.cert), cert: readFileSync(fx.pki.client.cert), key: readFileSync(fx.pki.client.key) });
  s.on('error', () => undefined);
  s.on('data', () => undefined);
  await new Promise<void>((r) => s.once('secureConnect', () => r()));
  const block = Buffer.concat([lit(':method', method), lit(':scheme', 'https'), lit(':path', path), lit(':authority', 'localhost')]);
  s.write(Buffer.concat([PREFACE, settings([]), settings([], true), frame(T.HEADERS, F.END_HEADERS, 1, block)]));
  if (chunk !== undefined) s.write(frame(T.DATA, 0, 1, Buffer.from(chunk)));
  // let the proxy admit the request and start forwarding it before the reset
  await sleep(150);
  s.write(frame(T.RST_STREAM, 0, 1, u32(code)));
  await sleep(100);
  s.destroy();
}

const { NGHTTP2_NO_ERROR, NGHTTP2_CANCEL } = http2.constants;

for (const [name, code] of [['NO_ERROR', NGHTTP2_NO_ERROR], ['CANCEL', NGHTTP2_CANCEL]] as const) {
  test(`an HTTP/2 POST reset with ${name} mid-body never reaches the upstream as a complete request`, async () => {
    const path = `/app/reset-body-${name}`;
    await resetMidRequest(path, 'POST', 'partial body', code);
    await sleep(300);
    assert.deepEqual(fx.up.received.filter((r) => r.url === path), [], 'the upstream completed a request the client reset');
  });

  test(`an HTTP/2 GET left open then reset with ${name} never reaches the upstream as a complete request`, async () => {
    const path = `/app/reset-open-${name}`;
    await resetMidRequest(path, 'GET', undefined, code);
    await sleep(300);
    assert.deepEqual(fx.up.received.filter((r) => r.url === path), [], 'the upstream completed a request the client reset');
  });
}

test('an HTTP/2 POST destroyed by a node:http2 client mid-body never reaches the upstream as a complete request', async () => {
  const session = http2.connect(`https://localhost:${fx.cli.port}`, { ca: readFileSync(fx.pki.ca.cert), cert: readFileSync(fx.pki.client.cert), key: readFileSync(fx.pki.client.key) });
  session.on('error', () => undefined);
  const req = session.request({ ':method': 'PUT', ':path': '/app/destroyed' }, { endStream: false });
  req.on('error', () => undefined);
  req.write('partial body');
  await sleep(150);
  req.destroy();
  await sleep(300);
  session.close();
  assert.deepEqual(fx.up.received.filter((r) => r.url === '/app/destroyed'), [], 'the upstream completed a request the client reset');
});
test('an HTTP/2 POST that ends normally still reaches the upstream whole', async () => {
  const r = await h2Request(fx.cli.port, fx.pki, { ':method': 'POST', ':path': '/app/whole' }, fx.pki.client, 'twelve bytes');
  assert.equal(r.status, 200, r.error ?? r.body);
  const got = fx.up.received.filter((x) => x.url === '/app/whole');
  assert.equal(got.length, 1);
  assert.equal(got[0]!.bodyBytes, 12);
});
