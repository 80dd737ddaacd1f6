// The TLS side of a listener: certificate entries (the default and SNI ones) with their
// secure contexts, built once per configuration generation; the handshake (a TLSSocket
// per accepted TCP socket); and the post-handshake peer check that turns OpenSSL's
// verdict plus our own checks into a PeerResult with the Identity.
//
// Why TLSSocket by hand instead of tls.Server: tls.Server with rejectUnauthorized destroys
// a socket whose certificate failed verification before any of our code sees it, so the
// failure could not be logged, counted or explained. Creating the TLSSocket ourselves
// keeps OpenSSL's own handshake alert for a missing certificate (certificate_required,
// via SSL_VERIFY_FAIL_IF_NO_PEER_CERT) and lets us inspect every other failure.
import tls, { type SecureContext, type TLSSocket } from 'node:tls';
import type { Server, Socket } from 'node:net';
import { constants as cryptoConstants, createHmac, randomBytes, type X509Certificate } from 'node:crypto';
import { readKeyPair, oneLine } from './pem.js';
import { buildTrust, type TrustRuntime } from './trust.js';
import { reasonFromOpenSsl, reasonMessage, type VerifyReason } from './verify-result.js';
import { identityFor, leafInfo, chainAbove, rfc3339 } from '../pki/identity.js';
import type { Identity } from '../pki/identity-types.js';
import type { ListenerTlsConfig, SniCertConfig } from '../config/schema.js';
import { trustFor } from '../config/shared.js';
import { compileRules, type CompiledRule } from '../policy/rules.js';
import { nativeContext, ticketKeyName, tlsVerifyError } from '../platform/node-internals.js';
import { readTicketKeys } from './ticket-keys.js';
import type { ClientHelloHint } from './client-hello.js';

const CLIENT_AUTH_EKU = '1.3.6.1.5.5.7.3.2';

/**
 * OpenSSL options of every listener context. SSL_OP_NO_RENEGOTIATION: a TLS 1.2 client
 * may not renegotiate (TLS 1.3 has no renegotiation). Each renegotiation is a full
 * handshake's CPU on the worker, and Node's own limit (tls.CLIENT_RENEG_LIMIT) only
 * reports through tls.Server, which listeners do not use; nginx refuses renegotiation
 * the same way. The client gets a no_renegotiation alert; listener-server.ts then closes.
 */
export const LISTENER_SECURE_OPTIONS = cryptoConstants.SSL_OP_NO_RENEGOTIATION;
const ANY_EKU = '2.5.29.37.0';

export type { TrustRuntime } from './trust.js';

export interface LoadedCert {
  role: 'server' | 'client_ca';
  file: string;
  subject: string;
  issuer: string;
  notAfter: Date;
  serial: string;
}

/** One certificate the listener can present, with the client trust that goes with it. */
export interface CertEntry {
  /** 'default' or the entry's first server name */
  name: string;
  /** lowercased; exact names or "*.example.com" */
  serverNames: string[];
  context: SecureContext;
  /**
   * With several ticket keys (session_tickets.key_files): a context per key, by the hex key
   * name its tickets start with. `context` is the first key's, which seals new tickets.
   */
  ticketContexts?: ReadonlyMap<string, SecureContext>;
  trust: TrustRuntime;
  /** the entry's own rules (SNI entries), applied on top of the listener's */
  allow: CompiledRule[];
  deny: CompiledRule[];
}

export interface TlsRuntime {
  default: CertEntry;
  entries: CertEntry[];
  /** ask for a client certificate when any entry wants one */
  requestCert: boolean;
  /**
   * let OpenSSL fail a handshake without a certificate when every entry requires one and
   * refusals are `close`d (with `reject: http` the handshake completes and requests get 401)
   */
  failIfNoCert: boolean;
  /** tls.reject: how a client refused by a `require` entry learns it (close, or an HTTP 401/403 per request) */
  reject: 'close' | 'http';
  /** every certificate loaded for this listener, for /status and expiry metrics */
  loaded: LoadedCert[];
  minVersion: 'TLSv1.2' | 'TLSv1.3';
  /** ticket keys come from session_tickets.key_files; the primary's rotating secret does not apply */
  ticketKeyFiles: boolean;
  /** read the ClientHello first to start on its entry's (and its ticket key's) context; see client-hello.ts */
  peekHello: boolean;
}

