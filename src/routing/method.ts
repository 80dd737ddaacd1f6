// Request methods as routes and rules see them. Methods are case-sensitive tokens
// (RFC 9110 §9.1): `delete` is not DELETE. HTTP/1.1's parser (llhttp) only knows the
// registered methods in upper case, but HTTP/2 carries :method as any string, and a
// `delete` that missed a `methods: [DELETE]` route would fall through to a catch-all
// and reach an upstream that may well treat it as DELETE. So a method that differs only
// in case from a well-known one is refused with a message naming the right spelling,
// and route `methods:` entries in the config are held to the same rule. Any other token
// (an extension method) is matched exactly as written.

/** tchar (RFC 9110 §5.6.2): a method must be one or more of these. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * RFC 9110's methods, PATCH (RFC 5789), and everything Node's http.METHODS lists on
 * Node 20 to 24 (the WebDAV, CalDAV, UPnP and cache-purge families, QUERY). Written out
 * rather than read from node:http so that `check` gives the same answer on every Node
 * version; method.test.ts fails when a Node release adds one that is missing here.
 */
export const KNOWN_METHODS: ReadonlySet<string> = new Set([
  'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH',
  'ACL', 'BIND', 'CHECKOUT', 'COPY', 'LINK', 'LOCK', 'M-SEARCH', 'MERGE', 'MKACTIVITY',
  'MKCALENDAR', 'MKCOL', 'MOVE', 'NOTIFY', 'PROPFIND', 'PROPPATCH', 'PURGE', 'QUERY',
  'REBIND', 'REPORT', 'SEARCH', 'SOURCE', 'SUBSCRIBE', 'UNBIND', 'UNLINK', 'UNLOCK',
  'UNSUBSCRIBE',
]);

export function isToken(s: string): boolean {
  return TOKEN.test(s);
}

/**
 * Why `method` cannot be routed, or undefined when it can. Not a token: refused. The
 * same letters as a known method in another case: refused, naming the known one.
 */
export function methodProblem(method: string): string | undefined {
  // the common case first: a known method as it should be written
  if (KNOWN_METHODS.has(method)) return undefined;
  if (!isToken(method)) return `the method ${JSON.stringify(method)} is not a token (RFC 9110 §9.1); send a method such as GET or POST`;
  const upper = method.toUpperCase();
  if (upper !== method && KNOWN_METHODS.has(upper)) {
    return `the method "${method}" is not ${upper}: methods are case-sensitive (RFC 9110 §9.1); send ${upper}`;
  }
  return undefined;
}
