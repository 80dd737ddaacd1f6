// Generates the fuzz test's HTTP/1.1 inputs: well-formed requests first (methods, odd
// targets, hosts, forged identity headers, Content-Length and chunked bodies up to ~1 MB,
// pipelining, keep-alive, HTTP/1.0), then mutations of two kinds: structural ones that
// aim at known parser disagreements (conflicting Content-Length / Transfer-Encoding, bad
// chunk sizes, obs-fold, bare LF, header injection, huge headers) and blind byte-level
// ones (flips, inserted CR/LF/NUL, truncation). How the bytes are written (split sizes,
// small delays) and how the client ends (waits, half-closes, aborts mid-body, stops
// reading) is part of the input. Everything derives from Rng.derive(seed, 'h1', n).
import { Rng } from './fuzz-prng.js';
import { FORGED, type ListenerName } from './fuzz-oracle.js';

export type EndMode = 'wait' | 'half-close' | 'abort' | 'stop-reading';

export interface H1Input {
  id: string;
  listener: ListenerName;
  cert: boolean;
  /** offer a TLS session from an earlier connection */
  resume: boolean;
  /** every byte the client writes, in order */
  stream: Buffer;
  /** write sizes (sum = stream.length) and the delay before each write */
  writes: { size: number; delay: number }[];
  end: EndMode;
  /** what was generated and how it was mutated, for the report */
  notes: string[];
  /** one unmutated request and the client waits: its status is predictable */
  plain: boolean;
}

interface ReqSpec {
  method: string;
  target: string;
  version: string;
  headers: [string, string][];
  body: Buffer;
  framing: 'none' | 'cl' | 'chunked';
  chunks: number[];
  chunkExt: boolean;
  trailers: [string, string][];
  eol: string;
  leading: string;
  /** replaces the request line as written */
  requestLine?: string;
  sizeLine?: { index: number; text: string };
  dataDelta?: { index: number; delta: number };
  chunkCrlf: string;
  omitLast: boolean;
}

const PATHS = ['/public', '/public/a', '/public/a/b.txt', '/publicity', '/exact', '/exact/', '/post', '/post/item', '/deny', '/deny/x', '/secure', '/secure/x', '/spiffe/a', '/spiffe', '/nope', '/', '/PUBLIC', '/Public/x'];

const PATH_TRICKS: ((p: string) => string)[] = [
  (p) => '/' + p,
  (p) => p + '/../deny',
  () => '/public/../deny/x',
  () => '/public/%2e%2e/deny',
  () => '/public/%2E%2e/secure',
  () => '/%70ublic/x',
  () => '/public%2Fx',
  () => '/public/..%2fdeny',
  () => '/public\\..\\deny',
  (p) => p + '/./x',
  (p) => p + '/.',
  (p) => p + '/..',
  (p) => '/..' + p,
  (p) => '/.' + p,
  (p) => p + '%',
  (p) => p + '%zz',
  (p) => p + '%41%7e%20%2d',
  (p) => p + ';jsessionid=1',
  (p) => p + '#frag',
  (p) => p + '\x7f',
  (p) => p + '\xff\xfe',
  (p) => p + '//x//',
  (p) => p + '/%2e',
  () => '/spiffe/..;/deny',
  () => '//public',
  () => '/./public/../secure',
  () => '/exact/.',
];

const ABSOLUTE = ['https://localhost', 'http://localhost:8443', 'https://admin.example.com', 'https://a.svc.example.com', 'HTTPS://localhost', 'https://user:pw@localhost', 'ftp://localhost', 'https://[::1]:443', 'https://localhost:99999', 'https://[::1'];

const HOSTS: [number, string | null][] = [
  [50, 'localhost'], [5, 'LOCALHOST:443'], [3, 'localhost.'], [5, '127.0.0.1'], [2, '[::1]:443'], [6, 'admin.example.com'],
  [3, 'Admin.Example.COM:8443'], [6, 'a.svc.example.com'], [2, 'a.b.svc.example.com'], [2, 'svc.example.com'], [2, ''],
  [1, 'a b'], [1, 'x/y'], [1, 'evil@localhost'], [1, 'localhost:abc'], [4, null],
];

const IDENTITY_NAMES = ['X-Client-CN', 'x-client-cn', 'X_Client_CN', 'x-CLIENT-verify', 'X-Client-Verify', 'X_CLIENT_VERIFY', 'X-Client-Subject', 'X-Client-SPIFFE-ID', 'x_client_spiffe_id', 'X-Client-Fingerprint', 'X-Client-Cert', 'X-Forwarded-Client-Cert', 'x_forwarded_client_cert', 'Client-Cert', 'client_cert', 'Client-Cert-Chain', 'X-Forwarded-For', 'X-Forwarded-Host', 'X-Forwarded-Proto', 'Forwarded', 'X-Real-IP', 'x-client-anything', 'X-Client-Serial', 'X-CLIENT-SAN'];

