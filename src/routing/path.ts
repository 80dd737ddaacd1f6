// Normalizes an HTTP request-target (origin form) into the one path that routes are
// matched against AND that is forwarded upstream. Using the same string for both is the
// point: if the proxy matched one spelling and the upstream resolved another, a client
// could reach a route it was not authorized for (`/public/%2e%2e/admin`, `//admin`).
//
// Steps: split off the query (kept verbatim), reject what cannot be normalized safely,
// decode %-escapes of unreserved characters only, uppercase the hex of the others, merge
// repeated slashes (listeners[].merge_slashes, default on), then remove dot-segments
// (RFC 3986 §5.2.4). Slashes are merged before dot-segments are removed, as nginx does,
// so `/a//../b` is `/b` both here and at an nginx upstream.
//
// merge_slashes defaults to on, like nginx (Envoy's merge_slashes defaults to off):
// most upstreams (nginx, Apache, most frameworks' routers) serve `//admin` as `/admin`,
// so a route on `/admin` that did not match `//admin` was a bypass. With it off, `/a//b`
// is matched and forwarded as sent, for upstreams where it names another resource; a
// prefix route for `/admin` then does not match `//admin`, so put the strict rules on a
// catch-all route too, or use path_regex such as `/+admin(/.*)?`.

export type NormalizedTarget =
  | { ok: true; path: string; query: string }
  | { ok: false; reason: string };

const ASTERISK: NormalizedTarget = Object.freeze({ ok: true, path: '*', query: '' });

/**
 * Normalizes `rawTarget` (e.g. `req.url`); `mergeSlashes` turns `//` runs in the path
 * (never in the query) into one `/`. Only origin form (`/path?query`) and `*`
 * (for `OPTIONS *`) are accepted; absolute form must be converted by the caller.
 *
 * Rejected, with a reason fit for a 400:
 * - control characters, space, DEL and non-ASCII (a request-target is ASCII, RFC 9112);
 * - `#` (a fragment is never sent; its presence means a confused or hostile client);
 * - a malformed %-escape;
 * - `%2F`, `%5C` and a raw `\`: upstreams differ on whether an encoded slash separates
 *   segments, and many treat `\` as `/`, so `/public/..%2Fadmin` or `/public/..\admin`
 *   would match the `/public` route here yet resolve to `/admin` upstream.
 */
export function normalizePath(rawTarget: string, mergeSlashes: boolean): NormalizedTarget {
  if (rawTarget === '*') return ASTERISK;
  if (rawTarget.charCodeAt(0) !== 0x2f) return { ok: false, reason: 'request target must start with "/"' };

  let qmark = -1;
  let needsWork = false;
  for (let i = 0; i < rawTarget.length; i++) {
    const c = rawTarget.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) return { ok: false, reason: badCharReason(c) };
    if (c === 0x23) return { ok: false, reason: 'fragment ("#") in request target' };
    if (qmark >= 0) continue;
    if (c === 0x3f) qmark = i;
    else if (c === 0x5c) return { ok: false, reason: 'backslash in path' };
    else if (c === 0x25) needsWork = true;
    else if (c === 0x2e && rawTarget.charCodeAt(i - 1) === 0x2f) needsWork = true; // "/." starts a possible dot-segment
    else if (c === 0x2f && mergeSlashes && rawTarget.charCodeAt(i - 1) === 0x2f) needsWork = true;
  }

  const rawPath = qmark < 0 ? rawTarget : rawTarget.slice(0, qmark);
  const query = qmark < 0 ? '' : rawTarget.slice(qmark);
  if (!needsWork) return { ok: true, path: rawPath, query };

  const decoded = decodeUnreserved(rawPath);
  if (typeof decoded !== 'string') return decoded;
  const merged = mergeSlashes ? mergeSlashRuns(decoded) : decoded;
  return { ok: true, path: removeDotSegments(merged), query };
}

function badCharReason(c: number): string {
  if (c === 0x20) return 'space in request target';
  if (c > 0x7f) return 'non-ASCII character in request target';
  return 'control character in request target';
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const f = c | 0x20; // ASCII lowercase
  if (f >= 0x61 && f <= 0x66) return f - 0x61 + 10;
  return -1;
}

function isUnreserved(b: number): boolean {
  return (
    (b >= 0x41 && b <= 0x5a) || // A-Z
    (b >= 0x61 && b <= 0x7a) || // a-z
    (b >= 0x30 && b <= 0x39) || // 0-9
    b === 0x2d || // -
    b === 0x2e || // .
    b === 0x5f || // _
    b === 0x7e // ~
  );
}

// One pass only: `%252e` becomes `%252e`, never `.`; decoding twice is what a double-
// encoding attack relies on.
function decodeUnreserved(path: string): string | { ok: false; reason: string } {
  if (!path.includes('%')) return path;
  let out = '';
  let from = 0;
  for (let i = path.indexOf('%'); i >= 0; i = path.indexOf('%', i)) {
    const hi = hexValue(path.charCodeAt(i + 1));
    const lo = hexValue(path.charCodeAt(i + 2));
    if (hi < 0 || lo < 0) return { ok: false, reason: 'invalid percent-encoding in path' };
    const b = hi * 16 + lo;
    if (b === 0x2f || b === 0x5c) return { ok: false, reason: 'encoded slash or backslash in path' };
    out += path.slice(from, i);
    out += isUnreserved(b) ? String.fromCharCode(b) : '%' + path.slice(i + 1, i + 3).toUpperCase();
    i += 3;
    from = i;
  }
  return out + path.slice(from);
}

/** `/a//b///c` -> `/a/b/c`. Decoding never makes a `/` (`%2F` is refused), so one pass is enough. */
export function mergeSlashRuns(path: string): string {
  return path.includes('//') ? path.replace(/\/{2,}/g, '/') : path;
}

/** RFC 3986 §5.2.4 for an absolute path: `/a/./b/../c` -> `/a/c`, `/..` -> `/`. */
export function removeDotSegments(path: string): string {
  if (!path.includes('/.')) return path;
  const segments = path.slice(1).split('/');
  const out: string[] = [];
  const last = segments.length - 1;
  for (let i = 0; i <= last; i++) {
    const seg = segments[i]!;
    if (seg === '.' || seg === '..') {
      if (seg === '..') out.pop();
      // a final dot-segment leaves a trailing slash: `/a/b/..` -> `/a/`
      if (i === last) out.push('');
    } else out.push(seg);
  }
  return '/' + out.join('/');
}
