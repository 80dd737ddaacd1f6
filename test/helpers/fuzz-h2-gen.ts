// Generates the fuzz test's HTTP/2 inputs, of two kinds:
// - 'client' inputs run through node:http2 (the proxy's peers are mostly real HTTP/2
//   stacks): odd paths and authorities, forged identity headers in their HTTP/2 (lower
//   case, underscore) spellings, many and large headers, bodies up to ~1 MB with right or
//   wrong content-length, streams reset mid-body, many streams at once;
// - 'raw' inputs written frame by frame (fuzz-h2-wire.ts): valid requests first, then
//   mutations node:http2 would refuse to send: malformed lengths, unknown frame types,
//   HEADERS without END_HEADERS, CONTINUATION floods, bad HPACK, WINDOW_UPDATE 0,
//   RST_STREAM storms, bad SETTINGS, upper-case and connection-specific headers, misplaced
//   pseudo-headers, content-length that the DATA frames contradict.
// What a proxy may forward is decided by invalidH2Request for node:http2 streams and by
// the reference reading of the bytes (fuzz-h2-ref.ts) for raw inputs.
import { Rng } from './fuzz-prng.js';
import { FORGED, type ListenerName } from './fuzz-oracle.js';
import { F, HpackEncoder, PREFACE, T, frame, hpackInt, settings, u32, type Representation } from './fuzz-h2-wire.js';

export interface H2Req {
  stream: number;
  headers: [string, string][];
  body: Buffer;
  /** why RFC 9113 says refuse it, or null */
  invalid: H2Invalid | null;
  /** unmutated, nothing else odd: its status is predictable */
  plain: boolean;
}

export interface H2ClientInput {
  kind: 'client';
  id: string;
  listener: ListenerName;
  cert: boolean;
  resume: boolean;
  reqs: (H2Req & { chunks: number[]; reset: 'none' | 'mid-body' | 'after-headers'; delay: number })[];
  /** all streams at once, or one after the other */
  parallel: boolean;
  notes: string[];
}

export interface H2RawInput {
  kind: 'raw';
  id: string;
  listener: ListenerName;
  cert: boolean;
  resume: boolean;
  bytes: Buffer;
  writes: { size: number; delay: number }[];
  /** the highest stream id the input opens (frames from the proxy on others are wrong) */
  maxStream: number;
  notes: string[];
}

const PATHS = ['/public', '/public/a', '/exact', '/post/x', '/deny/x', '/secure/x', '/spiffe/a', '/nope', '/', '//public', '/public/../deny', '/public/%2e%2e/secure', '/%70ublic', '/public%2Fx', '/public\\x', '/public/./a', '*', 'public', '/public#x'];
const AUTHORITIES: [number, string | null][] = [[60, 'localhost'], [6, 'admin.example.com'], [6, 'a.svc.example.com'], [4, 'LOCALHOST:443'], [4, '127.0.0.1'], [3, ''], [3, 'a b'], [14, null]];
const H2_IDENTITY = ['x-client-cn', 'x_client_cn', 'x-client-verify', 'x_client_verify', 'x-client-spiffe-id', 'x-forwarded-client-cert', 'x_forwarded_client_cert', 'client-cert', 'client_cert', 'x-forwarded-for', 'x-forwarded-host', 'forwarded', 'x-real-ip', 'x-client-anything'];
const CONNECTION_SPECIFIC = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade'];

/** Why a request is malformed, and the field at fault when one field is. */
export interface H2Invalid {
  why: string;
  field?: string;
}

