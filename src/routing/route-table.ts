// The route table of one listener: compiled once per configuration generation, then
// matched per request against (host, normalized path, method). First match wins, as in
// SPEC §1 ("routes: first match wins"), nginx `location` lists and Envoy virtual hosts.
//
// Matching rules (all given conditions must hold; a route without `match` matches all):
// - host: the request's Host / :authority, see hostWithoutPort. Entries are exact names
//   or `*.example.com`, which matches exactly one more label (a.example.com, not
//   a.b.example.com, not example.com), as certificate wildcards do. IPv6 entries may be
//   written `::1` or `[::1]`.
// - path: plain string prefix of the normalized path (see path.ts), like Envoy `prefix`
//   and nginx `location /x`: `/api` also matches `/apiary`; write `/api/` to mean the
//   folder. path_exact: equality. path_regex: must match the whole path (anchored as
//   `^(?:...)$`). None of them sees the query string. `OPTIONS *` has path `*`, which
//   only routes without a path condition match.
// - methods: the request method is in the list, exactly (methods are case-sensitive,
//   RFC 9110 §9.1). HEAD is not implied by GET: list it when a route should answer it,
//   so that a GET-only policy never admits an unlisted method.

import { ErrorCodes, PortcullisError, PortcullisErrors } from '../errors.js';

/** What routing needs of a configured route; the config's route type is assignable to it. */
export interface RouteInput {
  /** not used for matching; optional because the config schema may leave it out */
  name?: string | undefined;
  match?:
    | {
        host?: readonly string[] | undefined;
        path?: string | undefined;
        path_exact?: string | undefined;
        path_regex?: string | undefined;
        methods?: readonly string[] | undefined;
      }
    | undefined;
}

export interface RouteMatch<R extends RouteInput = RouteInput> {
  readonly route: R;
  /** position in the listener's route list, for parallel per-route data (compiled rules, metrics) */
  readonly index: number;
}

interface CompiledRoute<R extends RouteInput> {
  readonly result: RouteMatch<R>;
  readonly hosts: ReadonlySet<string> | undefined;
  /** `.example.com` for each `*.example.com` entry */
  readonly hostSuffixes: readonly string[] | undefined;
  readonly prefix: string | undefined;
  readonly exact: string | undefined;
  readonly regex: RegExp | undefined;
  readonly methods: ReadonlySet<string> | undefined;
}

export interface RouteTable<R extends RouteInput = RouteInput> {
  readonly routes: readonly CompiledRoute<R>[];
  /** false when no route looks at the host, so matching skips host normalization */
  readonly usesHost: boolean;
}

/**
 * Compiles a listener's routes. `where` is the config path of the list, used in error
 * messages (`listeners[0].routes[2].match.path_regex: invalid regular expression ...`).
 * Throws PortcullisErrors with every problem found.
 */
export function compileRoutes<R extends RouteInput>(routes: readonly R[], where = 'routes'): RouteTable<R> {
  const problems: PortcullisError[] = [];
  const compiled: CompiledRoute<R>[] = [];
  routes.forEach((route, index) => {
    const base = `${where}[${index}].match`;
    const m = route.match;
    let hosts: Set<string> | undefined;
    let hostSuffixes: string[] | undefined;
    if (m?.host !== undefined) {
      hosts = new Set();
      hostSuffixes = [];
      m.host.forEach((entry, i) => {
        const h = normalizeHostEntry(entry);
        if (h === undefined) {
          problems.push(
            problem(`${base}.host[${i}]`, `"${entry}" is not a host name; use "api.example.com" or "*.example.com", without a port`),
          );
        } else if (h.startsWith('*.')) hostSuffixes!.push(h.slice(1));
        else hosts!.add(h);
      });
    }
    let regex: RegExp | undefined;
    if (m?.path_regex !== undefined) {
      try {
        regex = new RegExp(`^(?:${m.path_regex})$`);
      } catch (err) {
        problems.push(problem(`${base}.path_regex`, `invalid regular expression: ${(err as Error).message}`));
      }
    }
    for (const key of ['path', 'path_exact'] as const) {
      const v = m?.[key];
      if (v !== undefined && !v.startsWith('/')) problems.push(problem(`${base}.${key}`, 'must start with "/"'));
    }
    compiled.push(
      Object.freeze({
        result: Object.freeze({ route, index }),
        hosts,
        hostSuffixes,
        prefix: m?.path,
        exact: m?.path_exact,
        regex,
        methods: m?.methods !== undefined ? new Set(m.methods) : undefined,
      }),
    );
  });
  if (problems.length > 0) throw new PortcullisErrors(problems);
  return Object.freeze({
    routes: Object.freeze(compiled),
    usesHost: compiled.some((r) => r.hosts !== undefined),
  });
}

