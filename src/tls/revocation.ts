// Client-certificate revocation by CRL, checked after OpenSSL verified the chain.
//
// Why here and not in OpenSSL (`crl` on the secure context): OpenSSL reports only the
// last of several verification errors, so an expired CRL higher up could hide a revoked
// leaf; it has no leaf-only mode once Node turns on CRL_CHECK_ALL; and it never re-checks a
// resumed session. Here both modes share one code path, every refusal names the CRL and
// entry that decided it, and a CRL past its nextUpdate is a counted warning, not an outage.
//
// Modes (tls.crl_mode): chain = the leaf and every intermediate must be covered by a CRL
// from its issuer, a CA without one refuses the chain (OpenSSL/nginx/Envoy default);
// leaf = only the leaf must be (Envoy's only_verify_leaf_cert_crl). Trust anchors are
// never looked up: distrust a root by removing it from client_ca.
//
// A CRL that must not be used counts as no CRL (pki/crl.ts crlUnusable, shared with the
// explainer): one with a critical extension we do not process or a critical cRLNumber,
// one signed by an issuer whose key usage lacks cRLSign, and in chain mode one without a
// cRLNumber (leaf mode uses it and warns). Problems visible in the file alone are logged
// at load (crl_unusable), so `portcullis check` shows them before a client is refused.
import type { X509Certificate } from 'node:crypto';
import { parseCrls, crlSignedBy, crlUnusable, normalizeSerial, type CrlInfo, type CrlMode } from '../pki/crl.js';
import { ErrorCodes, PortcullisError } from '../errors.js';
import { readConfigFile } from './pem.js';
import { tlsLog } from './tls-log.js';
import type { CheckFailure, PeerCheck } from './trust.js';

export type { CrlMode } from '../pki/crl.js';

/** How often one expired CRL is reported while handshakes keep relying on it. */
const EXPIRED_WARN_INTERVAL_MS = 60_000;

interface CrlEntry {
  info: CrlInfo;
  file: string;
  /** issuer fingerprint -> whether that certificate's key signed this CRL */
  signedBy: Map<string, boolean>;
  /** handshakes decided with this CRL past its nextUpdate since the last warning */
  expiredUses: number;
  lastWarned: number;
}

export interface CrlCheck {
  check: PeerCheck;
  /** every CRL's DER, in file order, for the trust digest */
  ders: Buffer[];
}

// ---------------------------------------------------------------------------------------
// Names as DER, read straight from the certificate bytes: CRLs and certificates are
// matched on the issuer Name exactly as encoded (RFC 5280 §7.1 allows byte comparison
// for names a CA writes consistently), without a full ASN.1 parse per handshake.

function readTlv(buf: Buffer, off: number): { start: number; end: number } {
  let p = off + 1;
  let len = buf[p++]!;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new Error('unsupported DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[p++]!;
  }
  if (p + len > buf.length) throw new Error('truncated DER');
  return { start: p, end: p + len };
}

/** The issuer and subject Name TLVs of a certificate (DER). */
export function certNames(der: Buffer): { issuer: Buffer; subject: Buffer } {
  const tbs = readTlv(der, readTlv(der, 0).start);
  let p = tbs.start;
  const next = () => {
    const t = readTlv(der, p);
    const whole = der.subarray(p, t.end);
    p = t.end;
    return whole;
  };
  if (der[p] === 0xa0) next(); // [0] version
  next(); // serialNumber
  next(); // signature algorithm
  const issuer = next();
  next(); // validity
  return { issuer, subject: next() };
}

/** The issuer Name TLV of a CRL (DER). */
function crlIssuer(der: Buffer): Buffer {
  const tbs = readTlv(der, readTlv(der, 0).start);
  let p = tbs.start;
  if (der[p] === 0x02) p = readTlv(der, p).end; // version
  p = readTlv(der, p).end; // signature algorithm
  return der.subarray(p, readTlv(der, p).end);
}

const namesCache = new Map<string, { issuer: string; subject: string }>();

/** Hex of issuer/subject DER, remembered per certificate (bounded). */
function namesOf(cert: X509Certificate): { issuer: string; subject: string } {
  const fp = cert.fingerprint256;
  let n = namesCache.get(fp);
  if (!n) {
    const raw = certNames(cert.raw);
    n = { issuer: raw.issuer.toString('hex'), subject: raw.subject.toString('hex') };
    if (namesCache.size >= 10_000) namesCache.clear();
    namesCache.set(fp, n);
  }
  return n;
}

