// Certificate revocation lists: signing one for a CA (`portcullis crl`), and reading CRL
// files (PEM or DER) into a form the verifier can check synchronously (`cert verify`, proxy).
import { verify as nodeVerify, type X509Certificate as NodeX509 } from 'node:crypto';
import { createRequire } from 'node:module';
import { signingAlgorithm } from './keys.js';
import type { CaHandle } from './issue.js';
import { ErrorCodes, PortcullisError } from '../errors.js';
import { readCertificate, readCrl } from './der.js';

// The ASN.1 and X.509 libraries cost about 20 MB of RSS per process, so they load on the
// first CRL read or written: a proxy worker without `crl` never pays for them. require()
// of our ESM wrapper gives the same module instance an import would (Node's require(esm)).
const require = createRequire(import.meta.url);
interface CrlLibs {
  x509: (typeof import('./x509.js'))['x509'];
  AsnConvert: (typeof import('@peculiar/asn1-schema'))['AsnConvert'];
  asn: typeof import('@peculiar/asn1-x509');
}
let libs: CrlLibs | undefined;
function lib(): CrlLibs {
  return (libs ??= {
    x509: (require('./x509.js') as typeof import('./x509.js')).x509,
    AsnConvert: (require('@peculiar/asn1-schema') as typeof import('@peculiar/asn1-schema')).AsnConvert,
    asn: require('@peculiar/asn1-x509') as typeof import('@peculiar/asn1-x509'),
  });
}

export const REVOCATION_REASONS = [
  'unspecified',
  'keyCompromise',
  'cACompromise',
  'affiliationChanged',
  'superseded',
  'cessationOfOperation',
  'certificateHold',
  'privilegeWithdrawn',
  'aACompromise',
] as const;
export type RevocationReason = (typeof REVOCATION_REASONS)[number];

export function parseRevocationReason(s: string): RevocationReason {
  const found = REVOCATION_REASONS.find((r) => r.toLowerCase() === s.toLowerCase());
  if (found) return found;
  throw new PortcullisError(ErrorCodes.USAGE, `unknown revocation reason "${s}"; use one of ${REVOCATION_REASONS.join(', ')}`, { exitCode: 2 });
}

export interface RevokedEntry {
  /** uppercase hex */
  serial: string;
  date: Date;
  reason?: RevocationReason;
}

export interface CreateCrlOptions {
  /** nextUpdate = thisUpdate + days (default 30); relying parties refuse a CRL past it */
  days?: number;
  thisUpdate?: Date;
  nextUpdate?: Date;
  /** monotonically increasing CRL number (RFC 5280 §5.2.3) */
  crlNumber?: number;
}

/** Signs a CRL with the CA's key and returns it as PEM. */
export async function createCrl(ca: CaHandle, entries: RevokedEntry[], opts: CreateCrlOptions = {}): Promise<string> {
  const thisUpdate = opts.thisUpdate ?? new Date();
  const nextUpdate = opts.nextUpdate ?? new Date(thisUpdate.getTime() + (opts.days ?? 30) * 86_400_000);
  const { x509, AsnConvert, asn } = lib();
  const ski = ca.cert.getExtension(x509.SubjectKeyIdentifierExtension);
  const aki = ski ? new x509.AuthorityKeyIdentifierExtension(ski.keyId) : await x509.AuthorityKeyIdentifierExtension.create(ca.cert.publicKey);
  const crlNumber = new x509.Extension(asn.id_ce_cRLNumber, false, AsnConvert.serialize(new asn.CRLNumber(opts.crlNumber ?? 1)));
  const crl = await x509.X509CrlGenerator.create({
    issuer: ca.cert.subjectName,
    thisUpdate,
    nextUpdate,
    signingKey: ca.key,
    signingAlgorithm: signingAlgorithm(ca.keyType),
    extensions: [aki, crlNumber],
    entries: entries.map((e) => ({
      serialNumber: e.serial,
      revocationDate: e.date,
      ...(e.reason && e.reason !== 'unspecified' ? { reason: x509.X509CrlReason[e.reason] } : {}),
    })),
  });
  return crlToPem(Buffer.from(crl.rawData));
}

/** PEM with the "X509 CRL" label that OpenSSL, nginx and Node expect (the library writes "CRL"). */
export function crlToPem(der: Buffer): string {
  const b64 = der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '');
  return `-----BEGIN X509 CRL-----\n${b64}\n-----END X509 CRL-----\n`;
}

