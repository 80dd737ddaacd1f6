// OCSP checking of client certificates after the chain verified: ask the responder from the
// certificate's AIA (or ocsp.responder), believe only a verified answer (src/pki/ocsp.ts),
// and cache it per certificate. The check is a promise per connection: a slow responder
// delays only the handshakes waiting for that answer, never the event loop, and
// concurrent handshakes of one certificate share one request.
//
// soft: "unknown", no responder, or no usable answer passes with a warning; hard: refuses
// (revocation_unknown). A "revoked" answer refuses in both modes.
import http from 'node:http';
import https from 'node:https';
import type { X509Certificate } from 'node:crypto';
import type { OcspConfig } from '../config/schema.js';
import { buildOcspRequest, certIdFor, newNonce, ocspUrlsOf, verifyOcspResponse, OcspError } from '../pki/ocsp.js';
import { issuerOf, rememberChain } from './revocation.js';
import { tlsLog } from './tls-log.js';
import type { PeerCheck } from './trust.js';

/** How long a failed lookup is remembered, so a dead responder costs one timeout per certificate per window. */
const FAILURE_TTL_MS = 10_000;
/** Bounds memory: OCSP responses are a few KiB, a cache entry a few hundred bytes. */
const MAX_RESPONSE_BYTES = 64 * 1024;
const MAX_CACHE_ENTRIES = 10_000;

export interface OcspOutcome {
  kind: 'good' | 'revoked' | 'unknown' | 'failed';
  /** for logs and refusals: what the responder said, or why there is no answer */
  detail: string;
  fetchedAt: number;
  nextUpdate: number | undefined;
}

/** A certificate passing soft mode without a status is logged at most this often. */
const SOFT_WARN_INTERVAL_MS = 10_000;

const cache = new Map<string, OcspOutcome>();
/** cache key -> when its last ocsp_soft_fail line was written */
const softWarned = new Map<string, number>();
const inflight = new Map<string, Promise<OcspOutcome>>();

/** Empties the per-process cache (tests, benchmarks). */
export function clearOcspCache(): void {
  cache.clear();
}

/** Until when an outcome may answer for its certificate: ocsp.cache, cut short by nextUpdate; failures briefly. */
export function cachedUntil(o: OcspOutcome, cacheMs: number): number {
  const ttl = o.kind === 'failed' ? Math.min(cacheMs, FAILURE_TTL_MS) : cacheMs;
  return Math.min(o.fetchedAt + ttl, o.nextUpdate ?? Infinity);
}

/** POSTs an OCSP request; resolves with the response body, rejects on anything else. */
export function postOcsp(url: string, body: Buffer, timeoutMs: number): Promise<Buffer> {
  const u = new URL(url);
  const mod = u.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(
      u,
      {
        method: 'POST',
        // one connection per lookup: lookups are rare (cached), and a responder that closes
        // idle connections cannot turn a reused socket into a spurious failure
        agent: false,
        headers: { 'content-type': 'application/ocsp-request', accept: 'application/ocsp-response', 'content-length': body.length },
      },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          req.destroy(new Error(`HTTP ${res.statusCode}`));
          return;
        }
        const chunks: Buffer[] = [];
        let n = 0;
        res.on('data', (c: Buffer) => {
          n += c.length;
          if (n > MAX_RESPONSE_BYTES) req.destroy(new Error(`response larger than ${MAX_RESPONSE_BYTES} bytes`));
          else chunks.push(c);
        });
        res.on('end', () => resolve(Buffer.concat(chunks)));
        res.on('error', reject);
      },
    );
    const timer = setTimeout(() => req.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    req.on('error', reject);
    req.on('close', () => clearTimeout(timer));
    req.end(body);
  });
}

