// Programmatic certificate issuing: CAs (root and intermediate) and leaf certificates.
// Shared by `portcullis ca` / `cert issue`, `portcullis demo` and the test PKI, so every
// certificate portcullis makes has the same, RFC 5280-correct shape.
import { createPrivateKey, randomBytes, webcrypto, X509Certificate as NodeX509 } from 'node:crypto';
import { x509 } from './x509.js';
import { generateKeyPair, importPrivateKeyPem, isRsa, privateKeyToPem, signingAlgorithm, type KeyType } from './keys.js';
import { ErrorCodes, PortcullisError } from '../errors.js';

export type { KeyType } from './keys.js';

type CryptoKey = webcrypto.CryptoKey;

const DAY_MS = 86_400_000;
/** Leaves start 5 minutes in the past so a peer whose clock runs slightly behind accepts them. */
const CLOCK_SKEW_MS = 5 * 60_000;

export interface CaHandle {
  certPem: string;
  keyPem: string;
  /** this CA and its parents up to, excluding, the root; for a root just its own certificate */
  chainPem: string;
  /** the CA's common name */
  name: string;
  /** parsed certificate */
  cert: x509.X509Certificate;
  /** signing key */
  key: CryptoKey;
  keyType: KeyType;
  /** true for a self-signed (root) CA */
  isRoot: boolean;
}

export interface IssuedCert {
  certPem: string;
  keyPem: string;
  /** leaf + intermediates (no root) */
  chainPem: string;
  /** uppercase hex */
  serial: string;
}

export interface CreateCaOptions {
  name: string;
  keyType?: KeyType;
  days?: number;
  notBefore?: Date;
  notAfter?: Date;
  /** when given, the new CA is an intermediate signed by this one */
  parent?: CaHandle;
  /** basicConstraints pathLenConstraint; absent = unlimited */
  pathLen?: number;
  /** subject O / OU, placed before the CN */
  o?: string[];
  ou?: string[];
}

export type LeafType = 'client' | 'server' | 'both';
export type Eku = 'clientAuth' | 'serverAuth';

export interface IssueOptions {
  type: LeafType;
  cn: string;
  ou?: string[];
  o?: string[];
  dns?: string[];
  ip?: string[];
  uri?: string[];
  email?: string[];
  days?: number;
  notBefore?: Date;
  notAfter?: Date;
  keyType?: KeyType;
  /** override for tests: [] or 'none' leave the EKU extension out */
  eku?: Eku[] | 'none';
  /** OCSP responder URL written into the Authority Information Access extension */
  ocspUrl?: string;
}

export interface SignCsrOptions extends Omit<IssueOptions, 'keyType' | 'cn'> {
  /** replaces the CSR's CN; by default the CSR's subject is kept as it is */
  cn?: string;
}

/**
 * A random positive serial of 16 bytes (RFC 5280 allows 20; CA/B Forum asks for 64+ bits
 * of entropy). The first byte stays in 0x01..0x7f so the DER INTEGER is exactly 16 bytes
 * and the hex reads the same everywhere (openssl, Node, our state file).
 */
export function randomSerial(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) || 0x01;
  return b.toString('hex').toUpperCase();
}

/**
 * Subject in DER order O, OU, CN, one attribute per RDN, so RFC 4514 (which reverses
 * the order) reads `CN=...,OU=...,O=...`. UTF8String is what RFC 5280 asks of new certs.
 */
function subjectName(cn: string | undefined, ou: string[] = [], o: string[] = []): x509.Name {
  const rdns: x509.JsonNameParams = [];
  for (const v of o) rdns.push({ O: [{ utf8String: v }] });
  for (const v of ou) rdns.push({ OU: [{ utf8String: v }] });
  if (cn !== undefined) rdns.push({ CN: [{ utf8String: cn }] });
  return new x509.Name(rdns);
}

function validity(opts: { days?: number; notBefore?: Date; notAfter?: Date }, defaultDays: number): { notBefore: Date; notAfter: Date } {
  const notBefore = opts.notBefore ?? new Date(Date.now() - CLOCK_SKEW_MS);
  const notAfter = opts.notAfter ?? new Date(notBefore.getTime() + CLOCK_SKEW_MS + (opts.days ?? defaultDays) * DAY_MS);
  if (notAfter.getTime() <= notBefore.getTime()) {
    throw new PortcullisError(ErrorCodes.USAGE, `the certificate would expire (${notAfter.toISOString()}) before it starts (${notBefore.toISOString()}); use a positive --days`, {
      exitCode: 2,
    });
  }
  return { notBefore, notAfter };
}

