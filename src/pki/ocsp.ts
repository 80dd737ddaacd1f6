// OCSP (RFC 6960) messages: building a request for one certificate, and reading a response
// with every check a relying party owes before believing it: the responder is the issuer
// or a responder the issuer delegated (id-kp-OCSPSigning, signed by the issuer), the
// signature holds, the answer is about the certificate we asked for, it is fresh, and it
// echoes our nonce. Pure: bytes in, bytes or verdicts out; HTTP lives in src/tls/.
//
// pkijs does the ASN.1; signatures are checked with node:crypto (synchronous, and the
// same OpenSSL that verifies the TLS chain), so no WebCrypto engine has to be installed.
import { createHash, randomBytes, verify as nodeVerify, X509Certificate } from 'node:crypto';
import { SIG_DIGESTS } from './crl.js';
import { createRequire } from 'node:module';
import type * as asn1js from 'asn1js';
import type * as pkijs from 'pkijs';

// pkijs and asn1js cost about 25 MB of RSS per process, so they load on first use: a proxy
// worker that neither checks nor staples OCSP never pays for them.
const require = createRequire(import.meta.url);
let libs: { pkijs: typeof pkijs; asn1js: typeof asn1js } | undefined;
function lib(): { pkijs: typeof pkijs; asn1js: typeof asn1js } {
  return (libs ??= { pkijs: require('pkijs') as typeof pkijs, asn1js: require('asn1js') as typeof asn1js });
}

const OID_SHA1 = '1.3.14.3.2.26';
const OID_OCSP_BASIC = '1.3.6.1.5.5.7.48.1.1';
const OID_OCSP_NONCE = '1.3.6.1.5.5.7.48.1.2';
const OID_OCSP_SIGNING = '1.3.6.1.5.5.7.3.9';


const RESPONSE_STATUS = ['successful', 'malformedRequest', 'internalError', 'tryLater', '(4)', 'sigRequired', 'unauthorized'];

const REVOCATION_REASONS = [
  'unspecified', 'keyCompromise', 'cACompromise', 'affiliationChanged', 'superseded',
  'cessationOfOperation', 'certificateHold', '(7)', 'removeFromCRL', 'privilegeWithdrawn', 'aACompromise',
];

/** Responses dated this far in the future or past their nextUpdate are still accepted (clock skew). */
export const OCSP_CLOCK_SKEW_MS = 5 * 60_000;

/** A response that cannot be believed or used; the message says why, for logs. */
export class OcspError extends Error {
  override name = 'OcspError';
}

/** What a request asks about: RFC 6960 CertID, hashed with SHA-1 as every responder supports. */
export interface CertId {
  issuerNameHash: Buffer;
  issuerKeyHash: Buffer;
  /** the serial's DER INTEGER contents, exactly as in the certificate */
  serial: Buffer;
}

export interface OcspAnswer {
  status: 'good' | 'revoked' | 'unknown';
  thisUpdate: Date;
  /** absent: the responder always has newer information (cache only for the configured time) */
  nextUpdate: Date | undefined;
  revokedAt?: Date;
  reason?: string;
  /** who signed: the issuing CA itself, or a delegated responder (its subject) */
  signer: 'issuer' | string;
}

function parseCert(der: Buffer): pkijs.Certificate {
  try {
    return lib().pkijs.Certificate.fromBER(der);
  } catch (err) {
    throw new OcspError(`cannot parse a certificate (${(err as Error).message})`);
  }
}

function view(b: ArrayBuffer | Uint8Array): Buffer {
  return b instanceof Uint8Array ? Buffer.from(b.buffer, b.byteOffset, b.byteLength) : Buffer.from(b);
}

