// TLS options toward an upstream (https endpoints): the CA that signs the upstream's
// certificate, the client certificate portcullis presents (mTLS out), the server name
// and the accepted SANs. Files are read once per generation. Also turns a failed upstream
// handshake into one sentence with cause and fix (describeUpstreamTlsError), because the
// person reading a 502 cannot see the handshake: they need the names the upstream showed
// and the names portcullis wanted, or which side refused whose certificate.
import { checkServerIdentity, createSecureContext, type ConnectionOptions, type PeerCertificate } from 'node:tls';
import { readCaFiles, readKeyPair } from '../tls/pem.js';
import { parseSubjectAltName, type SanEntry } from '../pki/identity.js';
import { alertFromError } from '../pki/doctor-advice.js';
import type { UpstreamTlsConfig } from '../config/schema.js';

export function buildUpstreamTls(cfg: UpstreamTlsConfig, field: string): ConnectionOptions {
  const opts: ConnectionOptions = { rejectUnauthorized: true };
  if (cfg.ca.length > 0) opts.ca = readCaFiles(cfg.ca, `${field}.ca`).map((f) => f.pem);
  if (cfg.cert && cfg.key) {
    const pair = readKeyPair(cfg.cert, cfg.key, field);
    opts.cert = pair.chain.pem;
    opts.key = pair.key.pem;
  }
  // one SecureContext per generation: given ca/cert/key alone, tls.connect builds a new one
  // for every upstream connection (about 1 ms of CPU each with OpenSSL 3). ca/cert/key stay
  // in the options for callers that build their own context from them (tcp-upstream.ts).
  opts.secureContext = createSecureContext({ ca: opts.ca, cert: opts.cert, key: opts.key });
  if (cfg.server_name) opts.servername = cfg.server_name;
  const names = cfg.verify_names;
  if (names.length > 0) {
    // accept the upstream only if one of its DNS or URI SANs is listed (SPIFFE-style).
    // Node calls this only after the chain verified against `ca`, and not for a resumed
    // session (whose certificate passed this check when the session was made).
    opts.checkServerIdentity = (_host: string, cert: PeerCertificate) => {
      const sans = parseSubjectAltName(cert.subjectaltname);
      return matchesVerifyNames(sans, names) ? undefined : new UpstreamIdentityError(sans, names, `${field}.verify_names`);
    };
  } else if (cfg.server_name) {
    const sn = cfg.server_name;
    opts.checkServerIdentity = (_host: string, cert: PeerCertificate) => checkServerIdentity(sn, cert);
  }
  return opts;
}

/** DNS names compare without case and trailing dot (RFC 4343); URIs (SPIFFE IDs) exactly. */
function dnsKey(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

/**
 * Whether a certificate's SANs include one of verify_names. An entry with a ":" (a scheme,
 * e.g. spiffe://) is a URI and matches URI SANs only, exactly; any other entry is a DNS
 * name and matches DNS SANs only: a DNS SAN whose text is "spiffe://..." is not that
 * SPIFFE ID. No wildcards: a wildcard SAN matches only the same wildcard written in
 * verify_names. `sans` comes from parseSubjectAltName, which reads Node's JSON-quoted
 * values whole instead of splitting them on ", ".
 */
export function matchesVerifyNames(sans: readonly SanEntry[], names: readonly string[]): boolean {
  for (const s of sans) {
    if (s.type === 'URI' && names.some((n) => n.includes(':') && n === s.value)) return true;
    if (s.type === 'DNS' && names.some((n) => !n.includes(':') && dnsKey(n) === dnsKey(s.value))) return true;
  }
  return false;
}

/**
 * The upstream's certificate verified against tls.ca but carries none of verify_names.
 * `code` is Node's own for a certificate that is not valid for the expected name, so logs
 * and access lines read the same as for a server_name mismatch.
 */
export class UpstreamIdentityError extends Error {
  readonly code = 'ERR_TLS_CERT_ALTNAME_INVALID';
  constructor(
    readonly seen: readonly SanEntry[],
    readonly expected: readonly string[],
    readonly field: string,
  ) {
    super(`the upstream's certificate names ${showSans(seen)}, none of which is in ${field} (${expected.join(', ')})`);
    this.name = 'UpstreamIdentityError';
  }
}

function showSans(sans: readonly SanEntry[]): string {
  const shown = sans.map((s) => (s.type === 'other' ? s.value : `${s.type}:${s.value}`));
  return shown.length > 0 ? shown.join(', ') : 'no subject alternative name';
}

// OpenSSL's verify results (Node puts them in err.code) that mean "no trusted CA issued it"
const UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'INVALID_CA',
]);
const OUT_OF_DATE = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID']);
// alerts a server sends about the client certificate it was given
const CLIENT_CERT_ALERTS = new Set([
  'bad_certificate',
  'unsupported_certificate',
  'certificate_revoked',
  'certificate_expired',
  'certificate_unknown',
  'unknown_ca',
  'access_denied',
  'decrypt_error',
]);

