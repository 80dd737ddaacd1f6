// Validation of the authority a request is routed by (HTTP/1.1 Host, HTTP/2 :authority,
// or the authority of an absolute-form target). Routes and SNI checks compare host names;
// a value that is not one — `a@b`, `a,b`, `a/b`, `a b`, `host:` — would match no
// host-scoped route, fall through to a catch-all and reach an upstream that may read it
// differently (the part after `@`, the first or last of a comma list, a path). So such a
// request is refused with 400 before routing, and nothing is forwarded.
//
// Accepted: host [":" port] where host is
// - a DNS-style name: labels of letters, digits, "-" and "_" (common in internal names)
//   separated by single dots, an optional trailing dot, at most 253 characters (plus the
//   dot) and 63 per label (RFC 1035). Stricter than RFC 3986 reg-name, which also allows
//   sub-delims (",;=!$&'()*+") and %-escapes: no DNS name contains those, and parsers
//   disagree on what they mean in Host. IDNs must arrive as A-labels (xn--...).
// - an IPv4 address in dotted-quad form. A name whose last label is all digits but which
//   is not a dotted quad (`127.1`, `1.2.3.300`, `0x7f.0.0.1`) is refused: URL parsers
//   read such names as IPv4 addresses in other notations.
// - an IPv6 address in brackets, without a zone (RFC 9110 §7.2 has no zone syntax).
// port: 1 to 5 digits, 0 to 65535. An empty port (`host:`) is refused, as nginx does.
import { isIPv6 } from 'node:net';

/** The common valid shape, checked with one regex before anything slower. */
const SIMPLE = /^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?(?::[0-9]{1,5})?$/;
const LABEL_CHAR = /[A-Za-z0-9_-]/;

/**
 * Why `host` (a Host value or :authority, as sent) is not a valid host[:port], or
 * undefined when it is. The reason names the problem and is fit for a 400 message.
 */
export function hostProblem(host: string): string | undefined {
  if (host.length === 0) return 'the Host is empty';
  let name = host;
  let port: string | undefined;
  if (host.charCodeAt(0) === 0x5b) {
    const close = host.indexOf(']');
    if (close < 0) return `the Host ${show(host)} opens an IPv6 bracket without closing it`;
    const addr = host.slice(1, close);
    if (addr.includes('%') || !isIPv6(addr)) return `the Host ${show(host)} has "${addr}" in brackets, which is not an IPv6 address`;
    const rest = host.slice(close + 1);
    if (rest.length > 0) {
      if (rest.charCodeAt(0) !== 0x3a) return `the Host ${show(host)} has ${show(rest)} after the IPv6 address; only :port may follow`;
      return portProblem(host, rest.slice(1));
    }
    return undefined;
  }
  const colon = host.indexOf(':');
  if (colon >= 0) {
    if (host.indexOf(':', colon + 1) >= 0) {
      return `the Host ${show(host)} has more than one ":"; write an IPv6 address in brackets, like [::1]:8443`;
    }
    name = host.slice(0, colon);
    port = host.slice(colon + 1);
  }
  if (!SIMPLE.test(host)) {
    const p = nameProblem(host, name);
    if (p) return p;
  }
  const p = lengthOrNumberProblem(host, name);
  if (p) return p;
  return port === undefined ? undefined : portProblem(host, port);
}

function nameProblem(host: string, name: string): string | undefined {
  if (name.length === 0) return `the Host ${show(host)} has no host name before the port`;
  for (let i = 0; i < name.length; i++) {
    const ch = name[i]!;
    if (ch === '.' || LABEL_CHAR.test(ch)) continue;
    return `the Host ${show(host)} contains ${describe(ch)}, which no host name has`;
  }
  if (name.startsWith('.') || name.includes('..')) return `the Host ${show(host)} has an empty label (a leading or doubled ".")`;
  return undefined;
}

// Runs on every request: the label split and the IPv4 parse only happen for the rare
// names that could fail them (long ones; ones ending in a digit).
function lengthOrNumberProblem(host: string, name: string): string | undefined {
  const end = name.charCodeAt(name.length - 1) === 0x2e ? name.length - 1 : name.length;
  if (end > 253) return `the Host is ${end} characters long; a host name has at most 253`;
  const bare = end === name.length ? name : name.slice(0, end);
  if (end > 63) {
    for (const l of bare.split('.')) {
      if (l.length > 63) return `the Host ${show(host)} has a label of ${l.length} characters; a label has at most 63`;
    }
  }
  if (endsInNumericLabel(bare) && !isDottedQuad(bare)) {
    return `the Host ${show(host)} ends in a number but is not an IPv4 address like 10.0.0.1`;
  }
  return undefined;
}

function endsInNumericLabel(s: string): boolean {
  let i = s.length - 1;
  while (i >= 0) {
    const c = s.charCodeAt(i);
    if (c === 0x2e) break;
    if (c < 0x30 || c > 0x39) return false;
    i--;
  }
  return i < s.length - 1;
}

/** Four decimal octets 0-255 without leading zeros: what net.isIPv4 accepts, at a fraction of its cost. */
function isDottedQuad(s: string): boolean {
  let parts = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i <= s.length; i++) {
    const c = i < s.length ? s.charCodeAt(i) : 0x2e;
    if (c === 0x2e) {
      if (digits === 0 || value > 255 || (digits > 1 && s.charCodeAt(i - digits) === 0x30)) return false;
      parts++;
      value = 0;
      digits = 0;
    } else if (c >= 0x30 && c <= 0x39 && digits < 3) {
      value = value * 10 + (c - 0x30);
      digits++;
    } else return false;
  }
  return parts === 4;
}

function portProblem(host: string, port: string): string | undefined {
  if (port.length === 0) return `the Host ${show(host)} has an empty port after ":"`;
  let value = 0;
  for (let i = 0; i < port.length; i++) {
    const c = port.charCodeAt(i);
    if (c < 0x30 || c > 0x39 || i === 5) return `the Host ${show(host)} has port ${show(port)}, which is not a number from 0 to 65535`;
    value = value * 10 + (c - 0x30);
  }
  if (value > 65535) return `the Host ${show(host)} has port ${show(port)}, which is not a number from 0 to 65535`;
  return undefined;
}

function describe(ch: string): string {
  switch (ch) {
    case '@':
      return 'userinfo ("@")';
    case ',':
      return 'a comma (one request has one authority)';
    case '/':
      return 'a "/"';
    case ' ':
      return 'a space';
    case '\t':
      return 'a tab';
    default: {
      const c = ch.codePointAt(0)!;
      if (c < 0x20 || c === 0x7f) return `the control character 0x${c.toString(16).padStart(2, '0')}`;
      if (c > 0x7e) return `the non-ASCII character ${JSON.stringify(ch)} (send an IDN as its xn-- form)`;
      return `the character "${ch}"`;
    }
  }
}

/** The value quoted for a message, cut short and with control characters escaped. */
function show(v: string): string {
  return JSON.stringify(v.length > 80 ? `${v.slice(0, 77)}...` : v);
}
