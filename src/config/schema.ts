// The one schema of the config file (SPEC §1): it gives the TypeScript types, the runtime
// validation and the defaults, and normalizes values to what the runtime uses
// (durations in ms, string-or-list as lists, parsed addresses, canonical pins/serials).
// Checks that span several fields, path resolution and file checks live in load.ts.
import { isIPv4, isIPv6 } from 'node:net';
import { z } from 'zod';
import { DURATION_HINT, parseDuration } from './duration.js';
import { HTTP_SCHEMES, TCP_SCHEMES } from './shared.js';
import { isToken, KNOWN_METHODS } from '../routing/method.js';

// ---------------------------------------------------------------------------------------
// Value helpers (pure; also used by load.ts's cross-field checks on the raw input)

export const DEFAULT_ADMIN_ADDRESS = '127.0.0.1:9901';
const ADDRESS_HINT = 'use host:port, e.g. 0.0.0.0:8443 or [::]:8443';
const HOSTNAME = /^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?$/i;

/** host and port of "host:port" / "[v6]:port", or a reason it is not one. */
export function splitAddress(address: string): { host: string; port: number } | { problem: string } {
  const bad = { problem: `"${address}" is not an address; ${ADDRESS_HINT}` };
  const v6 = /^\[([^\]]+)\]:(\d{1,5})$/.exec(address);
  const v4 = /^([^:[\]]+):(\d{1,5})$/.exec(address);
  const m = v6 ?? v4;
  if (!m) {
    if (isIPv6(address.replace(/:\d+$/, ''))) return { problem: `"${address}" looks like an IPv6 address without brackets; write it as [v6]:port, e.g. [::1]:8443` };
    if (/^:\d+$/.test(address)) return { problem: `"${address}" has no host; use 0.0.0.0${address} for every interface or 127.0.0.1${address} for this machine only` };
    return bad;
  }
  const host = m[1]!;
  const port = Number(m[2]);
  if (port > 65535) return { problem: `"${address}" has port ${port}, above 65535; use a port from 0 to 65535` };
  if (v6) return isIPv6(host) ? { host, port } : bad;
  // all digits and dots must be a real IPv4 address ("10.0.0.300" is a typo, not a name)
  const ok = /^[\d.]+$/.test(host) ? isIPv4(host) : HOSTNAME.test(host);
  return ok ? { host, port } : bad;
}

/** True for hosts only this machine can reach: 127.0.0.0/8, ::1, localhost. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  if (h === 'localhost' || h === 'localhost.' || h === '::1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return isIPv4(v4) && v4.startsWith('127.');
}

/** The closest known key to a misspelt one, when one is close enough to be a likely typo. */
export function suggestKey(key: string, known: readonly string[]): string | undefined {
  const norm = (s: string) => s.toLowerCase().replace(/[-_\s]/g, '');
  const n = norm(key);
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    if (norm(k) === n) return k;
    const d = editDistance(n, norm(k));
    if (d < bestDistance) [best, bestDistance] = [k, d];
  }
  return bestDistance <= Math.max(1, Math.floor(n.length / 3)) ? best : undefined;
}

