// Regression test: on a `client_auth: require` HTTP listener, a certificate refused by a
// check that runs after the handshake (here a pin) used to be judged per route, after
// routing: a route with its own `client_auth: optional` forwarded the request (with
// X-Client-Verify: FAILED:pin_mismatch), and an unmatched path answered 404 instead of
// the refusal. Such a connection is now refused before routing, on every route, over
// HTTP/1.1 and HTTP/2, and nothing reaches the upstream.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createHash, X509Certificate } from 'node:crypto';
import { useProxy, tlsListener, curl, certArgs } from '../helpers/proxy.js';
import { jsonError } from '../helpers/raw-clients.js';

const fx = useProxy(({ pki, up }) => ({
  listeners: [
    tlsListener(pki, {
      name: 'pinned',
      tls: { pins: [`sha256:${createHash('sha256').update(new X509Certificate(readFileSync(pki.client.cert)).raw).digest('hex')}`] },
      routes: [
        { name: 'open', match: { path: '/open' }, client_auth: 'optional', upstream: 'app' },
        { name: 'app', match: { path: '/app' }, upstream: 'app' },
      ],
    }),
  ],
  upstreams: { app: { endpoints: [up.url] } },
}));

for (const proto of ['--http1.1', '--http2']) {
  for (const path of ['/open/x', '/app/x', '/nowhere']) {
    test(`${proto}: an unpinned certificate on a require listener gets 403 pin_mismatch on ${path}, nothing forwarded`, async () => {
      const marker = `${path}?${proto}`;
      const r = await curl(`https://localhost:${fx.cli.port}${marker}`, [proto, ...certArgs(fx.pki.ca.cert, fx.pki.client2)]);
      assert.equal(r.status, 403, r.stderr + r.body);
      const body = jsonError(r.body);
      assert.equal(body.error, 'client_certificate_invalid');
      assert.match(body.message ?? '', /^pin_mismatch: /);
      assert.equal(fx.up.received.some((x) => x.url === marker), false);
    });
  }
  test(`${proto}: the pinned certificate still reaches the optional route`, async () => {
    const r = await curl(`https://localhost:${fx.cli.port}/open/ok`, [proto, ...certArgs(fx.pki.ca.cert, fx.pki.client)]);
    assert.equal(r.status, 200, r.stderr + r.body);
  });
}
