// The chain generator: one small PKI per verification rule (name constraints, CA markings,
// critical extensions, key floors, strict RFC 5280, CRL usability), each with the verdict
// the proxy must reach. Made fresh at test time with der-builder.ts; the agreement test
// runs every case through the real proxy, `portcullis cert verify` and `portcullis doctor`.
//
// Layout: every case has its own root ("Root <case>"); cases judged by the shared
// listeners put their root in one bundle (bundle.pem), so one listener serves them all;
// CRL cases get a listener each (their CRLs and crl_mode). Files: <case>/chain.pem (leaf
// then intermediates: what the client sends), <case>/leaf.key, <case>/root.pem.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { randomBytes, type KeyObject } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import {
  extension,
  generalName,
  int,
  ipBytes,
  keyId,
  keyUsage,
  name,
  nameConstraints,
  newKey,
  oid,
  octet,
  seq,
  signed,
  tlv,
  time,
  toPem,
  bool,
  type GN,
  type KeyKind,
  type KeyUsage,
  type NameConstraintSpec,
} from './der-builder.js';

const DAY = 86_400_000;

export interface CertSpec {
  cn?: string;
  o?: string;
  subjectEmail?: string;
  /** empty subject name (then the SAN is marked critical, as RFC 5280 requires) */
  emptySubject?: boolean;
  key?: KeyKind;
  version?: 1 | 3;
  /** basicConstraints: true/false = cA; 'absent' = no extension */
  ca?: boolean | 'absent';
  bcCritical?: boolean;
  ku?: KeyUsage[] | 'absent';
  clientAuth?: boolean;
  san?: GN[];
  nc?: NameConstraintSpec & { critical?: boolean };
  aki?: boolean | 'critical';
  ski?: boolean;
  extra?: { id: string; critical: boolean; value: Buffer }[];
  /** replace the SPKI (explicit-curve keys) */
  spki?: Buffer;
}

export interface Built {
  der: Buffer;
  pem: string;
  key: KeyObject;
  keyPem: string;
  subject: Buffer;
  ski: Buffer | undefined;
}

export function build(spec: CertSpec, issuer?: Built): Built {
  const pair = newKey(spec.key ?? 'ec-p256');
  const spki = spec.spki ?? pair.publicKey.export({ type: 'spki', format: 'der' });
  const subject = spec.emptySubject ? seq() : name({ cn: spec.cn, o: spec.o, email: spec.subjectEmail });
  const isCa = spec.ca === true;
  const ski = spec.ski === false ? undefined : keyId(spki);
  const exts: Buffer[] = [];
  if (spec.ca !== 'absent') exts.push(extension('2.5.29.19', spec.bcCritical ?? true, seq(...(isCa ? [bool(true)] : []))));
  const ku = spec.ku ?? (isCa ? ['keyCertSign', 'cRLSign'] : ['digitalSignature']);
  if (ku !== 'absent') exts.push(extension('2.5.29.15', true, keyUsage(ku)));
  if (!isCa && spec.clientAuth !== false) exts.push(extension('2.5.29.37', false, seq(oid('1.3.6.1.5.5.7.3.2'))));
  if (spec.san?.length) exts.push(extension('2.5.29.17', !!spec.emptySubject, seq(...spec.san.map(generalName))));
  if (spec.nc) exts.push(extension('2.5.29.30', spec.nc.critical ?? true, nameConstraints(spec.nc)));
  if (ski) exts.push(extension('2.5.29.14', false, octet(ski)));
  const issuerSki = issuer ? issuer.ski : ski;
  if (spec.aki !== false && issuerSki) exts.push(extension('2.5.29.35', spec.aki === 'critical', seq(tlv(0x80, issuerSki))));
  for (const e of spec.extra ?? []) exts.push(extension(e.id, e.critical, e.value));
  const now = Date.now();
  const signer = issuer?.key ?? pair.privateKey;
  const version = spec.version ?? 3;
  const tbs = seq(
    ...(version === 3 ? [tlv(0xa0, int(2))] : []),
    int(Buffer.concat([Buffer.from([0x40]), randomBytes(15)])),
    algOf(signer),
    issuer ? issuer.subject : subject,
    seq(time(new Date(now - DAY)), time(new Date(now + 30 * DAY))),
    subject,
    spki,
    ...(version === 3 && exts.length ? [tlv(0xa3, seq(...exts))] : []),
  );
  const der = signed(tbs, signer);
  return { der, pem: toPem(der), key: pair.privateKey, keyPem: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, subject, ski };
}