// ---------------------------------------------------------------------------------------
// Issuers. A resumed TLS session keeps the client's leaf but not the intermediates it
// sent, so intermediates seen in verified full handshakes are remembered (per process,
// bounded) to find a resumed leaf's issuer again.

const seenIntermediates = new Map<string, X509Certificate[]>();

/** Remembers the CA certificates of a chain OpenSSL has verified. */
export function rememberChain(chain: X509Certificate[]): void {
  for (const c of chain) {
    const key = namesOf(c).subject;
    const list = seenIntermediates.get(key);
    if (list?.some((x) => x.fingerprint256 === c.fingerprint256)) continue;
    if (!list && seenIntermediates.size >= 1_000) seenIntermediates.clear();
    if (list) list.push(c);
    else seenIntermediates.set(key, [c]);
  }
}

/** The certificate that issued `cert`: next in the chain, a configured CA, or one seen before. */
export function issuerOf(cert: X509Certificate, next: X509Certificate | undefined, caCerts: X509Certificate[]): X509Certificate | undefined {
  if (next && cert.checkIssued(next)) return next;
  for (const ca of caCerts) if (cert.checkIssued(ca)) return ca;
  for (const c of seenIntermediates.get(namesOf(cert).issuer) ?? []) if (cert.checkIssued(c)) return c;
  return undefined;
}

// ---------------------------------------------------------------------------------------

function oneLine(name: string | undefined): string {
  // undefined: Node's rendering of an empty Name (a CA with an empty subject made every
  // CRL check of its chains throw, so the client got `error` instead of a verdict)
  return (name ?? '').split('\n').reverse().join(',');
}

function signedBy(e: CrlEntry, issuer: X509Certificate): boolean {
  let ok = e.signedBy.get(issuer.fingerprint256);
  if (ok === undefined) {
    ok = crlSignedBy(e.info, issuer);
    if (e.signedBy.size >= 100) e.signedBy.clear();
    e.signedBy.set(issuer.fingerprint256, ok);
  }
  return ok;
}

function warnExpired(e: CrlEntry, now: number, atLoad: boolean): void {
  e.expiredUses += atLoad ? 0 : 1;
  if (!atLoad && now - e.lastWarned < EXPIRED_WARN_INTERVAL_MS) return;
  tlsLog().warn(
    {
      event: 'crl_expired',
      crl: e.file,
      issuer: e.info.issuer,
      next_update: e.info.nextUpdate?.toISOString(),
      // handshakes decided with this CRL since the last crl_expired line for it
      handshakes: e.expiredUses,
    },
    `CRL ${e.file} from ${e.info.issuer} is past its nextUpdate; it still applies (listed certificates stay refused) but may miss recent revocations: publish a fresh CRL and reload`,
  );
  e.expiredUses = 0;
  e.lastWarned = now;
}

