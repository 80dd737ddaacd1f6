// ChunkedDecoder, the zero-copy reader of chunked response bodies: every split of the
// input decodes the same, data arrives as views of the input, and malformed framing
// (the cases llhttp refuses in strict mode) is an error with an HPE_ code, not a guess.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChunkedDecoder, plainChunked } from './h1-wire.js';
import { HTTPParser, HEAD_HAS_BODY } from '../platform/node-internals.js';

interface Decoded {
  body: string;
  trailers: string[];
  /** offset past the body in the last piece fed, or -1 */
  end: number;
  error?: string;
}

/** Feeds `wire` in the given piece sizes (the last piece takes the rest). */
function decode(wire: string | Buffer, sizes: number[] = [], maxTrailer = 16 * 1024): Decoded {
  const buf = typeof wire === 'string' ? Buffer.from(wire, 'latin1') : wire;
  const dec = new ChunkedDecoder(maxTrailer);
  let body = '';
  let off = 0;
  let end = -1;
  for (let k = 0; off < buf.length; k++) {
    const n = sizes[k] ?? buf.length - off;
    const piece = buf.subarray(off, off + n);
    off += n;
    const r = dec.feed(piece, 0, (d) => (body += d.toString('latin1')));
    if (r instanceof Error) return { body, trailers: dec.trailers, end: -1, error: r.code };
    end = r;
    if (r >= 0) break;
  }
  return { body, trailers: dec.trailers, end };
}

const WIRE = '6\r\nhello \r\n5;name=value;x\r\nworld\r\nA \t;ext\r\n0123456789\r\n0\r\nX-Sum:  abc \r\nX-Count:2\r\n\r\n';
const BODY = 'hello world0123456789';

test('a chunked body with extensions and trailers: body, trailers (OWS trimmed) and the end offset', () => {
  const d = decode(WIRE);
  assert.equal(d.error, undefined);
  assert.equal(d.body, BODY);
  assert.deepEqual(d.trailers, ['X-Sum', 'abc', 'X-Count', '2']);
  assert.equal(d.end, WIRE.length);
});

test('every split into two pieces, and byte by byte, decodes the same', () => {
  for (let cut = 1; cut < WIRE.length; cut++) {
    const d = decode(WIRE, [cut]);
    assert.equal(d.body, BODY, `cut at ${cut}`);
    assert.deepEqual(d.trailers, ['X-Sum', 'abc', 'X-Count', '2'], `cut at ${cut}`);
  }
  const d = decode(WIRE, new Array<number>(WIRE.length).fill(1));
  assert.equal(d.body, BODY);
  assert.equal(d.end, 1);
});

test('data is handed on as views of the input, not copies', () => {
  const buf = Buffer.from('4\r\nabcd\r\n0\r\n\r\n', 'latin1');
  const pieces: Buffer[] = [];
  const r = new ChunkedDecoder(1024).feed(buf, 0, (d) => pieces.push(d));
  assert.equal(r, buf.length);
  assert.equal(pieces.length, 1);
  assert.equal(pieces[0]!.buffer, buf.buffer);
  assert.equal(pieces[0]!.byteOffset, buf.byteOffset + 3);
});

test('feeding from an offset, and bytes after the body: the returned offset says where the body ended', () => {
  const buf = Buffer.from('HEAD3\r\nabc\r\n0\r\n\r\nHTTP/1.1 200 OK', 'latin1');
  let body = '';
  const r = new ChunkedDecoder(1024).feed(buf, 4, (d) => (body += d.toString()));
  assert.equal(body, 'abc');
  assert.equal(r, buf.indexOf('HTTP/1.1'));
});

test('upper- and lower-case hex, leading zeros, and a 13-digit size are read', () => {
  assert.equal(decode('00000000000000000000000001\r\nx\r\n0\r\n\r\n').error, 'HPE_INVALID_CHUNK_SIZE', 'more than 13 digits, even zeros');
  assert.equal(decode('0a\r\n0123456789\r\n0\r\n\r\n').body, '0123456789');
  assert.equal(decode('A\r\n0123456789\r\n000\r\n\r\n').body, '0123456789');
  // a 13-digit size is accepted (the body is just not all here)
  const d = decode('FFFFFFFFFFFFF\r\nabc');
  assert.equal(d.error, undefined);
  assert.equal(d.body, 'abc');
  assert.equal(d.end, -1);
});