/** AKI pointing at the issuer's own SKI, so the link holds even for CAs made by other tools. */
async function authorityKeyId(ca: CaHandle): Promise<x509.AuthorityKeyIdentifierExtension> {
  const ski = ca.cert.getExtension(x509.SubjectKeyIdentifierExtension);
  if (ski) return new x509.AuthorityKeyIdentifierExtension(ski.keyId, false);
  return x509.AuthorityKeyIdentifierExtension.create(ca.cert.publicKey, false);
}

function pem(cert: x509.X509Certificate): string {
  return cert.toString('pem').trim() + '\n';
}

/** Creates a root CA, or an intermediate when `parent` is given. */
export async function createCA(opts: CreateCaOptions): Promise<CaHandle> {
  const keyType = opts.keyType ?? 'ec-p256';
  const keys = await generateKeyPair(keyType);
  const { notBefore, notAfter } = validity(opts, 3650);
  const subject = subjectName(opts.name, opts.ou, opts.o);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(true, opts.pathLen, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false),
  ];
  const parent = opts.parent;
  if (parent) extensions.push(await authorityKeyId(parent));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject,
    issuer: parent ? parent.cert.subjectName : subject,
    notBefore,
    notAfter,
    publicKey: keys.publicKey,
    signingKey: parent ? parent.key : keys.privateKey,
    signingAlgorithm: signingAlgorithm(parent ? parent.keyType : keyType),
    extensions,
  });
  const certPem = pem(cert);
  return {
    certPem,
    keyPem: privateKeyToPem(keys.privateKey),
    chainPem: parent && !parent.isRoot ? certPem + parent.chainPem : certPem,
    name: opts.name,
    cert,
    key: keys.privateKey,
    keyType,
    isRoot: !parent,
  };
}

/**
 * Rebuilds a CaHandle from PEM files (what `ca init` wrote, or a CA made elsewhere).
 * `chainPem` is the CA's own chain up to, excluding, the root; defaults to its certificate.
 */
export async function loadCA(certPem: string, keyPem: string, chainPem?: string, paths: { cert?: string; key?: string } = {}): Promise<CaHandle> {
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(certPem);
  } catch (err) {
    throw new PortcullisError(ErrorCodes.CERT_PARSE, `${paths.cert ?? 'the CA certificate'} is not a PEM certificate`, { path: paths.cert, cause: err });
  }
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  if (!bc?.ca) {
    throw new PortcullisError(ErrorCodes.CA_NOT_CA, `${paths.cert ?? 'the CA certificate'} is not a CA certificate (basicConstraints CA:TRUE missing)`, { path: paths.cert });
  }
  const { key, type } = await importPrivateKeyPem(keyPem, paths.key);
  if (!new NodeX509(certPem).checkPrivateKey(createPrivateKey(keyPem))) {
    throw new PortcullisError(ErrorCodes.KEY_MISMATCH, `${paths.key ?? 'the CA key'} does not belong to ${paths.cert ?? 'the CA certificate'}`, { path: paths.key });
  }
  const isRoot = cert.subject === cert.issuer && (await cert.isSelfSigned());
  return {
    certPem: pem(cert),
    keyPem,
    chainPem: chainPem ?? pem(cert),
    name: cert.subjectName.getField('CN')[0] ?? cert.subject,
    cert,
    key,
    keyType: type,
    isRoot,
  };
}

function leafExtensions(opts: Omit<IssueOptions, 'keyType' | 'cn'>, rsa: boolean, fallbackDns: string | undefined): x509.Extension[] {
  // keyEncipherment only matters for RSA key transport (TLS 1.2 RSA kx); EC keys never do it.
  const ku = x509.KeyUsageFlags.digitalSignature | (rsa ? x509.KeyUsageFlags.keyEncipherment : 0);
  const ext: x509.Extension[] = [new x509.BasicConstraintsExtension(false, undefined, true), new x509.KeyUsagesExtension(ku, true)];
  const eku =
    opts.eku === 'none'
      ? []
      : (opts.eku ??
        (opts.type === 'client' ? ['clientAuth'] : opts.type === 'server' ? ['serverAuth'] : ['serverAuth', 'clientAuth']));
  if (eku.length) ext.push(new x509.ExtendedKeyUsageExtension(eku.map((u) => x509.ExtendedKeyUsage[u]), false));
  const names: x509.JsonGeneralNames = [];
  const dns = opts.dns?.length ? opts.dns : fallbackDns !== undefined ? [fallbackDns] : [];
  for (const v of dns) names.push({ type: 'dns', value: v });
  for (const v of opts.ip ?? []) names.push({ type: 'ip', value: v });
  for (const v of opts.uri ?? []) names.push({ type: 'url', value: v });
  for (const v of opts.email ?? []) names.push({ type: 'email', value: v });
  if (names.length) ext.push(new x509.SubjectAlternativeNameExtension(names, false));
  if (opts.ocspUrl) ext.push(new x509.AuthorityInfoAccessExtension({ ocsp: opts.ocspUrl }, false));
  return ext;
}

