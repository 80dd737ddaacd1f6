// Pins and cert_policy on real certificates of every key type portcullis issues: what each
// rule refuses, what it lets through, and that the failure names the rule.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { createCA, issueCert, type CaHandle } from '../pki/issue.js';
import { buildIdentity } from '../pki/identity.js';
import { buildPinCheck, buildPolicyCheck, keyFacts } from './cert-policy.js';
import type { CertPolicyConfig } from '../config/schema.js';
import type { CheckFailure } from './trust.js';

let ca: CaHandle;
const c: Record<'p256' | 'p384' | 'rsa2048' | 'ed25519' | 'days90' | 'days10', X509Certificate> = {} as never;

const DEFAULTS: CertPolicyConfig = { min_rsa_bits: 2048, min_ec_bits: 256, key_types: ['rsa', 'ec', 'ed25519'], max_validity: 0, strict_rfc5280: false };

before(async () => {
  ca = await createCA({ name: 'Policy CA' });
  const mk = async (o: Parameters<typeof issueCert>[1]) => new X509Certificate((await issueCert(ca, o)).certPem);
  [c.p256, c.p384, c.rsa2048, c.ed25519, c.days10] = await Promise.all([
    mk({ type: 'client', cn: 'p256' }),
    mk({ type: 'client', cn: 'p384', keyType: 'ec-p384' }),
    mk({ type: 'client', cn: 'rsa', keyType: 'rsa-2048' }),
    mk({ type: 'client', cn: 'ed', keyType: 'ed25519' }),
    mk({ type: 'client', cn: 'short', days: 10 }),
  ]);
  c.days90 = c.p256;
});

const policy = (p: Partial<CertPolicyConfig>, cert: X509Certificate) => buildPolicyCheck({ ...DEFAULTS, ...p })(cert, [], buildIdentity(cert, [])) as CheckFailure | undefined;

test('keyFacts names the family and size of each key type', () => {
  assert.deepEqual(keyFacts(c.p256), { type: 'ec prime256v1', family: 'ec', bits: 256 });
  assert.deepEqual(keyFacts(c.p384), { type: 'ec secp384r1', family: 'ec', bits: 384 });
  assert.deepEqual(keyFacts(c.rsa2048), { type: 'rsa', family: 'rsa', bits: 2048 });
  assert.deepEqual(keyFacts(c.ed25519), { type: 'ed25519', family: 'ed25519', bits: 256 });
});

test('the default policy accepts every key portcullis issues', () => {
  for (const cert of Object.values(c)) assert.equal(policy({}, cert), undefined, cert.subject);
});

test('each rule refuses with reason policy and names itself', () => {
  assert.match(policy({ min_rsa_bits: 3072 }, c.rsa2048)!.detail, /^cert_policy\.min_rsa_bits: RSA key of 2048 bits, minimum 3072$/);
  assert.equal(policy({ min_rsa_bits: 3072 }, c.p256), undefined, 'an RSA minimum says nothing about EC keys');
  assert.match(policy({ min_ec_bits: 384 }, c.p256)!.detail, /^cert_policy\.min_ec_bits: /);
  assert.equal(policy({ min_ec_bits: 384 }, c.p384), undefined);
  const t = policy({ key_types: ['rsa'] }, c.ed25519)!;
  assert.equal(t.reason, 'policy');
  assert.match(t.detail, /^cert_policy\.key_types: ed25519 key, allowed: rsa$/);
  assert.match(policy({ max_validity: 30 * 86_400_000 }, c.days90)!.detail, /^cert_policy\.max_validity: valid for 90\.0d/);
  assert.equal(policy({ max_validity: 30 * 86_400_000 }, c.days10), undefined);
});

test('max_validity forgives the few minutes a CA backdates notBefore, not more', () => {
  // issued with days: 10 -> spans 10 days and 5 minutes
  assert.equal(policy({ max_validity: 10 * 86_400_000 }, c.days10), undefined);
  assert.equal(policy({ max_validity: 9 * 86_400_000 }, c.days10)?.reason, 'policy');
});

test('pins match the leaf DER or its SPKI; no pins means no check', () => {
  assert.equal(buildPinCheck([]), undefined);
  const id = buildIdentity(c.p256, []);
  const byCert = buildPinCheck([`sha256:${id.fingerprint}`])!;
  const bySpki = buildPinCheck([`sha256:${id.spkiFingerprint}`])!;
  assert.equal(byCert(c.p256, [], id), undefined);
  assert.equal(bySpki(c.p256, [], id), undefined);
  const other = buildIdentity(c.p384, []);
  const f = byCert(c.p384, [], other) as CheckFailure;
  assert.equal(f.reason, 'pin_mismatch');
  assert.match(f.detail, new RegExp(`certificate sha256:${other.fingerprint} \\(SPKI sha256:${other.spkiFingerprint}\\)`));
});