/** Asks `url` about `cert` and returns what can be believed of the answer (never throws). */
export async function queryOcsp(url: string, cert: X509Certificate, issuer: X509Certificate, timeoutMs: number): Promise<OcspOutcome & { der?: Buffer }> {
  const fetchedAt = Date.now();
  try {
    const id = certIdFor(cert, issuer);
    const nonce = newNonce();
    const der = await postOcsp(url, buildOcspRequest(id, nonce), timeoutMs);
    const a = verifyOcspResponse(der, { cert, issuer, id, nonce });
    const nextUpdate = a.nextUpdate?.getTime();
    if (a.status === 'good') return { kind: 'good', detail: `good at ${url}`, fetchedAt, nextUpdate, der };
    if (a.status === 'unknown') return { kind: 'unknown', detail: `responder ${url} does not know the certificate (status unknown)`, fetchedAt, nextUpdate, der };
    const since = a.revokedAt ? ` since ${a.revokedAt.toISOString()}` : '';
    const reason = a.reason ? `, reason ${a.reason}` : '';
    return { kind: 'revoked', detail: `OCSP responder ${url} reports it revoked${since}${reason}`, fetchedAt, nextUpdate, der };
  } catch (err) {
    const why = err instanceof OcspError ? `unusable answer: ${err.message}` : `unreachable: ${(err as Error).message}`;
    return { kind: 'failed', detail: `OCSP responder ${url} ${why}`, fetchedAt, nextUpdate: undefined };
  }
}

function remember(key: string, o: OcspOutcome): void {
  cache.delete(key);
  if (cache.size >= MAX_CACHE_ENTRIES) cache.delete(cache.keys().next().value!);
  cache.set(key, { kind: o.kind, detail: o.detail, fetchedAt: o.fetchedAt, nextUpdate: o.nextUpdate });
}

/** The OCSP check for one trust entry, or undefined when ocsp.mode is off. */
export function buildOcspCheck(cfg: OcspConfig, caCerts: X509Certificate[]): PeerCheck | undefined {
  if (cfg.mode === 'off') return undefined;
  const mode = cfg.mode;
  return async (leaf, chain, identity) => {
    if (chain.length > 0) rememberChain(chain);
    const url = cfg.responder ?? ocspUrlsOf(leaf)[0];
    // the leaf's fingerprint names it and its issuer: a resumed session finds its answer
    // here even though its intermediates are gone
    const key = `${url ?? '-'} ${leaf.fingerprint256}`;
    let o: OcspOutcome;
    if (!url) {
      o = { kind: 'failed', detail: 'the certificate names no OCSP responder (AIA) and ocsp.responder is not set', fetchedAt: Date.now(), nextUpdate: undefined };
    } else {
      const hit = cache.get(key);
      if (hit && Date.now() < cachedUntil(hit, cfg.cache)) {
        o = hit;
      } else {
        const issuer = issuerOf(leaf, chain[0], caCerts);
        if (!issuer) {
          // not cached: the next full handshake of this certificate brings its issuer along
          o = { kind: 'failed', detail: 'the issuer of the client certificate is not known here (a resumed session whose intermediate this worker has not seen; list intermediates in client_ca)', fetchedAt: Date.now(), nextUpdate: undefined };
        } else {
          // lookups with another ocsp.timeout do not share, so none waits longer than its own
          const flight = `${key} ${cfg.timeout}`;
          let p = inflight.get(flight);
          if (!p) {
            p = queryOcsp(url, leaf, issuer, cfg.timeout)
              .then((r) => (remember(key, r), r))
              .finally(() => inflight.delete(flight));
            inflight.set(flight, p);
          }
          o = await p;
        }
      }
    }
    if (o.kind === 'good') return undefined;
    if (o.kind === 'revoked') return { reason: 'revoked', detail: o.detail, afterHandshake: true };
    if (mode === 'hard') return { reason: 'revocation_unknown', detail: `ocsp.mode hard: ${o.detail}`, afterHandshake: true };
    const now = Date.now();
    if (now - (softWarned.get(key) ?? 0) >= SOFT_WARN_INTERVAL_MS) {
      if (softWarned.size >= MAX_CACHE_ENTRIES) softWarned.clear();
      softWarned.set(key, now);
      tlsLog().warn({ event: 'ocsp_soft_fail', serial: identity.serial, subject: identity.subject, issuer: identity.issuer, detail: o.detail }, `OCSP status unknown, accepted (ocsp.mode soft): ${o.detail}`);
    }
    return undefined;
  };
}