export interface PeerResult {
  verify: 'SUCCESS' | 'NONE' | 'FAILED';
  reason?: VerifyReason;
  /** one sentence for logs and 403 bodies when FAILED */
  message?: string;
  identity?: Identity;
  /** facts about a certificate that failed, for the audit log */
  failed?: { subject: string; issuer: string; serial: string; fingerprint: string; not_after: string };
  /** the failure came from a check SPEC §2 runs after the handshake (pins, OCSP, policy) */
  afterHandshake?: boolean;
}

/**
 * Session ticket keys (48 bytes) for a certificate entry. Every worker (and, with key
 * files, every replica) derives the same keys from the same secret, so a client resumes
 * on any of them; mixing in the trust digest means a ticket issued under other
 * verification settings never decrypts.
 */
export function deriveTicketKeys(secret: Buffer | undefined, trustDigest: string): Buffer {
  if (!secret) return randomBytes(48);
  const a = createHmac('sha256', secret).update('portcullis ticket keys 1').update(trustDigest).digest();
  const b = createHmac('sha256', secret).update('portcullis ticket keys 2').update(trustDigest).digest();
  return Buffer.concat([a, b]).subarray(0, 48);
}

/**
 * Replaces the ticket keys of the live contexts (the primary's hourly rotation); the
 * contexts stay in use. Listeners with key files keep theirs: those rotate by reload.
 */
export function setTicketKeys(rt: TlsRuntime, secret: Buffer): void {
  if (rt.ticketKeyFiles) return;
  for (const e of [rt.default, ...rt.entries]) {
    nativeContext(e.context)?.setTicketKeys(deriveTicketKeys(secret, e.trust.digest));
  }
}

function buildEntry(
  name: string,
  serverNames: string[],
  certFile: string,
  keyFile: string,
  trust: TrustRuntime,
  minVersion: string,
  field: string,
  ticketSecrets: Buffer[] | undefined,
  loaded: LoadedCert[],
  rules: { allow: CompiledRule[]; deny: CompiledRule[] },
): CertEntry {
  const pair = readKeyPair(certFile, keyFile, field);
  for (const c of pair.chain.certs) loaded.push(describe(c, 'server', certFile));
  for (const f of trust.caFiles) for (const c of f.certs) loaded.push(describe(c, 'client_ca', f.file));
  const keys = (ticketSecrets ?? [undefined]).map((secret) => deriveTicketKeys(secret, trust.digest));
  const contexts = keys.map((ticketKeys) => tls.createSecureContext({
    cert: pair.chain.pem,
    key: pair.key.pem,
    // Always an explicit CA list: without `ca`, Node would trust its public root store
    // for client certificates. With client_auth none no certificate is requested.
    ca: trust.caCerts.map((c) => c.toString()),
    ...(trust.crlPem.length > 0 ? { crl: trust.crlPem } : {}),
    minVersion: minVersion as tls.SecureVersion,
    // OpenSSL refuses to resume a session whose session-id context differs: bind it to
    // the digest of everything that decides acceptance
    sessionIdContext: trust.digest.slice(0, 32),
    ticketKeys,
    secureOptions: LISTENER_SECURE_OPTIONS,
  }));
  const ticketContexts = contexts.length > 1 ? new Map(contexts.map((c, i) => [ticketKeyName(keys[i]!).toString('hex'), c])) : undefined;
  return { name, serverNames, context: contexts[0]!, ...(ticketContexts ? { ticketContexts } : {}), trust, ...rules };
}

/**
 * Reads every file and builds the secure contexts. Throws PortcullisError naming the file.
 * Ticket keys: the key files when configured, else the primary's shared secret.
 */