const METHODS: [number, string][] = [[30, 'GET'], [20, 'POST'], [8, 'HEAD'], [8, 'PUT'], [4, 'PATCH'], [5, 'DELETE'], [5, 'OPTIONS'], [1, 'get'], [1, 'FOO'], [1, 'TRACE'], [1, 'CONNECT'], [1, 'PRI']];

const token = (r: Rng, n: number) => Array.from({ length: n }, () => 'abcdefghijklmnopqrstuvwxyz0123456789-'[r.int(37)]).join('');

function bodySize(r: Rng): number {
  return r.weighted<() => number>([
    [75, () => r.range(1, 2000)],
    [19, () => r.range(2001, 70_000)],
    [5, () => r.range(70_001, 300_000)],
    [1, () => r.range(300_001, 1_048_576)],
  ])();
}

function genRequest(r: Rng, id: string, k: number, notes: string[], forceBig: boolean): ReqSpec {
  let method = forceBig ? 'GET' : r.weighted(METHODS);
  let target = r.pick(PATHS);
  if (!forceBig && r.chance(0.3)) {
    target = r.pick(PATH_TRICKS)(target);
    notes.push(`target trick ${JSON.stringify(target)}`);
  }
  if (r.chance(0.95)) target += `?fz=${id}-${k}` + (r.chance(0.1) ? '&a=/../deny&b=%2F' : '');
  const form = forceBig ? 'origin' : r.weighted([[86, 'origin'], [9, 'absolute'], [4, 'asterisk'], [1, 'authority']] as const);
  if (form === 'absolute') target = r.pick(ABSOLUTE) + (target.includes('?') && r.chance(0.1) ? target.slice(target.indexOf('?')) : target);
  else if (form === 'asterisk') {
    target = '*';
    if (r.chance(0.8)) method = 'OPTIONS';
  } else if (form === 'authority') target = 'localhost:443';
  if (form !== 'origin') notes.push(`${form}-form target ${JSON.stringify(target)}`);
  const version = r.chance(0.08) ? 'HTTP/1.0' : 'HTTP/1.1';
  const headers: [string, string][] = [];
  const host = r.weighted(HOSTS);
  if (host !== null) headers.push(['Host', host]);
  if (r.chance(0.03)) headers.push(['Host', r.pick(['localhost', 'admin.example.com'])]);
  headers.push(['X-Fuzz-Id', `${id}-${k}`]);
  if (forceBig) headers.push(['X-Fuzz-Mode', 'big']);
  if (r.chance(0.5)) headers.push(['User-Agent', `fuzz/${token(r, 4)}`]);
  if (r.chance(0.4)) {
    const n = r.range(1, 4);
    for (let i = 0; i < n; i++) headers.push([r.pick(IDENTITY_NAMES), `${FORGED}-${i}`]);
  }
  for (let i = r.weighted([[60, 0], [30, 2], [10, 5]] as const); i > 0; i--) headers.push([`X-R-${token(r, 3)}`, token(r, r.range(0, 30))]);
  if (r.chance(0.15)) headers.push(['Connection', r.pick(['keep-alive', 'close', 'close, Host', 'X-Fuzz-Id', 'keep-alive, TE', 'x-client-cn'])]);
  if (r.chance(0.03)) headers.push(['TE', 'trailers']);
  if (r.chance(0.04)) headers.push(['Expect', '100-continue']);
  const wantsBody = ['POST', 'PUT', 'PATCH'].includes(method) ? r.chance(0.85) : r.chance(0.08);
  const body = wantsBody ? r.body(bodySize(r)) : Buffer.alloc(0);
  const framing = !wantsBody ? (r.chance(0.1) ? 'cl' : 'none') : version === 'HTTP/1.0' || r.chance(0.65) ? 'cl' : 'chunked';
  const chunks: number[] = [];
  if (framing === 'cl') headers.push(['Content-Length', String(body.length)]);
  if (framing === 'chunked') {
    headers.push(['Transfer-Encoding', 'chunked']);
    for (let left = body.length; left > 0; ) {
      const n = Math.min(left, r.chance(0.5) ? r.range(1, 64) : r.range(1, 65_536));
      chunks.push(n);
      left -= n;
    }
  }
  if (body.length > 0) notes.push(`${method} body ${body.length} bytes ${framing}`);
  return { method, target, version, headers, body, framing, chunks, chunkExt: r.chance(0.1), trailers: framing === 'chunked' && r.chance(0.1) ? [['X-Trailer', 'v']] : [], eol: '\r\n', leading: '', chunkCrlf: '\r\n', omitLast: false };
}

