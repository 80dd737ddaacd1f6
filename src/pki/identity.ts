// Builds the Identity of a peer from Node's native X509Certificate objects. Called once
// per TLS handshake (never per request): everything headers and policy need is computed
// here, so the request path only reads fields.
import { hash, type X509Certificate } from 'node:crypto';
import type { Identity } from './identity-types.js';

export type { Identity, RequestFacts } from './identity-types.js';

/** Node prints names as OpenSSL's multi-line form: one RDN per line, DER order, RFC 2253 escaping. */
interface NameParts {
  rfc4514: string;
  attrs: Map<string, string[]>;
}

function parseName(name: string | undefined): NameParts {
  // Node leaves subject/issuer undefined for an empty Name (RFC 5280 allows an empty
  // subject when a critical SAN names the holder)
  const lines = !name ? [] : name.split('\n');
  const attrs = new Map<string, string[]>();
  for (const line of lines) {
    // a multi-valued RDN is printed as "A=x + B=y"
    for (const ava of line.split(/(?<!\\) \+ /)) {
      const eq = ava.indexOf('=');
      if (eq <= 0) continue;
      const key = ava.slice(0, eq);
      const value = unescapeRfc2253(ava.slice(eq + 1));
      const list = attrs.get(key);
      if (list) list.push(value);
      else attrs.set(key, [value]);
    }
  }
  // RFC 4514 writes the most specific RDN first: the reverse of DER order. The values
  // already carry RFC 2253/4514 escaping from OpenSSL; multi-valued RDNs join with '+'.
  const rfc4514 = lines.slice().reverse().map((l) => l.replace(/(?<!\\) \+ /g, '+')).join(',');
  return { rfc4514, attrs };
}

function unescapeRfc2253(v: string): string {
  if (!v.includes('\\')) return v;
  const bytes: number[] = [];
  for (let i = 0; i < v.length; i++) {
    const ch = v[i]!;
    if (ch === '\\' && i + 1 < v.length) {
      const hex = v.slice(i + 1, i + 3);
      if (/^[0-9A-Fa-f]{2}$/.test(hex)) {
        bytes.push(parseInt(hex, 16));
        i += 2;
        continue;
      }
      i += 1;
      for (const b of Buffer.from(v[i]!, 'utf8')) bytes.push(b);
      continue;
    }
    for (const b of Buffer.from(ch, 'utf8')) bytes.push(b);
  }
  return Buffer.from(bytes).toString('utf8');
}

export interface SanEntry {
  type: 'DNS' | 'URI' | 'email' | 'IP' | 'other';
  value: string;
}

/** Parses Node's subjectAltName string ("DNS:a, URI:b, IP Address:1.2.3.4"; odd values JSON-quoted). */
export function parseSubjectAltName(san: string | undefined): SanEntry[] {
  const out: SanEntry[] = [];
  if (!san) return out;
  let i = 0;
  while (i < san.length) {
    const colon = san.indexOf(':', i);
    if (colon < 0) break;
    const rawType = san.slice(i, colon);
    let value: string;
    let next: number;
    if (san[colon + 1] === '"') {
      // JSON-quoted value: find the closing quote that is not escaped
      let j = colon + 2;
      while (j < san.length && san[j] !== '"') j += san[j] === '\\' ? 2 : 1;
      value = JSON.parse(san.slice(colon + 1, j + 1)) as string;
      next = j + 1;
    } else {
      const end = san.indexOf(', ', colon + 1);
      value = san.slice(colon + 1, end < 0 ? san.length : end);
      next = end < 0 ? san.length : end;
    }
    if (san.startsWith(', ', next)) next += 2;
    i = next;
    const type = rawType === 'DNS' ? 'DNS' : rawType === 'URI' ? 'URI' : rawType === 'email' ? 'email' : rawType === 'IP Address' ? 'IP' : 'other';
    out.push({ type, value: type === 'other' ? `${rawType}:${value}` : value });
  }
  return out;
}

function sha256Hex(data: Buffer): string {
  // one-shot: half the cost of createHash().update().digest() on a certificate
  return hash('sha256', data, 'hex');
}

/** "Nov 22 08:24:57 2026 GMT" → Date (V8 parses OpenSSL's format). */
function parseValidity(s: string): Date {
  return new Date(s);
}

/** The chain above the leaf (as Node walked it), without the self-issued trust anchor. */
export function chainAbove(leaf: X509Certificate): X509Certificate[] {
  const chain: X509Certificate[] = [];
  let cur: X509Certificate | undefined = leaf.issuerCertificate;
  let prev: X509Certificate = leaf;
  while (cur && chain.length < 16) {
    // Node ends the walk by repeating a self-signed certificate as its own issuer
    if (cur.fingerprint256 === prev.fingerprint256) break;
    if (cur.checkIssued(cur)) break;
    chain.push(cur);
    prev = cur;
    cur = cur.issuerCertificate;
  }
  return chain;
}

/**
 * What one client certificate yields, whichever connection presents it: the leaf part of
 * its Identity, its CA flag and extended key usage, and the last Identity built from it
 * (reused while the verified chain above it is the same).
 */
