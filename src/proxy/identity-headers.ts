// Formats the verified identity as request headers (SPEC §4: standard, xfcc, rfc9440),
// once per connection. The result is a flat [name, value, ...] list that every request
// on the connection appends as is. Shared by the HTTP/1.1 and HTTP/2 front ends.
import type { Identity } from '../pki/identity-types.js';
import { derToPem, rfc3339 } from '../pki/identity.js';
import type { PeerResult } from '../tls/listener-tls.js';
import { HEADER_NAME_TOKEN, UNSAFE_HEADER_VALUE } from './request-headers.js';

export type IdentityFormat = 'standard' | 'xfcc' | 'rfc9440';

export interface IdentityHeaderOptions {
  headers: readonly IdentityFormat[];
  forward_cert: boolean;
}

/** Header values must be visible ASCII: escape anything else RFC 4514-style (\XX per UTF-8 byte). */
function asciiSafe(v: string): string {
  // eslint-disable-next-line no-control-regex
  if (!/[^\x20-\x7e]/.test(v)) return v;
  let out = '';
  for (const ch of v) {
    const code = ch.codePointAt(0)!;
    if (code >= 0x20 && code <= 0x7e) out += ch;
    else for (const b of Buffer.from(ch, 'utf8')) out += '\\' + b.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

/**
 * One X-Client-SAN value: `%`, `,`, space, control characters and non-ASCII (per UTF-8
 * byte) are %XX-escaped, so a value can never read as the separator or as another
 * entry. A careless CA may issue a DNS SAN "a.example.com,URI:spiffe://x/admin"; joined
 * as is, it would read as a DNS entry plus a forged URI entry. Consumers split on ","
 * and then percent-decode each value (decodeURIComponent does it).
 */
// eslint-disable-next-line no-control-regex
const SAN_ESCAPE = /[\x00-\x20%,\x7f-\uffff]/;
export function sanValue(v: string): string {
  if (!SAN_ESCAPE.test(v)) return v;
  let out = '';
  for (const ch of v) {
    const code = ch.codePointAt(0)!;
    if (code > 0x20 && code < 0x7f && code !== 0x25 && code !== 0x2c) out += ch;
    else for (const b of Buffer.from(ch, 'utf8')) out += '%' + b.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

function sanList(id: Identity): string {
  const parts: string[] = [];
  for (const d of id.dns) parts.push(`DNS:${sanValue(d)}`);
  for (const u of id.uris) parts.push(`URI:${sanValue(u)}`);
  for (const e of id.emails) parts.push(`email:${sanValue(e)}`);
  for (const ip of id.ips) parts.push(`IP:${sanValue(ip)}`);
  return parts.join(',');
}

/** Envoy quotes an XFCC value when it holds one of , ; = or a quote. */
function xfccValue(v: string, alwaysQuote = false): string {
  if (!alwaysQuote && !/[,;="\\]/.test(v)) return v;
  return `"${v.replace(/["\\]/g, (m) => '\\' + m)}"`;
}

/**
 * Formatted headers by identity, then by the generation's options: identities are shared
 * per certificate and chain (pki/identity.ts), so a reconnecting client's headers are
 * formatted once. The lists are frozen; requests copy them into their own header list.
 */
const formatted = new WeakMap<Identity, WeakMap<IdentityHeaderOptions, string[]>>();

export function formatIdentityHeaders(peer: PeerResult, opts: IdentityHeaderOptions): string[] {
  if (peer.verify !== 'SUCCESS' || !peer.identity) return format(peer, opts);
  let byOpts = formatted.get(peer.identity);
  if (!byOpts) formatted.set(peer.identity, (byOpts = new WeakMap()));
  let out = byOpts.get(opts);
  if (!out) byOpts.set(opts, (out = Object.freeze(format(peer, opts)) as string[]));
  return out;
}

const rendered = new WeakMap<readonly string[], string | null>();

/**
 * A connection's identity headers as HTTP/1.1 header lines ("name: value\r\n" …), checked
 * once and cached per (shared, frozen) list, so the upstream client appends them to every
 * request head without re-checking each value. undefined when a line could not be sent
 * as is: the caller then sends the pairs through its own per-header checks.
 */
export function renderIdentityHead(ids: readonly string[]): string | undefined {
  let r = rendered.get(ids);
  if (r === undefined) {
    r = '';
    for (let i = 0; i < ids.length; i += 2) {
      if (!HEADER_NAME_TOKEN.test(ids[i]!) || UNSAFE_HEADER_VALUE.test(ids[i + 1]!)) {
        r = null;
        break;
      }
      r += `${ids[i]!}: ${ids[i + 1]!}\r\n`;
    }
    rendered.set(ids, r);
  }
  return r ?? undefined;
}

function format(peer: PeerResult, opts: IdentityHeaderOptions): string[] {
  const out: string[] = [];
  const id = peer.verify === 'SUCCESS' ? peer.identity : undefined;
  for (const format of opts.headers) {
    if (format === 'standard') {
      const verify = peer.verify === 'FAILED' ? `FAILED:${peer.reason ?? 'error'}` : peer.verify;
      out.push('x-client-verify', verify);
      if (!id) continue;
      out.push('x-client-subject', asciiSafe(id.subject));
      out.push('x-client-issuer', asciiSafe(id.issuer));
      if (id.cn.length > 0) out.push('x-client-cn', asciiSafe(id.cn[0]!));
      out.push('x-client-serial', id.serial);
      out.push('x-client-fingerprint', id.fingerprint);
      if (id.spiffeId) out.push('x-client-spiffe-id', asciiSafe(id.spiffeId));
      const san = sanList(id);
      if (san) out.push('x-client-san', san);
      out.push('x-client-not-before', rfc3339(id.notBefore));
      out.push('x-client-not-after', rfc3339(id.notAfter));
      if (opts.forward_cert) out.push('x-client-cert', encodeURIComponent(derToPem(id.der)));
    } else if (format === 'xfcc') {
      if (!id) continue;
      const parts = [`Hash=${id.fingerprint}`];
      if (opts.forward_cert) {
        parts.push(`Cert=${xfccValue(encodeURIComponent(derToPem(id.der)), true)}`);
        if (id.chainDer.length > 0) {
          parts.push(`Chain=${xfccValue(encodeURIComponent([id.der, ...id.chainDer].map(derToPem).join('')), true)}`);
        }
      }
      parts.push(`Subject=${xfccValue(asciiSafe(id.subject), true)}`);
      for (const u of id.uris) parts.push(`URI=${xfccValue(asciiSafe(u))}`);
      for (const d of id.dns) parts.push(`DNS=${xfccValue(asciiSafe(d))}`);
      out.push('x-forwarded-client-cert', parts.join(';'));
    } else if (format === 'rfc9440') {
      if (!id) continue;
      out.push('client-cert', `:${id.der.toString('base64')}:`);
      if (id.chainDer.length > 0) out.push('client-cert-chain', id.chainDer.map((d) => `:${d.toString('base64')}:`).join(', '));
    }
  }
  return out;
}
