// Clients and an upstream that do not normalize anything, for the request-normalization
// tests: HTTP/1.1 written as raw bytes on an mTLS socket (so no client library fixes the
// method, Host or path first), one HTTP/2 request on its own session, and an upstream
// that records each request head byte for byte (Node's http.Server would refuse a
// lowercase method or a large head before a test could see what was forwarded).
import tls from 'node:tls';
import net from 'node:net';
import http2 from 'node:http2';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { PkiEntry, TestPki } from './pki.js';

export interface RawResponse {
  /** 0 when the connection closed without a response */
  status: number;
  /** lowercased names; a repeated name keeps its last value */
  headers: Record<string, string>;
  body: string;
  raw: string;
}

/**
 * Writes `request` (a whole HTTP/1.1 request, or several) on a new mTLS connection and
 * resolves with the first response once the proxy closes the connection, so requests
 * should carry `Connection: close`.
 */
export function rawHttp1(port: number, pki: TestPki, request: string | Buffer, who: PkiEntry = pki.client): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: readFileSync(pki.ca.cert), cert: readFileSync(who.cert), key: readFileSync(who.key) });
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => chunks.push(d));
    s.once('secureConnect', () => s.write(request));
    const done = () => resolve(parseResponse(Buffer.concat(chunks).toString('latin1')));
    s.once('end', done);
    s.once('close', done);
    s.once('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' ? done() : reject(err)));
    s.setTimeout(15_000, () => s.destroy(new Error('no answer within 15 s')));
  });
}

function parseResponse(raw: string): RawResponse {
  const m = /^HTTP\/1\.1 (\d{3})/.exec(raw);
  const end = raw.indexOf('\r\n\r\n');
  const headers: Record<string, string> = {};
  if (end > 0) {
    for (const line of raw.slice(0, end).split('\r\n').slice(1)) {
      const c = line.indexOf(':');
      headers[line.slice(0, c).toLowerCase()] = line.slice(c + 1).trim();
    }
  }
  return { status: m ? Number(m[1]) : 0, headers, body: end > 0 ? raw.slice(end + 4) : '', raw };
}

export interface H2Result {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: string;
  /** set when the stream was reset or the session failed instead of answering */
  error?: string;
}

/** One HTTP/2 request on a fresh mTLS session; headers are sent as given. */
export function h2Request(port: number, pki: TestPki, headers: http2.OutgoingHttpHeaders, who: PkiEntry = pki.client, body?: string): Promise<H2Result> {
  return new Promise((resolve) => {
    const session = http2.connect(`https://localhost:${port}`, { ca: readFileSync(pki.ca.cert), cert: readFileSync(who.cert), key: readFileSync(who.key) });
    let settled = false;
    const finish = (r: H2Result) => {
      if (settled) return;
      settled = true;
      session.close();
      resolve(r);
    };
    session.on('error', (err: Error) => finish({ status: 0, headers: {}, body: '', error: err.message }));
    const req = session.request(headers, { endStream: body === undefined });
    let status = 0;
    let h: http2.IncomingHttpHeaders = {};
    let data = '';
    req.setEncoding('utf8');
    req.on('response', (r) => {
      h = r;
      status = Number(r[':status']);
    });
    req.on('data', (d: string) => (data += d));
    req.on('end', () => finish({ status, headers: h, body: data }));
    req.on('error', (err: Error & { code?: string }) => finish({ status, headers: h, body: data, error: `${err.code ?? ''} ${err.message}` }));
    req.on('close', () => {
      if (req.rstCode) finish({ status, headers: h, body: data, error: `RST_STREAM ${req.rstCode}` });
    });
    if (body !== undefined) req.end(body);
  });
}

export interface RawH2Result {
  /** the response's DATA on stream 1, as text */
  data: string;
  /** RST_STREAM error code on stream 1, or GOAWAY's, when the server sent one */
  reset?: number;
  /** the response head arrived (a HEADERS frame on stream 1) */
  headers: boolean;
}

/**
 * One HTTP/2 request written frame by frame, for what Node's client refuses to send
 * (two Host fields, fields in a chosen order). `fields` go out in order as HPACK literals
 * without indexing; names and values must be shorter than 127 bytes.
 */