/** The responder URLs of a certificate's Authority Information Access extension (http/https only). */
export function ocspUrlsOf(cert: X509Certificate): string[] {
  const aia = cert.infoAccess;
  if (!aia) return [];
  const out: string[] = [];
  for (const line of aia.split('\n')) {
    const m = /^OCSP - URI:(.+)$/.exec(line.trim());
    if (m && /^https?:\/\//i.test(m[1]!)) out.push(m[1]!);
  }
  return out;
}

/** The CertID of `cert` as issued by `issuer` (issuer subject DER and key bits, SHA-1). */
export function certIdFor(cert: X509Certificate, issuer: X509Certificate): CertId {
  const c = parseCert(cert.raw);
  const i = parseCert(issuer.raw);
  const sha1 = (b: Buffer) => createHash('sha1').update(b).digest();
  return {
    issuerNameHash: sha1(view(i.subject.valueBeforeDecode)),
    issuerKeyHash: sha1(view(i.subjectPublicKeyInfo.subjectPublicKey.valueBlock.valueHexView)),
    serial: view(c.serialNumber.valueBlock.valueHexView),
  };
}

/** A fresh random nonce (RFC 8954: 1 to 32 octets). */
export function newNonce(): Buffer {
  return randomBytes(16);
}

/** DER of an OCSPRequest for one certificate, unsigned, with a nonce extension when given. */
export function buildOcspRequest(id: CertId, nonce?: Buffer): Buffer {
  const reqCert = new (lib().pkijs.CertID)({
    hashAlgorithm: new (lib().pkijs.AlgorithmIdentifier)({ algorithmId: OID_SHA1, algorithmParams: new (lib().asn1js.Null)() }),
    issuerNameHash: new (lib().asn1js.OctetString)({ valueHex: id.issuerNameHash }),
    issuerKeyHash: new (lib().asn1js.OctetString)({ valueHex: id.issuerKeyHash }),
    serialNumber: new (lib().asn1js.Integer)({ valueHex: id.serial }),
  });
  const req = new (lib().pkijs.OCSPRequest)();
  req.tbsRequest.requestList = [new (lib().pkijs.Request)({ reqCert })];
  if (nonce) {
    const value = new (lib().asn1js.OctetString)({ valueHex: nonce }).toBER();
    req.tbsRequest.requestExtensions = [new (lib().pkijs.Extension)({ extnID: OID_OCSP_NONCE, critical: false, extnValue: value })];
  }
  return Buffer.from(req.toSchema(true).toBER());
}

function sameId(single: pkijs.SingleResponse, id: CertId): boolean {
  const c = single.certID;
  return (
    c.hashAlgorithm.algorithmId === OID_SHA1 &&
    view(c.issuerNameHash.valueBlock.valueHexView).equals(id.issuerNameHash) &&
    view(c.issuerKeyHash.valueBlock.valueHexView).equals(id.issuerKeyHash) &&
    stripZeros(view(c.serialNumber.valueBlock.valueHexView)).equals(stripZeros(id.serial))
  );
}

function stripZeros(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  return b.subarray(i);
}

function signedBy(basic: pkijs.BasicOCSPResponse, key: X509Certificate['publicKey']): boolean {
  const oid = basic.signatureAlgorithm.algorithmId;
  if (!(oid in SIG_DIGESTS)) return false;
  try {
    return nodeVerify(SIG_DIGESTS[oid]!, view(basic.tbsResponseData.tbsView), key, view(basic.signature.valueBlock.valueHexView));
  } catch {
    return false;
  }
}

/**
 * The signer of a response: the issuer itself, or a certificate from the response that the
 * issuer signed, that carries id-kp-OCSPSigning and is valid now (RFC 6960 §4.2.2.2). Any
 * other signer, however well-known, is not authorized to speak for this issuer.
 */
function authorizedSigner(basic: pkijs.BasicOCSPResponse, issuer: X509Certificate, now: Date): string {
  if (signedBy(basic, issuer.publicKey)) return 'issuer';
  const problems: string[] = [];
  for (const c of basic.certs ?? []) {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(Buffer.from(c.toSchema().toBER()));
    } catch {
      continue;
    }
    if (!signedBy(basic, cert.publicKey)) continue;
    // an empty subject is undefined in Node's X509Certificate; name it rather than throw
    const who = (cert.subject ?? '').replace(/\n/g, ',') || `the responder certificate with serial ${cert.serialNumber}`;
    if (!cert.checkIssued(issuer) || !cert.verify(issuer.publicKey)) problems.push(`${who} is not issued by the certificate's issuer`);
    else if (!(cert.keyUsage ?? []).includes(OID_OCSP_SIGNING)) problems.push(`${who} lacks the OCSPSigning extended key usage`);
    else if (now < new Date(cert.validFrom) || now > new Date(cert.validTo)) problems.push(`${who} is outside its validity period`);
    else return who;
  }
  throw new OcspError(problems.length ? `response signer not authorized: ${problems.join('; ')}` : 'response signature does not verify with the issuer or any delegated responder');
}