test('malformed framing is refused with a code', () => {
  const cases: [string, string, string][] = [
    ['no size', '\r\nabc\r\n0\r\n\r\n', 'HPE_INVALID_CHUNK_SIZE'],
    ['a non-hex size', 'g\r\nabc\r\n0\r\n\r\n', 'HPE_INVALID_CHUNK_SIZE'],
    ['a sign', '-1\r\nabc\r\n0\r\n\r\n', 'HPE_INVALID_CHUNK_SIZE'],
    ['whitespace inside the size', '1 2\r\nabc\r\n0\r\n\r\n', 'HPE_INVALID_CHUNK_SIZE'],
    ['14 hex digits', 'FFFFFFFFFFFFFF\r\nabc', 'HPE_INVALID_CHUNK_SIZE'],
    ['a bare LF after the size', '3\nabc\r\n0\r\n\r\n', 'HPE_INVALID_CHUNK_SIZE'],
    ['CR without LF after the size', '3\rabc\r\n0\r\n\r\n', 'HPE_STRICT'],
    ['data longer than its size', '3\r\nabcd\r\n0\r\n\r\n', 'HPE_STRICT'],
    ['a bare LF after the data', '3\r\nabc\n0\r\n\r\n', 'HPE_STRICT'],
    ['a control character in an extension', '3;a=\x01\r\nabc\r\n0\r\n\r\n', 'HPE_STRICT'],
    ['a bare LF in an extension', '3;a\nb\r\nabc\r\n0\r\n\r\n', 'HPE_STRICT'],
    ['an obs-fold trailer line', '0\r\nX-A: 1\r\n continued\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
    ['a trailer without a colon', '0\r\nX-A\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
    ['whitespace before the colon', '0\r\nX-A : 1\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
    ['a bare LF ending a trailer', '0\r\nX-A: 1\n\r\n', 'HPE_STRICT'],
    ['a bare LF ending the trailers', '0\r\n\n', 'HPE_STRICT'],
  ];
  for (const [what, wire, code] of cases) {
    assert.equal(decode(wire).error, code, what);
    // the same byte by byte
    assert.equal(decode(wire, new Array<number>(wire.length).fill(1)).error, code, `${what}, byte by byte`);
  }
});

test('a chunk-size line and the trailers are bounded', () => {
  assert.equal(decode(`3;${'x'.repeat(16 * 1024)}\r\nabc\r\n0\r\n\r\n`).error, 'HPE_CHUNK_EXTENSIONS_OVERFLOW');
  assert.equal(decode(`3;${'x'.repeat(16 * 1024 - 10)}\r\nabc\r\n0\r\n\r\n`).body, 'abc');
  assert.equal(decode(`0\r\nX-Big: ${'v'.repeat(2000)}\r\n\r\n`, [], 1024).error, 'HPE_HEADER_OVERFLOW');
  assert.deepEqual(decode(`0\r\nX-Big: ${'v'.repeat(900)}\r\n\r\n`, [], 1024).trailers, ['X-Big', 'v'.repeat(900)]);
});

test('plainChunked: only a lone "chunked" coding without content-length', () => {
  assert.equal(plainChunked(['Transfer-Encoding', 'chunked']), true);
  assert.equal(plainChunked(['transfer-encoding', ' Chunked ']), true);
  assert.equal(plainChunked(['Transfer-Encoding', 'gzip, chunked']), false);
  assert.equal(plainChunked(['Transfer-Encoding', 'chunked', 'Transfer-Encoding', 'chunked']), false);
  assert.equal(plainChunked(['Transfer-Encoding', 'chunked', 'Content-Length', '3']), false);
  assert.equal(plainChunked(['Content-Length', '3']), false);
  assert.equal(plainChunked([]), false);
});

/** How llhttp (Node's own parser, strict mode) reads `wire` as the body of a chunked response. */
function viaLlhttp(wire: Buffer): string {
  const p = new HTTPParser();
  p.initialize(HTTPParser.RESPONSE, {}, 0, 0);
  let body = '';
  let done = false;
  const trailers: string[] = [];
  p[HTTPParser.kOnHeadersComplete] = () => HEAD_HAS_BODY;
  p[HTTPParser.kOnBody] = (b: Buffer) => void (body += b.toString('latin1'));
  p[HTTPParser.kOnHeaders] = (h: string[]) => void trailers.push(...h);
  p[HTTPParser.kOnMessageComplete] = () => void (done = true);
  const head = Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n');
  let r = p.execute(Buffer.concat([head, wire]));
  // bytes after the body: llhttp reads them as the next message (or refuses them), the
  // decoder reports where the body ended; either way this response is all there is
  if (done && (r instanceof Error || r < head.length + wire.length)) return 'extra';
  // an unfinished body: end the open lines, one CRLF at a time, as ours is fed below
  for (let k = 0; k < 3 && !(r instanceof Error) && !done; k++) r = p.execute(Buffer.from('\r\n'));
  p.close();
  if (r instanceof Error) return 'refused';
  return done ? `ok ${body} ${JSON.stringify(trailers)}` : 'unfinished';
}

/** The decoder's verdict; bytes after the body are 'extra' (the connection closes), with where the body ended. */
function viaDecoder(wire: Buffer): string {
  const d = new ChunkedDecoder(16 * 1024);
  let body = '';
  let r = d.feed(wire, 0, (b) => (body += b.toString('latin1')));
  if (typeof r === 'number' && r >= 0 && r < wire.length) return `extra ${r}`;
  for (let k = 0; k < 3 && r === -1; k++) r = d.feed(Buffer.from('\r\n'), 0, () => undefined);
  if (r instanceof Error) return 'refused';
  return r >= 0 ? `ok ${body} ${JSON.stringify(d.trailers)}` : 'unfinished';
}

test('differential: on 20,000 mutated chunked bodies the decoder accepts, refuses and decodes exactly as llhttp does', () => {
  const bases = ['3\r\nabc\r\n0\r\n\r\n', '5;a=b\r\nhello\r\n0\r\nX-T: 1\r\n\r\n', 'A\r\n0123456789\r\n0\r\n\r\n', '1;q="x y";r\r\nz\r\n0\r\nA: 1\r\nB:2\r\n\r\n'];
  const alphabet = ['0', '1', '3', 'a', 'F', 'g', ' ', '\t', ';', '=', '"', '\\', '\r', '\n', '\r\n', 'x', ':', 'X-A', '\0', '\x7f', '\xe9', '-', '+'];
  let seed = 17;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const differ: string[] = [];
  for (let i = 0; i < 20_000; i++) {
    let s = bases[rnd(bases.length)]!;
    for (let j = 1 + rnd(3); j > 0; j--) {
      const at = rnd(s.length + 1);
      const t = alphabet[rnd(alphabet.length)]!;
      const op = rnd(3);
      s = op === 0 ? s.slice(0, at) + t + s.slice(at) : op === 1 ? s.slice(0, at) + s.slice(at + 1) : s.slice(0, at) + t + s.slice(at + 1);
    }
    const wire = Buffer.from(s, 'latin1');
    let a = viaLlhttp(wire);
    let b = viaDecoder(wire);
    if (b.startsWith('extra ')) {
      // the body up to where the decoder says it ended must read the same in llhttp, which
      // then either refuses the rest or (a stray CRLF) skips it; the decoder closes the
      // connection instead, like bytes after a content-length body
      const body = wire.subarray(0, Number(b.slice(6)));
      b = viaDecoder(body);
      a = ['extra', b].includes(a) ? viaLlhttp(body) : `${a} (whole input)`;
    }
    if (a !== b && differ.length < 10) differ.push(`${JSON.stringify(s)}: llhttp ${a}, decoder ${b}`);
  }
  assert.deepEqual(differ, []);
});