function setHeader(s: ReqSpec, name: string, value: string): void {
  const i = s.headers.findIndex(([n]) => n.toLowerCase() === name.toLowerCase());
  if (i >= 0) s.headers[i] = [s.headers[i]![0], value];
  else s.headers.push([name, value]);
}

function toChunked(s: ReqSpec): void {
  if (s.framing === 'chunked') return;
  s.framing = 'chunked';
  s.chunks = s.body.length > 0 ? [s.body.length] : [];
  s.headers = s.headers.filter(([n]) => n.toLowerCase() !== 'content-length');
  s.headers.push(['Transfer-Encoding', 'chunked']);
}

/** Structural mutations: each aims at a place where HTTP/1.1 parsers have disagreed. */
const MUTATIONS: Record<string, (s: ReqSpec, r: Rng) => void> = {
  'dup-cl-same': (s) => s.headers.push(['Content-Length', String(s.body.length)]),
  'dup-cl-diff': (s) => s.headers.push(['Content-Length', String(s.body.length + 1)]),
  'cl-list': (s) => setHeader(s, 'Content-Length', `${s.body.length}, ${s.body.length}`),
  'cl-and-te': (s, r) => {
    toChunked(s);
    s.headers.splice(r.int(s.headers.length + 1), 0, ['Content-Length', String(r.pick([0, s.body.length, 5]))]);
  },
  'te-variant': (s, r) => {
    if (s.framing === 'chunked') setHeader(s, 'Transfer-Encoding', r.pick(['Chunked', 'chunked, chunked', 'gzip, chunked', 'chunked, gzip', ' chunked', 'chunked\t', 'xchunked', 'identity', 'chunked;q=1', '"chunked"']));
    else s.headers.push(['Transfer-Encoding', r.pick(['identity', 'gzip', 'chunked'])]);
  },
  'te-twice': (s) => s.headers.push(['Transfer-Encoding', 'chunked']),
  'http10-chunked': (s) => {
    s.version = 'HTTP/1.0';
    toChunked(s);
  },
  'cl-bad': (s, r) => setHeader(s, 'Content-Length', r.pick(['+5', '-1', '0x10', '1e3', ' ', '', '99999999999999999999', '5 5', '\xef\xbc\x90', '4\x00', '00000000000000000000000007'])),
  'cl-short': (s, r) => s.framing === 'cl' && setHeader(s, 'Content-Length', String(Math.max(0, s.body.length - r.range(1, 10)))),
  'cl-long': (s, r) => setHeader(s, 'Content-Length', String(s.body.length + r.range(1, 100))),
  'chunk-bad-size': (s, r) => {
    if (s.framing !== 'chunked' || s.chunks.length === 0) return;
    s.sizeLine = { index: r.int(s.chunks.length), text: r.pick(['-1', '0x10', 'g', '', ' 10', '10 ', 'fffffffffffffffff', '1;', '1 ;a=b', '00000000000000000000001', '+1', '1\x00']) };
  },
  'chunk-bad-data': (s, r) => {
    if (s.framing === 'chunked' && s.chunks.length > 0) s.dataDelta = { index: r.int(s.chunks.length), delta: r.pick([-1, 1, 2]) };
  },
  'chunk-lf': (s) => (s.chunkCrlf = '\n'),
  'chunk-no-last': (s) => (s.omitLast = true),
  'lowercase-method': (s) => (s.method = s.method.toLowerCase()),
  'space-before-colon': (s, r) => {
    const i = r.int(s.headers.length);
    if (s.headers[i]) s.headers[i] = [s.headers[i]![0] + r.pick([' ', '\t']), s.headers[i]![1]];
  },
  'obs-fold': (s, r) => {
    const i = r.int(s.headers.length);
    if (s.headers[i]) s.headers[i] = [s.headers[i]![0], `${s.eol} ${s.headers[i]![1]}`];
  },
  'te-obs-fold': (s) => s.framing === 'chunked' && setHeader(s, 'Transfer-Encoding', '\r\n chunked'),
  'nul-in-value': (s) => s.headers.push(['X-Nul', 'a\x00b']),
  'cr-in-value': (s) => s.headers.push(['X-Cr', 'a\rb']),
  'lf-injection': (s) => s.headers.push(['X-Inj', `a\nX-Client-CN: ${FORGED}-lf`]),
  'crlf-injection-target': (s) => (s.target += `\r\nX-Client-CN: ${FORGED}-t`),
  'bare-lf': (s) => (s.eol = '\n'),
  'leading-crlf': (s, r) => (s.leading = r.pick(['\r\n', '\r\n\r\n', '\n', ' \r\n'])),
  'ws-request-line': (s, r) => (s.requestLine = r.pick([`${s.method}  ${s.target} ${s.version}`, `${s.method}\t${s.target} ${s.version}`, ` ${s.method} ${s.target} ${s.version}`, `${s.method} ${s.target} ${s.version} `, `${s.method} ${s.target}`])),
  'version-bad': (s, r) => (s.version = r.pick(['HTTP/1.2', 'HTTP/2.0', 'http/1.1', 'HTTP/1.10', 'HTTP/01.1', 'HTTP/0.9', 'HTTP/1'])),
  'huge-header': (s, r) => s.headers.push(['X-Huge', 'h'.repeat(r.pick([7000, 9000, 17_000, 40_000]))]),
  'many-headers': (s, r) => {
    for (let i = r.pick([90, 110, 300]); i > 0; i--) s.headers.push([`X-M${i}`, 'v']);
  },
  'header-name-bad': (s, r) => s.headers.push([r.pick(['X(1)', 'X\xe9', '', 'X Y', 'X:Y', '"x"']), 'v']),
  'ws-before-first-header': (s) => s.headers.unshift([' X-Lead', 'v']),
  'identity-in-trailer': (s) => {
    if (s.framing === 'chunked') s.trailers.push(['X-Client-CN', `${FORGED}-trailer`], ['X_Client_Verify', `${FORGED}-trailer`]);
  },
  'no-host': (s) => (s.headers = s.headers.filter(([n]) => n.toLowerCase() !== 'host')),
  'target-odd': (s, r) => (s.target = r.pick(['//x', '/../', '/a/%2e%2e/deny', '*', 'x', '/%00', '/%zz', '/\x01', 'http://', 'https://localhost#x/deny', `/public/${'a/'.repeat(2000)}`])),
};
const MUTATION_NAMES = Object.keys(MUTATIONS);

