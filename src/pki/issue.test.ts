// The issuing library: shape of CA and leaf certificates for every key type, CSR signing
// (including refusing a tampered CSR), and the helpers for keys, serials and CRLs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, generateKeyPairSync, webcrypto, X509Certificate } from 'node:crypto';
import { createCA, issueCert, loadCA, randomSerial, signCsr } from './issue.js';
import { KEY_TYPES, parseKeyType } from './keys.js';
import { createCrl, normalizeSerial, parseCrls } from './crl.js';
import { summarize } from './inspect.js';
import { x509 } from './x509.js';
import { ErrorCodes, PortcullisError } from '../errors.js';

test('every key type makes a CA and a leaf that verify and load into Node TLS', async () => {
  for (const keyType of KEY_TYPES) {
    if (keyType === 'rsa-4096' || keyType === 'rsa-3072') continue; // slow, same code path as rsa-2048
    const ca = await createCA({ name: `CA ${keyType}`, keyType });
    const leaf = await issueCert(ca, { type: 'both', cn: 'svc', keyType });
    const x = new X509Certificate(leaf.certPem);
    const caX = new X509Certificate(ca.certPem);
    assert.ok(x.verify(caX.publicKey), keyType);
    assert.ok(x.checkPrivateKey(createPrivateKey(leaf.keyPem)), keyType);
    assert.ok(caX.ca);
    const s = summarize(x);
    assert.deepEqual(s.eku, ['serverAuth', 'clientAuth']);
    assert.deepEqual(s.keyUsage, keyType.startsWith('rsa') ? ['digitalSignature', 'keyEncipherment'] : ['digitalSignature']);
    // CN doubles as DNS SAN for server-capable certificates without SANs
    assert.equal(x.subjectAltName, 'DNS:svc');
    const loaded = await loadCA(ca.certPem, ca.keyPem);
    assert.equal(loaded.keyType, keyType);
    assert.equal(loaded.isRoot, true);
  }
});

test('CA extensions, validity defaults and subject order', async () => {
  const before = Date.now();
  const root = await createCA({ name: 'Root', pathLen: 1 });
  const sub = await createCA({ name: 'Sub', parent: root, pathLen: 0 });
  const leaf = await issueCert(sub, { type: 'client', cn: 'svc', ou: ['a', 'b'], o: ['Org'] });
  const p = new x509.X509Certificate(root.certPem);
  const bc = p.getExtension(x509.BasicConstraintsExtension)!;
  assert.equal(bc.ca, true);
  assert.equal(bc.critical, true);
  assert.equal(bc.pathLength, 1);
  const ku = p.getExtension(x509.KeyUsagesExtension)!;
  assert.equal(ku.critical, true);
  assert.equal(ku.usages, x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
  assert.ok(p.getExtension(x509.SubjectKeyIdentifierExtension));
  const years = (p.notAfter.getTime() - before) / (365 * 86_400_000);
  assert.ok(years > 9.9 && years < 10.1, `CA validity ${years} years`);

  const l = new X509Certificate(leaf.certPem);
  assert.equal(l.subject, 'O=Org\nOU=a\nOU=b\nCN=svc');
  assert.equal(l.subjectAltName, undefined, 'client certificates get no made-up SAN');
  const days = (new Date(l.validTo).getTime() - before) / 86_400_000;
  assert.ok(days > 89.9 && days < 90.1, `leaf validity ${days} days`);
  assert.ok(new Date(l.validFrom).getTime() <= before - 4 * 60_000, 'notBefore is backdated for clock skew');
  // chain: leaf + intermediate, never the root
  assert.equal(leaf.chainPem.match(/BEGIN CERTIFICATE/g)!.length, 2);
  assert.equal(sub.chainPem, sub.certPem);
  const aki = new x509.X509Certificate(leaf.certPem).getExtension(x509.AuthorityKeyIdentifierExtension)!;
  assert.equal(aki.keyId, new x509.X509Certificate(sub.certPem).getExtension(x509.SubjectKeyIdentifierExtension)!.keyId);
});

test('serials are 16 random positive bytes in uppercase hex', async () => {
  const seen = new Set<string>();
  for (let i = 0; i < 500; i++) {
    const s = randomSerial();
    assert.match(s, /^[1-7][0-9A-F]{31}$|^0[1-9A-F][0-9A-F]{30}$/);
    seen.add(s);
  }
  assert.equal(seen.size, 500);
  const ca = await createCA({ name: 'S' });
  const c = await issueCert(ca, { type: 'client', cn: 'x' });
  assert.equal(new X509Certificate(c.certPem).serialNumber.toUpperCase(), normalizeSerial(c.serial).padStart(32, '0'));
});

test('EKU override: none leaves the extension out', async () => {
  const ca = await createCA({ name: 'E' });
  for (const eku of ['none', []] as const) {
    const c = await issueCert(ca, { type: 'client', cn: 'x', eku: eku as 'none' });
    assert.equal(new X509Certificate(c.certPem).keyUsage, undefined);
  }
  const c = await issueCert(ca, { type: 'client', cn: 'x', eku: ['serverAuth'] });
  assert.deepEqual(new X509Certificate(c.certPem).keyUsage, ['1.3.6.1.5.5.7.3.1']);
});

test('signCsr keeps the subject, sets our extensions and refuses a tampered CSR', async () => {
  const ca = await createCA({ name: 'CSR CA' });
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: 'CN=from-csr, O=Elsewhere',
    keys,
    signingAlgorithm: alg,
    // a requester asking to be a CA must not get it
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true)],
  });
  const signed = await signCsr(ca, csr.toString('pem'), { type: 'client', uri: ['spiffe://example.org/a'] });
  const x = new X509Certificate(signed.certPem);
  assert.equal(x.subject, 'CN=from-csr\nO=Elsewhere');
  assert.equal(x.ca, false);
  assert.equal(x.subjectAltName, 'URI:spiffe://example.org/a');
  assert.deepEqual(x.keyUsage, ['1.3.6.1.5.5.7.3.2']);

  const der = Buffer.from(csr.rawData);
  der[der.length - 10]! ^= 0xff; // inside the signature
  const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
  await assert.rejects(signCsr(ca, tampered, { type: 'client' }, 'bad.csr'), (e: unknown) => e instanceof PortcullisError && e.code === ErrorCodes.CSR_INVALID && /bad\.csr/.test(e.message));
  await assert.rejects(signCsr(ca, 'not a csr', { type: 'client' }), (e: unknown) => e instanceof PortcullisError && e.code === ErrorCodes.CSR_INVALID);
});

