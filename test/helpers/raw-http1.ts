// A raw HTTP/1.1 client on a real mTLS socket, for tests that need control over the exact
// bytes and their order (pipelining, split heads, bodies that stop halfway), with a
// minimal response reader (Content-Length, chunked and body-less responses).
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { once } from 'node:events';

export interface Parsed {
  status: number;
  headers: Record<string, string>;
  /** header names in the order and case they arrived */
  names: string[];
  body: string;
}

export interface RawConn {
  sock: tls.TLSSocket;
  /** the next complete response (isHead: it answers a HEAD request) */
  read(n?: number, isHead?: boolean): Promise<Parsed>;
  closed: Promise<void>;
  /** every byte received so far, latin1 */
  raw(): string;
}

/** A raw mTLS connection; `client` null connects without a client certificate. */
export async function connectRaw(port: number, pki: { ca: { cert: string }; client: { cert: string; key: string } }, client: { cert: string; key: string } | null = pki.client): Promise<RawConn> {
  const sock = tls.connect({
    host: '127.0.0.1',
    port,
    servername: 'localhost',
    ca: readFileSync(pki.ca.cert),
    ...(client ? { cert: readFileSync(client.cert), key: readFileSync(client.key) } : {}),
    ALPNProtocols: ['http/1.1'],
  });
  // writes after the proxy closed (a refused body) fail with EPIPE/ECONNRESET: the tests
  // look at what was read and at `closed`, not at write errors
  sock.on('error', () => undefined);
  await once(sock, 'secureConnect');
  let buf = Buffer.alloc(0);
  let all = '';
  let wake: (() => void) | undefined;
  sock.on('data', (c: Buffer) => {
    buf = Buffer.concat([buf, c]);
    all += c.toString('latin1');
    wake?.();
  });
  const closed = new Promise<void>((r) => sock.once('close', () => (wake?.(), r())));
  const more = () => new Promise<void>((r) => (wake = r));
  async function read(_n = 1, isHead = false): Promise<Parsed> {
    for (;;) {
      const end = buf.indexOf('\r\n\r\n');
      if (end >= 0) {
        const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
        const status = Number(lines[0]!.split(' ')[1]);
        const headers: Record<string, string> = {};
        const names: string[] = [];
        for (const l of lines.slice(1)) {
          const i = l.indexOf(':');
          names.push(l.slice(0, i));
          headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
        }
        let rest = buf.subarray(end + 4);
        const bodyless = isHead || status === 204 || status === 304 || (status >= 100 && status < 200);
        if (bodyless) {
          buf = rest;
          return { status, headers, names, body: '' };
        }
        if (headers['content-length'] !== undefined) {
          const len = Number(headers['content-length']);
          if (rest.length >= len) {
            buf = rest.subarray(len);
            return { status, headers, names, body: rest.subarray(0, len).toString() };
          }
        } else if (headers['transfer-encoding'] === 'chunked') {
          let body = '';
          let off = 0;
          let complete = false;
          for (;;) {
            const eol = rest.indexOf('\r\n', off);
            if (eol < 0) break;
            const size = parseInt(rest.subarray(off, eol).toString(), 16);
            if (size === 0) {
              if (rest.length >= eol + 4) {
                complete = true;
                rest = rest.subarray(eol + 4);
              }
              break;
            }
            if (rest.length < eol + 2 + size + 2) break;
            body += rest.subarray(eol + 2, eol + 2 + size).toString();
            off = eol + 2 + size + 2;
          }
          if (complete) {
            buf = rest;
            return { status, headers, names, body };
          }
        }
      }
      if (sock.destroyed) throw new Error(`connection closed before a complete response; got: ${JSON.stringify(all)}`);
      await more();
    }
  }
  return { sock, read, closed, raw: () => all };
}


export const rawGet = (path: string, extra = ''): string => `GET ${path} HTTP/1.1\r\nHost: localhost\r\n${extra}\r\n`;
