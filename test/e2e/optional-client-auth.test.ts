// client_auth: optional (SPEC §2): the handshake accepts any client, and each route decides.
// A route with client_auth: require answers 401 without a certificate and 403 with one that
// failed verification; other routes pass and tell the upstream what was (not) proven.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { X509Certificate, createHash } from 'node:crypto';
import { type PkiEntry } from '../helpers/pki.js';
import { useProxy, tlsListener, nodeRequest, curl, certArgs, type NodeResult, type Received } from '../helpers/proxy.js';

const fx = useProxy(({ pki, up }) => ({
      workers: 1,
      listeners: [
        tlsListener(pki, {
          name: 'opt',
          tls: { client_auth: 'optional' },
          routes: [
            { name: 'secure', match: { path: '/secure' }, client_auth: 'require', upstream: 'app' },
            { name: 'open', match: { path: '/open' }, upstream: 'app' },
          ] }),
      ],
      upstreams: { app: { endpoints: [up.url] } } }));

async function call(path: string, entry?: PkiEntry, headers: Record<string, string> = {}): Promise<{ res: NodeResult; got: Received | undefined }> {
  const full = `${path}?t=${Math.random().toString(16).slice(2)}`;
  const res = await nodeRequest({
    host: '127.0.0.1',
    servername: 'localhost',
    port: fx.cli.port,
    path: full,
    headers,
    ca: readFileSync(fx.pki.ca.cert),
    ...(entry ? { cert: readFileSync(entry.chain), key: readFileSync(entry.key) } : {}) });
  assert.equal(res.error, undefined, `${path}: the handshake must succeed on an optional listener (${res.error?.message})`);
  return { res, got: fx.up.received.find((r) => r.url === full) };
}

function errorBody(res: NodeResult, status: number, error: string): { error: string; message: string; request_id: string } {
  assert.equal(res.status, status, res.body);
  assert.match(String(res.headers?.['content-type']), /^application\/json/);
  const body = JSON.parse(res.body!) as { error: string; message: string; request_id: string };
  assert.deepEqual(Object.keys(body).sort(), ['error', 'message', 'request_id']);
  assert.equal(body.error, error);
  assert.ok(body.request_id);
  return body;
}

/** Names of every x-client-* header the upstream received (lowercased, in order). */
const clientHeaderNames = (got: Received) => got.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase()).filter((n) => n.startsWith('x-client-'));

test('/secure without a certificate: 401 client_certificate_required, nothing reaches the upstream', async () => {
  const { res, got } = await call('/secure');
  const body = errorBody(res, 401, 'client_certificate_required');
  assert.match(body.message, /secure/, 'the message names the route');
  assert.equal(got, undefined);
});

for (const [name, key, reason] of [
  ['an expired certificate', 'expired', 'expired'],
  ['an untrusted certificate', 'untrusted', 'unknown_ca'],
  ['a certificate whose EKU is serverAuth only', 'serverEkuOnly', 'bad_eku'],
] as const) {
  test(`/secure with ${name}: 403 client_certificate_invalid naming ${reason}`, async () => {
    const { res, got } = await call('/secure', fx.pki[key], { 'X-Client-Verify': 'SUCCESS' });
    const body = errorBody(res, 403, 'client_certificate_invalid');
    assert.match(body.message, new RegExp(`\\b${reason}\\b`), body.message);
    assert.equal(got, undefined, 'a refused request never reaches the upstream');
  });
}

test('/secure with a valid certificate: 200 and the upstream sees the identity', async () => {
  const { res, got } = await call('/secure', fx.pki.client);
  assert.equal(res.status, 200, res.body);
  assert.ok(got);
  const leaf = new X509Certificate(readFileSync(fx.pki.client.cert));
  assert.equal(got.headers['x-client-verify'], 'SUCCESS');
  assert.equal(got.headers['x-client-subject'], 'CN=payment-service,OU=prod,O=Example');
  assert.equal(got.headers['x-client-cn'], 'payment-service');
  assert.equal(got.headers['x-client-fingerprint'], createHash('sha256').update(leaf.raw).digest('hex'));
  assert.equal(got.headers['x-client-spiffe-id'], 'spiffe://example.org/ns/prod/sa/payment');
});

