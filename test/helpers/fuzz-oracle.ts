// What the fuzz test holds the proxy to, written from the documentation rather than from
// the proxy's code: the request-target normalization of src/routing/path.ts's header
// (decode %-escapes of unreserved characters, uppercase other escapes, remove dot
// segments, keep `//`, keep the query verbatim; refuse `#`, `\`, %2F, %5C, bad escapes and
// bytes outside visible ASCII), first-match routing and SPEC §3 allow/deny for the fuzz
// config's routes, and SPEC §4's identity headers. Every request the upstream records is
// checked against the requests the fuzz clients sent (the index), and every broken
// invariant becomes a Finding, grouped by kind so a run reports each bug once.

/** The fuzz config's routes; the test builds its config from this list, the oracle routes with it. */
export const FUZZ_ROUTES = [
  { name: 'admin-host', match: { host: ['admin.example.com'] }, allow: [{ cn: 'nobody' }], upstream: 'app' },
  { name: 'svc-host', match: { host: ['*.svc.example.com'] }, upstream: 'app' },
  { name: 'exact', match: { path_exact: '/exact', methods: ['GET', 'HEAD'] }, upstream: 'app' },
  { name: 'post', match: { path: '/post', methods: ['POST', 'PUT', 'PATCH'] }, upstream: 'app' },
  { name: 'deny', match: { path: '/deny' }, deny: [{ cn: 'payment-service' }], upstream: 'app' },
  { name: 'secure', match: { path: '/secure' }, client_auth: 'require', upstream: 'app' },
  { name: 'spiffe', match: { path: '/spiffe/' }, allow: [{ spiffe_id: 'spiffe://example.org/ns/prod/**' }], upstream: 'app' },
  { name: 'public', match: { path: '/public' }, upstream: 'app' },
] as const;

export type ListenerName = 'req' | 'opt';
/** limits.max_body_bytes of the `opt` listener (the `req` listener has none) */
export const OPT_MAX_BODY = 65_536;
/** the value every forged identity header carries, so a leak is recognisable wherever it lands */
export const FORGED = 'forged-by-client';
/** the test PKI's `client` certificate, which fuzz clients present */
export const CLIENT_ID = { cn: 'payment-service', spiffe: 'spiffe://example.org/ns/prod/sa/payment' };

export type Normalized = { ok: true; target: string; path: string } | { ok: false; reason: string };

const UNRESERVED = /[A-Za-z0-9\-._~]/;

/** The origin-form (or `*`) target the proxy documents it forwards for `raw`. */
export function expectedOriginTarget(raw: string): Normalized {
  if (raw === '*') return { ok: true, target: '*', path: '*' };
  if (!raw.startsWith('/')) return { ok: false, reason: 'not origin-form' };
  if (/[^\x21-\x7e]/.test(raw)) return { ok: false, reason: 'byte outside visible ASCII' };
  if (raw.includes('#')) return { ok: false, reason: 'fragment' };
  const q = raw.indexOf('?');
  const rawPath = q < 0 ? raw : raw.slice(0, q);
  const query = q < 0 ? '' : raw.slice(q);
  if (rawPath.includes('\\')) return { ok: false, reason: 'backslash' };
  let decoded = '';
  for (let i = 0; i < rawPath.length; i++) {
    const c = rawPath[i]!;
    if (c !== '%') {
      decoded += c;
      continue;
    }
    const hex = rawPath.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return { ok: false, reason: 'bad escape' };
    const ch = String.fromCharCode(parseInt(hex, 16));
    if (ch === '/' || ch === '\\') return { ok: false, reason: 'encoded slash' };
    decoded += UNRESERVED.test(ch) ? ch : `%${hex.toUpperCase()}`;
    i += 2;
  }
  // RFC 3986 §5.2.4 on segments
  const segs = decoded.slice(1).split('/');
  const out: string[] = [];
  segs.forEach((s, i) => {
    if (s === '.' || s === '..') {
      if (s === '..') out.pop();
      if (i === segs.length - 1) out.push('');
    } else out.push(s);
  });
  const path = '/' + out.join('/');
  return { ok: true, target: path + query, path };
}