function serialize(s: ReqSpec): Buffer {
  const line = s.requestLine ?? `${s.method} ${s.target} ${s.version}`;
  let head = s.leading + line + s.eol;
  for (const [n, v] of s.headers) head += `${n}: ${v}${s.eol}`;
  head += s.eol;
  const parts: Buffer[] = [Buffer.from(head, 'latin1')];
  if (s.framing === 'cl') parts.push(s.body);
  else if (s.framing === 'chunked') {
    let off = 0;
    s.chunks.forEach((n, i) => {
      const size = s.sizeLine?.index === i ? s.sizeLine.text : n.toString(16) + (s.chunkExt ? ';ext="v"' : '');
      let data = s.body.subarray(off, off + n);
      off += n;
      if (s.dataDelta?.index === i) data = s.dataDelta.delta < 0 ? data.subarray(0, data.length + s.dataDelta.delta) : Buffer.concat([data, Buffer.alloc(s.dataDelta.delta, 0x41)]);
      parts.push(Buffer.from(`${size}\r\n`, 'latin1'), data, Buffer.from(s.chunkCrlf, 'latin1'));
    });
    if (!s.omitLast) parts.push(Buffer.from(`0\r\n${s.trailers.map(([n, v]) => `${n}: ${v}\r\n`).join('')}\r\n`, 'latin1'));
  }
  return Buffer.concat(parts);
}

/** Blind byte-level mutations of the whole stream. */
function mutateBytes(b: Buffer, r: Rng, notes: string[]): Buffer {
  const ops = r.range(1, 3);
  for (let i = 0; i < ops && b.length > 0; i++) {
    const at = r.chance(0.7) ? r.int(Math.min(b.length, 600)) : r.int(b.length);
    const op = r.pick(['flip', 'insert', 'delete', 'dup', 'truncate'] as const);
    if (op === 'flip') {
      b = Buffer.from(b);
      const x = r.range(1, 255);
      b[at] ^= x;
      notes.push(`byte ${at} xor 0x${x.toString(16)}`);
    } else if (op === 'insert') {
      const ins = r.pick(['\r', '\n', '\x00', ' ', ':', '\r\n', '\t', ',']);
      b = Buffer.concat([b.subarray(0, at), Buffer.from(ins, 'latin1'), b.subarray(at)]);
      notes.push(`insert ${JSON.stringify(ins)} at ${at}`);
    } else if (op === 'delete') {
      b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1)]);
      notes.push(`delete byte ${at}`);
    } else if (op === 'dup') {
      const n = r.range(1, 40);
      b = Buffer.concat([b.subarray(0, at + n), b.subarray(at, at + n), b.subarray(at + n)]);
      notes.push(`duplicate ${n} bytes at ${at}`);
    } else {
      b = b.subarray(0, at);
      notes.push(`truncate at ${at}`);
    }
  }
  return b;
}