/**
 * One sentence (cause; fix) for an upstream TLS failure, or undefined when `err` is not
 * one. `upstream` is the upstream's name, `endpoint` its URL as configured.
 */
export function describeUpstreamTlsError(err: Error & { code?: string; host?: string; cert?: PeerCertificate }, upstream: string, endpoint: string): string | undefined {
  const at = `upstream ${upstream} (${endpoint})`;
  const tls = `upstreams.${upstream}.tls`;
  if (err instanceof UpstreamIdentityError) {
    return `${at} presented a certificate for ${showSans(err.seen)} but ${err.field} accepts only ${err.expected.join(', ')}; check that the endpoint is the service you mean, or add one of its names to ${err.field}`;
  }
  const code = err.code ?? '';
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    const sans = err.cert ? showSans(parseSubjectAltName(err.cert.subjectaltname)) : 'other names';
    return `${at} presented a certificate for ${sans} that is not valid for ${err.host ?? 'the name portcullis expected'} (the endpoint's host, or ${tls}.server_name); set ${tls}.server_name to a name in the certificate, or list the names to accept in ${tls}.verify_names`;
  }
  if (UNTRUSTED.has(code)) {
    return `${at} presented a certificate that no CA in ${tls}.ca issued (${err.message}); set ${tls}.ca to the CA that issues the upstream's certificate (portcullis doctor ${doctorUrl(endpoint)} shows the chain it sends)`;
  }
  if (OUT_OF_DATE.has(code)) {
    return `${at} presented a certificate that is ${code === 'CERT_HAS_EXPIRED' ? 'expired' : 'not valid yet'}; renew the upstream's certificate (or check this machine's clock)`;
  }
  if (!code.startsWith('ERR_SSL_')) return undefined;
  const alert = alertFromError(err);
  if (alert === 'certificate_required') {
    return `${at} requires a client certificate and portcullis sent none (TLS alert certificate_required); set ${tls}.cert and ${tls}.key to a certificate the upstream trusts`;
  }
  if (alert && CLIENT_CERT_ALERTS.has(alert)) {
    return `${at} refused the client certificate portcullis presented (TLS alert ${alert}); check that ${tls}.cert is valid and issued by a CA the upstream trusts`;
  }
  if (alert) {
    return `${at} ended the TLS handshake (TLS alert ${alert}); check that it accepts TLS 1.2 or 1.3 and, if it requires a client certificate, that ${tls}.cert is one it trusts`;
  }
  return `the TLS connection to ${at} failed (${code}); check that the endpoint speaks TLS and that ${tls} matches it`;
}

/** doctor takes https:// URLs; a tls:// endpoint is the same handshake. */
function doctorUrl(endpoint: string): string {
  return endpoint.replace(/^tls:\/\//, 'https://');
}
