// The parts of `portcullis doctor`'s verdict that are about the answer rather than the
// chain: an HTTP status outside 2xx is a problem (a 502 is not "no problem found"), what a
// bare probe without a certificate says about whether one is required, and how a trust
// store the user did not choose (the system's ~140 roots) is described: by count, never
// by listing every name. Pure; doctor.ts gathers the facts.
import type { X509Certificate } from 'node:crypto';
import type { Advice, HttpFacts } from '../pki/doctor-advice.js';
import { rfc4514 } from '../pki/verify.js';

/** The fix for each error portcullis itself answers with (SPEC §5), by its `error` code. */
const PORTCULLIS_FIXES: Record<string, string> = {
  bad_request: 'send a well-formed request (the message says what was wrong with it).',
  no_route: 'request a path one of the listener\'s routes matches, or add a route for it (portcullis policy test shows which route a request takes).',
  misdirected_request: 'connect with the SNI of the host you request (--servername), or request a host that certificate serves.',
  body_too_large: 'send a smaller body or raise limits.max_body_bytes.',
  headers_too_large: 'send fewer or smaller headers, or raise limits.max_header_bytes / limits.max_headers.',
  upstream_unavailable: 'start the service behind this route or fix the endpoints of its upstream; the proxy\'s access log names the upstream.',
  no_healthy_upstream: 'bring an endpoint of the route\'s upstream back to health (see its health_check), or fix its endpoints.',
  upstream_timeout: 'make the service answer in time, or raise the upstream\'s timeouts.request or the route\'s timeout.',
  upstream_overloaded: 'retry later, or raise the upstream\'s limits (max_connections, max_pending, max_requests).',
};

/**
 * A problem for an HTTP answer outside 2xx that the certificate advice did not already
 * explain; undefined for 2xx. portcullis' JSON errors are quoted with their code.
 */
export function adviseStatus(h: HttpFacts, method: string, path: string): Advice | undefined {
  if (h.status >= 200 && h.status < 300) return undefined;
  let json: { error?: unknown; message?: unknown } | undefined;
  if ((h.headers['content-type'] ?? '').includes('json')) {
    try {
      json = JSON.parse(h.body) as typeof json;
    } catch {
      json = undefined;
    }
  }
  const code = `http_${h.status}`;
  const request = `${method} ${path}`;
  if (typeof json?.error === 'string') {
    const message = typeof json.message === 'string' ? `: ${json.message.replace(/\.$/, '')}` : '';
    return {
      code,
      cause: `${request} got ${h.status} ${json.error}${message}.`,
      fix: PORTCULLIS_FIXES[json.error] ?? 'fix what the message names; the server\'s log has the detail.',
    };
  }
  if (h.status >= 300 && h.status < 400) {
    const to = h.headers['location'];
    return {
      code,
      cause: `${request} got ${h.status}, a redirect${to ? ` to ${to}` : ' without a Location'}, not an answer.`,
      fix: to ? `run doctor on ${to}, or fix the path.` : 'fix the path, or the server\'s redirect.',
    };
  }
  const server = h.headers['server'] ? ` (server: ${h.headers['server']})` : '';
  if (h.status >= 500) {
    return { code, cause: `${request} got ${h.status}${server}: the TLS connection works, but the server or the service behind it failed.`, fix: 'look at the server\'s log (and the upstream\'s) for this request.' };
  }
  if (h.status >= 400) {
    return { code, cause: `${request} got ${h.status}${server}: the TLS connection works, but the server refused this request.`, fix: 'request a path the server serves, with the method and identity it expects; its log says why it refused.' };
  }
  return { code, cause: `${request} got ${h.status}${server}, which is not a final answer.`, fix: 'look at the server\'s log for this request.' };
}

/** The handshake completed and nothing refused us, but no HTTP answer came back. */
export function adviseNoAnswer(method: string, path: string, error: string | undefined): Advice {
  return {
    code: 'no_http_response',
    cause: `the TLS handshake completed but ${method} ${path} got no HTTP answer${error ? ` (${error})` : ''}.`,
    fix: 'check that the server speaks HTTP/1.1 on this port and look at its log.',
  };
}

/**
 * What a second connection without a certificate shows: the server refused it (so a
 * certificate is required), or it answered (so one is only asked for).
 */
export function requiredWithout(bare: { secure: boolean; alert: string | undefined; http: HttpFacts | undefined; certificateRequiredAnswer: boolean }): 'required' | 'optional' | 'unknown' {
  if (bare.alert === 'certificate_required' || bare.alert === 'handshake_failure' || bare.certificateRequiredAnswer) return 'required';
  if (bare.secure && !bare.http) return 'required'; // closed after the handshake: portcullis' require mode under TLS 1.2
  if (bare.http) return 'optional';
  return 'unknown';
}

/**
 * Messages about a trust store name every CA in it; for the system store that is ~140
 * names (twice: in the chain section and in the diagnosis). Replaces that list with a count.
 */
export function countInsteadOfNames<T extends { message: string; fix: string }>(reasons: T[], cas: X509Certificate[], label: string): T[] {
  if (cas.length === 0) return reasons;
  const listed = cas.map((c) => `"${rfc4514(c.subject)}"`).join(', ');
  const short = `the ${cas.length} CAs of ${label}`;
  return reasons.map((r) => ({ ...r, message: r.message.split(listed).join(short), fix: r.fix.split(listed).join(short) }));
}
