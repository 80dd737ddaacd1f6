// Reads a TLS ClientHello off an accepted TCP socket before the TLS socket is built, and
// puts the bytes back, so the handshake can start on the right secure context.
//
// Why: OpenSSL decrypts a session ticket (and checks the session-id context) with the
// context a TLSSocket starts with; the context SNICallback picks comes too late for that
// (on Node 20 it is ignored for resumption altogether). Starting on the context of the SNI
// entry, and of the ticket key that sealed the offered ticket, is what makes tickets from
// a previous key resume (session_tickets.key_files) and keeps a session of one certificate
// entry from resuming on another. Only the server name and the first 16 bytes of each
// offered ticket (OpenSSL's key name, RFC 5077 §4) are read; anything unexpected gives
// no hint, and OpenSSL then sees the very same bytes and decides as it always would.
// Every ClientHello OpenSSL would take must be read here (any fragmentation, empty records,
// up to OpenSSL's size limit): a session started on the wrong context is refused after the
// handshake (listener-server.ts), but a client should never get that far.
import type { Socket } from 'node:net';

export interface ClientHelloHint {
  /** the SNI host name, lowercased, if the client sent one */
  serverName: string | undefined;
  /** the key name (first 16 bytes) of each offered ticket: TLS 1.2 session_ticket, TLS 1.3 PSK identities */
  ticketKeyNames: Buffer[];
}

const RECORD_HANDSHAKE = 22;
const HANDSHAKE_CLIENT_HELLO = 1;
const EXT_SERVER_NAME = 0;
const EXT_SESSION_TICKET = 35;
const EXT_PRE_SHARED_KEY = 41;
const KEY_NAME_BYTES = 16;
/** OpenSSL's limit on a ClientHello message (CLIENT_HELLO_MAX_LENGTH); it refuses longer ones. */
const OPENSSL_CLIENT_HELLO_MAX = 131_396;
/** That message in records of at most 16 KiB, with their headers (and a few empty records). */
export const MAX_CLIENT_HELLO_BYTES = OPENSSL_CLIENT_HELLO_MAX + 4 + 64 * 5;

export type Assembled = { state: 'more' } | { state: 'done'; msg: Buffer } | { state: 'other' };

/**
 * The ClientHello message body from the bytes received so far, which may spread over
 * several records (and TCP segments): 'more' until it is complete, 'other' when the bytes
 * are not a TLS handshake starting with a ClientHello.
 */
export function assembleClientHello(data: Buffer): Assembled {
  const fragments: Buffer[] = [];
  let have = 0;
  let off = 0;
  while (off + 5 <= data.length) {
    if (data[off] !== RECORD_HANDSHAKE) return { state: 'other' };
    const len = data.readUInt16BE(off + 3);
    if (off + 5 + len > data.length) break;
    if (len === 0) {
      // OpenSSL skips empty handshake records in front of the ClientHello
      off += 5;
      continue;
    }
    fragments.push(data.subarray(off + 5, off + 5 + len));
    have += len;
    off += 5 + len;
    if (have >= 4) {
      const hs = fragments.length === 1 ? fragments[0]! : Buffer.concat(fragments);
      if (hs[0] !== HANDSHAKE_CLIENT_HELLO) return { state: 'other' };
      const msgLen = hs.readUIntBE(1, 3);
      if (msgLen > OPENSSL_CLIENT_HELLO_MAX) return { state: 'other' };
      if (hs.length >= msgLen + 4) return { state: 'done', msg: hs.subarray(4, 4 + msgLen) };
    }
  }
  if (off < data.length && data[off] !== RECORD_HANDSHAKE) return { state: 'other' };
  return { state: 'more' };
}

/** The hint from a ClientHello body; undefined when it does not parse. */
export function parseClientHello(msg: Buffer): ClientHelloHint | undefined {
  try {
    let p = 2 + 32; // client_version, random
    p += 1 + msg[p]!; // session_id
    p += 2 + msg.readUInt16BE(p); // cipher_suites
    p += 1 + msg[p]!; // compression_methods
    const hint: ClientHelloHint = { serverName: undefined, ticketKeyNames: [] };
    if (p === msg.length) return hint; // no extensions at all
    const end = p + 2 + msg.readUInt16BE(p);
    if (end > msg.length) return undefined;
    p += 2;
    while (p + 4 <= end) {
      const type = msg.readUInt16BE(p);
      const len = msg.readUInt16BE(p + 2);
      const body = msg.subarray(p + 4, p + 4 + len);
      if (body.length !== len || p + 4 + len > end) return undefined;
      if (type === EXT_SERVER_NAME) hint.serverName = serverNameOf(body);
      else if (type === EXT_SESSION_TICKET && body.length >= KEY_NAME_BYTES) hint.ticketKeyNames.push(body.subarray(0, KEY_NAME_BYTES));
      else if (type === EXT_PRE_SHARED_KEY) hint.ticketKeyNames.push(...pskKeyNames(body));
      p += 4 + len;
    }
    return hint;
  } catch {
    // a read past the end: a malformed hello, which OpenSSL will refuse on its own
    return undefined;
  }
}

function serverNameOf(body: Buffer): string | undefined {
  // server_name_list<1..2^16-1>, each: name_type(1) HostName<1..2^16-1>; host_name is type 0
  let p = 2;
  const end = Math.min(body.length, 2 + body.readUInt16BE(0));
  while (p + 3 <= end) {
    const type = body[p]!;
    const len = body.readUInt16BE(p + 1);
    if (type === 0) return body.toString('latin1', p + 3, p + 3 + len).toLowerCase();
    p += 3 + len;
  }
  return undefined;
}

function pskKeyNames(body: Buffer): Buffer[] {
  // identities<7..2^16-1>, each: identity<1..2^16-1> obfuscated_ticket_age(4); then binders
  const out: Buffer[] = [];
  const end = Math.min(body.length, 2 + body.readUInt16BE(0));
  let p = 2;
  while (p + 2 <= end) {
    const len = body.readUInt16BE(p);
    if (len >= KEY_NAME_BYTES && p + 2 + KEY_NAME_BYTES <= end) out.push(body.subarray(p + 2, p + 2 + KEY_NAME_BYTES));
    p += 2 + len + 4;
  }
  return out;
}

/**
 * Reads the ClientHello from `raw`, puts every byte read back into it (so a TLSSocket
 * built on it next sees them first; Node feeds a wrapped socket's buffered data to the
 * TLS layer), and calls `done` with the hint (undefined: not parseable, decide without).
 * A socket that ends or fails first is destroyed and `done` is never called; a stalled
 * one is the caller's to time out.
 */
export function peekClientHello(raw: Socket, done: (hint: ClientHelloHint | undefined) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  const stop = () => {
    raw.off('data', onData);
    raw.off('end', onEnd);
    raw.off('error', onEnd);
  };
  const onEnd = () => {
    stop();
    raw.destroy();
  };
  const onData = (d: Buffer) => {
    chunks.push(d);
    size += d.length;
    const all = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
    const r = assembleClientHello(all);
    if (r.state === 'more' && size < MAX_CLIENT_HELLO_BYTES) return;
    stop();
    raw.pause();
    raw.unshift(all);
    done(r.state === 'done' ? parseClientHello(r.msg) : undefined);
  };
  raw.on('data', onData);
  raw.on('end', onEnd);
  raw.on('error', onEnd);
}
