// A raw HTTP/2 client for abuse tests: frames written by hand over a TLS socket with ALPN
// h2, so a test can do what well-behaved clients never do (open streams before reading
// the server's SETTINGS, never acknowledge them, reset every stream it opens) and see
// exactly which frames come back.
import tls from 'node:tls';
import { readFileSync } from 'node:fs';

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
export const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8 } as const;
export const FLAG = { END_STREAM: 1, ACK: 1, END_HEADERS: 4 } as const;
export const CODE = { NO_ERROR: 0, PROTOCOL_ERROR: 1, INTERNAL_ERROR: 2, REFUSED_STREAM: 7, CANCEL: 8, ENHANCE_YOUR_CALM: 11 } as const;

export function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(9 + payload.length);
  b.writeUIntBE(payload.length, 0, 3);
  b[3] = type;
  b[4] = flags;
  b.writeUInt32BE(streamId, 5);
  payload.copy(b, 9);
  return b;
}

/** An HPACK string literal without Huffman coding (lengths below 127). */
function str(s: string): Buffer {
  if (s.length >= 127) throw new Error('keep test header values short');
  return Buffer.concat([Buffer.from([s.length]), Buffer.from(s, 'latin1')]);
}

/**
 * A request header block in HPACK without dynamic-table state, so every block is
 * independent: :method and :scheme https from the static table, :path and :authority as
 * literals without indexing (RFC 7541 §6.2.2) on static names.
 */
export function requestBlock(method: 'GET' | 'POST', path: string, authority = 'localhost'): Buffer {
  return Buffer.concat([
    Buffer.from([method === 'GET' ? 0x82 : 0x83, 0x87]),
    Buffer.from([0x04]), str(path), // :path, name index 4
    Buffer.from([0x01]), str(authority), // :authority, name index 1
  ]);
}

export function headers(streamId: number, block: Buffer, endStream: boolean): Buffer {
  return frame(FRAME.HEADERS, FLAG.END_HEADERS | (endStream ? FLAG.END_STREAM : 0), streamId, block);
}

export function rstStream(streamId: number, code: number = CODE.CANCEL): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(code);
  return frame(FRAME.RST_STREAM, 0, streamId, p);
}

export interface Frame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

export interface RawH2 {
  sock: tls.TLSSocket;
  /** every frame received so far */
  frames: Frame[];
  /** resolves when the socket has closed */
  closed: Promise<void>;
  /** RST_STREAM frames received: stream id -> error code */
  resets(): Map<number, number>;
  /** the GOAWAY received, if any */
  goaway(): { lastStreamId: number; code: number } | undefined;
  write(b: Buffer): boolean;
  /** resolves when the socket can take more */
  drained(): Promise<void>;
}

/**
 * Connects with ALPN h2 and the given client certificate and sends the preface and an
 * empty SETTINGS frame. The server's SETTINGS are acknowledged only with `ackSettings`.
 */
export function connectRawH2(opts: { port: number; ca: string; cert: string; key: string; ackSettings?: boolean }): Promise<RawH2> {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({
      host: '127.0.0.1',
      port: opts.port,
      servername: 'localhost',
      ALPNProtocols: ['h2'],
      ca: readFileSync(opts.ca),
      cert: readFileSync(opts.cert),
      key: readFileSync(opts.key),
    });
    const frames: Frame[] = [];
    let buf: Buffer = Buffer.alloc(0);
    const closed = new Promise<void>((r) => sock.once('close', () => r()));
    sock.on('error', () => undefined);
    sock.on('data', (d: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, d]) : Buffer.from(d);
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) break;
        const f: Frame = { type: buf[3]!, flags: buf[4]!, streamId: buf.readUInt32BE(5) & 0x7fffffff, payload: Buffer.from(buf.subarray(9, 9 + len)) };
        buf = buf.subarray(9 + len);
        frames.push(f);
        if (opts.ackSettings && f.type === FRAME.SETTINGS && !(f.flags & FLAG.ACK) && !sock.destroyed) sock.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
      }
    });
    sock.once('secureConnect', () => {
      if (sock.alpnProtocol !== 'h2') {
        sock.destroy();
        reject(new Error(`ALPN chose ${String(sock.alpnProtocol)}, not h2`));
        return;
      }
      sock.write(Buffer.concat([PREFACE, frame(FRAME.SETTINGS, 0, 0)]));
      resolve({
        sock,
        frames,
        closed,
        resets: () => new Map(frames.filter((f) => f.type === FRAME.RST_STREAM).map((f) => [f.streamId, f.payload.readUInt32BE(0)])),
        goaway: () => {
          const g = frames.find((f) => f.type === FRAME.GOAWAY);
          return g && { lastStreamId: g.payload.readUInt32BE(0) & 0x7fffffff, code: g.payload.readUInt32BE(4) };
        },
        write: (b) => sock.write(b),
        drained: () => (sock.writableNeedDrain ? new Promise<void>((r) => { sock.once('drain', r); sock.once('close', r); }) : Promise.resolve()),
      });
    });
    sock.once('error', reject);
  });
}
