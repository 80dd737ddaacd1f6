// Client certificate verification through the real CLI with real clients (curl, openssl
// s_client, Node https): what is accepted, what is refused, and what the upstream saw.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { X509Certificate, createHash } from 'node:crypto';
import { useProxy, curl, certArgs, nodeRequest, tlsListener } from '../helpers/proxy.js';

const fx = useProxy(({ pki, up }) => ({
      listeners: [
        tlsListener(pki, { name: 'api', tls: { client_ca: [pki.ca.cert], verify_depth: 2 } }),
        tlsListener(pki, { name: 'tls13', tls: { min_version: 'TLSv1.3' } }),
      ],
      upstreams: { app: { endpoints: [up.url] } } }));

const url = (path = '/hello') => `https://localhost:${fx.cli.port}${path}`;

test('a valid client certificate gets 200 and the upstream receives exactly the SPEC §4 headers', async () => {
  const before = fx.up.received.length;
  const r = await curl(url('/hello?x=1'), certArgs(fx.pki.ca.cert, fx.pki.client));
  assert.equal(r.status, 200, r.stderr);
  const got = fx.up.received[before]!;
  assert.equal(got.url, '/hello?x=1');
  const leaf = new X509Certificate(readFileSync(fx.pki.client.cert));
  const h = got.headers;
  assert.equal(h['x-client-verify'], 'SUCCESS');
  assert.equal(h['x-client-subject'], 'CN=payment-service,OU=prod,O=Example');
  assert.equal(h['x-client-issuer'], 'CN=Test Root CA');
  assert.equal(h['x-client-cn'], 'payment-service');
  assert.equal(h['x-client-serial'], fx.pki.client.serial);
  assert.match(h['x-client-serial'] as string, /^[0-9A-F]+$/);
  assert.equal(h['x-client-fingerprint'], createHash('sha256').update(leaf.raw).digest('hex'));
  assert.equal(h['x-client-spiffe-id'], 'spiffe://example.org/ns/prod/sa/payment');
  assert.equal(h['x-client-san'], 'DNS:payment.svc.example.com,URI:spiffe://example.org/ns/prod/sa/payment,email:pay@example.com');
  assert.equal(h['x-client-not-after'], new Date(leaf.validTo).toISOString().replace('.000Z', 'Z'));
  assert.match(h['x-client-not-before'] as string, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  assert.equal(h['x-client-cert'], undefined, 'forward_cert is off by default');
  assert.equal(h['x-forwarded-client-cert'], undefined, 'xfcc is not enabled by default');
  assert.equal(h['x-forwarded-for'], '127.0.0.1');
  assert.equal(h['x-forwarded-proto'], 'https');
  assert.equal(h['x-forwarded-host'], `localhost:${fx.cli.port}`);
  assert.match(h['x-request-id'] as string, /^[0-9a-f-]{36}$/);
  // every identity header appears exactly once
  const names = got.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
  for (const n of names.filter((n) => n.startsWith('x-client-'))) assert.equal(names.filter((m) => m === n).length, 1, n);
});

test('no client certificate: the handshake fails with certificate_required (handshake_failure under TLS 1.2) and nothing reaches the upstream', async () => {
  const before = fx.up.received.length;
  const r = await curl(url(), [...certArgs(fx.pki.ca.cert), '--http1.1']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /certificate required/i);
  // over HTTP/2 too: closing at once used to reset the connection under the client's
  // first request bytes, and curl then reported "getpeername() failed" instead of the alert
  for (let i = 0; i < 5; i++) {
    const h2 = await curl(url(), certArgs(fx.pki.ca.cert));
    assert.notEqual(h2.code, 0);
    assert.match(h2.stderr, /certificate required/i);
  }
  const s = spawnSync('openssl', ['s_client', '-connect', `127.0.0.1:${fx.cli.port}`, '-servername', 'localhost', '-CAfile', fx.pki.ca.cert, '-tls1_3', '-ign_eof'], { input: 'GET / HTTP/1.1\r\nHost: localhost\r\n\r\n', encoding: 'utf8', timeout: 10_000 });
  assert.match(s.stdout + s.stderr, /alert certificate required/i);
  // TLS 1.2 has no certificate_required alert: OpenSSL sends handshake_failure (issue 16
  // corrected the docs that said certificate_required for every version)
  const s12 = spawnSync('openssl', ['s_client', '-connect', `127.0.0.1:${fx.cli.port}`, '-servername', 'localhost', '-CAfile', fx.pki.ca.cert, '-tls1_2', '-ign_eof'], { input: 'GET / HTTP/1.1\r\nHost: localhost\r\n\r\n', encoding: 'utf8', timeout: 10_000 });
  assert.match(s12.stdout + s12.stderr, /alert handshake failure/i);
  assert.doesNotMatch(s12.stdout + s12.stderr, /certificate required/i);
  assert.equal(fx.up.received.length, before);
});

for (const [name, key, reason] of [
  ['a certificate from an untrusted CA', 'untrusted', 'unknown_ca'],
  ['an expired certificate', 'expired', 'expired'],
  ['a certificate that is not yet valid', 'notYetValid', 'not_yet_valid'],
  ['a certificate whose EKU is serverAuth only', 'serverEkuOnly', 'bad_eku'],
  ['a CA certificate used as a leaf', 'caAsLeaf', 'ca_as_leaf'],
] as const) {
  test(`${name} is refused (${reason}), logged, and never reaches the upstream`, async () => {
    const before = fx.up.received.length;
    const entry = fx.pki[key];
    const r = await curl(url(`/refused-${key}`), certArgs(fx.pki.ca.cert, entry));
    assert.notEqual(r.code, 0, `curl should fail, got ${r.status} ${r.body}`);
    const n = await nodeRequest({ host: '127.0.0.1', servername: 'localhost', port: fx.cli.port, path: `/refused-node-${key}`, ca: readFileSync(fx.pki.ca.cert), cert: readFileSync(entry.cert), key: readFileSync(entry.key) });
    assert.ok(n.error, `node client should fail, got ${n.status}`);
    assert.equal(fx.up.received.length, before);
    await waitFor(() => fx.cli.accessLines().some((l) => l.event === 'tls_handshake_failed' && (l.client as { serial?: string })?.serial === entry.serial));
    const line = fx.cli.accessLines().find((l) => l.event === 'tls_handshake_failed' && (l.client as { serial?: string })?.serial === entry.serial)!;
    assert.equal((line.client as { verify: string }).verify, `FAILED:${reason}`);
    assert.match(String((line.decision as { reason: string }).reason), new RegExp(`^${reason}: `));
  });
}

test('a certificate without any EKU extension is accepted (EKU only restricts when present)', async () => {
  const r = await curl(url(), certArgs(fx.pki.ca.cert, fx.pki.noEku));
  assert.equal(r.status, 200, r.stderr);
});

test('a client chain through an intermediate is accepted within verify_depth', async () => {
  const before = fx.up.received.length;
  const r = await curl(url(), certArgs(fx.pki.ca.cert, fx.pki.viaIntermediate, true));
  assert.equal(r.status, 200, r.stderr);
  assert.equal(fx.up.received[before]!.headers['x-client-issuer'], 'CN=Test Intermediate CA');
});

test('a client chain deeper than verify_depth is refused', async () => {
  const before = fx.up.received.length;
  const r = await curl(url(), certArgs(fx.pki.ca.cert, fx.pki.deep, true));
  assert.notEqual(r.code, 0, `expected refusal, got ${r.status}`);
  assert.equal(fx.up.received.length, before);
  await waitFor(() => fx.cli.accessLines().some((l) => (l.client as { verify?: string })?.verify === 'FAILED:depth_exceeded'));
});

test('an intermediate-issued leaf without its intermediate is refused as unknown_ca', async () => {
  const before = fx.up.received.length;
  const r = await curl(url('/no-intermediate'), certArgs(fx.pki.ca.cert, fx.pki.viaIntermediate));
  assert.notEqual(r.code, 0, `expected refusal, got ${r.status} ${r.stderr}`);
  assert.equal(fx.up.received.length, before);
});

test('min_version TLSv1.3 refuses a TLS 1.2 client; TLS 1.2 is served where allowed', async () => {
  const port13 = fx.cli.ports['tls13']!;
  const refused = await curl(`https://localhost:${port13}/`, [...certArgs(fx.pki.ca.cert, fx.pki.client), '--tls-max', '1.2']);
  assert.notEqual(refused.code, 0);
  const ok12 = await curl(url(), [...certArgs(fx.pki.ca.cert, fx.pki.client), '--tls-max', '1.2']);
  assert.equal(ok12.status, 200, ok12.stderr);
});

test('the access log has one JSON line per request with the SPEC §9 fields', async () => {
  const r = await curl(url('/logged'), [...certArgs(fx.pki.ca.cert, fx.pki.client), '-H', 'X-Request-Id: trace-abc-123']);
  assert.equal(r.status, 200);
  await waitFor(() => fx.cli.accessLines().some((l) => l.request_id === 'trace-abc-123'));
  const line = fx.cli.accessLines().find((l) => l.request_id === 'trace-abc-123')!;
  for (const k of ['time', 'level', 'event', 'listener', 'route', 'remote_addr', 'tls_version', 'client', 'decision', 'upstream', 'status', 'bytes_in', 'bytes_out', 'duration_ms', 'request_id']) {
    assert.ok(k in line, `missing ${k}`);
  }
  assert.equal(line.event, 'request');
  assert.equal(line.status, 200);
  assert.equal((line.client as { spiffe_id: string }).spiffe_id, 'spiffe://example.org/ns/prod/sa/payment');
  assert.equal((line.decision as { allowed: boolean }).allowed, true);
  assert.ok((line.bytes_out as number) > 0);
});

async function waitFor(pred: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}