function problem(path: string, text: string): PortcullisError {
  return new PortcullisError(ErrorCodes.CONFIG_INVALID, `${path}: ${text}`, { path });
}

/**
 * First route whose conditions all hold, or undefined (-> 404 no_route). `host` may be
 * the raw Host header (it is normalized with hostWithoutPort); `path` must already be
 * normalized by normalizePath.
 */
export function matchRoute<R extends RouteInput>(
  table: RouteTable<R>,
  host: string,
  path: string,
  method: string,
): RouteMatch<R> | undefined {
  const h = table.usesHost ? hostWithoutPort(host) : '';
  const routes = table.routes;
  for (let i = 0; i < routes.length; i++) {
    const r = routes[i]!;
    if (r.methods !== undefined && !r.methods.has(method)) continue;
    if (r.exact !== undefined && path !== r.exact) continue;
    if (r.prefix !== undefined && !path.startsWith(r.prefix)) continue;
    if (r.hosts !== undefined && !r.hosts.has(h) && !matchesSuffix(h, r.hostSuffixes!)) continue;
    if (r.regex !== undefined && !r.regex.test(path)) continue;
    return r.result;
  }
  return undefined;
}

function matchesSuffix(host: string, suffixes: readonly string[]): boolean {
  for (let i = 0; i < suffixes.length; i++) {
    const s = suffixes[i]!;
    // exactly one non-empty label before the suffix: the first dot is where it starts
    const labelLen = host.length - s.length;
    if (labelLen > 0 && host.endsWith(s) && host.indexOf('.') === labelLen) return true;
  }
  return false;
}

/**
 * The host part of a Host header or :authority, in the form routes are written in:
 * ASCII-lowercased, port removed, one trailing dot removed (`Example.COM.:8443` ->
 * `example.com`). IPv6 keeps its brackets (`[::1]:8443` -> `[::1]`), as URL.hostname
 * does; an unbracketed IPv6 address gets them. Returns the input itself when it is
 * already in that form, so the common case allocates nothing.
 */
export function hostWithoutPort(hostHeader: string): string {
  let h = hostHeader;
  if (h.charCodeAt(0) === 0x5b) {
    const close = h.indexOf(']');
    if (close > 0) h = h.slice(0, close + 1);
    return asciiLower(h);
  }
  const colon = h.indexOf(':');
  if (colon >= 0) {
    if (h.indexOf(':', colon + 1) >= 0) return `[${asciiLower(h)}]`; // bare IPv6, no port possible
    h = h.slice(0, colon);
  }
  if (h.length > 1 && h.charCodeAt(h.length - 1) === 0x2e) h = h.slice(0, -1);
  return asciiLower(h);
}

// Route host entries: same normal form as hostWithoutPort, but a port or an empty name
// is a config mistake rather than something to strip.
function normalizeHostEntry(entry: string): string | undefined {
  let h = asciiLower(entry.trim());
  if (h.includes(':') && !h.startsWith('[')) h = `[${h}]`;
  if (h.startsWith('[')) return /^\[[0-9a-f:.]+\]$/.test(h) ? h : undefined;
  if (h.endsWith('.')) h = h.slice(0, -1);
  if (h.length === 0 || h.includes('/')) return undefined;
  if (h.startsWith('*.')) return h.length > 2 && !h.slice(1).includes('*') ? h : undefined;
  return h.includes('*') ? undefined : h;
}

// ASCII only: Unicode lowercasing maps e.g. U+212A KELVIN SIGN to "k", which would let a
// Host header that is not the configured name match it. toLowerCase is only safe (and
// it is much faster than a replace callback) when the string is all ASCII.
const UPPER = /[A-Z]/;
const NON_ASCII = /[^\x00-\x7f]/;
function asciiLower(s: string): string {
  if (!UPPER.test(s)) return s;
  if (!NON_ASCII.test(s)) return s.toLowerCase();
  return s.replace(/[A-Z]/g, (x) => String.fromCharCode(x.charCodeAt(0) + 32));
}
