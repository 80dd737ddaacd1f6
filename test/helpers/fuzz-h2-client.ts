// Runs the fuzz test's HTTP/2 inputs over real mTLS connections with ALPN h2: node:http2
// sessions for 'client' inputs, a raw TLS socket for 'raw' ones. Registers the requests a
// correct proxy may forward (validH2Request for node:http2 streams sent whole, the
// reference reading of the bytes for raw inputs) and checks what came back: statuses of
// plain requests, and that every frame the proxy wrote is well-formed.
import http2 from 'node:http2';
import { sha256 } from './fuzz-http1-parse.js';
import { CLIENT_ID, OPT_MAX_BODY, expectedOriginTarget, expectedRoute, requestIdOf, type Findings, type Oracle } from './fuzz-oracle.js';
import { connectTls, type FuzzEndpoint } from './fuzz-h1-client.js';
import { F, FrameReader, T } from './fuzz-h2-wire.js';
import { referenceH2 } from './fuzz-h2-ref.js';
import type { H2ClientInput, H2Invalid, H2RawInput } from './fuzz-h2-gen.js';

const DEADLINE_MS = 8000;
const QUIET_MS = 300;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function register(oracle: Oracle, input: H2ClientInput | H2RawInput, headers: readonly (readonly [string, string])[], body: Buffer, invalid: H2Invalid | null, reset: boolean): void {
  const method = headers.find(([n]) => n === ':method')?.[1];
  const path = headers.find(([n]) => n === ':path')?.[1];
  if (method === undefined || path === undefined) return;
  const n = expectedOriginTarget(path);
  const e = { input: input.id, rid: requestIdOf(path, headers), listener: input.listener, cert: input.cert, method, target: n.ok ? n.target : path, bodyLength: body.length, bodySha: sha256(body) };
  if (reset) oracle.registerIncomplete(e, 'the client reset the stream (or left it open) before it ended');
  else if (invalid) oracle.registerInvalid(e, invalid.why, invalid.field);
  else if (!n.ok) oracle.registerInvalid(e, `a :path the documented normalization refuses (${n.reason})`);
  else oracle.register(e);
}

export function registerH2(input: H2ClientInput | H2RawInput, oracle: Oracle): void {
  if (input.kind === 'raw') {
    const ref = referenceH2(input.bytes);
    for (const q of ref.requests) register(oracle, input, q.headers, q.body, q.invalid, false);
    for (const q of ref.unfinished) register(oracle, input, q.headers, Buffer.alloc(0), null, true);
    return;
  }
  for (const q of input.reqs) register(oracle, input, q.headers, q.body, q.invalid, q.reset !== 'none');
}

function drainOrClose(req: http2.ClientHttp2Stream): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      req.off('drain', done);
      req.off('close', done);
      resolve();
    };
    req.on('drain', done);
    req.on('close', done);
  });
}

export interface H2ClientOutcome {
  statuses: (number | undefined)[];
  errors: string[];
}

