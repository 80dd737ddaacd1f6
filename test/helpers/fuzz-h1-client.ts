// Sends one generated HTTP/1.1 input over a real mTLS connection (split writes, delays,
// half-close, abort, a client that stops reading), registers the requests in it that a
// correct proxy may forward (from the strict reference parse of the exact bytes, never
// from what the generator meant to send), and checks what came back: well-formed
// responses, never more answers than requests, and for plain inputs the status the
// documentation predicts.
import tls from 'node:tls';
import { parseResponses, referenceRequests, show, type ParsedRequest, type ResponsesParse } from './fuzz-http1-parse.js';
import { CLIENT_ID, OPT_MAX_BODY, expectedAbsoluteTarget, expectedOriginTarget, expectedRoute, requestIdOf, type Findings, type ListenerName, type Normalized, type Oracle } from './fuzz-oracle.js';
import type { H1Input } from './fuzz-h1-gen.js';

export interface FuzzEndpoint {
  port(l: ListenerName): number;
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
  /** TLS sessions for resumption, by listener and certificate */
  sessions: Map<string, Buffer>;
}

export interface H1Outcome {
  received: Buffer;
  closedByPeer: boolean;
  error?: string;
  /** the client gave up waiting (hard deadline) */
  timedOut: boolean;
}

const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const DEADLINE_MS = 8000;
/**
 * A connection that stays quiet this long is done. Waiting for answers the reference
 * parse says are owed, it is long (an answer that is merely slow must not be reported
 * missing) and cut short once they are all in; with nothing owed, it is short.
 */
const QUIET_OWED_MS = 1500;
const QUIET_MS = 200;

export function connectTls(ep: FuzzEndpoint, listener: ListenerName, cert: boolean, resume: boolean, alpn: string): tls.TLSSocket {
  const key = `${listener}/${cert}/${alpn}`;
  const s = tls.connect({
    host: '127.0.0.1',
    port: ep.port(listener),
    servername: 'localhost',
    ca: ep.ca,
    ...(cert ? { cert: ep.cert, key: ep.key } : {}),
    ALPNProtocols: [alpn],
    session: resume ? ep.sessions.get(key) : undefined,
  });
  s.on('session', (b: Buffer) => ep.sessions.set(key, b));
  return s;
}

/** Where a reference request must arrive upstream, and the host it routes by. */
export function upstreamView(r: ParsedRequest): { n: Normalized; host: string; origin: boolean } {
  const host = r.headers.find(([n]) => n.toLowerCase() === 'host')?.[1] ?? '';
  if (r.target === '*' || r.target.startsWith('/')) return { n: expectedOriginTarget(r.target), host, origin: true };
  const a = expectedAbsoluteTarget(r.target);
  return { n: a, host: a.ok ? a.host! : host, origin: false };
}

export function registerH1(input: H1Input, oracle: Oracle): ParsedRequest[] {
  const ref = referenceRequests(input.stream);
  for (const r of ref.requests) {
    const v = upstreamView(r);
    const e = { input: input.id, rid: requestIdOf(r.target, r.headers), listener: input.listener, cert: input.cert, method: r.method, target: v.n.ok ? v.n.target : r.target, bodyLength: r.bodyLength, bodySha: r.bodySha };
    if (r.invalid) oracle.registerInvalid(e, r.invalid);
    else if (!v.n.ok) oracle.registerInvalid(e, `a target the documented normalization refuses (${v.n.reason})`);
    else oracle.register(e);
  }
  if (ref.cut) {
    const v = upstreamView({ ...ref.cut, bodyLength: 0, bodySha: '' });
    const e = { input: input.id, rid: requestIdOf(ref.cut.target, ref.cut.headers), listener: input.listener, cert: input.cert, method: ref.cut.method, target: v.n.ok ? v.n.target : ref.cut.target, bodyLength: 0, bodySha: '' };
    oracle.registerIncomplete(e, 'the client stopped sending in the middle of the request');
  }
  return ref.requests;
}

/** expect: the requests whose answers to wait for, before a short quiet spell ends the wait */
export async function sendH1(input: H1Input, ep: FuzzEndpoint, expect: readonly { method: string; version: string }[] = []): Promise<H1Outcome> {
  const chunks: Buffer[] = [];
  let closed = false;
  let closedByPeer = false;
  let error: string | undefined;
  let last = Date.now();
  const start = last;
  const s = connectTls(ep, input.listener, input.cert, input.resume, 'http/1.1');
  s.on('data', (d: Buffer) => {
    chunks.push(d);
    last = Date.now();
  });
  // after a TLS alert Node emits 'error' at once but may hold 'close' back until a write fails
  s.on('error', (e: NodeJS.ErrnoException) => {
    error ??= e.code ?? e.message;
    closed = true;
  });
  s.on('end', () => (closedByPeer = true));
  s.on('close', () => (closed = true));
  const waitFor = (cond: () => boolean, ms: number) =>
    new Promise<void>((resolve) => {
      const until = Math.min(Date.now() + ms, start + DEADLINE_MS);
      const tick = () => (cond() || Date.now() >= until ? resolve() : setTimeout(tick, 10));
      tick();
    });
  await new Promise<void>((resolve) => {
    s.once('secureConnect', resolve);
    s.once('close', resolve);
    s.once('error', resolve);
  });
  if (input.end === 'stop-reading') s.pause();
  let off = 0;
  for (const w of input.writes) {
    if (w.delay) await sleep(w.delay);
    if (closed || s.destroyed) break;
    const ok = s.write(input.stream.subarray(off, off + w.size));
    off += w.size;
    if (!ok && input.end !== 'stop-reading') {
      let drained = false;
      s.once('drain', () => (drained = true));
      await waitFor(() => drained || closed, DEADLINE_MS);
    }
    last = Date.now();
  }
  let parsedAt = -1;
  let allIn = false;
  const answered = () => {
    // re-parse only when something new arrived and the connection went quiet for a moment
    if (allIn || expect.length === 0 || last === parsedAt || Date.now() - last < 15) return allIn;
    parsedAt = last;
    return (allIn = parseResponses(Buffer.concat(chunks), expect).finals.length >= expect.length);
  };
  const quiet = expect.length > 0 ? QUIET_OWED_MS : QUIET_MS;
  if (input.end === 'abort') {
    await sleep(input.writes.length % 20);
  } else if (input.end === 'stop-reading') {
    await sleep(150 + (input.writes.length % 150));
  } else {
    if (input.end === 'half-close') s.end();
    await waitFor(() => closed || Date.now() - last > quiet || answered(), DEADLINE_MS);
  }
  const timedOut = !closed && Date.now() - start >= DEADLINE_MS;
  s.destroy();
  return { received: Buffer.concat(chunks), closedByPeer, error, timedOut };
}