function algOf(key: KeyObject): Buffer {
  // the AlgorithmIdentifier signed() puts outside the TBS, repeated inside it
  const t = key.asymmetricKeyType;
  if (t === 'rsa') return seq(oid('1.2.840.113549.1.1.11'), Buffer.from([0x05, 0x00]));
  if (t === 'dsa') return seq(oid('2.16.840.1.101.3.4.3.2'));
  return seq(oid('1.2.840.10045.4.3.2'));
}

export interface CrlSpec {
  revoked?: Buffer[];
  number?: 'absent' | 'critical' | number;
  extra?: { id: string; critical: boolean; value: Buffer }[];
  entryExtra?: { id: string; critical: boolean; value: Buffer }[];
}

export function buildCrl(issuer: Built, spec: CrlSpec = {}): string {
  const now = Date.now();
  const exts: Buffer[] = [];
  if (issuer.ski) exts.push(extension('2.5.29.35', false, seq(tlv(0x80, issuer.ski))));
  if (spec.number !== 'absent') exts.push(extension('2.5.29.20', spec.number === 'critical', int(typeof spec.number === 'number' ? spec.number : 1)));
  for (const e of spec.extra ?? []) exts.push(extension(e.id, e.critical, e.value));
  const entries = (spec.revoked ?? []).map((serial) => seq(int(serial), time(new Date(now - 3_600_000)), ...(spec.entryExtra ? [seq(...spec.entryExtra.map((e) => extension(e.id, e.critical, e.value)))] : [])));
  const tbs = seq(int(1), algOf(issuer.key), issuer.subject, time(new Date(now - 3_600_000)), time(new Date(now + 7 * DAY)), ...(entries.length ? [seq(...entries)] : []), tlv(0xa0, seq(...exts)));
  return toPem(signed(tbs, issuer.key), 'X509 CRL');
}

/** An EC P-256 SPKI with explicit curve parameters, from openssl (no library writes one). */
function explicitCurveSpki(dir: string): { spki: Buffer } | undefined {
  const key = join(dir, 'explicit.key');
  const a = spawnSync('openssl', ['ecparam', '-name', 'prime256v1', '-param_enc', 'explicit', '-genkey', '-noout', '-out', key]);
  if (a.status !== 0) return undefined;
  const b = spawnSync('openssl', ['pkey', '-in', key, '-pubout', '-outform', 'DER']);
  return b.status === 0 ? { spki: b.stdout } : undefined;
}

export type Verdict = string;

export interface ChainCase {
  name: string;
  /** the rule it exercises (chain-rules.ts ids, crl-*, openssl-*) */
  rule: string;
  /** listener that judges it: 'main' | 'strict' | 'crl-<case>' | 'load-<case>' (its client_ca cannot load) */
  listener: string;
  chain: string;
  key: string;
  /** 'ok', 'load_error', or the handshake result(s) the proxy must log; several where OpenSSL versions differ */
  expect: Verdict | Verdict[];
}

export interface ListenerTrust {
  client_ca: string[];
  crl?: string[];
  crl_mode?: 'chain' | 'leaf';
  cert_policy?: Record<string, unknown>;
  verify_depth?: number;
}

export interface ChainSet {
  dir: string;
  cases: ChainCase[];
  listeners: Record<string, ListenerTrust>;
}

const CLIENT: CertSpec = { cn: 'client', san: [{ dns: 'client.example.com' }] };