export function buildListenerTls(cfg: ListenerTlsConfig, field: string, ticketSecret?: Buffer): TlsRuntime {
  const loaded: LoadedCert[] = [];
  const ticketSecrets = cfg.session_tickets ? readTicketKeys(cfg.session_tickets.key_files, field) : ticketSecret ? [ticketSecret] : undefined;
  const defaultTrust = buildTrust(trustFor(cfg), field, cfg.min_version);
  const def = buildEntry('default', [], cfg.cert, cfg.key, defaultTrust, cfg.min_version, field, ticketSecrets, loaded, { allow: [], deny: [] });
  const entries = cfg.certificates.map((e: SniCertConfig, i: number) => {
    const f = `${field}.certificates[${i}]`;
    const trust = buildTrust(trustFor(cfg, e), f, cfg.min_version);
    const names = e.server_names.map((n) => n.toLowerCase());
    return buildEntry(names[0] ?? `entry-${i}`, names, e.cert, e.key, trust, cfg.min_version, f, ticketSecrets, loaded, {
      allow: compileRules(e.allow ?? [], `${f}.allow`),
      deny: compileRules(e.deny ?? [], `${f}.deny`),
    });
  });
  const all = [def, ...entries];
  return {
    default: def,
    entries,
    requestCert: all.some((e) => e.trust.clientAuth !== 'none'),
    failIfNoCert: cfg.reject !== 'http' && all.every((e) => e.trust.clientAuth === 'require'),
    reject: cfg.reject,
    loaded,
    minVersion: cfg.min_version,
    ticketKeyFiles: cfg.session_tickets !== undefined,
    // Without SNI entries and with one key, the default context is the only possible start
    peekHello: entries.length > 0 || (ticketSecrets?.length ?? 0) > 1,
  };
}

/**
 * The context a handshake starts on: the SNI entry's, for the key that sealed the offered
 * ticket. OpenSSL decrypts tickets and checks the session-id context with the starting
 * context only, so this, not SNICallback, decides which sessions can resume.
 */
export function initialContext(rt: TlsRuntime, hint: ClientHelloHint | undefined): SecureContext {
  const entry = startEntry(rt, hint);
  if (hint && entry.ticketContexts) {
    for (const name of hint.ticketKeyNames) {
      const c = entry.ticketContexts.get(name.toString('hex'));
      if (c) return c;
    }
  }
  return entry.context;
}

/** The entry whose context a handshake starts on (see initialContext). */
export function startEntry(rt: TlsRuntime, hint: ClientHelloHint | undefined): CertEntry {
  return hint ? selectEntry(rt, hint.serverName) : rt.default;
}

/** The entry for a server name (SNI or Host): exact names first, then "*.x" for one label. */
export function selectEntry(rt: TlsRuntime, name: string | false | undefined | null): CertEntry {
  if (!name || rt.entries.length === 0) return rt.default;
  const n = name.toLowerCase().replace(/\.$/, '');
  for (const e of rt.entries) if (e.serverNames.includes(n)) return e;
  const dot = n.indexOf('.');
  if (dot > 0) {
    const wildcard = '*' + n.slice(dot);
    for (const e of rt.entries) if (e.serverNames.includes(wildcard)) return e;
  }
  return rt.default;
}

function describe(c: X509Certificate, role: LoadedCert['role'], file: string): LoadedCert {
  return { role, file, subject: oneLine(c.subject), issuer: oneLine(c.issuer), notAfter: new Date(c.validTo), serial: c.serialNumber };
}

/**
 * Starts the server side of a TLS handshake on an accepted TCP socket; `hint` is what
 * peekClientHello read when rt.peekHello is set.
 */
export function startHandshake(raw: Socket, rt: TlsRuntime, alpn: string[], server: Server, hint?: ClientHelloHint): TLSSocket {
  return new tls.TLSSocket(raw, {
    isServer: true,
    // the net.Server, so an 'OCSPRequest' listener on it (stapling) is consulted
    server,
    secureContext: initialContext(rt, hint),
    ...(rt.entries.length > 0 ? { SNICallback: (name: string, cb: (err: Error | null, ctx?: SecureContext) => void) => cb(null, selectEntry(rt, name).context) } : {}),
    requestCert: rt.requestCert,
    // only sets SSL_VERIFY_FAIL_IF_NO_PEER_CERT here (no tls.Server around to destroy the
    // socket on other failures); everything else is decided in checkPeer
    rejectUnauthorized: rt.failIfNoCert,
    ALPNProtocols: alpn,
  });
}