export interface H1Summary {
  resp: ResponsesParse;
  excerpt: string;
  timedOut: boolean;
  error: string | undefined;
}

/** What checkH1 needs of an outcome, so thousands of outcomes do not keep their bytes. */
export function summarizeH1(refs: ParsedRequest[], out: H1Outcome): H1Summary {
  const resp = parseResponses(out.received, refs.map((r) => ({ method: r.method, version: r.version })));
  // around the problem, if there is one
  const at = resp.problem ? Math.max(0, resp.problemAt - 120) : 0;
  return { resp, excerpt: (at > 0 ? `… ${at} bytes, then ` : '') + excerpt(out.received.subarray(at)), timedOut: out.timedOut, error: out.error };
}

/** crashAffected: a worker crashed while this input was in flight, so its answers prove nothing */
export function checkH1(input: H1Input, refs: ParsedRequest[], out: H1Summary, findings: Findings, crashAffected: boolean): void {
  if (input.end === 'stop-reading') return;
  const resp = out.resp;
  if (resp.problem) findings.add('malformed-response', resp.problem.replace(/: ".*$/, '').replace(/\d+/g, 'N'), input.id, `${resp.problem}\n${out.excerpt}`);
  // one answer per request, plus at most one error answer for what could not be parsed
  if (resp.finals.length > refs.length + 1) {
    findings.add('more-responses-than-requests', 'the client got more responses than it sent requests', input.id, `${refs.length} well-formed requests, ${resp.finals.length} responses (${resp.finals.map((f) => f.status).join(',')})`);
  }
  if (!input.plain || crashAffected || refs.length !== 1) return;
  const r = refs[0]!;
  const v = upstreamView(r);
  // an invalid request that is forwarded is reported from the upstream's side; a method
  // the proxy does not know may get 400 or 501 whatever the route
  if (!v.origin || r.invalid || !KNOWN_METHODS.has(r.method)) return;
  let expected: number[];
  if (!v.n.ok) expected = [400];
  else {
    const who = input.cert ? { verified: true, ...CLIENT_ID } : { verified: false };
    const route = expectedRoute(v.host, v.n.path, r.method, who);
    if (!route) expected = [404];
    else if (!route.allowed) expected = [401, 403];
    else if (input.listener === 'opt' && r.bodyLength > OPT_MAX_BODY) return;
    else expected = [200];
  }
  const got = resp.finals[0]?.status;
  if (got === undefined || !expected.includes(got)) {
    const none = out.timedOut ? 'no answer in time' : out.error ? `no answer: the connection failed (${out.error}) before an answer arrived` : 'no answer before the connection closed';
    const sig = `expected ${expected.join('/')} got ${got ?? none}`;
    findings.add('unexpected-status', sig, input.id, `${r.method} ${r.target.slice(0, 100)} host=${v.host} body=${r.bodyLength}: ${sig}\n${out.excerpt}`);
  }
}

export function excerpt(b: Buffer, n = 400): string {
  return show(b.toString('latin1'), n) + (b.length > n ? ` … (${b.length} bytes)` : '');
}

/** The input for the report: each request head as sent, bodies abbreviated. */
export function describeStream(b: Buffer): string {
  const s = b.toString('latin1');
  const parts: string[] = [];
  let off = 0;
  while (off < s.length && parts.length < 4) {
    const end = s.indexOf('\r\n\r\n', off);
    const head = end < 0 ? s.slice(off, off + 600) : s.slice(off, end + 4);
    parts.push(show(head, 600));
    if (end < 0) break;
    const next = s.slice(end + 4).search(/[A-Za-z]+ \S+ HTTP\/\d\.\d\r?\n/);
    const body = next < 0 ? s.length - end - 4 : next;
    if (body > 0) parts.push(body <= 64 ? show(s.slice(end + 4, end + 4 + body), 64) : `<${body} body bytes>`);
    off = end + 4 + body;
  }
  return parts.join(' + ') + (off < s.length ? ` … (${s.length} bytes in all)` : '');
}