/** RFC 9113 §8.1-8.3: why a correct proxy must refuse this header list and body as a request, or null. */
export function invalidH2Request(h: readonly (readonly [string, string])[], body: Buffer): H2Invalid | null {
  const pseudo = new Map<string, number>();
  let regular = false;
  let cl: string[] = [];
  let host: string | undefined;
  for (const [n, v] of h) {
    if (n === '' || /[A-Z]/.test(n) || !/^:?[!#$%&'*+\-.^_`|~0-9a-z]+$/.test(n)) return { why: 'a field name that is not a lower-case token', field: n };
    if (/[\0\r\n]/.test(v)) return { why: 'CR, LF or NUL in a field value', field: n };
    if (/^[ \t]|[ \t]$/.test(v)) return { why: 'a field value with leading or trailing whitespace', field: n };
    if (n.startsWith(':')) {
      if (regular) return { why: 'a pseudo-header after a regular field' };
      if (![':method', ':scheme', ':path', ':authority'].includes(n)) return { why: `pseudo-header ${n} in a request` };
      pseudo.set(n, (pseudo.get(n) ?? 0) + 1);
      continue;
    }
    regular = true;
    if (CONNECTION_SPECIFIC.includes(n)) return { why: `connection-specific field ${n}`, field: n };
    if (n === 'te' && v !== 'trailers') return { why: 'te other than trailers', field: 'te' };
    if (n === 'content-length') cl.push(v);
    if (n === 'host') host = v;
  }
  for (const p of [':method', ':scheme', ':path']) if (pseudo.get(p) !== 1) return { why: `${p} missing or repeated` };
  if ((pseudo.get(':authority') ?? 0) > 1) return { why: ':authority repeated' };
  const method = h.find(([n]) => n === ':method')![1];
  const path = h.find(([n]) => n === ':path')![1];
  const authority = h.find(([n]) => n === ':authority')?.[1];
  if (method === 'CONNECT') return { why: 'CONNECT' };
  if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(method)) return { why: 'a method that is not a token' };
  if (path === '') return { why: 'empty :path' };
  if (path === '*' ? method !== 'OPTIONS' : !path.startsWith('/')) return { why: ':path neither origin-form nor * with OPTIONS' };
  if (authority !== undefined && host !== undefined && authority !== host) return { why: 'host differs from :authority' };
  cl = cl.flatMap((x) => x.split(',').map((y) => y.trim()));
  if (cl.length > 0 && !cl.every((x) => /^\d+$/.test(x) && Number(x) === body.length)) return { why: 'content-length differs from the DATA length' };
  return null;
}

function baseRequest(r: Rng, id: string, k: number, notes: string[]): { headers: [string, string][]; body: Buffer; odd: boolean } {
  const method = r.weighted([[45, 'GET'], [25, 'POST'], [8, 'PUT'], [6, 'HEAD'], [5, 'DELETE'], [5, 'OPTIONS'], [2, 'get'], [2, 'FOO']] as const);
  let path = r.chance(0.75) ? r.pick(PATHS.slice(0, 8)) : r.pick(PATHS);
  const odd = !PATHS.slice(0, 8).includes(path) || method === 'get' || method === 'FOO';
  if (path !== '*' && r.chance(0.95)) path += `?fz=${id}-${k}`;
  const headers: [string, string][] = [[':method', method], [':scheme', r.chance(0.9) ? 'https' : 'http'], [':path', path]];
  const auth = r.weighted(AUTHORITIES);
  if (auth !== null) headers.push([':authority', auth]);
  else if (r.chance(0.5)) headers.push(['host', 'localhost']);
  headers.push(['x-fuzz-id', `${id}-${k}`]);
  if (r.chance(0.4)) for (let i = r.range(1, 4); i > 0; i--) headers.push([r.pick(H2_IDENTITY), `${FORGED}-${i}`]);
  if (r.chance(0.3)) headers.push(['user-agent', 'fuzz-h2']);
  if (r.chance(0.1)) headers.push(['cookie', 'a=1'], ['cookie', 'b=2']);
  const body = ['POST', 'PUT'].includes(method) || r.chance(0.05) ? r.body(r.weighted([[65, r.range(1, 2000)], [30, r.range(2001, 60_000)], [5, r.range(60_001, 1_000_000)]] as const)) : Buffer.alloc(0);
  if (body.length > 0 && r.chance(0.5)) headers.push(['content-length', String(body.length)]);
  if (odd || auth === null) notes.push(`request ${k}: ${method} ${path} authority=${auth}`);
  return { headers, body, odd: odd || !(auth === 'localhost' || auth === null) };
}

export function genH2Client(seed: string, n: number): H2ClientInput {
  const r = Rng.derive(seed, 'h2c', n);
  const id = `h2-${n}`;
  const listener: ListenerName = r.chance(0.6) ? 'req' : 'opt';
  // a few clients try the `require` listener without a certificate: the handshake must fail
  const cert = listener === 'req' ? r.chance(0.98) : r.chance(0.7);
  const notes = [`node:http2 client, ${listener} listener${cert ? '' : ', no client certificate'}`];
  const count = r.weighted([[62, 1], [25, r.range(2, 6)], [10, r.range(7, 30)], [3, r.range(50, 150)]] as const);
  const reqs: H2ClientInput['reqs'] = [];
  for (let k = 0; k < count; k++) {
    const b = count > 30 ? { headers: [[':method', 'GET'], [':scheme', 'https'], [':path', `/public?fz=${id}-${k}`], [':authority', 'localhost'], ['x-fuzz-id', `${id}-${k}`]] as [string, string][], body: Buffer.alloc(0), odd: false } : baseRequest(r, id, k, notes);
    let plain = !b.odd && count <= 30 && (cert || listener === 'opt');
    const hs = b.headers;
    if (count <= 30 && r.chance(0.05)) {
      for (let i = r.pick([50, 200, 1000]); i > 0; i--) hs.push([`x-m${i}`, 'v']);
      notes.push(`request ${k}: many headers`);
      plain = false;
    }
    if (count <= 30 && r.chance(0.04)) {
      hs.push(['x-big', 'b'.repeat(r.pick([9000, 20_000, 70_000]))]);
      notes.push(`request ${k}: large header`);
      plain = false;
    }
    if (b.body.length > 0 && r.chance(0.08)) {
      const i = hs.findIndex(([x]) => x === 'content-length');
      const wrong = String(b.body.length + r.pick([-1, 1, 1000]));
      if (i >= 0) hs[i] = ['content-length', wrong];
      else hs.push(['content-length', wrong]);
      notes.push(`request ${k}: content-length ${wrong} for ${b.body.length} bytes`);
      plain = false;
    }
    const reset = r.weighted([[88, 'none'], [8, 'mid-body'], [4, 'after-headers']] as const);
    if (reset !== 'none' && count <= 30) notes.push(`request ${k}: reset ${reset}`);
    const chunks: number[] = [];
    for (let left = b.body.length; left > 0; ) {
      const c = Math.min(left, r.pick([100, 4096, 16_384, 65_536]));
      chunks.push(c);
      left -= c;
    }
    const invalid = invalidH2Request(hs, b.body);
    reqs.push({ stream: 0, headers: hs, body: b.body, invalid, plain: plain && !invalid && reset === 'none', chunks, reset, delay: r.chance(0.2) ? r.range(1, 5) : 0 });
  }
  if (count > 30) notes.push(`${count} streams at once, ${reqs.filter((q) => q.reset !== 'none').length} of them reset`);
  return { kind: 'client', id: `h2:${n}`, listener, cert, resume: r.chance(0.8), reqs, parallel: count > 30 || r.chance(0.6), notes };
}

function setField(h: [string, string][], name: string, value: string): void {
  const i = h.findIndex(([x]) => x === name);
  if (i >= 0) h[i] = [name, value];
  else h.push([name, value]);
}

function removeField(h: [string, string][], name: string): void {
  const i = h.findIndex(([x]) => x === name);
  if (i >= 0) h.splice(i, 1);
}

interface Piece {
  buf: Buffer;
  stream: number;
}

const BAD_HPACK: Buffer[] = [
  Buffer.from([0x80]), // index 0
  Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]), // index far past both tables
  Buffer.from([0x7f, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]), // integer overflow
  Buffer.from([0x00, 0x7f, 0xff, 0xff, 0x03, 0x61]), // string longer than the block
  Buffer.from([0x00, 0x85, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x61]), // Huffman string of EOS padding
  Buffer.from([0x3f, 0xe1, 0xff, 0x03]), // table size update over SETTINGS_HEADER_TABLE_SIZE
  Buffer.from([0x82, 0x20]), // table size update after a field
  Buffer.from([0x40, 0x00, 0x00]), // empty name
];