/** Absolute-form (RFC 9112 §3.2.2): the authority routes, the rest goes upstream in origin form. */
export function expectedAbsoluteTarget(raw: string): (Normalized & { host?: string }) {
  const m = /^https?:\/\/([^/?#]*)(.*)$/.exec(raw);
  if (!m) return { ok: false, reason: 'not http(s) absolute-form' };
  const authority = m[1]!;
  if (authority === '' || authority.includes('@')) return { ok: false, reason: 'no authority or userinfo' };
  const rest = m[2]!;
  const n = expectedOriginTarget(rest === '' ? '/' : rest.startsWith('?') ? '/' + rest : rest);
  return n.ok ? { ...n, host: authority } : n;
}

/** SPEC routing host form: ASCII lowercase, no port, one trailing dot dropped. */
export function routeHost(h: string): string {
  let x = h;
  if (x.startsWith('[')) x = x.slice(0, x.indexOf(']') + 1);
  else if ((x.match(/:/g) ?? []).length === 1) x = x.slice(0, x.indexOf(':'));
  if (x.length > 1 && x.endsWith('.')) x = x.slice(0, -1);
  return x.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

export interface Who {
  verified: boolean;
  cn?: string | undefined;
  spiffe?: string | undefined;
}

/** First matching route and whether it admits `who`, or undefined when no route matches (404). */
export function expectedRoute(host: string, path: string, method: string, who: Who): { name: string; allowed: boolean } | undefined {
  const h = routeHost(host);
  for (const r of FUZZ_ROUTES) {
    const m = r.match as { host?: readonly string[]; path?: string; path_exact?: string; methods?: readonly string[] };
    if (m.methods && !m.methods.includes(method)) continue;
    if (m.path_exact !== undefined && path !== m.path_exact) continue;
    if (m.path !== undefined && !path.startsWith(m.path)) continue;
    if (m.host && !m.host.some((e) => (e.startsWith('*.') ? h.endsWith(e.slice(1)) && h.indexOf('.') === h.length - e.length + 1 && h.indexOf('.') > 0 : e === h))) continue;
    const rr = r as { client_auth?: string; allow?: readonly Record<string, string>[]; deny?: readonly Record<string, string>[] };
    const holds = (rule: Record<string, string>) =>
      who.verified &&
      Object.entries(rule).every(([k, v]) => (k === 'cn' ? who.cn === v : k === 'spiffe_id' ? !!who.spiffe && who.spiffe.startsWith(v.replace(/\*\*$/, '')) : false));
    if (rr.client_auth === 'require' && !who.verified) return { name: r.name, allowed: false };
    if ((rr.deny ?? []).some(holds)) return { name: r.name, allowed: false };
    const allow = rr.allow ?? [];
    return { name: r.name, allowed: allow.length === 0 || allow.some(holds) };
  }
  return undefined;
}

/** A request a fuzz client sent that a correct proxy may forward, and how it must arrive. */
export interface RefEntry {
  input: string;
  /** the id of the generated request (X-Fuzz-Id), when the bytes still carry one */
  rid?: string | undefined;
  listener: ListenerName;
  cert: boolean;
  method: string;
  /** what the upstream must see as the request target */
  target: string;
  bodyLength: number;
  bodySha: string;
}

export interface Finding {
  invariant: string;
  signature: string;
  count: number;
  /** input ids (replay with FUZZ_ONLY=<id>) */
  inputs: string[];
  detail: string;
}

export class Findings {
  private readonly byKey = new Map<string, Finding>();
  add(invariant: string, signature: string, input: string | undefined, detail: string): void {
    const key = `${invariant}|${signature}`;
    let f = this.byKey.get(key);
    if (!f) this.byKey.set(key, (f = { invariant, signature, count: 0, inputs: [], detail }));
    f.count++;
    if (input && f.inputs.length < 5 && !f.inputs.includes(input)) f.inputs.push(input);
  }
  list(): Finding[] {
    return [...this.byKey.values()];
  }
}

export const keyOf = (method: string, target: string, bodyLength: number, bodySha: string) => `${method} ${target} ${bodyLength} ${bodySha}`;

const NAMESPACE = new Set(['x-forwarded-client-cert', 'client-cert', 'client-cert-chain', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-request-id', 'forwarded', 'x-real-ip']);
const canon = (n: string) => n.toLowerCase().replace(/_/g, '-');
export const isIdentityName = (n: string) => canon(n).startsWith('x-client-') || NAMESPACE.has(canon(n));

/** The input id a request carries (`?fz=h1-12-0` or `x-fuzz-id: h1-12-0`), for reports. */
export function inputOf(target: string, headers: readonly (readonly [string, string])[] = []): string | undefined {
  const m = /\b(h[12])-(\d+)-/.exec(target) ?? /^(h[12])-(\d+)/.exec(headers.find(([n]) => n.toLowerCase() === 'x-fuzz-id')?.[1] ?? '');
  return m ? `${m[1]}:${m[2]}` : undefined;
}

/** The id of one generated request (`h1-12-0`): its X-Fuzz-Id header, else the `fz` query parameter. */
export function requestIdOf(target: string, headers: readonly (readonly [string, string])[] = []): string | undefined {
  const h = headers.find(([n]) => n.toLowerCase() === 'x-fuzz-id')?.[1];
  if (h && /^h[12]-\d+-\d+$/.test(h)) return h;
  return /[?&]fz=(h[12]-\d+-\d+)/.exec(target)?.[1];
}

export interface UpstreamRequest {
  method: string;
  target: string;
  headers: [string, string][];
  bodyLength: number;
  bodySha: string;
}

type Kind = 'valid' | 'invalid' | 'incomplete';

interface Registration {
  kind: Kind;
  entry: RefEntry;
  /** invalid: why a proxy must refuse it; incomplete: how it was cut short */
  why?: string | undefined;
  /** invalid HTTP/2 requests: the one field at fault */
  field?: string | undefined;
}

/**
 * The registered client requests; checks what the upstream received against them. A
 * request is looked up by the id it carries (X-Fuzz-Id, else `fz=`), so two inputs that
 * happen to send the same method and target are never confused; by method, target and
 * body only when a mutation destroyed the id.
 */
export class Oracle {
  private readonly byId = new Map<string, Registration[]>();
  private readonly byKey = new Map<string, Registration[]>();
  private readonly byHead = new Map<string, Registration[]>();

  private add(g: Registration): void {
    const push = (m: Map<string, Registration[]>, k: string) => {
      const l = m.get(k);
      if (l) l.push(g);
      else m.set(k, [g]);
    };
    if (g.entry.rid) push(this.byId, g.entry.rid);
    push(this.byKey, keyOf(g.entry.method, g.entry.target, g.entry.bodyLength, g.entry.bodySha));
    push(this.byHead, `${g.entry.method} ${g.entry.target}`);
  }

  /** A well-formed request: a proxy may forward it, exactly so. */
  register(e: RefEntry): void {
    this.add({ kind: 'valid', entry: e });
  }

  /** A request whose framing was clear but which RFC 9112 / 9113 says a proxy must refuse. */
  registerInvalid(e: RefEntry, why: string, field?: string): void {
    this.add({ kind: 'invalid', entry: e, why, field });
  }

  /** A request the client began but never finished (closed mid-body, reset its stream). */
  registerIncomplete(e: RefEntry, why: string): void {
    this.add({ kind: 'incomplete', entry: e, why });
  }

  check(r: UpstreamRequest, f: Findings): void {
    const guess = inputOf(r.target, r.headers);
    const show = `${r.method} ${r.target.slice(0, 120)} (body ${r.bodyLength} bytes)`;
    const key = keyOf(r.method, r.target, r.bodyLength, r.bodySha);
    const rid = requestIdOf(r.target, r.headers);
    const mine = rid ? this.byId.get(rid) ?? [] : [];
    const exactIn = (l: Registration[]) => l.filter((g) => keyOf(g.entry.method, g.entry.target, g.entry.bodyLength, g.entry.bodySha) === key && g.kind !== 'incomplete');
    // what this request's own id says; without a known id (a mangled one), anything with the same key
    const exact = mine.length > 0 ? exactIn(mine) : exactIn(this.byKey.get(key) ?? []);
    const valid = exact.filter((g) => g.kind === 'valid');
    const bad = valid.length === 0 ? exact.find((g) => g.kind === 'invalid') : undefined;
    if (valid.length === 0) {
      // as above: the request's own id decides, other inputs' requests only without one
      const heads = mine.length > 0 ? mine : this.byHead.get(`${r.method} ${r.target}`) ?? [];
      const cut = heads.find((g) => g.kind === 'incomplete' && g.entry.method === r.method && g.entry.target === r.target);
      const same = heads.find((g) => g.kind === 'valid' && g.entry.method === r.method && g.entry.target === r.target);
      const sibling = mine.find((g) => g.kind === 'valid' && g.entry.method === r.method && g.entry.bodySha === r.bodySha);
      if (bad) {
        // HTTP/2: did the bad field go upstream, or was it dropped and the rest forwarded?
        const kept = bad.field === undefined || isIdentityName(bad.field) ? '' : r.headers.some(([n]) => n.toLowerCase() === bad.field!.toLowerCase()) ? ' (forwarded with the field)' : ' (the field dropped, the rest forwarded)';
        f.add('invalid-request-forwarded', bad.why!.replace(/"[^"]*"/g, '"…"') + kept, bad.entry.input, `${show}: the client's request was invalid (${bad.why}${bad.field ? `, field ${JSON.stringify(bad.field)}` : ''}); RFC 9112 §3.2 / RFC 9113 §8.1.1 say refuse it, the upstream got it`);
      } else if (cut) {
        f.add('incomplete-request-forwarded-as-complete', cut.why!, cut.entry.input, `${show}: ${cut.why}, yet the upstream got a complete request`);
      } else if (same) {
        f.add('upstream-body-differs', 'body bytes differ from what the client sent', same.entry.input, `${show}: the client sent ${same.entry.bodyLength} bytes (sha256 ${same.entry.bodySha.slice(0, 12)}), the upstream got ${r.bodyLength} (sha256 ${r.bodySha.slice(0, 12)})`);
      } else if (sibling) {
        f.add('upstream-target-differs', 'the target is not the documented normalization of what the client sent', guess, `${show}: the client's request normalizes to ${sibling.entry.target.slice(0, 120)}`);
      } else {
        f.add('upstream-request-not-sent-by-client', 'no client sent a request with this method, target and body', guess, show);
      }
    }
    // the clients that may have sent it (several inputs can send the same request)
    const senders = (valid.length > 0 ? valid : bad ? [bad] : []).map((g) => g.entry);
    if (senders.length > 0 && senders.every((e) => e.listener === 'req' && !e.cert)) {
      f.add('forwarded-without-certificate', 'the require listener forwarded a request from a client without a certificate', guess, `${show}: x-client-verify=${r.headers.find(([n]) => n.toLowerCase() === 'x-client-verify')?.[1]}`);
    }
    const certs = new Set(senders.map((e) => e.cert));
    // SPEC §4: identity headers come from the proxy alone
    const seen = new Map<string, string[]>();
    for (const [n, v] of r.headers) {
      if (!isIdentityName(n)) continue;
      const c = canon(n);
      seen.set(c, [...(seen.get(c) ?? []), v]);
      // X-Request-Id is the one client value SPEC §4 keeps (when it is well-formed)
      if (c !== 'x-request-id' && v.toLowerCase().includes(FORGED)) f.add('forged-identity-header-reached-upstream', c, guess, `${show}: upstream got ${n}: ${v.slice(0, 80)}`);
      if (n.includes('_')) f.add('forged-identity-header-reached-upstream', `underscore name ${c}`, guess, `${show}: upstream got ${n}`);
    }
    for (const [c, vs] of seen) if (vs.length > 1) f.add('identity-header-duplicated', c, guess, `${show}: ${c} arrived ${vs.length} times: ${vs.join(' | ').slice(0, 160)}`);
    const one = (c: string) => seen.get(c)?.[0];
    const verify = one('x-client-verify');
    if (verify !== 'SUCCESS' && verify !== 'NONE') f.add('identity-header-wrong', 'x-client-verify missing or not SUCCESS/NONE', guess, `${show}: x-client-verify=${verify}`);
    if (certs.size > 0 && !certs.has(verify === 'SUCCESS')) f.add('identity-header-wrong', 'x-client-verify does not match the connection', guess, `${show}: client ${certs.has(true) ? 'sent' : 'did not send'} a certificate, upstream got x-client-verify=${verify}`);
    if (verify === 'SUCCESS' && (one('x-client-cn') !== CLIENT_ID.cn || one('x-client-spiffe-id') !== CLIENT_ID.spiffe)) {
      f.add('identity-header-wrong', 'x-client-cn / x-client-spiffe-id not the certificate\'s', guess, `${show}: cn=${one('x-client-cn')} spiffe=${one('x-client-spiffe-id')}`);
    }
    if (verify === 'NONE' && [...seen.keys()].some((c) => c.startsWith('x-client-') && c !== 'x-client-verify')) {
      f.add('identity-header-wrong', 'identity headers without a certificate', guess, `${show}: ${[...seen.keys()].join(', ')}`);
    }
    if (one('x-forwarded-for') !== '127.0.0.1') f.add('identity-header-wrong', 'x-forwarded-for is not the client address', guess, `${show}: x-forwarded-for=${one('x-forwarded-for')}`);
    if (seen.has('forwarded') || seen.has('x-real-ip')) f.add('forged-identity-header-reached-upstream', 'forwarded / x-real-ip', guess, show);

    // SPEC §3: the route the upstream's view of the request falls under must admit it
    const path = r.target === '*' ? '*' : r.target.split('?')[0]!;
    const who: Who = { verified: verify === 'SUCCESS', cn: one('x-client-cn'), spiffe: one('x-client-spiffe-id') };
    const route = expectedRoute(one('x-forwarded-host') ?? '', path, r.method, who);
    if (!route) f.add('unauthorized-request-forwarded', 'no route matches what the upstream received', guess, `${show} host=${one('x-forwarded-host')}`);
    else if (!route.allowed) f.add('unauthorized-request-forwarded', `route ${route.name} does not admit this client`, guess, `${show} host=${one('x-forwarded-host')} verify=${verify}`);
    if (senders.length > 0 && senders.every((e) => e.listener === 'opt') && r.bodyLength > OPT_MAX_BODY) {
      f.add('body-limit-exceeded', 'upstream got a body over limits.max_body_bytes', guess, `${show}: the opt listener allows ${OPT_MAX_BODY} bytes`);
    }
  }
}