export function makeChainSet(dir: string): ChainSet {
  const abs = resolve(dir);
  mkdirSync(abs, { recursive: true });
  const cases: ChainCase[] = [];
  const bundle: string[] = [];
  const listeners: Record<string, ListenerTrust> = {};

  /** root -> (intermediates...) -> leaf; specs for each; returns the built certs */
  const add = (
    caseName: string,
    rule: string,
    expect: Verdict | Verdict[],
    specs: { root?: CertSpec; ints?: CertSpec[]; leaf?: CertSpec },
    opts: { listener?: string; strictExpect?: Verdict; crl?: (c: { root: Built; ints: Built[]; leaf: Built }) => { files: string[]; mode?: 'chain' | 'leaf' } } = {},
  ): void => {
    const d = join(abs, caseName);
    mkdirSync(d, { recursive: true });
    const root = build({ cn: `Root ${caseName}`, ca: true, ...specs.root });
    const ints: Built[] = [];
    let parent = root;
    for (const [i, s] of (specs.ints ?? [{}]).entries()) {
      const b = build({ cn: `Intermediate ${i + 1} ${caseName}`, ca: true, ...s }, parent);
      ints.push(b);
      parent = b;
    }
    const leaf = build({ ...CLIENT, ...specs.leaf }, parent);
    const chain = join(d, 'chain.pem');
    const key = join(d, 'leaf.key');
    const rootFile = join(d, 'root.pem');
    writeFileSync(chain, [leaf, ...ints.slice().reverse()].map((b) => b.pem).join(''));
    writeFileSync(key, leaf.keyPem, { mode: 0o600 });
    writeFileSync(rootFile, root.pem);
    if (opts.crl) {
      const c = opts.crl({ root, ints, leaf });
      const l = `crl-${caseName}`;
      listeners[l] = { client_ca: [rootFile], crl: c.files.map((f) => join(d, f)), crl_mode: c.mode ?? 'chain' };
      cases.push({ name: caseName, rule, listener: l, chain, key, expect });
      return;
    }
    if (opts.listener === 'load') {
      // refused when the listener loads its client_ca: a case of its own, never in the bundle
      listeners[`load-${caseName}`] = { client_ca: [rootFile] };
      cases.push({ name: caseName, rule, listener: `load-${caseName}`, chain, key, expect });
      return;
    }
    bundle.push(root.pem);
    cases.push({ name: caseName, rule, listener: opts.listener ?? 'main', chain, key, expect });
    if (opts.strictExpect) cases.push({ name: `${caseName} (strict_rfc5280)`, rule, listener: 'strict', chain, key, expect: opts.strictExpect });
  };
  const nc = (n: NameConstraintSpec & { critical?: boolean }): { ints: CertSpec[] } => ({ ints: [{ nc: n }] });
  const write = (caseName: string, file: string, data: string): string => {
    writeFileSync(join(abs, caseName, file), data);
    return file;
  };

  add('baseline', 'baseline', 'ok', {});

  // --- name constraints ----------------------------------------------------------------------
  add('nc-dns-permitted', 'name-constraints', 'ok', { ...nc({ permitted: [{ dns: 'example.com' }] }), leaf: { san: [{ dns: 'api.example.com' }] } });
  add('nc-dns-outside-permitted', 'name-constraints', 'name_constraint', { ...nc({ permitted: [{ dns: 'example.com' }] }), leaf: { san: [{ dns: 'api.example.net' }] } });
  add('nc-dns-excluded', 'name-constraints', 'name_constraint', { ...nc({ excluded: [{ dns: 'bad.example.com' }] }), leaf: { san: [{ dns: 'x.bad.example.com' }] } });
  add('nc-dns-dot-form-excludes-apex', 'name-constraints', 'name_constraint', { ...nc({ permitted: [{ dns: '.example.com' }] }), leaf: { san: [{ dns: 'example.com' }] } });
  add('nc-dns-malformed-leaf-name', 'name-constraints', 'name_constraint', { ...nc({ permitted: [{ dns: 'example.com' }] }), leaf: { san: [{ dns: 'a..example.com' }] } });
  add('nc-dns-malformed-under-uri-constraint', 'name-constraints', 'name_constraint', { ...nc({ permitted: [{ uri: 'example.com' }] }), leaf: { san: [{ dns: 'bad name.example.com' }, { uri: 'https://example.com/' }] } });
  add('nc-email-permitted', 'name-constraints', 'ok', { ...nc({ permitted: [{ email: 'example.com' }] }), leaf: { san: [{ email: 'a@example.com' }] } });
  add('nc-email-outside-permitted', 'name-constraints', 'name_constraint', { ...nc({ permitted: [{ email: 'example.com' }] }), leaf: { san: [{ email: 'a@example.net' }] } });
  add('nc-email-excluded-mailbox', 'name-constraints', 'name_constraint', { ...nc({ excluded: [{ email: 'boss@example.com' }] }), leaf: { san: [{ email: 'boss@example.com' }] } });
  add('nc-email-malformed', 'name-constraints', 'name_constraint', { ...nc({ permitted: [{ email: '.example.com' }] }), leaf: { san: [{ email: 'not-a-mailbox' }] } });
  add('nc-email-subject-dn', 'name-constraints', 'name_constraint', { ...nc({ permitted: [{ email: 'example.com' }] }), leaf: { subjectEmail: 'a@evil.example.net', san: [{ dns: 'client.example.com' }] } });
  add('nc-spiffe-trust-domain', 'name-constraints', 'ok', { ...nc({ permitted: [{ uri: 'prod.example.org' }] }), leaf: { san: [{ uri: 'spiffe://prod.example.org/ns/a/sa/b' }] } });
  add('nc-spiffe-other-trust-domain', 'name-constraints', 'name_constraint', { ...nc({ permitted: [{ uri: 'prod.example.org' }] }), leaf: { san: [{ uri: 'spiffe://other.example.org/ns/a/sa/b' }] } });
  add('nc-spiffe-lookalike-domain', 'name-constraints', 'name_constraint', { ...nc({ permitted: [{ uri: 'prod.example.org' }] }), leaf: { san: [{ uri: 'spiffe://prod.example.org.evil.com/ns/a' }] } });
  add('nc-spiffe-subdomain-of-exact-host', 'name-constraints', 'name_constraint', { ...nc({ permitted: [{ uri: 'prod.example.org' }] }), leaf: { san: [{ uri: 'spiffe://eu.prod.example.org/ns/a' }] } });
  add('nc-uri-dot-domain', 'name-constraints', 'ok', { ...nc({ permitted: [{ uri: '.example.org' }] }), leaf: { san: [{ uri: 'spiffe://prod.example.org/ns/a' }] } });
  // OpenSSL 3.5 fails the handshake itself on this one (ERR_SSL_INVALID_PORT_NUMBER)
  add('nc-uri-without-host', 'name-constraints', ['name_constraint', 'error'], { ...nc({ permitted: [{ uri: 'prod.example.org' }] }), leaf: { san: [{ uri: 'urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66' }] } });
  add('nc-ip-permitted', 'name-constraints', 'ok', { ...nc({ permitted: [{ ip: Buffer.concat([ipBytes('10.0.0.0'), ipBytes('255.0.0.0')]) }] }), leaf: { san: [{ ip: ipBytes('10.1.2.3') }] } });
  add('nc-ip-outside-permitted', 'name-constraints', 'name_constraint', { ...nc({ permitted: [{ ip: Buffer.concat([ipBytes('10.0.0.0'), ipBytes('255.0.0.0')]) }] }), leaf: { san: [{ ip: ipBytes('192.168.1.1') }] } });
  add('nc-ipv6-excluded', 'name-constraints', 'name_constraint', { ...nc({ excluded: [{ ip: Buffer.concat([ipBytes('fd00::'), ipBytes('ff00::')]) }] }), leaf: { san: [{ ip: ipBytes('fd00::1') }] } });
  add('nc-ip-noncontiguous-mask', 'name-constraints', 'name_constraint', { ...nc({ permitted: [{ ip: Buffer.concat([ipBytes('10.0.0.0'), ipBytes('255.0.255.0')]) }] }), leaf: { san: [{ ip: ipBytes('10.0.0.1') }] } });
  add('nc-in-trust-anchor', 'name-constraints', 'name_constraint', { root: { nc: { permitted: [{ dns: 'example.com' }] } }, leaf: { san: [{ dns: 'x.example.net' }] } });
  add('nc-dirname-on-intermediate', 'name-constraints', 'name_constraint', { root: { nc: { permitted: [{ dir: name({ o: 'Example' }) }] } }, ints: [{ o: 'Other' }], leaf: { o: 'Example' } });
  add('nc-empty-extension', 'name-constraints', 'name_constraint', nc({ raw: seq() }));
  add('nc-empty-permitted-subtrees', 'name-constraints', 'name_constraint', nc({ raw: seq(tlv(0xa0)) }));
  add('nc-empty-excluded-subtrees', 'name-constraints', 'name_constraint', nc({ raw: seq(tlv(0xa1)) }));
  add('nc-permitted-with-empty-excluded', 'name-constraints', 'name_constraint', nc({ permitted: [{ dns: 'example.com' }], excluded: [] }));
  add('nc-with-maximum', 'name-constraints', 'name_constraint', nc({ permitted: [{ dns: 'example.com' }], withMaximum: true }));
  add('nc-cn-host-without-dns-san', 'name-constraints', 'name_constraint', { ...nc({ permitted: [{ dns: 'example.com' }] }), leaf: { cn: 'api.example.net', san: [{ uri: 'spiffe://example.com/a' }] } });
  add('nc-in-end-entity', 'name-constraints-misplaced', 'name_constraint', { leaf: { nc: { permitted: [{ dns: 'example.com' }] } } });

  // --- CA markings and the leaf's key usage --------------------------------------------------
  add('leaf-key-cert-sign', 'leaf-key-cert-sign', 'ca_as_leaf', { leaf: { ku: ['digitalSignature', 'keyCertSign'] } });
  add('intermediate-v1', 'ca-not-v3-ca', 'unknown_ca', { ints: [{ version: 1 }] });
  // a trust anchor that is no CA stops the listener from loading (tls/pem.ts readCaFiles)
  add('trust-anchor-v1', 'ca-not-v3-ca', 'load_error', { root: { version: 1 } }, { listener: 'load' });
  add('intermediate-key-usage-only', 'ca-not-v3-ca', 'unknown_ca', { ints: [{ ca: 'absent', ku: ['keyCertSign', 'cRLSign'], clientAuth: false }] });
  add('trust-anchor-without-basic-constraints', 'ca-not-v3-ca', 'load_error', { root: { ca: 'absent' } }, { listener: 'load' });

  // --- critical extensions OpenSSL does not process (it refuses; the explainer must say why)
  const unknown = { id: '1.3.6.1.4.1.55555.1', critical: true, value: Buffer.from([0x05, 0x00]) };
  add('leaf-unknown-critical-extension', 'critical-extension', 'invalid_cert', { leaf: { extra: [unknown] } });
  add('intermediate-unknown-critical-extension', 'critical-extension', 'invalid_cert', { ints: [{ extra: [unknown] }] });
  add('trust-anchor-unknown-critical-extension', 'critical-extension', 'invalid_cert', { root: { extra: [unknown] } });
  add('leaf-critical-aki', 'critical-extension', 'invalid_cert', { leaf: { aki: 'critical' } });
  add('leaf-critical-malformed-aia', 'critical-extension', 'invalid_cert', { leaf: { extra: [{ id: '1.3.6.1.5.5.7.1.1', critical: true, value: Buffer.from([0x30, 0x03, 0x02, 0x01]) }] } });

  // --- CA keys under the cert_policy floor --------------------------------------------------------
  add('trust-anchor-rsa-1024', 'ca-key-policy', 'policy', { root: { key: 'rsa-1024' } });
  add('trust-anchor-dsa', 'ca-key-policy', 'policy', { root: { key: 'dsa' } });
  add('trust-anchor-p192', 'ca-key-policy', 'policy', { root: { key: 'ec-p192' } });
  add('intermediate-rsa-1024', 'ca-key-policy', 'policy', { ints: [{ key: 'rsa-1024' }] });
  const explicit = explicitCurveSpki(abs);
  // OpenSSL cannot verify a signature with it (CERT_SIGNATURE_FAILURE); a TLS 1.2 client
  // even gets the handshake aborted (ERR_SSL_EVP_LIB): refused either way
  if (explicit) add('intermediate-explicit-curve', 'openssl-signature', ['unknown_ca', 'error'], { ints: [{ spki: explicit.spki }] });

  // --- strict_rfc5280: accepted by default, refused with the key ----------------------------
  add('leaf-without-aki', 'strict-aki', 'ok', { leaf: { aki: false } }, { strictExpect: 'invalid_cert' });
  add('intermediate-without-ski', 'strict-ski', 'ok', { ints: [{ ski: false }] }, { strictExpect: 'invalid_cert' });
  add('trust-anchor-basic-constraints-not-critical', 'strict-critical', 'ok', { root: { bcCritical: false } }, { strictExpect: 'invalid_cert' });
  add('intermediate-name-constraints-not-critical', 'strict-critical', 'ok', nc({ permitted: [{ dns: 'example.com' }], critical: false }), { strictExpect: 'invalid_cert' });

  // --- pathological chains -------------------------------------------------------------------
  add('empty-subject-leaf', 'baseline', 'ok', { leaf: { emptySubject: true, san: [{ dns: 'client.example.com' }] } });
  add('five-intermediates', 'depth', 'depth_exceeded', { ints: [{}, {}, {}, {}, {}] });

  // --- CRL usability ------------------------------------------------------------------------------
  const crls = (caseName: string, root: Built, ints: Built[], intSpec: CrlSpec, mode: 'chain' | 'leaf' = 'chain') => ({
    files: [write(caseName, 'root.crl', buildCrl(root)), write(caseName, 'int.crl', buildCrl(ints[0]!, intSpec))],
    mode,
  });
  add('crl-conforming', 'crl', 'ok', {}, { crl: ({ root, ints }) => crls('crl-conforming', root, ints, {}) });
  add('crl-number-critical', 'crl-unusable', 'revocation_unknown', {}, { crl: ({ root, ints }) => crls('crl-number-critical', root, ints, { number: 'critical' }) });
  add('crl-unknown-critical-extension', 'crl-unusable', 'revocation_unknown', {}, {
    crl: ({ root, ints }) => crls('crl-unknown-critical-extension', root, ints, { extra: [{ id: '1.3.6.1.4.1.55555.2', critical: true, value: Buffer.from([0x05, 0x00]) }] }),
  });
  add('crl-critical-issuing-distribution-point', 'crl-unusable', 'revocation_unknown', {}, {
    crl: ({ root, ints }) => crls('crl-critical-issuing-distribution-point', root, ints, { extra: [{ id: '2.5.29.28', critical: true, value: seq(tlv(0x81, Buffer.from([0xff]))) }] }),
  });
  add('crl-entry-critical-certificate-issuer', 'crl-unusable', 'revocation_unknown', {}, {
    crl: ({ root, ints }) => crls('crl-entry-critical-certificate-issuer', root, ints, { revoked: [randomBytes(8)], entryExtra: [{ id: '2.5.29.29', critical: true, value: seq(generalName({ dns: 'x.example' })) }] }),
  });
  add('crl-issuer-without-crl-sign', 'crl-unusable', 'revocation_unknown', { ints: [{ ku: ['keyCertSign'] }] }, { crl: ({ root, ints }) => crls('crl-issuer-without-crl-sign', root, ints, {}) });
  add('crl-without-number-chain-mode', 'crl-unusable', 'revocation_unknown', {}, { crl: ({ root, ints }) => crls('crl-without-number-chain-mode', root, ints, { number: 'absent' }) });
  // an intermediate with an empty subject (its CRL's issuer is the empty Name): judged, not a crash
  add('crl-intermediate-empty-subject', 'crl', 'ok', { ints: [{ emptySubject: true, san: [{ dns: 'ca.example.com' }] }] }, { crl: ({ root, ints }) => crls('crl-intermediate-empty-subject', root, ints, {}) });
  add('crl-intermediate-empty-subject-without-crl-sign', 'crl-unusable', 'revocation_unknown', { ints: [{ emptySubject: true, san: [{ dns: 'ca.example.com' }], ku: ['keyCertSign'] }] }, {
    crl: ({ root, ints }) => crls('crl-intermediate-empty-subject-without-crl-sign', root, ints, {}),
  });
  add('crl-without-number-leaf-mode', 'crl-unusable', 'ok', {}, { crl: ({ root, ints }) => crls('crl-without-number-leaf-mode', root, ints, { number: 'absent' }, 'leaf') });

  const bundleFile = join(abs, 'bundle.pem');
  writeFileSync(bundleFile, bundle.join(''));
  listeners.main = { client_ca: [bundleFile] };
  listeners.strict = { client_ca: [bundleFile], cert_policy: { strict_rfc5280: true } };
  return { dir: abs, cases, listeners };
}