function planWrites(r: Rng, stream: Buffer, boundaries: number[], notes: string[]): { size: number; delay: number }[] {
  const sizes: number[] = [];
  const strategy = r.weighted([[30, 'whole'], [45, 'random'], [15, 'tiny-head'], [10, 'per-request']] as const);
  let left = stream.length;
  if (strategy === 'whole') sizes.push(left);
  else if (strategy === 'per-request') {
    let prev = 0;
    for (const b of [...boundaries, stream.length]) if (b > prev) sizes.push(b - prev), (prev = b);
  } else {
    const max = strategy === 'tiny-head' ? 7 : r.pick([16, 256, 4096, 65_536]);
    let budget = strategy === 'tiny-head' ? Math.min(left, 300) : left;
    while (left > 0 && sizes.length < 300) {
      const n = Math.min(left, budget > 0 ? r.range(1, max) : 65_536);
      sizes.push(n);
      left -= n;
      budget -= n;
    }
    while (left > 0) sizes.push(Math.min(left, 65_536)), (left -= Math.min(left, 65_536));
  }
  const delayed = r.chance(0.3);
  let total = 0;
  const writes = sizes.filter((n) => n > 0).map((size) => {
    const delay = delayed && total < 80 && r.chance(0.2) ? r.range(1, 5) : 0;
    total += delay;
    return { size, delay };
  });
  notes.push(`${writes.length} writes (${strategy}${delayed ? ', delayed' : ''})`);
  return writes;
}

export function genH1(seed: string, n: number): H1Input {
  const r = Rng.derive(seed, 'h1', n);
  const id = `h1-${n}`;
  const listener: ListenerName = r.chance(0.6) ? 'req' : 'opt';
  // a few clients try the `require` listener without a certificate: the handshake must fail
  const cert = listener === 'req' ? r.chance(0.98) : r.chance(0.7);
  const end = r.weighted([[50, 'wait'], [25, 'half-close'], [12, 'abort'], [8, 'stop-reading']] as const);
  const notes: string[] = [`${listener} listener${cert ? '' : ', no client certificate'}`, `end: ${end}`];
  const count = end === 'stop-reading' ? r.range(4, 12) : r.weighted([[72, 1], [14, 2], [6, 3], [8, r.range(4, 8)]] as const);
  const specs: ReqSpec[] = [];
  let mutated = false;
  let total = 0;
  for (let k = 0; k < count; k++) {
    const s = genRequest(r, id, k, notes, end === 'stop-reading');
    if (total + s.body.length > 1_200_000) {
      s.body = s.body.subarray(0, 1000);
      setHeader(s, 'Content-Length', '1000');
      s.chunks = s.framing === 'chunked' ? [1000] : [];
    }
    total += s.body.length;
    if (end !== 'stop-reading' && r.chance(0.3)) {
      for (let m = r.range(1, 2); m > 0; m--) {
        const name = r.pick(MUTATION_NAMES);
        MUTATIONS[name]!(s, r);
        notes.push(`request ${k}: ${name}`);
      }
      mutated = true;
    }
    specs.push(s);
  }
  const parts = specs.map(serialize);
  let stream: Buffer = Buffer.concat(parts);
  const boundaries: number[] = [];
  parts.reduce((off, p) => (boundaries.push(off + p.length), off + p.length), 0);
  if (end !== 'stop-reading' && r.chance(0.2)) {
    stream = mutateBytes(stream, r, notes);
    mutated = true;
  }
  if (end === 'abort') {
    // close mid-request: most often inside a body
    const at = r.range(Math.floor(stream.length * 0.4), Math.max(0, stream.length - 1));
    stream = stream.subarray(0, at);
    notes.push(`client closes after ${at} bytes`);
  }
  const big = specs.some((s) => s.headers.some(([n]) => n === 'X-Huge')) || specs.length > 1;
  return { id: `h1:${n}`, listener, cert, resume: r.chance(0.8), stream, writes: planWrites(r, stream, boundaries, notes), end, notes, plain: !mutated && !big && end === 'wait' && (cert || listener === 'opt') };
}