export function genH2Raw(seed: string, n: number): H2RawInput {
  const r = Rng.derive(seed, 'h2r', n);
  const id = `h2-${n}`;
  const listener: ListenerName = r.chance(0.6) ? 'req' : 'opt';
  // a few clients try the `require` listener without a certificate: the handshake must fail
  const cert = listener === 'req' ? r.chance(0.98) : r.chance(0.7);
  const notes = [`raw frames, ${listener} listener${cert ? '' : ', no client certificate'}`];
  const enc = new HpackEncoder();
  const rep = (): Representation => r.weighted([[50, 'indexed-or-literal'], [25, 'incremental'], [15, 'without'], [10, 'never']] as const);
  // our SETTINGS (no push, default window) and the ACK of the proxy's, which it sends first
  const pieces: Piece[] = [{ buf: PREFACE, stream: 0 }, { buf: settings([[2, 0], [4, 65_535]]), stream: 0 }, { buf: settings([], true), stream: 0 }];
  const reqs: { stream: number; headers: [string, string][]; body: Buffer }[] = [];
  const count = r.weighted([[55, 1], [35, r.range(2, 4)], [10, r.range(5, 8)]] as const);
  let budget = 60_000; // stay inside the default 65,535-byte connection window
  const headerBlock = (headers: [string, string][], stream: number, endStream: boolean, representation: () => Representation = rep) => {
    const block = enc.encode(headers, representation);
    const split = r.chance(0.2) && block.length > 2 ? r.range(1, block.length - 1) : block.length;
    const padded = r.chance(0.1);
    const payload = padded ? Buffer.concat([Buffer.from([3]), block.subarray(0, split), Buffer.alloc(3)]) : block.subarray(0, split);
    const flags = (endStream ? F.END_STREAM : 0) | (split === block.length ? F.END_HEADERS : 0) | (padded ? F.PADDED : 0);
    const out: Piece[] = [{ buf: frame(T.HEADERS, flags, stream, payload), stream }];
    if (split < block.length) out.push({ buf: frame(T.CONTINUATION, F.END_HEADERS, stream, block.subarray(split)), stream });
    return out;
  };
  for (let k = 0; k < count; k++) {
    const stream = 1 + 2 * k;
    const b = baseRequest(r, id, k, notes);
    const body = b.body.subarray(0, Math.min(b.body.length, budget, 16_000));
    budget -= body.length;
    if (body.length !== b.body.length) {
      const i = b.headers.findIndex(([x]) => x === 'content-length');
      if (i >= 0) b.headers[i] = ['content-length', String(body.length)];
    }
    const trailers = body.length > 0 && r.chance(0.1);
    pieces.push(...headerBlock(b.headers, stream, body.length === 0));
    for (let off = 0; off < body.length; ) {
      const c = Math.min(body.length - off, r.pick([100, 1000, 16_384]));
      const last = off + c === body.length && !trailers;
      pieces.push({ buf: frame(T.DATA, last ? F.END_STREAM : 0, stream, body.subarray(off, off + c)), stream });
      off += c;
    }
    if (trailers) pieces.push(...headerBlock([['x-trailer', 'v']], stream, true));
    reqs.push({ stream, headers: b.headers, body });
  }
  let next = 1 + 2 * count;
  const fresh = () => ((next += 2), next - 2);
  const at = () => r.range(3, pieces.length);
  const insert = (buf: Buffer, stream = 0) => pieces.splice(at(), 0, { buf, stream });
  const GET_BLOCK = Buffer.from([0x82, 0x87, 0x84]); // :method GET, :scheme https, :path /
  /** changes one request's header list and writes its header block again, uncompressed */
  const mutateHeaders = (f: (h: [string, string][]) => void) => {
    const q = r.pick(reqs);
    f(q.headers);
    enc.dynamicTrusted = false;
    const i = pieces.findIndex((p) => p.stream === q.stream);
    const blockEnd = pieces[i + 1]?.buf[3] === T.CONTINUATION ? i + 2 : i + 1;
    pieces.splice(i, blockEnd - i, ...headerBlock(q.headers, q.stream, q.body.length === 0, () => 'without'));
  };
  const lie = (delta: number) => {
    const i = r.range(3, pieces.length - 1);
    const buf = Buffer.from(pieces[i]!.buf);
    buf.writeUIntBE(Math.max(0, buf.readUIntBE(0, 3) + delta), 0, 3);
    pieces[i] = { buf, stream: pieces[i]!.stream };
    notes.push(`frame ${i} length field ${delta > 0 ? '+' : ''}${delta}`);
  };
  const mutations: Record<string, () => void> = {
    'upper-name': () => mutateHeaders((h) => h.push(['X-Client-CN', `${FORGED}-upper`])),
    'pseudo-after-regular': () => mutateHeaders((h) => h.push([':path', '/deny/x'])),
    'dup-path': () => mutateHeaders((h) => h.splice(1, 0, [':path', '/deny/x'])),
    'missing-method': () => mutateHeaders((h) => removeField(h, ':method')),
    'missing-path': () => mutateHeaders((h) => removeField(h, ':path')),
    'unknown-pseudo': () => mutateHeaders((h) => h.unshift([':foo', 'bar'])),
    'status-pseudo': () => mutateHeaders((h) => h.unshift([':status', '200'])),
    'empty-path': () => mutateHeaders((h) => setField(h, ':path', '')),
    'connection-header': () => mutateHeaders((h) => h.push([r.pick(CONNECTION_SPECIFIC), r.pick(['keep-alive', 'chunked', 'h2c', 'close'])])),
    'te-gzip': () => mutateHeaders((h) => h.push(['te', 'gzip'])),
    'value-crlf': () => mutateHeaders((h) => h.push(['x-inj', `a\r\nx-client-cn: ${FORGED}-crlf`])),
    'value-nul': () => mutateHeaders((h) => h.push(['x-nul', 'a\0b'])),
    'value-ws': () => mutateHeaders((h) => h.push(['x-ws', ' padded '])),
    'name-space': () => mutateHeaders((h) => h.push(['x client cn', `${FORGED}-space`])),
    'host-differs': () => mutateHeaders((h) => h.push(['host', 'admin.example.com'])),
    'connect-method': () => mutateHeaders((h) => setField(h, ':method', 'CONNECT')),
    'content-length-wrong': () => mutateHeaders((h) => h.push(['content-length', String(r.pick([0, 1, 5, 100_000]))])),
    'length-over': () => lie(r.range(1, 40)),
    'length-under': () => lie(-r.range(1, 8)),
    'frame-too-big': () => insert(frame(T.DATA, 0, 1, Buffer.alloc(20_000, 0x41)), 1),
    'unknown-type': () => insert(frame(r.range(0x0a, 0xff), r.int(256), r.pick([0, 1, 3, 99]), r.bytes(r.range(0, 64)))),
    'headers-no-end-headers': () => {
      const s = fresh();
      pieces.push({ buf: frame(T.HEADERS, 0, s, GET_BLOCK.subarray(0, 2)), stream: s });
      pieces.push({ buf: r.chance(0.5) ? frame(T.DATA, F.END_STREAM, s, Buffer.from('x')) : frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, fresh(), GET_BLOCK), stream: s });
    },
    'continuation-flood': () => {
      const s = fresh();
      const head = Buffer.concat([GET_BLOCK, Buffer.from([0x00]), hpackInt(7, 7, 0), Buffer.from('x-flood'), hpackInt(200_000, 7, 0)]);
      pieces.push({ buf: frame(T.HEADERS, F.END_STREAM, s, head), stream: s });
      const frames = r.pick([200, 1000, 3000]);
      for (let i = 0; i < frames; i++) pieces.push({ buf: frame(T.CONTINUATION, 0, s, Buffer.alloc(64, 0x61)), stream: s });
      notes.push(`CONTINUATION flood of ${frames} frames`);
    },
    'continuation-wrong-stream': () => {
      const s = fresh();
      pieces.push({ buf: frame(T.HEADERS, 0, s, GET_BLOCK.subarray(0, 2)), stream: s });
      pieces.push({ buf: frame(T.CONTINUATION, F.END_HEADERS, fresh(), GET_BLOCK.subarray(2)), stream: s });
    },
    'bad-hpack': () => {
      const s = fresh();
      pieces.push({ buf: frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, s, Buffer.concat([GET_BLOCK, r.pick(BAD_HPACK)])), stream: s });
    },
    'window-update-0': () => insert(frame(T.WINDOW_UPDATE, 0, r.pick([0, 1]), u32(0))),
    'window-overflow': () => insert(Buffer.concat([frame(T.WINDOW_UPDATE, 0, 0, u32(0x7fffffff)), frame(T.WINDOW_UPDATE, 0, 0, u32(0x7fffffff))])),
    'rst-storm': () => {
      const frames = r.pick([100, 500, 1500]);
      for (let i = 0; i < frames; i++) {
        const s = fresh();
        pieces.push({ buf: Buffer.concat([frame(T.HEADERS, F.END_HEADERS, s, GET_BLOCK), frame(T.RST_STREAM, 0, s, u32(8))]), stream: s });
      }
      notes.push(`RST_STREAM storm of ${frames} streams`);
    },
    'ping-flood': () => insert(Buffer.concat(Array.from({ length: r.pick([100, 2000]) }, () => frame(T.PING, 0, 0, Buffer.alloc(8))))),
    'settings-flood': () => insert(Buffer.concat(Array.from({ length: r.pick([100, 2000]) }, () => settings([[3, 100]])))),
    'settings-bad': () => insert(r.pick([settings([[2, 2]]), settings([[4, 0x80000000]]), settings([[5, 100]]), settings([[5, 0x1000000]]), frame(T.SETTINGS, 0, 0, Buffer.alloc(5)), frame(T.SETTINGS, F.ACK, 0, Buffer.alloc(6)), frame(T.SETTINGS, 0, 1, Buffer.alloc(0))])),
    'data-stream-0': () => insert(frame(T.DATA, 0, 0, Buffer.from('x'))),
    'data-idle-stream': () => insert(frame(T.DATA, F.END_STREAM, 999, Buffer.from('x'))),
    'even-stream': () => pieces.push({ buf: frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, 2, GET_BLOCK), stream: 2 }),
    'stream-id-reused': () => pieces.push({ buf: frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, 1, GET_BLOCK), stream: 1 }),
    'push-promise': () => insert(frame(T.PUSH_PROMISE, F.END_HEADERS, 1, Buffer.concat([u32(2), GET_BLOCK]))),
    'goaway-then-more': () => insert(frame(T.GOAWAY, 0, 0, Buffer.concat([u32(0), u32(0)]))),
    'priority-self': () => insert(frame(T.PRIORITY, 0, 1, Buffer.concat([u32(1), Buffer.from([16])]))),
    'padding-too-long': () => insert(frame(T.DATA, F.PADDED | F.END_STREAM, 1, Buffer.from([200, 0x61])), 1),
    'data-after-end': () => insert(frame(T.DATA, F.END_STREAM, 1, Buffer.from('late')), 1),
    'flow-overflow': () => {
      const s = fresh();
      pieces.push({ buf: frame(T.HEADERS, F.END_HEADERS, s, enc.encode([[':method', 'POST'], [':scheme', 'https'], [':path', `/post/x?fz=${id}-flow`], [':authority', 'localhost']], () => 'without')), stream: s });
      for (let i = 0; i < 6; i++) pieces.push({ buf: frame(T.DATA, i === 5 ? F.END_STREAM : 0, s, Buffer.alloc(16_000, 0x62)), stream: s });
    },
    'preface-bad': () => (pieces[0] = { buf: r.pick([Buffer.from('PRI * HTTP/2.0\r\n\r\n'), Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), r.bytes(24)]), stream: 0 }),
  };
  if (r.chance(0.75)) {
    for (let m = r.range(1, 3); m > 0; m--) {
      const name = r.pick(Object.keys(mutations));
      mutations[name]!();
      notes.push(`mutation ${name}`);
    }
  }
  let bytes = Buffer.concat(pieces.map((p) => p.buf));
  if (r.chance(0.08)) {
    const cut = r.range(24, bytes.length);
    bytes = bytes.subarray(0, cut);
    notes.push(`truncated at ${cut}`);
  }
  const writes: { size: number; delay: number }[] = [];
  const max = r.pick([9, 64, 1024, bytes.length]);
  for (let off = 0; off < bytes.length; ) {
    const size = Math.min(bytes.length - off, writes.length > 200 ? 65_536 : r.range(1, max));
    writes.push({ size, delay: r.chance(0.05) ? r.range(1, 3) : 0 });
    off += size;
  }
  notes.push(`${writes.length} writes`);
  return { kind: 'raw', id: `h2:${n}`, listener, cert, resume: r.chance(0.8), bytes, writes, maxStream: next - 2, notes };
}