/**
 * Clients stopped checking the CN long ago (RFC 6125), so a server certificate must carry
 * its name as a SAN: when no DNS name was given and the CN is one, the CN becomes one.
 */
function serverFallbackDns(type: LeafType, cn: string | undefined, dns: string[] | undefined): string | undefined {
  if (type === 'client' || dns?.length || !cn) return undefined;
  return /^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(cn) ? cn : undefined;
}

function leafChain(ca: CaHandle, certPem: string): string {
  return ca.isRoot ? certPem : certPem + ca.chainPem;
}

async function signLeaf(
  ca: CaHandle,
  opts: Omit<IssueOptions, 'keyType' | 'cn'>,
  subject: x509.Name,
  publicKey: CryptoKey | x509.PublicKey,
  rsa: boolean,
  fallbackDns: string | undefined,
): Promise<{ certPem: string; serial: string }> {
  const { notBefore, notAfter } = validity(opts, 90);
  const serial = randomSerial();
  const ext = leafExtensions(opts, rsa, fallbackDns);
  ext.push(await authorityKeyId(ca), await x509.SubjectKeyIdentifierExtension.create(publicKey, false));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial,
    subject,
    issuer: ca.cert.subjectName,
    notBefore,
    notAfter,
    publicKey,
    signingKey: ca.key,
    signingAlgorithm: signingAlgorithm(ca.keyType),
    extensions: ext,
  });
  return { certPem: pem(cert), serial };
}

/** Issues a leaf certificate with a fresh key. */
export async function issueCert(ca: CaHandle, opts: IssueOptions): Promise<IssuedCert> {
  const keyType = opts.keyType ?? 'ec-p256';
  const keys = await generateKeyPair(keyType);
  const fallbackDns = serverFallbackDns(opts.type, opts.cn, opts.dns);
  const { certPem, serial } = await signLeaf(ca, opts, subjectName(opts.cn, opts.ou, opts.o), keys.publicKey, isRsa(keyType), fallbackDns);
  return { certPem, keyPem: privateKeyToPem(keys.privateKey), chainPem: leafChain(ca, certPem), serial };
}

/**
 * Signs a PKCS#10 request made elsewhere. The CSR's subject is kept (or its CN replaced);
 * its requested extensions are ignored: key usage, EKU and SANs come from `opts`, so a
 * requester cannot ask its way into a CA certificate. Throws CSR_INVALID on a bad signature.
 */
export async function signCsr(ca: CaHandle, csrPem: string, opts: SignCsrOptions, path?: string): Promise<Omit<IssuedCert, 'keyPem'> & { subject: string }> {
  const where = path ?? 'the CSR';
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch (err) {
    throw new PortcullisError(ErrorCodes.CSR_INVALID, `${where} is not a PEM certificate signing request`, { path, cause: err });
  }
  let ok = false;
  try {
    ok = await csr.verify();
  } catch (err) {
    throw new PortcullisError(ErrorCodes.CSR_INVALID, `${where} uses a key or signature algorithm portcullis cannot check (${(err as Error).message})`, { path, cause: err });
  }
  if (!ok) throw new PortcullisError(ErrorCodes.CSR_INVALID, `${where} has a bad signature: it was altered or not signed by its own key; make a new CSR`, { path });
  const csrCn = csr.subjectName.getField('CN')[0];
  const cn = opts.cn ?? csrCn;
  const subject =
    opts.cn !== undefined || opts.o?.length || opts.ou?.length
      ? subjectName(cn, opts.ou ?? csr.subjectName.getField('OU'), opts.o ?? csr.subjectName.getField('O'))
      : csr.subjectName;
  const fallbackDns = serverFallbackDns(opts.type, cn, opts.dns);
  const rsa = csr.publicKey.algorithm.name.startsWith('RSA');
  const { certPem, serial } = await signLeaf(ca, opts, subject, csr.publicKey, rsa, fallbackDns);
  return { certPem, chainPem: leafChain(ca, certPem), serial, subject: new x509.X509Certificate(certPem).subject };
}
