// CRL checks without sockets: chain and leaf modes, revoked leaves and intermediates, a CA
// without a CRL, forged and superseded CRLs, the resumed-session case (no intermediates),
// and the Name DER reader against what the CRL and certificate libraries encode.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCA, issueCert, type CaHandle } from '../pki/issue.js';
import { createCrl } from '../pki/crl.js';
import { x509 } from '../pki/x509.js';
import { buildCrlCheck, certNames, type CrlMode } from './revocation.js';
import type { Identity } from '../pki/identity-types.js';
import type { CheckFailure } from './trust.js';

let dir: string;
let root: CaHandle;
let inter: CaHandle;
let rootX: X509Certificate;
let interX: X509Certificate;
const leaf: Record<'good' | 'revoked' | 'viaInt' | 'viaIntRevoked', X509Certificate> = {} as never;
const crl: Record<string, string> = {};

const X = (pem: string) => new X509Certificate(pem);

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pcl-rev-'));
  root = await createCA({ name: 'Rev Root' });
  inter = await createCA({ name: 'Rev Intermediate', parent: root });
  rootX = X(root.certPem);
  interX = X(inter.certPem);
  const [g, r, vi, vir] = await Promise.all([
    issueCert(root, { type: 'client', cn: 'good' }),
    issueCert(root, { type: 'client', cn: 'revoked' }),
    issueCert(inter, { type: 'client', cn: 'via-int' }),
    issueCert(inter, { type: 'client', cn: 'via-int-revoked' }),
  ]);
  Object.assign(leaf, { good: X(g.certPem), revoked: X(r.certPem), viaInt: X(vi.certPem), viaIntRevoked: X(vir.certPem) });
  const d = new Date(Date.now() - 60_000);
  const other = await createCA({ name: 'Rev Root' }); // same name, other key: a forgery
  const files: Record<string, string> = {
    root: await createCrl(root, [{ serial: r.serial, date: d, reason: 'keyCompromise' }]),
    rootOld: await createCrl(root, [{ serial: g.serial, date: d, reason: 'certificateHold' }], { thisUpdate: new Date(Date.now() - 86_400_000), days: 30 }),
    rootRevokingInt: await createCrl(root, [{ serial: inter.cert.serialNumber, date: d }]),
    int: await createCrl(inter, [{ serial: vir.serial, date: d }]),
    forged: await createCrl(other, []),
    expired: await createCrl(root, [{ serial: r.serial, date: d }], { thisUpdate: new Date(Date.now() - 10 * 86_400_000), nextUpdate: new Date(Date.now() - 86_400_000) }),
  };
  for (const [k, pem] of Object.entries(files)) writeFileSync((crl[k] = join(dir, `${k}.pem`)), pem);
});

after(() => rmSync(dir, { recursive: true, force: true }));

const noId = {} as Identity;
function run(files: string[], mode: CrlMode, cert: X509Certificate, chain: X509Certificate[] = []): CheckFailure | undefined {
  const c = buildCrlCheck(files.map((f) => crl[f]!), mode, [rootX], 'tls');
  return c.check(cert, chain, noId) as CheckFailure | undefined;
}

test('certNames reads issuer and subject DER as the certificate library encodes them', () => {
  const n = certNames(leaf.viaInt.raw);
  const p = new x509.X509Certificate(leaf.viaInt.raw);
  assert.deepEqual(n.issuer, Buffer.from(p.issuerName.toArrayBuffer()));
  assert.deepEqual(n.subject, Buffer.from(p.subjectName.toArrayBuffer()));
});

test('chain mode: good passes, revoked leaf and revoked intermediate are refused', () => {
  assert.equal(run(['root', 'int'], 'chain', leaf.good), undefined);
  assert.equal(run(['root', 'int'], 'chain', leaf.viaInt, [interX]), undefined);
  const r = run(['root', 'int'], 'chain', leaf.revoked);
  assert.equal(r?.reason, 'revoked');
  assert.match(r!.detail, /the client certificate \(serial [0-9A-F]+\) is listed in the CRL of CN=Rev Root .* reason keyCompromise/);
  assert.equal(run(['root', 'int'], 'chain', leaf.viaIntRevoked, [interX])?.reason, 'revoked');
  const i = run(['rootRevokingInt', 'int'], 'chain', leaf.viaInt, [interX]);
  assert.equal(i?.reason, 'revoked');
  assert.match(i!.detail, /^intermediate CN=Rev Intermediate/);
});