test('loadCA refuses a key that does not belong to the certificate, and non-CA certificates', async () => {
  const a = await createCA({ name: 'A' });
  const b = await createCA({ name: 'B' });
  await assert.rejects(loadCA(a.certPem, b.keyPem), (e: unknown) => e instanceof PortcullisError && e.code === ErrorCodes.KEY_MISMATCH);
  const leaf = await issueCert(a, { type: 'client', cn: 'x' });
  await assert.rejects(loadCA(leaf.certPem, leaf.keyPem), (e: unknown) => e instanceof PortcullisError && e.code === ErrorCodes.CA_NOT_CA);
  const dsa = generateKeyPairSync('dsa', { modulusLength: 2048, divisorLength: 256 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  await assert.rejects(loadCA(a.certPem, dsa), (e: unknown) => e instanceof PortcullisError && e.code === ErrorCodes.KEY_TYPE_UNKNOWN);
});

test('parseKeyType is a usage error for unknown types', () => {
  assert.throws(() => parseKeyType('dsa-1024'), (e: unknown) => e instanceof PortcullisError && e.code === ErrorCodes.KEY_TYPE_UNKNOWN && e.exitCode === 2);
});

test('CRLs: PEM and DER, several per file, reasons and serial normalisation', async () => {
  const ca = await createCA({ name: 'CRL CA' });
  const pem = await createCrl(ca, [
    { serial: '00AB', date: new Date('2030-01-01T00:00:00Z'), reason: 'superseded' },
    { serial: '7F01', date: new Date('2030-01-02T00:00:00Z') },
  ], { crlNumber: 5 });
  assert.match(pem, /^-----BEGIN X509 CRL-----\n/);
  const [info] = parseCrls(pem);
  assert.equal(info!.revoked.get('AB')?.reason, 'superseded');
  assert.equal(info!.revoked.get('7F01')?.reason, undefined);
  assert.equal(info!.revoked.get('7F01')?.date.toISOString(), '2030-01-02T00:00:00.000Z');
  assert.equal(parseCrls(info!.der).length, 1);
  assert.equal(parseCrls(pem + pem).length, 2);
  assert.throws(() => parseCrls('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', 'x.pem'), (e: unknown) => e instanceof PortcullisError && e.code === ErrorCodes.CRL_PARSE);
  assert.throws(() => parseCrls(Buffer.from('garbage'), 'g.der'), (e: unknown) => e instanceof PortcullisError && e.code === ErrorCodes.CRL_PARSE);
});
