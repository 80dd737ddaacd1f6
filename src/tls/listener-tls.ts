// The TLS side of a listener: secure contexts built once per configuration generation,
// the handshake (a TLSSocket per accepted TCP socket), and the post-handshake peer check
// that turns OpenSSL's verdict plus our own checks into a PeerResult with the Identity.
//
// Why TLSSocket by hand instead of tls.Server: tls.Server with rejectUnauthorized destroys
// a socket whose certificate failed verification before any of our code sees it, so the
// failure could not be logged, counted or explained. Creating the TLSSocket ourselves
// keeps OpenSSL's own handshake alert for a missing certificate (certificate_required,
// via SSL_VERIFY_FAIL_IF_NO_PEER_CERT) and lets us inspect every other failure.
import tls, { type SecureContext, type TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import { createHash, createHmac, randomBytes, type X509Certificate } from 'node:crypto';
import { readCaFiles, readKeyPair, type CertFile } from './pem.js';
import { reasonFromOpenSsl, reasonMessage, type VerifyReason } from './verify-result.js';
import { buildIdentity, chainAbove, rfc3339 } from '../pki/identity.js';
import type { Identity } from '../pki/identity-types.js';
import type { ClientAuth, ListenerTlsConfig } from '../config/schema.js';

const CLIENT_AUTH_EKU = '1.3.6.1.5.5.7.3.2';
const ANY_EKU = '2.5.29.37.0';

export interface LoadedCert {
  role: 'server' | 'client_ca';
  file: string;
  subject: string;
  issuer: string;
  notAfter: Date;
  serial: string;
}

/** Trust settings of one certificate entry (the listener default, or an SNI entry later). */
export interface TrustRuntime {
  clientAuth: ClientAuth;
  verifyDepth: number;
  caCerts: X509Certificate[];
}

export interface TlsRuntime {
  context: SecureContext;
  /** digest of the verification settings: the session-id context and the ticket-key salt */
  trustDigest: string;
  trust: TrustRuntime;
  /** every certificate loaded for this listener, for /status and expiry metrics */
  loaded: LoadedCert[];
  minVersion: 'TLSv1.2' | 'TLSv1.3';
}

export interface PeerResult {
  verify: 'SUCCESS' | 'NONE' | 'FAILED';
  reason?: VerifyReason;
  /** one sentence for logs and 403 bodies when FAILED */
  message?: string;
  identity?: Identity;
  /** facts about a certificate that failed, for the audit log */
  failed?: { subject: string; issuer: string; serial: string; fingerprint: string; not_after: string };
}

/**
 * Session ticket keys (48 bytes) for a listener. Every worker derives the same keys from
 * the primary's secret, so a client resumes on any worker; mixing in the trust digest
 * means a ticket issued under other verification settings never decrypts.
 */
export function deriveTicketKeys(secret: Buffer | undefined, trustDigest: string): Buffer {
  if (!secret) return randomBytes(48);
  const a = createHmac('sha256', secret).update('portcullis ticket keys 1').update(trustDigest).digest();
  const b = createHmac('sha256', secret).update('portcullis ticket keys 2').update(trustDigest).digest();
  return Buffer.concat([a, b]).subarray(0, 48);
}

/** Replaces the ticket keys of a live context (hourly rotation); the context stays in use. */
export function setTicketKeys(rt: TlsRuntime, secret: Buffer): void {
  const native = (rt.context as unknown as { context?: { setTicketKeys?(keys: Buffer): void } }).context;
  native?.setTicketKeys?.(deriveTicketKeys(secret, rt.trustDigest));
}

/** Reads every file and builds the secure context. Throws PortcullisError naming the file. */
export function buildListenerTls(cfg: ListenerTlsConfig, field: string, ticketSecret?: Buffer): TlsRuntime {
  const pair = readKeyPair(cfg.cert, cfg.key, field);
  const loaded: LoadedCert[] = pair.chain.certs.map((c) => describe(c, 'server', cfg.cert));
  let caFiles: CertFile[] = [];
  if (cfg.client_auth !== 'none') {
    caFiles = readCaFiles(cfg.client_ca, `${field}.client_ca`);
    for (const f of caFiles) for (const c of f.certs) loaded.push(describe(c, 'client_ca', f.file));
  }
  const caCerts = caFiles.flatMap((f) => f.certs);
  // Sessions may only resume under the very same verification settings: OpenSSL refuses
  // to resume a session whose session-id context differs, so bind it to a digest of them.
  const digest = createHash('sha256');
  digest.update(JSON.stringify({ a: cfg.client_auth, d: cfg.verify_depth, v: cfg.min_version }));
  for (const c of caCerts) digest.update(c.raw);
  const trustDigest = digest.digest('hex');
  const context = tls.createSecureContext({
    cert: pair.chain.pem,
    key: pair.key.pem,
    // Always pass an explicit CA list: without `ca`, Node would trust its public root
    // store for client certificates. With client_auth none no certificate is requested.
    ca: caCerts.length > 0 ? caCerts.map((c) => c.toString()) : [],
    minVersion: cfg.min_version,
    sessionIdContext: trustDigest.slice(0, 32),
    ticketKeys: deriveTicketKeys(ticketSecret, trustDigest),
  });
  return {
    context,
    trustDigest,
    trust: { clientAuth: cfg.client_auth, verifyDepth: cfg.verify_depth, caCerts },
    loaded,
    minVersion: cfg.min_version,
  };
}

function describe(c: X509Certificate, role: LoadedCert['role'], file: string): LoadedCert {
  return {
    role,
    file,
    subject: c.subject.split('\n').reverse().join(','),
    issuer: c.issuer.split('\n').reverse().join(','),
    notAfter: new Date(c.validTo),
    serial: c.serialNumber,
  };
}

/** Starts the server side of a TLS handshake on an accepted TCP socket. */
export function startHandshake(raw: Socket, rt: TlsRuntime, alpn: string[]): TLSSocket {
  const clientAuth = rt.trust.clientAuth;
  return new tls.TLSSocket(raw, {
    isServer: true,
    secureContext: rt.context,
    requestCert: clientAuth !== 'none',
    // only sets SSL_VERIFY_FAIL_IF_NO_PEER_CERT here (no tls.Server around to destroy the
    // socket on other failures); everything else is decided in checkPeer
    rejectUnauthorized: clientAuth === 'require',
    ALPNProtocols: alpn,
  });
}

interface VerifyHandle {
  verifyError(): (Error & { code?: string }) | null;
}

/**
 * Decides what the peer proved, once per connection, right after the handshake.
 * A missing certificate is NONE even when OpenSSL reports no error: a resumed session
 * that never had a certificate reports no error and no peer.
 */
export function checkPeer(sock: TLSSocket, trust: TrustRuntime): PeerResult {
  if (trust.clientAuth === 'none') return { verify: 'NONE' };
  const leaf = sock.getPeerX509Certificate();
  if (!leaf) return { verify: 'NONE', reason: 'no_cert', message: reasonMessage('no_cert') };
  const handle = (sock as unknown as { _handle: VerifyHandle | null })._handle;
  if (!handle || typeof handle.verifyError !== 'function') {
    return fail('error', leaf, 'the TLS layer did not report a verification result');
  }
  const err = handle.verifyError();
  if (err) {
    let reason = reasonFromOpenSsl(err.code ?? '');
    // OpenSSL's purpose check is what usually catches a CA certificate presented as a leaf
    if (reason === 'bad_eku' && leaf.ca) reason = 'ca_as_leaf';
    return fail(reason, leaf, detailFor(reason, leaf, err.code ?? err.message));
  }
  // OpenSSL's ssl_client purpose check already refuses a leaf whose EKU lacks clientAuth
  // and most CA certificates (no digitalSignature); these checks make it independent of
  // how the CA filled in key usage.
  if (leaf.ca) return fail('ca_as_leaf', leaf, `basicConstraints CA:TRUE on ${leaf.subject.split('\n').reverse().join(',')}`);
  const eku = leaf.keyUsage;
  if (eku && eku.length > 0 && !eku.includes(CLIENT_AUTH_EKU) && !eku.includes(ANY_EKU)) {
    return fail('bad_eku', leaf, `extended key usage is ${eku.join(', ')}`);
  }
  const chain = chainAbove(leaf);
  if (chain.length > trust.verifyDepth) {
    return fail('depth_exceeded', leaf, `${chain.length} intermediates, verify_depth is ${trust.verifyDepth}`);
  }
  return { verify: 'SUCCESS', identity: buildIdentity(leaf, chain) };
}

function detailFor(reason: VerifyReason, leaf: X509Certificate, code: string): string {
  const now = rfc3339(new Date());
  if (reason === 'expired') return `notAfter ${rfc3339(new Date(leaf.validTo))}, now ${now}`;
  if (reason === 'not_yet_valid') return `notBefore ${rfc3339(new Date(leaf.validFrom))}, now ${now}`;
  if (reason === 'unknown_ca') return `issuer ${leaf.issuer.split('\n').reverse().join(',')}; OpenSSL: ${code}`;
  return `OpenSSL: ${code}`;
}

function fail(reason: VerifyReason, leaf: X509Certificate, detail: string): PeerResult {
  return {
    verify: 'FAILED',
    reason,
    message: reasonMessage(reason, detail),
    failed: {
      subject: leaf.subject.split('\n').reverse().join(','),
      issuer: leaf.issuer.split('\n').reverse().join(','),
      serial: leaf.serialNumber,
      fingerprint: leaf.fingerprint256.replace(/:/g, '').toLowerCase(),
      not_after: rfc3339(new Date(leaf.validTo)),
    },
  };
}
