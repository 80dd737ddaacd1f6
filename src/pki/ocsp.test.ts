// OCSP requests and responses against OpenSSL's own responder (`openssl ocsp` run one-shot
// on our request file): good / revoked / unknown, delegated responders, and every way a
// response must be refused (wrong signer, missing OCSPSigning, other certificate, stale,
// altered, replayed nonce).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCA, issueCert, type IssuedCert } from './issue.js';
import { buildOcspRequest, certIdFor, newNonce, ocspUrlsOf, verifyOcspResponse, OcspError, type CertId } from './ocsp.js';
import { writeIndex, writeCaFiles, respondOnce, issueResponderCert, type ResponderFiles } from '../../test/helpers/ocsp-responder.js';

let dir: string;
let issuer: X509Certificate;
let good: IssuedCert;
let revoked: IssuedCert;
let unknown: IssuedCert;
let files: ResponderFiles;
let other: { cert: string; key: string };
let otherIssuer: X509Certificate;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pcl-ocsp-'));
  const [ca, otherCa] = await Promise.all([createCA({ name: 'OCSP Test CA' }), createCA({ name: 'Other CA' })]);
  [good, revoked, unknown] = await Promise.all([
    issueCert(ca, { type: 'client', cn: 'good', ocspUrl: 'http://ocsp.example.test/path' }),
    issueCert(ca, { type: 'client', cn: 'revoked' }),
    issueCert(ca, { type: 'client', cn: 'unknown' }),
  ]);
  issuer = new X509Certificate(ca.certPem);
  otherIssuer = new X509Certificate(otherCa.certPem);
  const caFiles = writeCaFiles(dir, 'ca', ca);
  other = writeCaFiles(dir, 'other', otherCa);
  const index = join(dir, 'index.txt');
  writeIndex(index, [{ serial: good.serial }, { serial: revoked.serial, revokedAt: new Date(Date.now() - 60_000), reason: 'keyCompromise' }]);
  files = { index, ca: caFiles.cert, signerCert: caFiles.cert, signerKey: caFiles.key, nmin: 10 };
});

after(() => rmSync(dir, { recursive: true, force: true }));

function ask(leaf: IssuedCert, f: ResponderFiles = files, nonce?: Buffer): { cert: X509Certificate; id: CertId; der: Buffer } {
  const cert = new X509Certificate(leaf.certPem);
  const id = certIdFor(cert, issuer);
  return { cert, id, der: respondOnce(dir, f, buildOcspRequest(id, nonce)) };
}

test('the AIA responder URL is read from the certificate', () => {
  assert.deepEqual(ocspUrlsOf(new X509Certificate(good.certPem)), ['http://ocsp.example.test/path']);
  assert.deepEqual(ocspUrlsOf(new X509Certificate(revoked.certPem)), []);
});

test('the CertID serial is the certificate serial', () => {
  const id = certIdFor(new X509Certificate(good.certPem), issuer);
  assert.equal(id.serial.toString('hex').toUpperCase(), good.serial);
  assert.equal(id.issuerNameHash.length, 20);
});

test('good, revoked (with time and reason) and unknown, signed by the issuer, with nextUpdate', () => {
  const nonce = newNonce();
  const g = ask(good, files, nonce);
  const a = verifyOcspResponse(g.der, { cert: g.cert, issuer, id: g.id, nonce });
  assert.equal(a.status, 'good');
  assert.equal(a.signer, 'issuer');
  assert.ok(a.nextUpdate && a.nextUpdate.getTime() > Date.now() + 9 * 60_000);

  const r = ask(revoked);
  const b = verifyOcspResponse(r.der, { cert: r.cert, issuer });
  assert.equal(b.status, 'revoked');
  assert.equal(b.reason, 'keyCompromise');
  assert.ok(b.revokedAt && Math.abs(b.revokedAt.getTime() - (Date.now() - 60_000)) < 5_000);

  const u = ask(unknown);
  assert.equal(verifyOcspResponse(u.der, { cert: u.cert, issuer }).status, 'unknown');
});

test('a delegated responder with OCSPSigning issued by the CA is accepted', () => {
  const responder = issueResponderCert(dir, 'delegated', { cert: files.ca, key: files.signerKey });
  const g = ask(good, { ...files, signerCert: responder.cert, signerKey: responder.key });
  const a = verifyOcspResponse(g.der, { cert: g.cert, issuer });
  assert.equal(a.status, 'good');
  assert.equal(a.signer, 'CN=delegated');
});

test('a responder without OCSPSigning is refused, even when the CA issued it', () => {
  const responder = issueResponderCert(dir, 'not-ocsp', { cert: files.ca, key: files.signerKey }, 'clientAuth');
  const g = ask(good, { ...files, signerCert: responder.cert, signerKey: responder.key });
  assert.throws(() => verifyOcspResponse(g.der, { cert: g.cert, issuer }), /lacks the OCSPSigning/);
});

test('a responder with OCSPSigning from another CA is refused', () => {
  const responder = issueResponderCert(dir, 'foreign', other, 'OCSPSigning');
  const g = ask(good, { ...files, signerCert: responder.cert, signerKey: responder.key });
  assert.throws(() => verifyOcspResponse(g.der, { cert: g.cert, issuer }), /not issued by the certificate's issuer/);
});

test('a response signed by another CA key is refused', () => {
  const g = ask(good, { ...files, signerCert: other.cert, signerKey: other.key });
  assert.throws(() => verifyOcspResponse(g.der, { cert: g.cert, issuer }), OcspError);
  // and the other CA's response is no good for our issuer either way round
  assert.throws(() => verifyOcspResponse(g.der, { cert: g.cert, issuer: otherIssuer }), OcspError);
});

test('an altered response fails its signature', () => {
  const g = ask(good);
  const der = Buffer.from(g.der);
  // flip a byte inside the producedAt time (part of the signed data)
  const at = der.indexOf(Buffer.from('Z', 'latin1'), 40);
  der[at - 1] = der[at - 1] === 0x30 ? 0x31 : 0x30;
  assert.throws(() => verifyOcspResponse(der, { cert: g.cert, issuer }), /signature does not verify/);
});

test('a response about another certificate is refused', () => {
  const g = ask(good);
  const cert = new X509Certificate(revoked.certPem);
  assert.throws(() => verifyOcspResponse(g.der, { cert, issuer }), /does not cover the certificate/);
});

test('a response past nextUpdate is refused; one without nextUpdate is accepted', () => {
  const g = ask(good);
  assert.throws(() => verifyOcspResponse(g.der, { cert: g.cert, issuer, now: new Date(Date.now() + 3_600_000) }), /expired/);
  const n = ask(good, { ...files, nmin: undefined });
  const a = verifyOcspResponse(n.der, { cert: n.cert, issuer });
  assert.equal(a.nextUpdate, undefined);
});

test('a response that echoes another nonce is refused', () => {
  const g = ask(good, files, newNonce());
  assert.throws(() => verifyOcspResponse(g.der, { cert: g.cert, issuer, nonce: newNonce() }), /nonce/);
});

test('garbage and error statuses are OcspErrors with a reason', () => {
  const cert = new X509Certificate(good.certPem);
  assert.throws(() => verifyOcspResponse(Buffer.from('not der'), { cert, issuer }), /malformed/);
  // OCSPResponse { responseStatus tryLater(3) }
  assert.throws(() => verifyOcspResponse(Buffer.from('30030a0103', 'hex'), { cert, issuer }), /tryLater/);
});
