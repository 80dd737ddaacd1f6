// The standard test PKI that end-to-end tests share: a root, a server certificate, good
// clients and one certificate for each way a client certificate can be wrong. Generated
// fresh (ECDSA P-256, in parallel) once per test file; nothing here is ever committed.
import { join, resolve } from 'node:path';
import { mkdirSync } from 'node:fs';
import { createCA, issueCert, type CaHandle, type IssueOptions } from '../../src/pki/issue.js';
import { writeAllAtomic, type PendingFile } from '../../src/pki/atomic-write.js';
import { createCrl } from '../../src/pki/crl.js';

/** Absolute paths (cert, key, chain = leaf + intermediates) and the serial (uppercase hex). */
export interface PkiEntry {
  cert: string;
  key: string;
  chain: string;
  serial: string;
}

export interface TestPki {
  dir: string;
  /** root "Test Root CA": the trust anchor for client_ca */
  ca: PkiEntry;
  /** server certificate for localhost, 127.0.0.1 and ::1, issued by the root */
  server: PkiEntry;
  /** CN=payment-service,OU=prod,O=Example with URI, DNS and email SANs */
  client: PkiEntry;
  /** CN=reporting,OU=staging,O=Example */
  client2: PkiEntry;
  expired: PkiEntry;
  notYetValid: PkiEntry;
  /** client identity whose EKU is serverAuth only: must be refused */
  serverEkuOnly: PkiEntry;
  /** no EKU extension at all: must be accepted */
  noEku: PkiEntry;
  /** "Rogue Intermediate", a CA certificate signed by the root, presented as a client cert */
  caAsLeaf: PkiEntry;
  /** unrelated root "Other Root CA" and a client certificate it issued */
  otherCa: PkiEntry;
  untrusted: PkiEntry;
  /** "Test Intermediate CA" under the root, and a client under it (chain = leaf + intermediate) */
  intermediate: PkiEntry;
  viaIntermediate: PkiEntry;
  /** root -> i1 -> i2 -> i3 -> client; chain = leaf + i3 + i2 + i1 */
  deep: PkiEntry;
  /** a good client certificate from the root that `crl` lists as revoked (keyCompromise) */
  revoked: PkiEntry;
  /**
   * PEM bundle of current CRLs from the root, the intermediate and i1..i3 (only `revoked`
   * is listed). Node and nginx check every certificate of a chain once a CRL is configured,
   * so every CA needs one for the good chains to keep passing.
   */
  crl: string;
  /** in-memory CAs, for tests that need to issue more (e.g. to revoke one) */
  handles: { root: CaHandle; intermediate: CaHandle; other: CaHandle };
}

const DAY = 86_400_000;

export async function makeTestPki(dir: string): Promise<TestPki> {
  const abs = resolve(dir);
  mkdirSync(abs, { recursive: true });
  const files: PendingFile[] = [];
  const put = (name: string, c: { certPem: string; keyPem: string; chainPem: string }, serial: string): PkiEntry => {
    const e = { cert: join(abs, `${name}.crt`), key: join(abs, `${name}.key`), chain: join(abs, `${name}.chain.crt`), serial };
    files.push({ path: e.cert, data: c.certPem }, { path: e.key, data: c.keyPem, mode: 0o600 }, { path: e.chain, data: c.chainPem });
    return e;
  };
  const caEntry = (name: string, ca: CaHandle): PkiEntry => put(name, ca, ca.cert.serialNumber.toUpperCase());

  const [root, other] = await Promise.all([createCA({ name: 'Test Root CA' }), createCA({ name: 'Other Root CA' })]);
  const [intermediate, rogue, i1] = await Promise.all([
    createCA({ name: 'Test Intermediate CA', parent: root, pathLen: 0 }),
    createCA({ name: 'Rogue Intermediate', parent: root }),
    createCA({ name: 'Deep Intermediate 1', parent: root }),
  ]);
  const i2 = await createCA({ name: 'Deep Intermediate 2', parent: i1 });
  const i3 = await createCA({ name: 'Deep Intermediate 3', parent: i2 });

  const now = Date.now();
  const payment: IssueOptions = {
    type: 'client',
    cn: 'payment-service',
    ou: ['prod'],
    o: ['Example'],
    uri: ['spiffe://example.org/ns/prod/sa/payment'],
    dns: ['payment.svc.example.com'],
    email: ['pay@example.com'],
  };
  const [server, client, client2, expired, notYetValid, serverEkuOnly, noEku, untrusted, viaIntermediate, deep, revoked] = await Promise.all([
    issueCert(root, { type: 'server', cn: 'localhost', dns: ['localhost'], ip: ['127.0.0.1', '::1'] }),
    issueCert(root, payment),
    issueCert(root, {
      type: 'client',
      cn: 'reporting',
      ou: ['staging'],
      o: ['Example'],
      uri: ['spiffe://example.org/ns/staging/sa/reporting'],
      dns: ['reporting.example.net'],
    }),
    issueCert(root, { type: 'client', cn: 'expired-client', o: ['Example'], notBefore: new Date(now - 30 * DAY), notAfter: new Date(now - DAY) }),
    issueCert(root, { type: 'client', cn: 'future-client', o: ['Example'], notBefore: new Date(now + 10 * DAY), notAfter: new Date(now + 100 * DAY) }),
    issueCert(root, { ...payment, cn: 'server-eku-only', eku: ['serverAuth'] }),
    issueCert(root, { ...payment, cn: 'no-eku', eku: 'none' }),
    issueCert(other, { ...payment, cn: 'untrusted-client' }),
    issueCert(intermediate, { ...payment, cn: 'via-intermediate' }),
    issueCert(i3, { ...payment, cn: 'deep-client' }),
    issueCert(root, { ...payment, cn: 'revoked-client' }),
  ]);
  const crls = await Promise.all([
    createCrl(root, [{ serial: revoked.serial, date: new Date(now - 3_600_000), reason: 'keyCompromise' }]),
    ...[intermediate, i1, i2, i3].map((ca) => createCrl(ca, [])),
  ]);
  const crl = join(abs, 'crl.pem');
  files.push({ path: crl, data: crls.join('') });

  const pki: TestPki = {
    dir: abs,
    ca: caEntry('ca', root),
    server: put('server', server, server.serial),
    client: put('client', client, client.serial),
    client2: put('client2', client2, client2.serial),
    expired: put('expired', expired, expired.serial),
    notYetValid: put('not-yet-valid', notYetValid, notYetValid.serial),
    serverEkuOnly: put('server-eku-only', serverEkuOnly, serverEkuOnly.serial),
    noEku: put('no-eku', noEku, noEku.serial),
    caAsLeaf: caEntry('ca-as-leaf', rogue),
    otherCa: caEntry('other-ca', other),
    untrusted: put('untrusted', untrusted, untrusted.serial),
    intermediate: caEntry('intermediate', intermediate),
    viaIntermediate: put('via-intermediate', viaIntermediate, viaIntermediate.serial),
    deep: put('deep', deep, deep.serial),
    revoked: put('revoked', revoked, revoked.serial),
    crl,
    handles: { root, intermediate, other },
  };
  writeAllAtomic(files);
  return pki;
}