/** Edits (insert, delete, substitute, swap two neighbours) turning a into b. */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const row = d[i]!;
      row[j] = Math.min(d[i - 1]![j]! + 1, row[j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(row[j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

const HEX64 = /^[0-9a-f]{64}$/;

/** "sha256:<64 lowercase hex>" from a pin or fingerprint written with any case or colons. */
function canonicalSha256(value: string, prefixRequired: boolean): string | undefined {
  let v = value.trim().toLowerCase();
  if (v.startsWith('sha256:')) v = v.slice(7);
  else if (prefixRequired) return undefined;
  v = v.replace(/:/g, '');
  return HEX64.test(v) ? `sha256:${v}` : undefined;
}

export const normalizePin = (v: string) => canonicalSha256(v, true);
export const normalizeFingerprint = (v: string) => canonicalSha256(v, false);

/** Serial as uppercase hex without separators or leading zeros ("00:0A:1b" -> "A1B"). */
export function normalizeSerial(value: string): string | undefined {
  const v = value.trim().replace(/^0x/i, '').replace(/[:\s]/g, '');
  if (!/^[0-9a-f]+$/i.test(v)) return undefined;
  return v.replace(/^0+(?=.)/, '').toUpperCase();
}

// ---------------------------------------------------------------------------------------
// Schema building blocks

/**
 * A map that rejects unknown keys, naming the closest known one. The message holds one line
 * per unknown key, in `iss.keys` order; load.ts prefixes each with the key's path.
 */
function strict<S extends z.ZodRawShape>(shape: S) {
  const known = Object.keys(shape);
  return z.strictObject(shape, {
    error: (iss) => {
      if (iss.code !== 'unrecognized_keys') return undefined;
      return iss.keys
        .map((k) => {
          const near = suggestKey(k, known);
          return near ? `unknown key; did you mean ${near}?` : `unknown key; remove it or use one of: ${known.join(', ')}`;
        })
        .join('\n');
    },
  });
}

/** Adds one custom issue (message: "<problem>; <fix>") and returns the value to give up with. */
function fail(ctx: z.RefinementCtx, message: string): never {
  ctx.addIssue({ code: 'custom', message });
  return z.NEVER;
}

const show = (v: unknown) => (typeof v === 'string' ? `"${v}"` : JSON.stringify(v) ?? String(v));

/** How a value is written where its parsed type cannot say ("5s", one string for a list): for json-schema.ts. */
export const INPUT_KIND = 'x-portcullis-input';
export type InputKind = 'duration' | 'list' | 'switch' | 'workers';
const kind = (k: InputKind) => ({ [INPUT_KIND]: k });

/** A duration in ms; `positive` rejects 0 where 0 would make no sense (intervals, timeouts that must fire). */
function duration(opts: { positive?: boolean } = {}) {
  return z.unknown().transform((v, ctx): number => {
    const ms = parseDuration(v);
    if (ms === undefined) return fail(ctx, `${show(v)} is not a duration; ${DURATION_HINT}`);
    if (opts.positive && ms === 0) return fail(ctx, `must be longer than 0; ${DURATION_HINT}`);
    return ms;
  }).meta({ ...kind('duration'), ...(opts.positive ? { exclusiveMinimum: 0 } : {}) });
}

/** One string or a list of them, always a list afterwards. */
function stringList<T extends z.ZodType<string, unknown>>(item: T) {
  return z.preprocess((v) => (typeof v === 'string' ? [v] : v), z.array(item)).meta(kind('list'));
}

const nonEmpty = () => z.string().min(1);
/** A file path as written; load.ts resolves it against the config file's folder. */
const filePath = () =>
  nonEmpty().refine((v) => !v.includes('-----BEGIN') && !v.includes('\n'), {
    message: 'looks like PEM content, not a file path; save it to a file and give the path here',
  });
const pathList = () => stringList(filePath());
const int = (min: number) => z.number().int().min(min);
/** `off` written as YAML/JSON false is still off. */
const offSwitch = <T extends readonly [string, ...string[]]>(values: T) =>
  z.preprocess((v) => (v === false ? 'off' : v), z.enum(values)).meta(kind('switch'));

const address = () =>
  z.string().superRefine((v, ctx) => {
    const a = splitAddress(v);
    if ('problem' in a) ctx.addIssue({ code: 'custom', message: a.problem });
  });

/** Adds host and port to an object whose address the schema has already validated. */
function withHostPort<T extends { address: string }>(o: T): T & { host: string; port: number } {
  const a = splitAddress(o.address) as { host: string; port: number };
  return { ...o, host: a.host, port: a.port };
}

const hostPattern = z.string().transform((v, ctx) => {
  const h = v.trim().toLowerCase();
  const bare = h.startsWith('*.') ? h.slice(2) : h;
  if (!HOSTNAME.test(bare) && !isIPv4(bare)) return fail(ctx, `${show(v)} is not a host name; use e.g. api.example.com or *.example.com`);
  return h;
});

const urlPath = () =>
  z.string().refine((v) => v.startsWith('/'), { message: 'must start with /; write e.g. /v1/charge' });

const pathRegex = z.string().superRefine((v, ctx) => {
  try {
    new RegExp(v);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: `${show(v)} is not a valid regular expression (${(err as Error).message}); fix the pattern` });
  }
});

// Methods are case-sensitive (RFC 9110 §9.1) and requests are matched exactly: `get`
// here would never match a GET, so a case variant of a known method is an error naming
// the right spelling; any other token (an extension method) is matched as written.
const method = z.string().transform((v, ctx) => {
  if (!isToken(v)) return fail(ctx, `${show(v)} is not an HTTP method (a token such as GET or PROPFIND); fix the spelling`);
  const upper = v.toUpperCase();
  if (upper !== v && KNOWN_METHODS.has(upper)) return fail(ctx, `${show(v)} never matches: methods are case-sensitive; write ${upper}`);
  return v;
});

// ---------------------------------------------------------------------------------------
// Authorization rules (SPEC §3)

export const RULE_KEYS = ['spiffe_id', 'uri', 'dns', 'email', 'cn', 'ou', 'o', 'issuer_cn', 'serial', 'fingerprint'] as const;

/** One condition's values; an empty list could never match, which is surely a mistake. */
function condition(item: z.ZodType<string, string>) {
  return stringList(item).refine((l) => l.length > 0, {
    message: 'an empty list matches no certificate; give at least one value or remove the condition',
  }).optional();
}

const plain = z.string().min(1);
const ruleShape = {
  spiffe_id: condition(
    z.string().refine((v) => v.startsWith('spiffe://'), { message: 'must start with spiffe://; write e.g. spiffe://example.org/ns/prod/sa/payments' }),
  ),
  uri: condition(plain),
  dns: condition(z.string().min(1).transform((v) => v.toLowerCase())),
  email: condition(plain),
  cn: condition(plain),
  ou: condition(plain),
  o: condition(plain),
  issuer_cn: condition(plain),
  serial: condition(
    z.string().transform((v, ctx) => normalizeSerial(v) ?? fail(ctx, `${show(v)} is not a serial number; write it in hex, e.g. 0A:1B:2C or 0a1b2c`)),
  ),
  fingerprint: condition(
    z.string().transform((v, ctx) => normalizeFingerprint(v) ?? fail(ctx, `${show(v)} is not a SHA-256 fingerprint; use sha256:<64 hex digits> of the certificate DER`)),
  ),
} satisfies Record<(typeof RULE_KEYS)[number], unknown>;

function rules(kind: 'allow' | 'deny') {
  const fix =
    kind === 'allow'
      ? 'remove the allow list instead (an empty allow list lets every verified client through), or add a condition such as spiffe_id'
      : 'this deny list would refuse everyone; add a condition such as spiffe_id, or remove the rule';
  const rule = strict(ruleShape).superRefine((r, ctx) => {
    if (Object.values(r).every((v) => v === undefined)) ctx.addIssue({ code: 'custom', message: `an empty rule matches every client; ${fix}` });
  });
  return z.array(rule);
}

// ---------------------------------------------------------------------------------------
// Listener TLS and client-certificate trust

const ClientAuthSchema = z.enum(['require', 'optional', 'none']);
const IdentityHeaderSchema = z.enum(['standard', 'xfcc', 'rfc9440']);

/**
 * Which certificates of a client chain the CRLs must cover: chain = every one (a CA
 * without a CRL refuses the chain, as OpenSSL/nginx/Envoy do by default), leaf = only the
 * client's own certificate (Envoy's only_verify_leaf_cert_crl).
 */
const CrlModeSchema = z.enum(['chain', 'leaf']);

const OcspSchema = strict({
  mode: offSwitch(['off', 'soft', 'hard'] as const).default('off'),
  responder: z
    .string()
    .refine((v) => /^https?:\/\/[^/]/.test(v) && URL.canParse(v), { message: 'not an http(s) URL; write e.g. http://ocsp.example.com' })
    .optional(),
  cache: duration().default(300_000),
  timeout: duration({ positive: true }).default(2_000),
});

const CertPolicySchema = strict({
  min_rsa_bits: int(0).default(2048),
  min_ec_bits: int(0).default(256),
  key_types: z.array(z.enum(['rsa', 'ec', 'ed25519'])).min(1).default(() => ['rsa' as const, 'ec' as const, 'ed25519' as const]),
  max_validity: duration().default(0),
  // RFC 5280 rules that real private CAs often break (missing AKI/SKI, basicConstraints or
  // nameConstraints of a CA not marked critical): off by default, see docs/security.md
  strict_rfc5280: z.boolean().default(false),
});

const pinList = () =>
  stringList(
    z.string().transform(
      (v, ctx) => normalizePin(v) ?? fail(ctx, `${show(v)} is not a pin; use sha256:<64 hex digits> of the leaf certificate DER or its SPKI`),
    ),
  );

/** Certificates chosen by SNI. Trust keys left out stay undefined: they inherit the listener's. */
const SniCertSchema = strict({
  server_names: stringList(hostPattern).refine((l) => l.length > 0, { message: 'must not be empty; list the host names this certificate serves' }),
  cert: filePath(),
  key: filePath(),
  client_auth: ClientAuthSchema.optional(),
  client_ca: pathList().optional(),
  crl: pathList().optional(),
  crl_mode: CrlModeSchema.optional(),
  ocsp: OcspSchema.optional(),
  pins: pinList().optional(),
  cert_policy: CertPolicySchema.optional(),
  allow: rules('allow').optional(),
  deny: rules('deny').optional(),
});

/**
 * Session ticket keys shared by several replicas (nginx ssl_session_ticket_key, HAProxy
 * tls-ticket-keys): the first file's key seals new tickets, every file's key opens them.
 * Without it, the primary makes a random secret that only its own workers share.
 */
export const MAX_TICKET_KEY_FILES = 8;
const SessionTicketsSchema = strict({
  key_files: pathList().superRefine((l, ctx) => {
    if (l.length === 0) ctx.addIssue({ code: 'custom', message: 'must not be empty; give the key file that seals new tickets first, then older ones (e.g. [tickets/current.key, tickets/previous.key])' });
    if (l.length > MAX_TICKET_KEY_FILES) ctx.addIssue({ code: 'custom', message: `${l.length} key files; give at most ${MAX_TICKET_KEY_FILES} (each one costs a TLS context per certificate entry, and a key needs to stay listed only 2 hours, the ticket lifetime, after it stopped sealing)` });
    const twice = l.find((f, i) => l.indexOf(f) !== i);
    if (twice !== undefined) ctx.addIssue({ code: 'custom', message: `"${twice}" is listed twice; list each key file once` });
  }),
});

const ListenerTlsSchema = strict({
  cert: filePath(),
  key: filePath(),
  certificates: z.array(SniCertSchema).default(() => []),
  min_version: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
  client_auth: ClientAuthSchema.default('require'),
  client_ca: pathList().default(() => []),
  verify_depth: int(0).max(16).default(3),
  crl: pathList().default(() => []),
  crl_mode: CrlModeSchema.default('chain'),
  ocsp: OcspSchema.prefault({}),
  pins: pinList().default(() => []),
  cert_policy: CertPolicySchema.prefault({}),
  session_tickets: SessionTicketsSchema.optional(),
  /**
   * How a client whose certificate the listener refuses learns it: `close` ends the
   * connection after the handshake; `http` (HTTP listeners) completes the handshake and
   * answers every request with 401/403 JSON naming the reason (docs/rejecting-clients.md).
   * Listener-wide: SNI entries carry trust, not how an HTTP listener answers.
   */
  reject: z.enum(['close', 'http']).default('close'),
});

// ---------------------------------------------------------------------------------------
// Routes and listeners

const RouteMatchSchema = strict({
  host: stringList(hostPattern).optional(),
  path: urlPath().optional(),
  path_exact: urlPath().optional(),
  path_regex: pathRegex.optional(),
  methods: stringList(method).optional(),
}).superRefine((m, ctx) => {
  const given = (['path', 'path_exact', 'path_regex'] as const).filter((k) => m[k] !== undefined);
  if (given.length > 1) {
    ctx.addIssue({ code: 'custom', message: `${given.join(' and ')} are both set; give only one of path, path_exact, path_regex (use one route per pattern)` });
  }
});

const RouteSchema = strict({
  name: nonEmpty().optional(),
  match: RouteMatchSchema.optional(),
  client_auth: ClientAuthSchema.optional(),
  allow: rules('allow').default(() => []),
  deny: rules('deny').default(() => []),
  upstream: nonEmpty(),
  timeout: duration().optional(),
});

/**
 * A count that must be at least 1, where 0 would make the thing it bounds refuse everything
 * (a listener whose HTTP/2 clients may open no stream, an upstream that takes no request).
 * `zero` says what 0 would do; the message names the default to go back to.
 */
function atLeastOne(zero: string, fallback: number, max = Number.MAX_SAFE_INTEGER) {
  // a refinement keeps the sentence saying what 0 would do (load.ts words a plain .min
  // itself); the meta gives the JSON Schema and the configuration docs the real minimum
  return z
    .number()
    .int()
    .max(max)
    .superRefine((v, ctx) => {
      if (v < 1) ctx.addIssue({ code: 'custom', message: `${v} ${zero}; use 1 or more (the default is ${fallback})` });
    })
    .meta({ minimum: 1 })
    .default(fallback);
}

const LimitsSchema = strict({
  max_header_bytes: int(1).default(16_384),
  max_body_bytes: int(0).default(0),
  header_timeout: duration().default(10_000),
  idle_timeout: duration().default(60_000),
  // open connections per listener per worker, handshakes included; 0 = no limit.
  // docs/connection-limits.md: why 1024 (nginx worker_connections, the open-file limit)
  max_connections: int(0).default(1024),
  // from accept to a finished TLS handshake; a handshake must end, so 0 is refused
  handshake_timeout: duration({ positive: true }).default(10_000),
  // a client that takes no bytes while some wait for it is closed after this; 0 = never
  send_timeout: duration().default(60_000),
  /** header fields per request (HTTP/2: after joining cookie crumbs); more gets 431 */
  max_headers: int(1).default(100),
  /** HTTP/2: streams one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS) */
  max_concurrent_streams: atLeastOne('would let HTTP/2 clients open no stream at all', 128, 2 ** 31 - 1),
});

const IdentitySchema = strict({
  headers: stringList(IdentityHeaderSchema).default(() => ['standard' as const]),
  forward_cert: z.boolean().default(false),
});

const ListenerSchema = strict({
  name: nonEmpty().optional(),
  address: address(),
  protocol: z.enum(['http', 'tcp']).default('http'),
  unsafe_plain: z.boolean().default(false),
  tls: ListenerTlsSchema.optional(),
  identity: IdentitySchema.prefault({}),
  allow: rules('allow').default(() => []),
  deny: rules('deny').default(() => []),
  upstream: nonEmpty().optional(),
  proxy_protocol: offSwitch(['off', 'v1', 'v2'] as const).default('off'),
  /** `//` in request paths becomes `/` before routing and upstream (docs/request-normalization.md) */
  merge_slashes: z.boolean().default(true),
  limits: LimitsSchema.prefault({}),
  routes: z
    .array(RouteSchema)
    .default(() => [])
    .transform((routes) => routes.map((r, i) => ({ ...r, name: r.name ?? `route-${i}` }))),
}).transform(withHostPort);

// ---------------------------------------------------------------------------------------
// Upstreams

export { HTTP_SCHEMES, TCP_SCHEMES };
const DEFAULT_PORTS: Record<string, number> = { http: 80, h2c: 80, https: 443 };

/** Why an upstream endpoint URL is unusable, or undefined when it is fine. */
export function endpointProblem(v: string): string | undefined {
  let url: URL;
  try {
    url = new URL(v);
  } catch {
    return `${show(v)} is not a URL; write e.g. http://10.0.0.1:8080`;
  }
  const scheme = url.protocol.slice(0, -1);
  if (![...HTTP_SCHEMES, ...TCP_SCHEMES].includes(scheme as never)) return `${show(v)} has scheme ${scheme}; use http, https, h2c, tcp or tls`;
  if (!url.hostname) return `${show(v)} has no host; write e.g. ${scheme}://10.0.0.1:8080`;
  if (!url.port && DEFAULT_PORTS[scheme] === undefined) return `${show(v)} has no port; write e.g. ${scheme}://${url.hostname}:5432`;
  if ((url.pathname && url.pathname !== '/') || url.search || url.hash || url.username) {
    return `${show(v)} has more than scheme://host:port; an endpoint names a server only, so remove the path, query or credentials`;
  }
  return undefined;
}

const endpoint = z.string().superRefine((v, ctx) => {
  const problem = endpointProblem(v);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

/**
 * Active health checks (docs/upstreams.md): one prober per endpoint in the primary process,
 * results sent to every worker. http/https/h2c endpoints get a GET of `path`; tcp/tls
 * endpoints a connect (and TLS handshake). `expect` lists the statuses that count as
 * healthy (default any 2xx or 3xx).
 */
const HealthCheckSchema = strict({
  path: urlPath().default('/healthz'),
  interval: duration({ positive: true }).default(5_000),
  timeout: duration({ positive: true }).default(1_000),
  healthy: int(1).default(2),
  unhealthy: int(1).default(3),
  expect: z
    .array(z.number().int().min(100).max(599))
    .min(1, { message: 'an empty list would never pass; list the healthy statuses, e.g. [200, 204], or remove expect' })
    .optional(),
});

/**
 * Passive health (Envoy outlier detection, nginx max_fails/fail_timeout): an endpoint that
 * fails `consecutive_failures` times in a row (connect failure, reset, timeout, and 5xx
 * unless count_5xx is false) is skipped for base_ejection x (times ejected), at most
 * max_ejection; never more than max_ejected_percent of the endpoints at once (but always
 * at least one may go). consecutive_failures: 0 turns it off.
 */
const OutlierSchema = strict({
  consecutive_failures: int(0).default(5),
  base_ejection: duration({ positive: true }).default(30_000),
  max_ejection: duration({ positive: true }).default(300_000),
  max_ejected_percent: z.number().int().min(0).max(100).default(50),
  count_5xx: z.boolean().default(true),
});

/**
 * Bounds retries over the whole upstream (Envoy's retry budget): retries in flight may be
 * at most `percent` of requests in flight, but `min_concurrent` are always allowed.
 */
const RetryBudgetSchema = strict({
  percent: z.number().min(0).max(100).default(20),
  min_concurrent: int(0).default(3),
});

/** hash_on: identity (SPIFFE ID, else leaf fingerprint) or header:<name> */
const hashOn = z.string().transform((v, ctx): { kind: 'identity' } | { kind: 'header'; name: string } => {
  if (v === 'identity') return { kind: 'identity' };
  const m = /^header:([!#$%&'*+.^_`|~0-9A-Za-z-]+)$/.exec(v);
  if (m) return { kind: 'header', name: m[1]!.toLowerCase() };
  return fail(ctx, `${show(v)} is not a hash key; use identity or header:<name>, e.g. header:x-user-id`);
});

const UpstreamTlsSchema = strict({
  ca: pathList().default(() => []),
  cert: filePath().optional(),
  key: filePath().optional(),
  server_name: nonEmpty().optional(),
  verify_names: stringList(nonEmpty()).default(() => []),
});

/**
 * How much of an upstream one worker process may use at once (docs/limits-upstream-and-http2.md):
 * open connections of every kind, requests waiting for a connection, requests in flight.
 */
const UpstreamLimitsSchema = strict({
  max_connections: atLeastOne('would let no request reach this upstream', 1024),
  max_pending: atLeastOne('would refuse every request that finds all connections busy (nothing may wait)', 1024),
  max_requests: atLeastOne('would refuse every request to this upstream', 1024),
});

const UpstreamSchema = strict({
  endpoints: stringList(endpoint).refine((l) => l.length > 0, { message: 'must not be empty; list at least one URL, e.g. http://127.0.0.1:8080' }),
  balance: z.enum(['round_robin', 'least_request', 'random', 'hash']).default('round_robin'),
  /** the key of balance: hash (load.ts: only with hash) */
  hash_on: hashOn.optional(),
  /** extra attempts on another endpoint: after a connect failure (any request), or a reset before any response byte (idempotent requests without a body) */
  retries: int(0).default(2),
  retry_budget: RetryBudgetSchema.prefault({}),
  outlier: OutlierSchema.prefault({}),
  timeouts: strict({
    connect: duration().default(2_000),
    request: duration().default(30_000),
    idle: duration().default(60_000),
  }).prefault({}),
  health_check: HealthCheckSchema.optional(),
  /** endpoints written with a host name: how often the name is looked up again (upstream/dns.ts) */
  dns_refresh: duration({ positive: true }).default(5_000),
  tls: UpstreamTlsSchema.optional(),
  limits: UpstreamLimitsSchema.prefault({}),
});

// ---------------------------------------------------------------------------------------
// The whole file

const workers = z.unknown().transform((v, ctx): 'auto' | number => {
  if (v === 'auto') return 'auto';
  if (typeof v === 'number' && Number.isInteger(v) && v >= 1) return v;
  return fail(ctx, `${show(v)} is not a worker count; use auto (one per CPU) or a whole number of at least 1`);
}).meta(kind('workers'));

/**
 * mTLS on the admin listener (docs/security.md "The admin listener"): its own server
 * certificate and its own client CA, verified by the listeners' code with client_auth
 * require; who may then use it is admin.allow.
 */
const AdminTlsSchema = strict({
  cert: filePath(),
  key: filePath(),
  client_ca: pathList().refine((l) => l.length > 0, { message: 'must not be empty; give the CA file(s) that sign the certificates of admin clients' }),
  crl: pathList().default(() => []),
});

const AdminSchema = strict({
  address: address().default(DEFAULT_ADMIN_ADDRESS),
  tls: AdminTlsSchema.optional(),
  allow: rules('allow').default(() => []),
  /** plain HTTP, /healthz and /readyz only: for Kubernetes probes while the admin API stays on loopback */
  probe_address: address().optional(),
}).transform((a) => {
  const probe = a.probe_address === undefined ? undefined : (splitAddress(a.probe_address) as { host: string; port: number });
  return { ...withHostPort(a), ...(probe ? { probe } : {}) };
});

export const ConfigSchema = strict({
  workers: workers.default('auto'),
  admin: AdminSchema.prefault({}),
  log: strict({
    level: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
    /** stdout | stderr | off | a file path (load.ts makes it absolute) */
    access: nonEmpty().default('stdout'),
  }).prefault({}),
  listeners: z
    .array(ListenerSchema)
    .min(1)
    .transform((ls) => ls.map((l, i) => ({ ...l, name: l.name ?? `listener-${i}` }))),
  upstreams: z.record(nonEmpty(), UpstreamSchema).default(() => ({})),
  /** SIGTERM: /readyz turns 503 at once; the listeners keep serving for `delay`, then drain */
  shutdown: strict({
    delay: duration().default(0),
  }).prefault({}),
});

// ---------------------------------------------------------------------------------------
// Types the runtime is written against

export type Config = z.output<typeof ConfigSchema>;
/** What loadConfig returns: the frozen config plus where it came from. */
export type LoadedConfig = Config & { configPath: string; configDir: string };
export type AdminConfig = Config['admin'];
export type AdminTlsConfig = NonNullable<AdminConfig['tls']>;
export type ShutdownConfig = Config['shutdown'];
export type LogConfig = Config['log'];
export type ListenerConfig = Config['listeners'][number];
export type ListenerTlsConfig = NonNullable<ListenerConfig['tls']>;
export type SniCertConfig = ListenerTlsConfig['certificates'][number];
export type OcspConfig = ListenerTlsConfig['ocsp'];
export type SessionTicketsConfig = NonNullable<ListenerTlsConfig['session_tickets']>;
export type CertPolicyConfig = ListenerTlsConfig['cert_policy'];
export type LimitsConfig = ListenerConfig['limits'];
export type RouteConfig = ListenerConfig['routes'][number];
export type RouteMatchConfig = NonNullable<RouteConfig['match']>;
export type RuleConfig = ListenerConfig['allow'][number];
export type UpstreamConfig = Config['upstreams'][string];
export type UpstreamTlsConfig = NonNullable<UpstreamConfig['tls']>;
export type HealthCheckConfig = NonNullable<UpstreamConfig['health_check']>;
export type UpstreamLimitsConfig = UpstreamConfig['limits'];
export type OutlierConfig = UpstreamConfig['outlier'];
export type HashOn = NonNullable<UpstreamConfig['hash_on']>;
export type ClientAuth = z.output<typeof ClientAuthSchema>;
export type IdentityHeaderFormat = z.output<typeof IdentityHeaderSchema>;

/**
 * The admin listener's TLS as a listener TLS config (every other key at the listener
 * defaults, client_auth require), so it is built and verified by the listeners' own code.
 */
export function adminListenerTls(t: AdminTlsConfig): ListenerTlsConfig {
  return ListenerTlsSchema.parse({ cert: t.cert, key: t.key, client_ca: t.client_ca, crl: t.crl, client_auth: 'require' });
}

export { trustFor, type TrustConfig } from './shared.js';
