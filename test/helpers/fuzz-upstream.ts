// The fuzz test's upstream: a raw net.Server that parses what the proxy sends with the
// strict parser (fuzz-http1-parse.ts, 'upstream' mode), records every complete request
// (method, target, headers, body length and SHA-256) and every malformed one, and answers
// 200 in one of several ways so the proxy's response path is exercised too: plainly,
// chunked, early (before the request body has arrived), slowly, with a large body, or
// followed by a close. A request picks its way by an `x-fuzz-mode` header, else by a hash
// of its target, so a replayed input meets the same upstream behaviour.
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { RequestStreamParser, type ParsedHead, type ParsedRequest } from './fuzz-http1-parse.js';

export interface UpRecord {
  /** upstream connection number */
  conn: number;
  method: string;
  target: string;
  headers: [string, string][];
  bodyLength: number;
  bodySha: string;
}

export interface UpProblem {
  conn: number;
  reason: string;
  /** the head of the request the error is in (else the last bytes received), latin1 */
  excerpt: string;
}

export const UPSTREAM_MODES = ['normal', 'chunked', 'early', 'early-close', 'slow', 'close', 'big'] as const;
export type UpstreamMode = (typeof UPSTREAM_MODES)[number];

export interface RecordingUpstream {
  port: number;
  url: string;
  records: UpRecord[];
  problems: UpProblem[];
  /** requests whose connection closed before they were complete (the proxy gave up on them) */
  aborted: number;
  connections: number;
  close(): Promise<void>;
}

function fnv(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

export function modeFor(h: Pick<ParsedHead, 'target' | 'headers'>): UpstreamMode {
  const forced = h.headers.find(([n]) => n.toLowerCase() === 'x-fuzz-mode')?.[1];
  if (forced && (UPSTREAM_MODES as readonly string[]).includes(forced)) return forced as UpstreamMode;
  const x = fnv(h.target) % 100;
  return x < 58 ? 'normal' : x < 70 ? 'chunked' : x < 78 ? 'early' : x < 82 ? 'early-close' : x < 90 ? 'slow' : x < 96 ? 'close' : 'big';
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startRecordingUpstream(): Promise<RecordingUpstream> {
  const up: RecordingUpstream = { port: 0, url: '', records: [], problems: [], aborted: 0, connections: 0, close: async () => undefined };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    const id = ++up.connections;
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    const parser = new RequestStreamParser('upstream');
    // bytes kept for an excerpt if this connection ever sends something malformed
    let recent = Buffer.alloc(0);
    let chain: Promise<void> = Promise.resolve();
    let answeredEarly = false;
    const write = (s: string | Buffer): Promise<void> =>
      new Promise((resolve) => {
        if (sock.destroyed) return resolve();
        if (sock.write(s)) resolve();
        else {
          const done = () => {
            sock.off('close', done);
            sock.off('drain', done);
            resolve();
          };
          sock.once('drain', done);
          sock.once('close', done);
        }
      });
    const answer = async (h: ParsedHead, mode: UpstreamMode): Promise<void> => {
      if (sock.destroyed) return;
      const tag = Buffer.from(`ok ${h.method} ${h.target.slice(0, 200)}\n`);
      const head = h.method === 'HEAD';
      const close = mode === 'close' || mode === 'early-close' || h.closeAfter;
      const conn = close ? 'connection: close\r\n' : '';
      if (mode === 'chunked' || mode === 'big') {
        await write(`HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\nx-up-mode: ${mode}\r\n${conn}\r\n`);
        if (!head) {
          const pieces = mode === 'big' ? 16 : 3;
          for (let i = 0; i < pieces; i++) {
            const part = mode === 'big' ? Buffer.alloc(16_384, 0x61 + (i % 26)) : tag;
            await write(Buffer.concat([Buffer.from(`${part.length.toString(16)}\r\n`), part, Buffer.from('\r\n')]));
          }
          await write('0\r\n\r\n');
        }
      } else if (mode === 'slow') {
        await sleep(20 + (fnv(h.target) % 80));
        await write(`HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${tag.length * 3}\r\nx-up-mode: slow\r\n${conn}\r\n`);
        for (let i = 0; i < 3 && !head; i++) {
          await sleep(10);
          await write(tag);
        }
      } else {
        await write(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${tag.length}\r\nx-up-mode: ${mode}\r\n${conn}\r\n`), head ? Buffer.alloc(0) : tag]));
      }
      if (close) sock.end();
    };
    parser.onHead = (h) => {
      const mode = modeFor(h);
      const hasBody = h.chunked || h.contentLength > 0;
      answeredEarly = hasBody && (mode === 'early' || mode === 'early-close');
      if (answeredEarly) chain = chain.then(() => answer(h, mode));
    };
    parser.onRequest = (r: ParsedRequest) => {
      up.records.push({ conn: id, method: r.method, target: r.target, headers: r.headers, bodyLength: r.bodyLength, bodySha: r.bodySha });
      if (!answeredEarly) chain = chain.then(() => answer(r, modeFor(r)));
      answeredEarly = false;
    };
    parser.onError = (e) => {
      const from = Math.max(0, recent.length - 400);
      up.problems.push({ conn: id, reason: e.reason, excerpt: e.head ? e.head.slice(0, 600) : recent.subarray(from).toString('latin1') });
      chain = chain.then(async () => {
        await write('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
        sock.destroy();
      });
    };
    sock.on('data', (d: Buffer) => {
      recent = recent.length > 4096 ? Buffer.concat([recent.subarray(recent.length - 2048), d]) : Buffer.concat([recent, d]);
      parser.push(d);
    });
    sock.on('close', () => {
      if (parser.midRequest && !parser.error) up.aborted++;
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  up.port = (server.address() as AddressInfo).port;
  up.url = `http://127.0.0.1:${up.port}`;
  up.close = () =>
    new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    });
  return up;
}
