// explainVerify over the whole bad-certificate set: each certificate must be refused for
// exactly the reason it was built to have, and the good ones accepted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeTestPki, type PkiEntry, type TestPki } from '../../test/helpers/pki.js';
import { explainVerify, type VerifyContext } from './verify.js';
import { parseCrls, createCrl } from './crl.js';
import { createCA, issueCert } from './issue.js';
import { parseCerts } from './pem.js';

let pki: TestPki;
const dir = mkdtempSync(join(tmpdir(), 'pcl-verify-'));
const certs = (f: string): X509Certificate[] => parseCerts(readFileSync(f), f);
const leafOf = (e: PkiEntry): X509Certificate => certs(e.cert)[0]!;
const chainOf = (e: PkiEntry): X509Certificate[] => certs(e.chain).slice(1);

function verdict(e: PkiEntry, extra: Partial<VerifyContext> = {}) {
  return explainVerify(leafOf(e), { cas: certs(pki.ca.cert), intermediates: chainOf(e), ...extra });
}
const codes = (r: { reasons: { code: string }[] }): string[] => r.reasons.map((x) => x.code);

test.before(async () => {
  pki = await makeTestPki(dir);
});
test.after(() => rmSync(dir, { recursive: true, force: true }));

test('good certificates are accepted, with the path that was built', () => {
  for (const e of [pki.client, pki.client2, pki.noEku, pki.viaIntermediate, pki.deep]) {
    const r = verdict(e);
    assert.deepEqual(codes(r), [], `${e.cert}: ${JSON.stringify(r.reasons)}`);
    assert.equal(r.accepted, true);
    assert.equal(r.trusted, true);
  }
  assert.equal(verdict(pki.deep).chain.length, 5);
});

test('each bad certificate is refused for its own reason', () => {
  const cases: [PkiEntry, string][] = [
    [pki.expired, 'expired'],
    [pki.notYetValid, 'not_yet_valid'],
    [pki.serverEkuOnly, 'bad_eku'],
    [pki.caAsLeaf, 'ca_as_leaf'],
    [pki.untrusted, 'unknown_ca'],
  ];
  for (const [e, code] of cases) {
    const r = verdict(e);
    assert.equal(r.accepted, false, e.cert);
    assert.deepEqual(codes(r), [code], `${e.cert}: ${JSON.stringify(r.reasons)}`);
    for (const reason of r.reasons) {
      assert.ok(reason.message.length > 20 && reason.fix.length > 10);
    }
  }
  // dates and the clock are named
  assert.match(verdict(pki.expired).reasons[0]!.message, /expired on \d{4}-\d\d-\d\dT.*this clock says/);
  assert.match(verdict(pki.serverEkuOnly).reasons[0]!.message, /serverAuth.*clientAuth/);
  assert.match(verdict(pki.untrusted).reasons[0]!.message, /Other Root CA/);
});

test('a server certificate is judged by serverAuth when purpose is server', () => {
  assert.deepEqual(codes(verdict(pki.server, { purpose: 'server' })), []);
  assert.deepEqual(codes(verdict(pki.server)), ['bad_eku']);
});

test('the clock is the one given', () => {
  const far = new Date(Date.now() + 400 * 86_400_000);
  assert.deepEqual(codes(verdict(pki.client, { now: far })), ['expired']);
  assert.deepEqual(codes(verdict(pki.notYetValid, { now: new Date(Date.now() + 20 * 86_400_000) })), []);
});

test('missing intermediate: unknown CA unless the verifier knows the intermediate', () => {
  const alone = explainVerify(leafOf(pki.viaIntermediate), { cas: certs(pki.ca.cert) });
  assert.deepEqual(codes(alone), ['unknown_ca']);
  assert.match(alone.reasons[0]!.fix, /intermediate/);
  const known = explainVerify(leafOf(pki.viaIntermediate), { cas: certs(pki.ca.cert), knownIntermediates: certs(pki.intermediate.cert) });
  assert.deepEqual(codes(known), ['missing_intermediate']);
  assert.match(known.reasons[0]!.message, /Test Intermediate CA/);
  // an intermediate placed among the trusted CAs completes the chain, as in OpenSSL's store
  const inStore = explainVerify(leafOf(pki.viaIntermediate), { cas: [...certs(pki.ca.cert), ...certs(pki.intermediate.cert)] });
  assert.deepEqual(codes(inStore), []);
});

test('verify depth counts intermediates between leaf and trust anchor', () => {
  assert.deepEqual(codes(verdict(pki.deep, { verifyDepth: 3 })), []);
  const r = verdict(pki.deep, { verifyDepth: 2 });
  assert.deepEqual(codes(r), ['depth_exceeded']);
  assert.match(r.reasons[0]!.message, /3 intermediate CAs.*2/);
  assert.deepEqual(codes(verdict(pki.viaIntermediate, { verifyDepth: 0 })), ['depth_exceeded']);
});

test('pathLen of a CA is enforced', async () => {
  const root = await createCA({ name: 'PathLen Root', pathLen: 0 });
  const sub = await createCA({ name: 'Too Deep Sub', parent: root });
  const leaf = await issueCert(sub, { type: 'client', cn: 'x' });
  const r = explainVerify(new X509Certificate(leaf.certPem), { cas: [new X509Certificate(root.certPem)], intermediates: [new X509Certificate(sub.certPem)] });
  assert.deepEqual(codes(r), ['depth_exceeded']);
  assert.match(r.reasons[0]!.message, /pathLen/);
});

test('a CA re-created under the same name does not validate the old one\'s certificates', async () => {
  const impostor = await createCA({ name: 'Test Root CA' });
  const r = explainVerify(leafOf(pki.client), { cas: [new X509Certificate(impostor.certPem)] });
  assert.deepEqual(codes(r), ['bad_signature']);
});

test('revocation: revoked, missing CRLs and expired CRLs', async () => {
  const crls = parseCrls(readFileSync(pki.crl), pki.crl);
  const revoked = verdict(pki.revoked, { crls });
  assert.deepEqual(codes(revoked), ['revoked']);
  assert.match(revoked.reasons[0]!.message, /revoked on \d{4}-.*keyCompromise/);
  for (const e of [pki.client, pki.viaIntermediate, pki.deep]) assert.deepEqual(codes(verdict(e, { crls })), [], e.cert);

  // only the root's CRL: the intermediate's leaves cannot be checked (Node fails them too)
  const rootOnly = crls.filter((c) => c.issuer === 'CN=Test Root CA');
  assert.equal(rootOnly.length, 1);
  assert.deepEqual(codes(verdict(pki.viaIntermediate, { crls: rootOnly })), ['crl_missing']);

  const stale = parseCrls(await createCrl(pki.handles.root, [], { thisUpdate: new Date(Date.now() - 10 * 86_400_000), nextUpdate: new Date(Date.now() - 86_400_000) }));
  // the proxy keeps using a stale CRL and warns (revocation.ts), so the explainer warns too
  const staleVerdict = verdict(pki.client, { crls: stale });
  assert.deepEqual(codes(staleVerdict), []);
  assert.match(staleVerdict.warnings.join('\n'), /expired on .*nextUpdate/);

  // a CRL with the right name but the wrong signer is ignored, so the chain counts as unchecked
  const forged = parseCrls(await createCrl(await createCA({ name: 'Test Root CA' }), [{ serial: pki.client.serial, date: new Date() }]));
  assert.deepEqual(codes(verdict(pki.client, { crls: forged })), ['crl_missing']);
});
