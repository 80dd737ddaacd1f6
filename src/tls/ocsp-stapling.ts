// OCSP stapling of the listener's own certificates: for each server certificate whose AIA
// names a responder, a verified response is fetched in the background, refreshed halfway
// to its nextUpdate, and handed to clients that ask (status_request). A handshake never
// waits for the responder: without a fresh response in memory it simply gets no staple.
import type { Server } from 'node:net';
import type { SecureContext } from 'node:tls';
import { createHash, X509Certificate } from 'node:crypto';
import type { Logger } from 'pino';
import { ocspUrlsOf } from '../pki/ocsp.js';
import { queryOcsp } from './ocsp-check.js';
import { setTlsLog, tlsLog } from './tls-log.js';
import { nativeContext, setStaplingContext } from '../platform/node-internals.js';

const FETCH_TIMEOUT_MS = 5_000;
/** A response without nextUpdate is stapled for this long after it was fetched. */
const NO_NEXT_UPDATE_TTL_MS = 3_600_000;
const MIN_REFRESH_MS = 1_000;
const MAX_RETRY_MS = 5 * 60_000;

/** What stapling needs of a listener runtime: its secure contexts, and its logger. */
export interface StaplingRuntime {
  tls: { default: { context: SecureContext }; entries: { context: SecureContext }[] } | undefined;
  telemetry: { log: Logger };
}

interface Staple {
  cert: X509Certificate;
  issuer: X509Certificate;
  url: string;
  response: Buffer | undefined;
  validUntil: number;
  failures: number;
  timer: NodeJS.Timeout | undefined;
}

/** Staples are found by a hash of the certificate DER: cheaper per handshake than parsing it. */
function keyOf(der: Buffer): string {
  return createHash('sha256').update(der).digest('hex');
}


/**
 * Serves OCSP staples on `server` (the listener's net.Server, which Node consults for
 * 'OCSPRequest' because its TLSSockets are created with `server`). `runtime` returns the
 * current generation, so reloaded certificates are stapled and replaced ones dropped.
 */
export interface Stapling {
  /** call when the served certificates change (a reload): starts stapling new ones */
  sync(): void;
}

export function attachStapling(server: Server, runtime: () => StaplingRuntime): Stapling {
  setTlsLog(runtime().telemetry.log);
  // Node takes the certificate to staple from the SNI-selected context, or else from
  // server._sharedCreds, which only tls.Server has: point it at the current default context
  setStaplingContext(server, () => runtime().tls?.default.context);

  /** by certificate SHA-256; null = seen, nothing to staple (no AIA responder or no issuer) */
  const staples = new Map<string, Staple | null>();
  let closed = false;

  const inUse = (): Set<string> => {
    const rt = runtime().tls;
    const out = new Set<string>();
    for (const e of rt ? [rt.default, ...rt.entries] : []) {
      const der = nativeContext(e.context)?.getCertificate();
      if (der) out.add(keyOf(der));
    }
    return out;
  };

  const schedule = (key: string, s: Staple, delay: number) => {
    clearTimeout(s.timer);
    s.timer = setTimeout(() => void refresh(key, s), Math.max(MIN_REFRESH_MS, delay));
    s.timer.unref();
  };

  const refresh = async (key: string, s: Staple): Promise<void> => {
    if (closed) return;
    if (!inUse().has(key)) {
      // replaced by a reload: stop refreshing a certificate nobody presents any more
      staples.delete(key);
      return;
    }
    const o = await queryOcsp(s.url, s.cert, s.issuer, FETCH_TIMEOUT_MS);
    if (closed) return;
    const subject = s.cert.subject.replace(/\n/g, ',');
    if (o.der && (o.kind === 'good' || o.kind === 'revoked')) {
      s.response = o.der;
      s.validUntil = o.nextUpdate ?? o.fetchedAt + NO_NEXT_UPDATE_TTL_MS;
      s.failures = 0;
      if (o.kind === 'revoked') tlsLog().error({ event: 'ocsp_staple_revoked', subject, responder: s.url }, `the server certificate ${subject} is revoked (${o.detail}); replace it`);
      else tlsLog().debug({ event: 'ocsp_staple_updated', subject, responder: s.url, valid_until: new Date(s.validUntil).toISOString() }, 'OCSP staple updated');
      schedule(key, s, (s.validUntil - Date.now()) / 2);
      return;
    }
    s.failures++;
    tlsLog().warn({ event: 'ocsp_staple_failed', subject, responder: s.url, detail: o.detail, failures: s.failures }, `cannot refresh the OCSP staple of ${subject}: ${o.detail}`);
    const backoff = Math.min(MAX_RETRY_MS, 5_000 * 2 ** (s.failures - 1));
    // with a response still valid, retry before it runs out
    schedule(key, s, s.response ? Math.min(backoff, (s.validUntil - Date.now()) / 2) : backoff);
  };

  /** Starts stapling a certificate (DER) if its AIA names a responder and its issuer is known. */
  const track = (certDer: Buffer, issuerDer: Buffer | null): Staple | null => {
    const key = keyOf(certDer);
    const known = staples.get(key);
    if (known !== undefined) return known;
    const cert = new X509Certificate(certDer);
    const url = ocspUrlsOf(cert)[0];
    let s: Staple | null = null;
    if (url && issuerDer) {
      s = { cert, issuer: new X509Certificate(issuerDer), url, response: undefined, validUntil: 0, failures: 0, timer: undefined };
      void refresh(key, s);
    } else if (url) {
      tlsLog().warn({ event: 'ocsp_staple_failed', subject: cert.subject.replace(/\n/g, ','), detail: 'issuer certificate not found' }, 'cannot staple OCSP: put the issuing CA certificate after the server certificate in tls.cert');
    }
    staples.set(key, s);
    return s;
  };

  const onOcspRequest = (certDer: Buffer, issuerDer: Buffer | null, cb: (err: Error | null, resp?: Buffer) => void) => {
    let s: Staple | null = null;
    try {
      s = track(certDer, issuerDer);
    } catch {
      s = null;
    }
    if (s?.response && Date.now() < s.validUntil) cb(null, s.response);
    else cb(null);
  };

  // With an 'OCSPRequest' listener, Node stops every handshake for a round trip into
  // JavaScript (the certificate callback), status_request or not: about 3% of a full
  // handshake. So the listener is there only while a served certificate can be stapled.
  let listening = false;
  const sync = () => {
    const rt = runtime().tls;
    let stapled = false;
    for (const e of rt ? [rt.default, ...rt.entries] : []) {
      const n = nativeContext(e.context);
      const der = n?.getCertificate();
      if (der && track(der, n!.getIssuer())) stapled = true;
    }
    if (stapled && !listening) server.on('OCSPRequest', onOcspRequest);
    if (!stapled && listening) server.off('OCSPRequest', onOcspRequest);
    listening = stapled;
  };
  sync();

  server.on('close', () => {
    closed = true;
    for (const s of staples.values()) if (s) clearTimeout(s.timer);
    staples.clear();
  });
  return { sync };
}