test('chain mode refuses a chain with a CA that has no CRL; leaf mode does not look above the leaf', () => {
  const r = run(['int'], 'chain', leaf.viaInt, [interX]);
  assert.equal(r?.reason, 'revocation_unknown');
  assert.match(r!.detail, /no CRL from CN=Rev Root covers intermediate CN=Rev Intermediate/);
  assert.equal(run(['int'], 'leaf', leaf.viaInt, [interX]), undefined);
  assert.equal(run(['rootRevokingInt', 'int'], 'leaf', leaf.viaInt, [interX]), undefined);
  assert.equal(run(['int'], 'leaf', leaf.viaIntRevoked, [interX])?.reason, 'revoked');
  // the leaf itself always needs its issuer's CRL once CRLs are configured
  assert.equal(run(['int'], 'leaf', leaf.good)?.reason, 'revocation_unknown');
});

test('a resumed session (no intermediates) is still checked against its issuer\'s CRL', async () => {
  // an intermediate this process has never seen in a chain: its CRL is found by issuer name
  const unseen = await createCA({ name: 'Unseen Intermediate', parent: root });
  const [a, b] = await Promise.all([issueCert(unseen, { type: 'client', cn: 'a' }), issueCert(unseen, { type: 'client', cn: 'b' })]);
  writeFileSync((crl.unseen = join(dir, 'unseen.pem')), await createCrl(unseen, [{ serial: b.serial, date: new Date() }]));
  assert.equal(run(['root', 'unseen'], 'chain', X(b.certPem), [])?.reason, 'revoked');
  assert.equal(run(['root', 'unseen'], 'chain', X(a.certPem), []), undefined);
  // and with the intermediate remembered from an earlier full handshake, the same verdicts
  assert.equal(run(['root', 'int'], 'chain', leaf.viaIntRevoked, [])?.reason, 'revoked');
  assert.equal(run(['root', 'int'], 'chain', leaf.viaInt, []), undefined);
});

test('the newest CRL of an issuer decides (a certificate taken off hold passes)', () => {
  assert.equal(run(['rootOld', 'root'], 'chain', leaf.good), undefined);
  assert.equal(run(['rootOld'], 'chain', leaf.good)?.reason, 'revoked');
});

test('a CRL in a configured CA\'s name with another signature stops start-up', () => {
  assert.throws(() => run(['forged'], 'chain', leaf.good), (e: Error & { code?: string }) => e.code === 'PCL_ERR_CRL_PARSE' && /is not signed by the key of the client_ca certificate/.test(e.message));
});

test('an expired CRL still applies', () => {
  assert.equal(run(['expired'], 'chain', leaf.revoked)?.reason, 'revoked');
  assert.equal(run(['expired'], 'chain', leaf.good), undefined);
});

test('the digest input is every CRL\'s DER, so a changed CRL changes the trust digest', () => {
  const a = buildCrlCheck([crl.root!], 'chain', [rootX], 'tls').ders;
  const b = buildCrlCheck([crl.rootRevokingInt!], 'chain', [rootX], 'tls').ders;
  assert.equal(a.length, 1);
  assert.notDeepEqual(a[0], b[0]);
});

test('unreadable and malformed CRL files name the field and file', () => {
  const bad = join(dir, 'bad.pem');
  writeFileSync(bad, '-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n');
  assert.throws(() => buildCrlCheck([bad], 'chain', [rootX], 'listeners[0].tls'), /listeners\[0\]\.tls\.crl: .*bad\.pem is not a valid CRL/);
  assert.throws(() => buildCrlCheck([join(dir, 'missing.pem')], 'chain', [rootX], 'listeners[0].tls'), /listeners\[0\]\.tls\.crl: file not found/);
});