export interface CrlInfo {
  /** file it came from, for messages */
  source: string | undefined;
  /** issuer name as a readable string */
  issuer: string;
  /** issuer Name DER, compared byte-wise with certificates' issuer names */
  issuerDer: Buffer;
  thisUpdate: Date;
  nextUpdate: Date | undefined;
  /** serial (see normalizeSerial) -> revocation */
  revoked: Map<string, { date: Date; reason: RevocationReason | undefined }>;
  der: Buffer;
  /** parts needed to check the signature synchronously with node:crypto */
  tbs: Buffer;
  signature: Buffer;
  /** node:crypto digest name, null for Ed25519, undefined when the algorithm is not supported */
  digest: string | null | undefined;
  /** the CRLNumber extension (RFC 5280 §5.2.3), hex; undefined when absent */
  crlNumber: string | undefined;
  /**
   * Why this CRL must not be used whatever certificate it covers (an unprocessed critical
   * extension, a critical CRLNumber), one sentence each; empty when none.
   */
  defects: string[];
}

/** CRL extensions this verifier processes; any other marked critical makes the CRL unusable. */
const CRL_EXTENSIONS: Record<string, string> = {
  '2.5.29.35': 'authorityKeyIdentifier',
  '2.5.29.18': 'issuerAltName',
  '2.5.29.20': 'cRLNumber',
};
/** CRL entry extensions processed (reasonCode, holdInstructionCode, invalidityDate). */
const ENTRY_EXTENSIONS = new Set(['2.5.29.21', '2.5.29.23', '2.5.29.24']);
const CRL_EXTENSION_NAMES: Record<string, string> = {
  '2.5.29.27': 'deltaCRLIndicator',
  '2.5.29.28': 'issuingDistributionPoint',
  '2.5.29.46': 'freshestCRL',
  '2.5.29.29': 'certificateIssuer',
};

function crlDefects(der: Buffer): { crlNumber: string | undefined; defects: string[] } {
  const raw = readCrl(der);
  const defects: string[] = [];
  let crlNumber: string | undefined;
  for (const e of raw.extensions) {
    if (e.oid === '2.5.29.20') {
      // INTEGER: 02 len bytes
      crlNumber = e.value.subarray(2).toString('hex').toUpperCase().replace(/^0+(?=.)/, '');
      if (e.critical) defects.push('its cRLNumber extension is marked critical, which RFC 5280 §5.2.3 forbids');
    } else if (e.critical && !(e.oid in CRL_EXTENSIONS)) {
      defects.push(`it has the extension ${CRL_EXTENSION_NAMES[e.oid] ?? e.oid} marked critical, which this verifier does not process (RFC 5280 §5.2: such a CRL must not be used)`);
    }
  }
  for (const e of raw.entryExtensions) {
    if (e.critical && !ENTRY_EXTENSIONS.has(e.oid)) {
      defects.push(`an entry has the extension ${CRL_EXTENSION_NAMES[e.oid] ?? e.oid} marked critical, which this verifier does not process (RFC 5280 §5.3)`);
      break;
    }
  }
  return { crlNumber, defects: [...new Set(defects)] };
}

const crlSignFlags = new WeakMap<NodeX509, boolean>();

/** False when the certificate has a key usage extension without cRLSign (RFC 5280 §6.3.3 (f)). */
export function mayIssueCrls(issuer: NodeX509): boolean {
  let ok = crlSignFlags.get(issuer);
  if (ok === undefined) {
    try {
      const ku = readCertificate(issuer.raw).extensions.find((e) => e.oid === '2.5.29.15');
      // BIT STRING 03 len unused b0 b1: cRLSign is bit 6 of the first byte
      ok = !ku || (ku.value.length >= 4 && (ku.value[3]! & 0x02) !== 0);
    } catch {
      ok = false;
    }
    crlSignFlags.set(issuer, ok);
  }
  return ok;
}

export type CrlMode = 'chain' | 'leaf';

/**
 * Why `crl` must not decide for a certificate issued by `issuer` under `mode`, or undefined
 * when it may. Shared by the proxy (tls/revocation.ts) and the explainer, so they pick the
 * same CRL. `issuer` undefined: the issuer certificate is unknown (a resumed session).
 */