/** Reads the CRL files of one trust entry. Throws PortcullisError naming the file. */
export function buildCrlCheck(files: string[], mode: CrlMode, caCerts: X509Certificate[], field: string): CrlCheck {
  const entries: CrlEntry[] = [];
  files.forEach((file, i) => {
    const where = files.length === 1 ? `${field}.crl` : `${field}.crl[${i}]`;
    const data = readConfigFile(file, where);
    let infos: CrlInfo[];
    try {
      infos = parseCrls(data, file);
    } catch (err) {
      throw new PortcullisError(ErrorCodes.CRL_PARSE, `${where}: ${(err as Error).message}`, { path: file, cause: err });
    }
    for (const info of infos) entries.push({ info, file, signedBy: new Map(), expiredUses: 0, lastWarned: 0 });
  });

  const byIssuer = new Map<string, CrlEntry[]>();
  const now = Date.now();
  for (const e of entries) {
    const key = crlIssuer(e.info.der).toString('hex');
    // A CRL in the name of a configured CA must carry that CA's signature: a file that
    // does not is corrupt or forged, and start-up says so instead of refusing clients later.
    const sameName = caCerts.filter((c) => namesOf(c).subject === key);
    if (sameName.length > 0 && !sameName.some((c) => signedBy(e, c))) {
      throw new PortcullisError(
        ErrorCodes.CRL_PARSE,
        `${field}.crl: ${e.file} names issuer ${e.info.issuer} but is not signed by the key of the client_ca certificate with that name; fetch the CRL again from that CA`,
        { path: e.file },
      );
    }
    if (e.info.nextUpdate && e.info.nextUpdate.getTime() < now) warnExpired(e, now, true);
    const unusable = crlUnusable(e.info, undefined, 'chain');
    if (unusable) {
      const refused = e.info.defects.length > 0 || mode === 'chain';
      tlsLog().warn(
        { event: 'crl_unusable', crl: e.file, issuer: e.info.issuer, crl_mode: mode, refused },
        `CRL ${e.file} from ${e.info.issuer}: ${unusable}; ${refused ? 'it is not used, so certificates it should cover are refused as revocation_unknown' : 'it is used anyway in crl_mode: leaf'}: publish a conforming CRL and reload`,
      );
    }
    const list = byIssuer.get(key) ?? [];
    list.push(e);
    byIssuer.set(key, list);
  }
  // newest first: an older CRL from the same CA is superseded (it may still list a certificate put back from hold)
  for (const list of byIssuer.values()) list.sort((a, b) => b.info.thisUpdate.getTime() - a.info.thisUpdate.getTime());

  const check: PeerCheck = (leaf, chain) => {
    if (chain.length > 0) rememberChain(chain);
    const links = [leaf, ...chain];
    // a resumed session has no intermediates (chain is empty): its leaf is checked again;
    // the intermediates passed under this same CRL set (sessions are bound to its digest)
    const count = mode === 'leaf' ? 1 : links.length;
    const t = Date.now();
    for (let i = 0; i < count; i++) {
      const failure = checkOne(links[i]!, i === 0, issuerOf(links[i]!, links[i + 1], caCerts), byIssuer, mode, t);
      if (failure) return failure;
    }
    return undefined;
  };
  return { check, ders: entries.map((e) => e.info.der) };
}

function checkOne(cert: X509Certificate, isLeaf: boolean, issuer: X509Certificate | undefined, byIssuer: Map<string, CrlEntry[]>, mode: CrlMode, now: number): CheckFailure | undefined {
  const what = isLeaf ? 'the client certificate' : `intermediate ${oneLine(cert.subject)}`;
  const issuerName = issuer ? oneLine(issuer.subject) : oneLine(cert.issuer);
  const candidates = byIssuer.get(namesOf(cert).issuer);
  if (!candidates) {
    return {
      reason: 'revocation_unknown',
      detail: `no CRL from ${issuerName} covers ${what} (crl_mode: ${mode}${mode === 'chain' ? ' needs a CRL from every CA in the chain; add it to tls.crl or set crl_mode: leaf' : '; add that CA\'s CRL to tls.crl'})`,
    };
  }
  // without the issuer (a resumed session on a process that never saw the intermediate),
  // the CRL with that issuer name is used: its signature was checked in the full handshake
  const signed = issuer ? candidates.filter((e) => signedBy(e, issuer)) : candidates;
  if (signed.length === 0) {
    return { reason: 'revocation_unknown', detail: `no CRL signed by ${issuerName} covers ${what}: ${candidates.map((e) => e.file).join(', ')} carry another signature` };
  }
  const crl = signed.find((e) => crlUnusable(e.info, issuer, mode) === undefined);
  if (!crl) {
    return { reason: 'revocation_unknown', detail: `no usable CRL from ${issuerName} covers ${what}: ${signed[0]!.file} cannot be used because ${crlUnusable(signed[0]!.info, issuer, mode)}` };
  }
  if (crl.info.nextUpdate && crl.info.nextUpdate.getTime() < now) warnExpired(crl, now, false);
  const rev = crl.info.revoked.get(normalizeSerial(cert.serialNumber));
  if (!rev) return undefined;
  const reason = rev.reason ? `, reason ${rev.reason}` : '';
  return {
    reason: 'revoked',
    detail: `${what} (serial ${normalizeSerial(cert.serialNumber)}) is listed in the CRL of ${issuerName} (${crl.file}) since ${rev.date.toISOString()}${reason}`,
  };
}