test('/secure with an intermediate-issued certificate and its chain: 200', async () => {
  const { res, got } = await call('/secure', fx.pki.viaIntermediate);
  assert.equal(res.status, 200, res.body);
  assert.equal(got?.headers['x-client-verify'], 'SUCCESS');
  assert.equal(got?.headers['x-client-issuer'], 'CN=Test Intermediate CA');
});

test('/open without a certificate: 200, the upstream sees X-Client-Verify: NONE and no identity', async () => {
  const { res, got } = await call('/open', undefined, { 'X-Client-Verify': 'SUCCESS', 'X-Client-Subject': 'CN=admin' });
  assert.equal(res.status, 200, res.body);
  assert.ok(got);
  assert.deepEqual(clientHeaderNames(got), ['x-client-verify']);
  assert.equal(got.headers['x-client-verify'], 'NONE');
});

for (const [name, key, reason] of [
  ['an expired certificate', 'expired', 'expired'],
  ['an untrusted certificate', 'untrusted', 'unknown_ca'],
] as const) {
  test(`/open with ${name}: 200, X-Client-Verify: FAILED:${reason} and no subject, CN or other identity`, async () => {
    const { res, got } = await call('/open', fx.pki[key], { 'X-Client-Verify': 'SUCCESS', 'X-Client-CN': 'admin' });
    assert.equal(res.status, 200, res.body);
    assert.ok(got);
    assert.deepEqual(clientHeaderNames(got), ['x-client-verify'], 'an unverified certificate gives the upstream nothing to trust');
    assert.equal(got.headers['x-client-verify'], `FAILED:${reason}`);
    assert.equal(got.headers['x-client-subject'], undefined);
    assert.equal(got.headers['x-client-cn'], undefined);
  });
}

test('/open with a valid certificate: 200 and SUCCESS with the identity', async () => {
  const { res, got } = await call('/open', fx.pki.client);
  assert.equal(res.status, 200, res.body);
  assert.equal(got?.headers['x-client-verify'], 'SUCCESS');
  assert.equal(got?.headers['x-client-cn'], 'payment-service');
});

test('curl without a certificate against the optional listener: /open 200, /secure 401', async () => {
  const open = await curl(`https://localhost:${fx.cli.port}/open/curl`, certArgs(fx.pki.ca.cert));
  assert.equal(open.status, 200, open.stderr);
  assert.equal((JSON.parse(open.body) as Received).headers['x-client-verify'], 'NONE');
  const secure = await curl(`https://localhost:${fx.cli.port}/secure/curl`, certArgs(fx.pki.ca.cert));
  assert.equal(secure.status, 401, secure.stderr);
  assert.equal((JSON.parse(secure.body) as { error: string }).error, 'client_certificate_required');
  assert.equal(fx.up.received.some((r) => r.url === '/secure/curl'), false);
});

test('the access log records the 401 and 403 with the client verify result', async () => {
  const a = await call('/secure', undefined, { 'X-Request-Id': 'optional-401' });
  assert.equal(a.res.status, 401);
  const b = await call('/secure', fx.pki.expired, { 'X-Request-Id': 'optional-403' });
  assert.equal(b.res.status, 403);
  const end = Date.now() + 5000;
  const find = (id: string) => fx.cli.accessLines().find((l) => l.request_id === id);
  while (!find('optional-401') || !find('optional-403')) {
    if (Date.now() > end) throw new Error('access log lines missing');
    await new Promise((r) => setTimeout(r, 50));
  }
  const l401 = find('optional-401')!;
  assert.equal(l401.status, 401);
  assert.equal(l401.route, 'secure');
  assert.equal((l401.client as { verify: string }).verify, 'NONE');
  const l403 = find('optional-403')!;
  assert.equal(l403.status, 403);
  assert.equal((l403.client as { verify: string }).verify, 'FAILED:expired');
  assert.equal((l403.client as { serial: string }).serial, fx.pki.expired.serial);
});