export function crlUnusable(crl: CrlInfo, issuer: NodeX509 | undefined, mode: CrlMode): string | undefined {
  if (crl.defects.length) return crl.defects.join('; ');
  if (mode === 'chain' && crl.crlNumber === undefined) return 'it has no cRLNumber, which RFC 5280 §5.2.3 requires (crl_mode: chain refuses such a CRL; crl_mode: leaf only warns)';
  // subject ?? '': Node leaves an empty Name undefined (the 'split' crash of issue 16)
  if (issuer && !mayIssueCrls(issuer)) return `its issuer "${(issuer.subject ?? '').split('\n').reverse().join(',')}" has a key usage without cRLSign, so it may not sign CRLs (RFC 5280 §6.3.3)`;
  return undefined;
}

/** Signature algorithms accepted on CRLs and OCSP responses (SHA-1 is not); null = Ed25519. */
export const SIG_DIGESTS: Record<string, string | null> = {
  '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
  '1.2.840.113549.1.1.11': 'sha256',
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
  '1.3.101.112': null,
};

// "X509 CRL" is the standard label; plain "CRL" is what some libraries write
const PEM_CRL = /-----BEGIN (X509 )?CRL-----[\s\S]+?-----END (X509 )?CRL-----/g;

/** Reads every CRL in a PEM bundle, or the one CRL in a DER file. */
export function parseCrls(data: Buffer | string, source?: string): CrlInfo[] {
  const text = typeof data === 'string' ? data : data.toString('latin1');
  const blocks = text.includes('-----BEGIN') ? (text.match(PEM_CRL) ?? []) : [];
  const ders: Buffer[] = blocks.length
    ? blocks.map((b) => Buffer.from(b.replace(/-----(BEGIN|END) (X509 )?CRL-----|\s/g, ''), 'base64'))
    : text.includes('-----BEGIN')
      ? []
      : [typeof data === 'string' ? Buffer.from(data, 'latin1') : data];
  if (!ders.length) {
    throw new PortcullisError(ErrorCodes.CRL_PARSE, `${source ?? 'the CRL'} holds no CRL (expected PEM "X509 CRL" blocks or DER)`, { path: source });
  }
  return ders.map((der) => parseOne(der, source));
}

function parseOne(der: Buffer, source: string | undefined): CrlInfo {
  const { x509, AsnConvert, asn: schema } = lib();
  try {
    const asn = AsnConvert.parse(der, schema.CertificateList);
    const crl = new x509.X509Crl(der);
    const revoked = new Map<string, { date: Date; reason: RevocationReason | undefined }>();
    for (const e of crl.entries) {
      const reason = e.reason === undefined ? undefined : (x509.X509CrlReason[e.reason] as RevocationReason | undefined);
      revoked.set(normalizeSerial(e.serialNumber), { date: e.revocationDate, reason });
    }
    const oid = asn.signatureAlgorithm.algorithm;
    return {
      source,
      issuer: crl.issuer,
      issuerDer: Buffer.from(crl.issuerName.toArrayBuffer()),
      thisUpdate: crl.thisUpdate,
      nextUpdate: crl.nextUpdate,
      revoked,
      der,
      tbs: Buffer.from(asn.tbsCertListRaw ?? AsnConvert.serialize(asn.tbsCertList)),
      signature: Buffer.from(asn.signature),
      digest: oid in SIG_DIGESTS ? SIG_DIGESTS[oid] : undefined,
      ...crlDefects(der),
    };
  } catch (err) {
    throw new PortcullisError(ErrorCodes.CRL_PARSE, `${source ?? 'the CRL'} is not a valid CRL (${(err as Error).message})`, { path: source, cause: err });
  }
}

/** True when `issuer`'s key signed this CRL. Unsupported algorithms count as not signed. */
export function crlSignedBy(crl: CrlInfo, issuer: NodeX509): boolean {
  if (crl.digest === undefined) return false;
  try {
    return nodeVerify(crl.digest, crl.tbs, issuer.publicKey, crl.signature);
  } catch {
    return false;
  }
}

/** Serial hex as used for lookups: uppercase, no separators, no leading zeros. */
export function normalizeSerial(hex: string): string {
  return hex.replace(/[^0-9a-fA-F]/g, '').toUpperCase().replace(/^0+(?=.)/, '');
}
