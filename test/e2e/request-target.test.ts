// Regression tests for request framing edge cases: Host listed in Connection (it once
// dropped Host and skipped host-based routes), duplicate Host, absolute-form targets, and
// client-supplied Forwarded / X-Real-IP.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { useProxy, tlsListener } from '../helpers/proxy.js';

const fx = useProxy(({ pki, up }) => ({
    listeners: [tlsListener(pki, { routes: [
      { name: 'admin', match: { host: 'admin.example.com' }, allow: [{ cn: 'nobody' }], upstream: 'app' },
      { name: 'rest', upstream: 'app' },
    ] })],
    upstreams: { app: { endpoints: [up.url] } } }));

function raw(request: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: fx.cli.port, servername: 'localhost', ca: readFileSync(fx.pki.ca.cert), cert: readFileSync(fx.pki.client.cert), key: readFileSync(fx.pki.client.key) });
    let data = '';
    s.on('data', (d: Buffer) => (data += d.toString()));
    s.once('secureConnect', () => s.write(request));
    s.once('end', () => {
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0);
      resolve({ status, body: data.slice(data.indexOf('\r\n\r\n') + 4) });
    });
    s.once('error', reject);
  });
}

test('Host listed in Connection still routes by Host and is forwarded with X-Forwarded-Host', async () => {
  const plain = await raw('GET /x HTTP/1.1\r\nHost: admin.example.com\r\nConnection: close\r\n\r\n');
  assert.equal(plain.status, 403);
  const listed = await raw('GET /x HTTP/1.1\r\nHost: admin.example.com\r\nConnection: close, Host\r\n\r\n');
  assert.equal(listed.status, 403, 'listing Host in Connection must not bypass the admin route');
  const n = fx.up.received.length;
  const ok = await raw('GET /y HTTP/1.1\r\nHost: localhost\r\nConnection: close, Host\r\n\r\n');
  assert.equal(ok.status, 200);
  assert.equal(fx.up.received[n]!.headers.host, 'localhost');
  assert.equal(fx.up.received[n]!.headers['x-forwarded-host'], 'localhost');
});

test('two Host headers are refused with 400 bad_request', async () => {
  const n = fx.up.received.length;
  const r = await raw('GET /x HTTP/1.1\r\nHost: localhost\r\nHost: admin.example.com\r\nConnection: close\r\n\r\n');
  assert.equal(r.status, 400);
  assert.equal(JSON.parse(r.body).error, 'bad_request');
  assert.equal(fx.up.received.length, n);
});

test('an absolute-form target routes by its authority and reaches the upstream in origin form', async () => {
  const denied = await raw('GET https://admin.example.com/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
  assert.equal(denied.status, 403, 'the authority in the target decides the route, not Host');
  const n = fx.up.received.length;
  const ok = await raw('GET https://localhost/a/../b?q=1 HTTP/1.1\r\nHost: elsewhere\r\nConnection: close\r\n\r\n');
  assert.equal(ok.status, 200);
  assert.equal(fx.up.received[n]!.url, '/b?q=1');
  assert.equal(fx.up.received[n]!.headers.host, 'localhost');
});

test('client-supplied Forwarded and X-Real-IP never reach the upstream', async () => {
  const n = fx.up.received.length;
  const r = await raw('GET /f HTTP/1.1\r\nHost: localhost\r\nForwarded: for=1.2.3.4\r\nX-Real-IP: 1.2.3.4\r\nX_Real_IP: 1.2.3.4\r\nConnection: close\r\n\r\n');
  assert.equal(r.status, 200);
  const h = fx.up.received[n]!.rawHeaders.join('\n');
  assert.doesNotMatch(h, /1\.2\.3\.4/);
  assert.equal(fx.up.received[n]!.headers['x-forwarded-for'], '127.0.0.1');
});