export interface LeafInfo {
  fields: Omit<Identity, 'chainDer' | 'spkiFingerprint'>;
  ca: boolean;
  /** extended key usage OIDs; undefined when the extension is absent */
  keyUsage: readonly string[] | undefined;
  /** exporting the public key costs ~5% of a handshake's CPU and only pins need it */
  spki(): string;
  last: { chainFps: string[]; identity: Identity } | undefined;
}

/**
 * Leaf infos by certificate SHA-256 (fingerprint256), least recently used first. Clients reconnect with
 * the same certificate; parsing names, SANs, dates and key usage again, and building and
 * formatting a new identity, cost several % of a full handshake's CPU. Bounded: a flood
 * of distinct certificates only evicts.
 */
const leafCache = new Map<string, LeafInfo>();
export const LEAF_CACHE_MAX = 1024;

function parseLeaf(leaf: X509Certificate, der: Buffer, fingerprint: string): LeafInfo {
  const subject = parseName(leaf.subject);
  const issuer = parseName(leaf.issuer);
  const sans = parseSubjectAltName(leaf.subjectAltName);
  const uris: string[] = [];
  const dns: string[] = [];
  const emails: string[] = [];
  const ips: string[] = [];
  for (const s of sans) {
    if (s.type === 'URI') uris.push(s.value);
    else if (s.type === 'DNS') dns.push(s.value);
    else if (s.type === 'email') emails.push(s.value);
    else if (s.type === 'IP') ips.push(s.value);
  }
  // shared between connections: frozen so that no caller can change another's identity
  const list = (a: string[]) => Object.freeze(a) as string[];
  const eku = leaf.keyUsage;
  let spki: string | undefined;
  return {
    fields: {
      subject: subject.rfc4514,
      issuer: issuer.rfc4514,
      cn: list(subject.attrs.get('CN') ?? []),
      ou: list(subject.attrs.get('OU') ?? []),
      o: list(subject.attrs.get('O') ?? []),
      issuerCn: list(issuer.attrs.get('CN') ?? []),
      serial: leaf.serialNumber.toUpperCase(),
      fingerprint,
      spiffeId: uris.find((u) => u.toLowerCase().startsWith('spiffe://')),
      uris: list(uris),
      dns: list(dns),
      emails: list(emails),
      ips: list(ips),
      notBefore: parseValidity(leaf.validFrom),
      notAfter: parseValidity(leaf.validTo),
      der,
    },
    ca: leaf.ca,
    keyUsage: eku ? Object.freeze([...eku]) : undefined,
    spki: () => (spki ??= sha256Hex(leaf.publicKey.export({ type: 'spki', format: 'der' }))),
    last: undefined,
  };
}

/** The cached facts of a peer's leaf certificate (parsed on first sight). */
export function leafInfo(leaf: X509Certificate): LeafInfo {
  // fingerprint256 is the SHA-256 of the DER, computed natively and cached on the object
  // (chainAbove has asked for it already): a hit copies no DER and hashes nothing in JS,
  // which took ~2% of a full handshake's CPU (bench:profile, docs/performance.md)
  const key = leaf.fingerprint256;
  let info = leafCache.get(key);
  if (info) {
    // most recently used goes last
    leafCache.delete(key);
  } else {
    const der = leaf.raw;
    info = parseLeaf(leaf, der, sha256Hex(der));
    if (leafCache.size >= LEAF_CACHE_MAX) leafCache.delete(leafCache.keys().next().value!);
  }
  leafCache.set(key, info);
  return info;
}

function sameChain(fps: string[], chain: X509Certificate[]): boolean {
  if (fps.length !== chain.length) return false;
  for (let i = 0; i < fps.length; i++) if (fps[i] !== chain[i]!.fingerprint256) return false;
  return true;
}

/**
 * The Identity for a leaf and the verified chain above it. Identities are frozen and
 * shared: the same certificate over the same chain gives the same object, so per-identity
 * work (formatted headers) is done once too. Chains are compared by SHA-256 fingerprint.
 */
export function identityFor(info: LeafInfo, chain: X509Certificate[]): Identity {
  const last = info.last;
  if (last && sameChain(last.chainFps, chain)) return last.identity;
  const chainDer = Object.freeze(chain.map((c) => c.raw)) as Buffer[];
  const identity = { ...info.fields, spkiFingerprint: '', chainDer } as Identity;
  Object.defineProperty(identity, 'spkiFingerprint', { enumerable: true, get: info.spki });
  Object.freeze(identity);
  info.last = { chainFps: chain.map((c) => c.fingerprint256), identity };
  return identity;
}

export function buildIdentity(leaf: X509Certificate, chain: X509Certificate[]): Identity {
  return identityFor(leafInfo(leaf), chain);
}

/** How many leaf identities are cached (tests). */
export function leafCacheSize(): number {
  return leafCache.size;
}

/** RFC 3339 UTC without fractional seconds. */
export function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function derToPem(der: Buffer): string {
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
}