/**
 * Decides what the peer proved, once per connection, right after the handshake.
 * A missing certificate is NONE even when OpenSSL reports no error: a resumed session
 * that never had a certificate reports no error and no peer.
 */
export async function checkPeer(sock: TLSSocket, trust: TrustRuntime): Promise<PeerResult> {
  if (trust.clientAuth === 'none') return { verify: 'NONE' };
  const leaf = sock.getPeerX509Certificate();
  if (!leaf) return { verify: 'NONE', reason: 'no_cert', message: reasonMessage('no_cert') };
  return judgePeer(leaf, chainAbove(leaf), tlsVerifyError(sock), trust);
}

/**
 * checkPeer's decision, from the leaf, the chain it sent above it (trust anchor excluded)
 * and OpenSSL's verification result (null: verified; undefined: not reported). Also used
 * by the verify engine when OpenSSL aborted its handshake after verifying the chain.
 */
export async function judgePeer(leaf: X509Certificate, chain: X509Certificate[], err: (Error & { code?: string }) | null | undefined, trust: TrustRuntime): Promise<PeerResult> {
  if (err === undefined) return fail('error', leaf, 'the TLS layer did not report a verification result');
  if (err) {
    let reason = reasonFromOpenSsl(err.code ?? '');
    // OpenSSL's purpose check is what usually catches a CA certificate presented as a leaf
    if (reason === 'bad_eku' && leaf.ca) reason = 'ca_as_leaf';
    // OpenSSL reports one error, and for several structural faults an unspecific or
    // version-dependent one (UNSPECIFIED for a name constraint on 3.0, INVALID_PURPOSE for
    // a v1 intermediate): when portcullis' own rules find the fault, they name it, the
    // same on every OpenSSL and the same as `cert verify` explains it
    const ours = trust.rules?.(leaf, chain);
    if (ours) return fail(ours.reason, leaf, `${ours.detail}; OpenSSL: ${err.code ?? err.message}`);
    return fail(reason, leaf, detailFor(reason, leaf, err.code ?? err.message));
  }
  // OpenSSL's ssl_client purpose check already refuses a leaf whose EKU lacks clientAuth
  // and most CA certificates (no digitalSignature); these checks make it independent of
  // how the CA filled in key usage.
  // parsed once per certificate, not per connection
  const info = leafInfo(leaf);
  if (info.ca) return fail('ca_as_leaf', leaf, `basicConstraints CA:TRUE on ${oneLine(leaf.subject)}`);
  const eku = info.keyUsage;
  if (eku && eku.length > 0 && !eku.includes(CLIENT_AUTH_EKU) && !eku.includes(ANY_EKU)) {
    return fail('bad_eku', leaf, `extended key usage is ${eku.join(', ')}`);
  }
  if (chain.length > trust.verifyDepth) {
    return fail('depth_exceeded', leaf, `${chain.length} intermediates, verify_depth is ${trust.verifyDepth}`);
  }
  const identity = identityFor(info, chain);
  for (const check of trust.checks) {
    const f = await check(leaf, chain, identity);
    if (f) return { ...fail(f.reason, leaf, f.detail), ...(f.afterHandshake ? { afterHandshake: true } : {}) };
  }
  return { verify: 'SUCCESS', identity };
}

function detailFor(reason: VerifyReason, leaf: X509Certificate, code: string): string {
  const now = rfc3339(new Date());
  if (reason === 'expired') return `notAfter ${rfc3339(new Date(leaf.validTo))}, now ${now}`;
  if (reason === 'not_yet_valid') return `notBefore ${rfc3339(new Date(leaf.validFrom))}, now ${now}`;
  if (reason === 'unknown_ca') return `issuer ${oneLine(leaf.issuer)}; OpenSSL: ${code}`;
  return `OpenSSL: ${code}`;
}

function fail(reason: VerifyReason, leaf: X509Certificate, detail: string): PeerResult {
  return {
    verify: 'FAILED',
    reason,
    message: reasonMessage(reason, detail),
    failed: {
      subject: oneLine(leaf.subject),
      issuer: oneLine(leaf.issuer),
      serial: leaf.serialNumber,
      fingerprint: leaf.fingerprint256.replace(/:/g, '').toLowerCase(),
      not_after: rfc3339(new Date(leaf.validTo)),
    },
  };
}