function nonceOf(basic: pkijs.BasicOCSPResponse): Buffer | undefined {
  const ext = basic.tbsResponseData.responseExtensions?.find((e) => e.extnID === OID_OCSP_NONCE);
  if (!ext) return undefined;
  const raw = view(ext.extnValue.valueBlock.valueHexView);
  // RFC 8954 wraps the nonce in an OCTET STRING; some responders put it in bare
  const inner = lib().asn1js.fromBER(raw);
  if (inner.offset !== -1 && inner.result instanceof lib().asn1js.OctetString) return view(inner.result.valueBlock.valueHexView);
  return raw;
}

function statusOf(single: pkijs.SingleResponse): Pick<OcspAnswer, 'status' | 'revokedAt' | 'reason'> {
  const s = single.certStatus as asn1js.BaseBlock & { valueBlock: { value?: asn1js.BaseBlock[] } };
  switch (s.idBlock.tagNumber) {
    case 0:
      return { status: 'good' };
    case 1: {
      const parts = s.valueBlock.value ?? [];
      const time = parts[0] as asn1js.GeneralizedTime | undefined;
      const reasonWrap = parts[1] as (asn1js.BaseBlock & { valueBlock: { value?: asn1js.BaseBlock[] } }) | undefined;
      const reasonEnum = reasonWrap?.valueBlock.value?.[0] as asn1js.Enumerated | undefined;
      const code = reasonEnum?.valueBlock.valueDec;
      return {
        status: 'revoked',
        ...(time && typeof time.toDate === 'function' ? { revokedAt: time.toDate() } : {}),
        ...(code !== undefined ? { reason: REVOCATION_REASONS[code] ?? `(${code})` } : {}),
      };
    }
    case 2:
      return { status: 'unknown' };
    default:
      throw new OcspError(`unknown certStatus tag ${s.idBlock.tagNumber}`);
  }
}

export interface VerifyOcspOptions {
  /** the certificate asked about and its issuer */
  cert: X509Certificate;
  issuer: X509Certificate;
  /** CertID the request carried (computed from cert/issuer when left out) */
  id?: CertId;
  /** the nonce the request carried: a response that echoes another one is refused */
  nonce?: Buffer;
  now?: Date;
}

/** Parses and verifies a DER OCSPResponse; throws OcspError when it cannot be believed. */
export function verifyOcspResponse(der: Buffer, opts: VerifyOcspOptions): OcspAnswer {
  const now = opts.now ?? new Date();
  let basic: pkijs.BasicOCSPResponse;
  try {
    const resp = lib().pkijs.OCSPResponse.fromBER(der);
    const code = resp.responseStatus.valueBlock.valueDec;
    if (code !== 0) throw new OcspError(`responder answered ${RESPONSE_STATUS[code] ?? `status ${code}`}`);
    if (!resp.responseBytes || resp.responseBytes.responseType !== OID_OCSP_BASIC) throw new OcspError('response is not a basic OCSP response');
    basic = lib().pkijs.BasicOCSPResponse.fromBER(resp.responseBytes.response.valueBlock.valueHexView);
  } catch (err) {
    if (err instanceof OcspError) throw err;
    throw new OcspError(`malformed response (${(err as Error).message})`);
  }
  const signer = authorizedSigner(basic, opts.issuer, now);
  const id = opts.id ?? certIdFor(opts.cert, opts.issuer);
  const single = basic.tbsResponseData.responses.find((r) => sameId(r, id));
  if (!single) throw new OcspError('response does not cover the certificate asked about');
  if (opts.nonce) {
    const echoed = nonceOf(basic);
    if (echoed && !echoed.equals(opts.nonce)) throw new OcspError('response nonce does not match the request (replayed response?)');
  }
  const thisUpdate = single.thisUpdate;
  const nextUpdate = single.nextUpdate;
  if (thisUpdate.getTime() > now.getTime() + OCSP_CLOCK_SKEW_MS) throw new OcspError(`response thisUpdate ${thisUpdate.toISOString()} is in the future`);
  if (nextUpdate && nextUpdate.getTime() < now.getTime() - OCSP_CLOCK_SKEW_MS) throw new OcspError(`response expired at ${nextUpdate.toISOString()} (nextUpdate)`);
  return { ...statusOf(single), thisUpdate, nextUpdate, signer };
}