export function rawH2(port: number, pki: TestPki, fields: [string, string][], who: PkiEntry = pki.client): Promise<RawH2Result> {
  const frame = (type: number, flags: number, stream: number, payload: Buffer) => {
    const h = Buffer.alloc(9);
    h.writeUIntBE(payload.length, 0, 3);
    h[3] = type;
    h[4] = flags;
    h.writeUInt32BE(stream, 5);
    return Buffer.concat([h, payload]);
  };
  const str = (v: string) => {
    const b = Buffer.from(v, 'latin1');
    if (b.length >= 127) throw new Error('rawH2 writes short strings only');
    return Buffer.concat([Buffer.from([b.length]), b]);
  };
  const block = Buffer.concat(fields.map(([n, v]) => Buffer.concat([Buffer.from([0]), str(n), str(v)])));
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ALPNProtocols: ['h2'], ca: readFileSync(pki.ca.cert), cert: readFileSync(who.cert), key: readFileSync(who.key) });
    const result: RawH2Result = { data: '', headers: false };
    let buf = Buffer.alloc(0);
    const done = () => {
      s.destroy();
      resolve(result);
    };
    s.once('secureConnect', () => {
      s.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(4, 0, 0, Buffer.alloc(0)), frame(1, 0x5, 1, block)]));
    });
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) return;
        const [type, flags, stream] = [buf[3]!, buf[4]!, buf.readUInt32BE(5) & 0x7fffffff];
        const payload = buf.subarray(9, 9 + len);
        buf = buf.subarray(9 + len);
        if (type === 4 && !(flags & 1)) s.write(frame(4, 1, 0, Buffer.alloc(0))); // SETTINGS ACK
        if (stream !== 1 && type !== 7) continue;
        if (type === 1) result.headers = true;
        if (type === 0) result.data += payload.toString('utf8');
        if (type === 3) result.reset = payload.readUInt32BE(0);
        if (type === 7) result.reset = payload.readUInt32BE(4);
        if (type === 3 || type === 7 || ((type === 0 || type === 1) && flags & 1)) return done();
      }
    });
    s.once('close', () => resolve(result));
    s.once('error', reject);
    s.setTimeout(15_000, () => s.destroy(new Error('no answer within 15 s')));
  });
}

export interface RawHead {
  /** the request line as sent, e.g. "GET /a HTTP/1.1" */
  line: string;
  method: string;
  target: string;
  /** [name, value] in order, as sent */
  fields: [string, string][];
  body: Buffer;
}

export interface RawUpstream {
  url: string;
  received: RawHead[];
  close(): Promise<void>;
}

/**
 * An HTTP/1.1 upstream that parses nothing it does not have to: it records each request
 * head as sent, reads a Content-Length or chunked body, and answers 200 "ok" on a kept-
 * alive connection.
 */
export async function startRawUpstream(): Promise<RawUpstream> {
  const received: RawHead[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
        const fields = lines.slice(1).map((l): [string, string] => {
          const c = l.indexOf(':');
          return [l.slice(0, c), l.slice(c + 1).trim()];
        });
        const get = (n: string) => fields.find(([k]) => k.toLowerCase() === n)?.[1];
        let rest = buf.subarray(end + 4);
        let body = Buffer.alloc(0);
        const cl = get('content-length');
        if (cl !== undefined) {
          if (rest.length < Number(cl)) return;
          body = rest.subarray(0, Number(cl));
          rest = rest.subarray(Number(cl));
        } else if (get('transfer-encoding')?.toLowerCase() === 'chunked') {
          const parts: Buffer[] = [];
          let off = 0;
          for (;;) {
            const eol = rest.indexOf('\r\n', off);
            if (eol < 0) return;
            const size = parseInt(rest.subarray(off, eol).toString('latin1'), 16);
            if (rest.length < eol + 2 + size + 2) return;
            if (size === 0) {
              off = eol + 4;
              break;
            }
            parts.push(rest.subarray(eol + 2, eol + 2 + size));
            off = eol + 2 + size + 2;
          }
          body = Buffer.concat(parts);
          rest = rest.subarray(off);
        }
        buf = rest;
        const [method = '', target = ''] = lines[0]!.split(' ');
        received.push({ line: lines[0]!, method, target, fields, body });
        sock.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok');
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received,
    close: () =>
      new Promise((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** The JSON error of SPEC §5, or a failed assertion-friendly stand-in when the body is not one. */
export function jsonError(body: string): { error?: string; message?: string; request_id?: string } {
  try {
    return JSON.parse(body) as { error?: string; message?: string };
  } catch {
    return { error: `(not JSON: ${body.slice(0, 200)})` };
  }
}
