// The per-certificate identity cache: a certificate seen again gives the same identity
// without parsing it again, with its own chain; the cache is bounded and shared parts
// cannot be changed by one connection for another.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createHash } from 'node:crypto';
import { createCA, issueCert, type CaHandle } from './issue.js';
import { buildIdentity, leafCacheSize, LEAF_CACHE_MAX } from './identity.js';

let ca: CaHandle;
let leaf: X509Certificate;

before(async () => {
  ca = await createCA({ name: 'Identity Cache CA' });
  leaf = new X509Certificate((await issueCert(ca, { type: 'client', cn: 'svc', ou: ['prod'], uri: ['spiffe://example.org/svc'], dns: ['svc.example.org'] })).certPem);
});

test('the same certificate on a new connection (a new X509Certificate) gives an equal identity with its own chain', () => {
  const caCert = new X509Certificate(ca.certPem);
  const a = buildIdentity(leaf, []);
  const b = buildIdentity(new X509Certificate(leaf.raw), [caCert]);
  assert.equal(b.subject, a.subject);
  assert.equal(b.subject, 'CN=svc,OU=prod');
  assert.equal(b.spiffeId, 'spiffe://example.org/svc');
  assert.deepEqual(b.dns, ['svc.example.org']);
  assert.equal(b.fingerprint, createHash('sha256').update(leaf.raw).digest('hex'));
  assert.deepEqual(a.chainDer, []);
  assert.deepEqual(b.chainDer, [caCert.raw]);
  // the lazy SPKI hash is the same value whichever identity asks first
  const spki = createHash('sha256').update(leaf.publicKey.export({ type: 'spki', format: 'der' })).digest('hex');
  assert.equal(b.spkiFingerprint, spki);
  assert.equal(a.spkiFingerprint, spki);
  assert.equal(JSON.parse(JSON.stringify(b)).spkiFingerprint, spki, 'enumerable, so logs and JSON see it');
});

test('shared lists are frozen: one connection cannot change another identity', () => {
  const a = buildIdentity(leaf, []);
  assert.throws(() => a.dns.push('evil.example.org'), TypeError);
  assert.deepEqual(buildIdentity(leaf, []).dns, ['svc.example.org']);
});

test('the cache holds at most LEAF_CACHE_MAX certificates', async () => {
  const before = leafCacheSize();
  assert.ok(before >= 1);
  const extra = await Promise.all(Array.from({ length: 5 }, (_, i) => issueCert(ca, { type: 'client', cn: `n${i}` })));
  for (const e of extra) buildIdentity(new X509Certificate(e.certPem), []);
  assert.equal(leafCacheSize(), Math.min(LEAF_CACHE_MAX, before + 5));
  assert.ok(leafCacheSize() <= LEAF_CACHE_MAX);
});

test('the same certificate over the same chain shares one frozen Identity; another chain gets its own', async () => {
  const { formatIdentityHeaders } = await import('../proxy/identity-headers.js');
  const caCert = new X509Certificate(ca.certPem);
  const a = buildIdentity(new X509Certificate(leaf.raw), [caCert]);
  const b = buildIdentity(new X509Certificate(leaf.raw), [new X509Certificate(ca.certPem)]);
  assert.equal(b, a, 'one object per certificate and chain');
  assert.ok(Object.isFrozen(a));
  const c = buildIdentity(leaf, []);
  assert.notEqual(c, a);
  assert.deepEqual(c.chainDer, []);
  // headers are formatted once per identity and option set, and match a fresh format
  const opts = { headers: ['standard', 'xfcc', 'rfc9440'] as const, forward_cert: true };
  const h1 = formatIdentityHeaders({ verify: 'SUCCESS', identity: a }, opts);
  const h2 = formatIdentityHeaders({ verify: 'SUCCESS', identity: b }, opts);
  assert.equal(h2, h1);
  assert.ok(h1.includes('client-cert-chain'), 'the chain is part of this identity');
  assert.ok(!formatIdentityHeaders({ verify: 'SUCCESS', identity: c }, opts).includes('client-cert-chain'));
  const other = formatIdentityHeaders({ verify: 'SUCCESS', identity: a }, { headers: ['standard'], forward_cert: false });
  assert.notEqual(other, h1);
  assert.ok(!other.includes('x-forwarded-client-cert'));
});