function headerObject(list: readonly (readonly [string, string])[]): http2.OutgoingHttpHeaders {
  const o: Record<string, string | string[]> = {};
  for (const [n, v] of list) {
    const prev = o[n];
    o[n] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  return o;
}

export async function sendH2Client(input: H2ClientInput, ep: FuzzEndpoint): Promise<H2ClientOutcome> {
  const out: H2ClientOutcome = { statuses: [], errors: [] };
  const tlsSock = connectTls(ep, input.listener, input.cert, input.resume, 'h2');
  const session = http2.connect(`https://127.0.0.1:${ep.port(input.listener)}`, { createConnection: () => tlsSock, settings: { enablePush: false } });
  session.on('error', (e: NodeJS.ErrnoException) => out.errors.push(`session: ${e.code ?? e.message}`));
  const started = Date.now();
  const one = (q: H2ClientInput['reqs'][number], i: number) =>
    new Promise<void>((resolve) => {
      let req: http2.ClientHttp2Stream;
      const endNow = q.body.length === 0 && q.reset === 'none';
      try {
        req = session.request(headerObject(q.headers), { endStream: endNow });
      } catch (e) {
        out.errors.push(`request ${i}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
        return resolve();
      }
      const timer = setTimeout(() => req.close(http2.constants.NGHTTP2_CANCEL), Math.max(1, DEADLINE_MS - (Date.now() - started)));
      req.on('response', (h) => (out.statuses[i] = Number(h[':status'])));
      req.on('data', () => undefined);
      req.on('error', (e: NodeJS.ErrnoException) => out.errors.push(`stream ${i}: ${e.code ?? e.message}`));
      req.on('close', () => {
        clearTimeout(timer);
        resolve();
      });
      if (endNow) return;
      void (async () => {
        if (q.reset === 'after-headers') {
          await sleep(q.delay);
          req.close(http2.constants.NGHTTP2_CANCEL);
          return;
        }
        let off = 0;
        for (let c = 0; c < q.chunks.length; c++) {
          if (req.destroyed) return;
          if (q.reset === 'mid-body' && c === Math.floor(q.chunks.length / 2)) {
            req.close(http2.constants.NGHTTP2_CANCEL);
            return;
          }
          if (q.delay) await sleep(q.delay);
          const ok = req.write(q.body.subarray(off, off + q.chunks[c]!));
          off += q.chunks[c]!;
          if (!ok) await drainOrClose(req);
        }
        if (q.reset === 'mid-body') req.close(http2.constants.NGHTTP2_CANCEL);
        else if (!req.destroyed) req.end();
      })();
    });
  await new Promise<void>((resolve) => {
    session.once('connect', () => resolve());
    session.once('error', () => resolve());
    session.once('close', () => resolve());
  });
  if (!session.destroyed) {
    if (input.parallel) await Promise.all(input.reqs.map((q, i) => one(q, i)));
    else for (let i = 0; i < input.reqs.length && !session.destroyed; i++) await one(input.reqs[i]!, i);
  }
  session.destroy();
  tlsSock.destroy();
  return out;
}

export function checkH2Client(input: H2ClientInput, out: H2ClientOutcome, findings: Findings, crashAffected: boolean): void {
  // one odd stream may cost the whole connection (an oversized header list, a reset storm)
  if (crashAffected || !input.reqs.every((q) => q.plain)) return;
  input.reqs.forEach((q, i) => {
    const get = (n: string) => q.headers.find(([x]) => x === n)?.[1];
    const n = expectedOriginTarget(get(':path')!);
    let expected: number[];
    if (!n.ok) expected = [400];
    else {
      const who = input.cert ? { verified: true, ...CLIENT_ID } : { verified: false };
      const route = expectedRoute(get(':authority') ?? get('host') ?? '', n.path, get(':method')!, who);
      if (!route) expected = [404];
      else if (!route.allowed) expected = [401, 403];
      else if (input.listener === 'opt' && q.body.length > OPT_MAX_BODY) return;
      else expected = [200];
    }
    const got = out.statuses[i];
    if (got === undefined || !expected.includes(got)) {
      const sig = `expected ${expected.join('/')} got ${got ?? 'no response'}`;
      findings.add('unexpected-status', `HTTP/2: ${sig}`, input.id, `${get(':method')} ${get(':path')} authority=${get(':authority')} body=${q.body.length}: ${sig}; client errors: ${out.errors.slice(0, 3).join('; ') || 'none'}`);
    }
  });
}

export interface H2RawOutcome {
  alpn: string | false | null | undefined;
  problem: string | null;
  goaway: boolean;
  frames: number;
  error?: string;
}

export async function sendH2Raw(input: H2RawInput, ep: FuzzEndpoint): Promise<H2RawOutcome> {
  const s = connectTls(ep, input.listener, input.cert, input.resume, 'h2');
  const reader = new FrameReader();
  // the streams a proxy must answer (or reset): every request the bytes complete
  const owed = new Set(referenceH2(input.bytes).requests.map((q) => q.stream));
  const out: H2RawOutcome = { alpn: undefined, problem: null, goaway: false, frames: 0 };
  let closed = false;
  let last = Date.now();
  const start = last;
  s.on('data', (d: Buffer) => {
    last = Date.now();
    for (const f of reader.push(d, input.maxStream)) {
      if (f.type === T.GOAWAY) out.goaway = true;
      else if (f.type === T.RST_STREAM || ((f.type === T.HEADERS || f.type === T.DATA) && f.flags & F.END_STREAM)) owed.delete(f.stream);
    }
  });
  // after a TLS alert Node emits 'error' at once but may hold 'close' back until a write fails
  s.on('error', (e: NodeJS.ErrnoException) => {
    out.error ??= e.code ?? e.message;
    closed = true;
  });
  s.on('close', () => (closed = true));
  await new Promise<void>((resolve) => {
    s.once('secureConnect', resolve);
    s.once('close', resolve);
    s.once('error', resolve);
  });
  out.alpn = s.alpnProtocol;
  let off = 0;
  for (const w of input.writes) {
    if (w.delay) await sleep(w.delay);
    if (closed) break;
    if (!s.write(input.bytes.subarray(off, off + w.size))) {
      let drained = false;
      s.once('drain', () => (drained = true));
      while (!drained && !closed && Date.now() - start < DEADLINE_MS) await sleep(5);
    }
    off += w.size;
    last = Date.now();
  }
  const settled = () => (out.goaway || owed.size === 0) && Date.now() - last > 20;
  while (!closed && Date.now() - last < QUIET_MS && Date.now() - start < DEADLINE_MS && !settled()) await sleep(10);
  s.destroy();
  out.problem = reader.problem;
  out.frames = reader.frames;
  return out;
}

export function checkH2Raw(input: H2RawInput, out: H2RawOutcome, findings: Findings): void {
  if (out.alpn !== undefined && out.alpn !== 'h2') findings.add('h2-not-negotiated', `ALPN ${out.alpn}`, input.id, 'the client offered only h2');
  if (out.problem) findings.add('malformed-h2-frame-from-proxy', out.problem.replace(/\d+/g, 'N'), input.id, out.problem);
}
