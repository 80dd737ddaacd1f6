// Every use of a Node.js API that is not documented public API lives in this one module,
// each with the reason it is needed and what happens without it. `checkRuntime()` runs at
// start-up (in the primary and in every worker) and fails closed with one sentence when a
// runtime has changed any of them, instead of misbehaving later on live traffic. The suite
// runs on Node 20, 22 and 24 (.ci/run), so a change shows up in CI first.
//
// What is used, and why:
// 1. llhttp, Node's own HTTP/1.1 parser, through `_http_common` (DEP0199, documentation-only
//    deprecation): the upstream HTTP/1.1 client (upstream/h1-pool.ts) parses responses with
//    it, exactly as strictly as Node's http client. Its callbacks' return codes are llhttp's.
// 2. The TLS handle's `verifyError()`: Node reports a server socket's verification result
//    (`authorized`, `authorizationError`) only for sockets made by tls.Server, which destroys
//    a failed socket before our code sees it. Without it every client certificate fails
//    closed (`error`), never open.
// 3. `secureConnecting`: only tls.Server clears it after a server-side handshake; an
//    Http2Session waits for it to be false.
// 4. The native secure context (`SecureContext#context`): session ticket key rotation on
//    live contexts and the certificate/issuer of a context for OCSP stapling.
// 5. `net.Server#_sharedCreds`: the context Node staples from when no SNI context was chosen.
// 6. The TCP handle's `writeQueueSize`: bytes libuv holds because the kernel's send buffer
//    is full. Node's own socket timeouts read it; it is the only place that sees bytes the
//    TLS layer or an Http2Session wrote natively. limits.send_timeout uses it, and falls
//    back to public counters (bytesWritten) when it is missing.
// 7. The same `verifyError()` read after a handshake failed: the verify engine
//    (tls/verify-engine.ts) keeps the handle, because OpenSSL may abort a TLS 1.2 handshake
//    right after verifying the chain (an error left on its queue by a signature check) where
//    a TLS 1.3 one goes on; the verification result is still there. Without it the engine
//    reports such a chain as a TLS-level `error` instead of the listener's reason.
// 8. The layout of the 48 bytes of `ticketKeys` (Node documents only their length): key
//    name (16), HMAC secret (16), AES key (16); OpenSSL writes the key name at the start
//    of every ticket it seals. tls/client-hello.ts matches an offered ticket to the key
//    that sealed it by this name. Without it a ticket from an older key finds no match
//    and the client makes a full handshake (nothing is accepted that would not be).
// 9. A failed server-side handshake is closed through the socket instance's own `destroy()`
//    (Node looks it up on the instance; it is not documented that it does). The listener
//    wraps it to hold a failed handshake's close back briefly, so the alert reaches the
//    client (runtime/listener-server.ts). Without it the close is simply not held (the
//    client may see a reset instead of the alert); nothing is accepted that would not be.
//    The unit test checks on each Node major that a failed handshake goes through it.
import { createRequire } from 'node:module';
import tls, { type SecureContext, type TLSSocket } from 'node:tls';
import { Duplex } from 'node:stream';
import { Socket, type Server } from 'node:net';
import { ErrorCodes, PortcullisError } from '../errors.js';

// --- 1. llhttp ------------------------------------------------------------------------

export interface NativeParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  /** bytes consumed, or the parse error (with .code such as HPE_HEADER_OVERFLOW) */
  execute(data: Buffer): number | (Error & { code?: string });
  finish(): undefined | Error;
  close(): void;
  [k: number]: unknown;
}
export interface NativeParserClass {
  new (): NativeParser;
  REQUEST: number;
  RESPONSE: number;
  kOnMessageBegin: number;
  kOnHeaders: number;
  kOnHeadersComplete: number;
  kOnBody: number;
  kOnMessageComplete: number;
  kOnExecute: number;
}

/** Return codes of a kOnHeadersComplete callback (llhttp's on_headers_complete). */
export const HEAD_HAS_BODY = 0;
/** the message has no body (a response to HEAD, 204, 304) */
export const HEAD_NO_BODY = 1;
/** stop parsing right after the head (llhttp treats it as an upgrade); the caller takes the body */
export const HEAD_STOP = 2;

interface HttpCommon {
  HTTPParser: NativeParserClass;
  methods: string[];
}

function loadHttpCommon(): HttpCommon | undefined {
  try {
    return createRequire(import.meta.url)('_http_common') as HttpCommon;
  } catch {
    return undefined;
  }
}
const common = loadHttpCommon();

/** llhttp's parser class; checkRuntime() has made sure it exists before any use. */
export const HTTPParser = (common?.HTTPParser ?? class {}) as NativeParserClass;
/** llhttp's method numbers → names */
export const methods: readonly string[] = common?.methods ?? [];

// --- 2. and 3. server-side TLS sockets built by hand ------------------------------------

/**
 * OpenSSL's verification result for the peer of a server TLSSocket: null when it verified,
 * the error otherwise, undefined when the runtime does not tell (callers fail closed).
 */
export function tlsVerifyError(sock: TLSSocket): (Error & { code?: string }) | null | undefined {
  const handle = (sock as unknown as { _handle?: { verifyError?(): (Error & { code?: string }) | null } | null })._handle;
  if (!handle || typeof handle.verifyError !== 'function') return undefined;
  return handle.verifyError();
}

/** Reads the verification result later, even after the socket failed and let go of its handle (7.). */
export function retainVerifyResult(sock: TLSSocket): () => (Error & { code?: string }) | null | undefined {
  const handle = (sock as unknown as { _handle?: { verifyError?(): (Error & { code?: string }) | null } | null })._handle;
  return () => {
    if (!handle || typeof handle.verifyError !== 'function') return undefined;
    try {
      return handle.verifyError();
    } catch {
      return undefined;
    }
  };
}

/** Marks a server TLSSocket whose handshake is done as tls.Server would, so http2 can take it. */
export function markHandshakeDone(sock: TLSSocket): void {
  const s = sock as unknown as { secureConnecting?: boolean };
  if (s.secureConnecting) s.secureConnecting = false;
}

// --- 4. and 5. native secure contexts ---------------------------------------------------

export interface NativeContext {
  setTicketKeys(keys: Buffer): void;
  getCertificate(): Buffer | null;
  getIssuer(): Buffer | null;
}

export function nativeContext(ctx: SecureContext): NativeContext | undefined {
  const n = (ctx as unknown as { context?: Partial<NativeContext> }).context;
  if (!n || typeof n.setTicketKeys !== 'function' || typeof n.getCertificate !== 'function' || typeof n.getIssuer !== 'function') return undefined;
  return n as NativeContext;
}

/** The name OpenSSL writes at the start of each ticket sealed with these 48 ticketKeys bytes (item 8). */
export function ticketKeyName(ticketKeys: Buffer): Buffer {
  return ticketKeys.subarray(0, 16);
}

/** Points the context Node staples from (without SNI) at `current`, on a plain net.Server. */
export function setStaplingContext(server: Server, current: () => SecureContext | undefined): void {
  Object.defineProperty(server, '_sharedCreds', { configurable: true, get: current });
}

// --- 6. TCP write queue --------------------------------------------------------------------

/** Bytes queued in libuv for a TCP socket; undefined when the handle does not tell. */
export function tcpWriteQueueSize(raw: Socket): number | undefined {
  const n = (raw as unknown as { _handle?: { writeQueueSize?: unknown } | null })._handle?.writeQueueSize;
  return typeof n === 'number' ? n : undefined;
}

// --- 9. the destroy() a failed handshake goes through ----------------------------------------

/**
 * Replaces `sock.destroy` on this one socket with `replacement`, which receives the original
 * (bound) destroy; returns that original for closes that must never be held back.
 */
export function interceptDestroy(sock: TLSSocket, replacement: (original: (err?: Error) => TLSSocket, err?: Error) => TLSSocket): (err?: Error) => TLSSocket {
  const original = sock.destroy.bind(sock) as (err?: Error) => TLSSocket;
  sock.destroy = ((err?: Error) => replacement(original, err)) as typeof sock.destroy;
  return original;
}

/**
 * Undoes interceptDestroy: the socket's destroy is the prototype's again, and the wrapper
 * and what it holds can be collected. Assigned, not deleted: deleting a property turns the
 * socket's fields into a dictionary (about 3.7 KiB more per connection, measured on Node 24).
 */
export function restoreDestroy(sock: TLSSocket): void {
  sock.destroy = (Object.getPrototypeOf(sock) as TLSSocket).destroy;
}

// --- the start-up self-test ---------------------------------------------------------------

/** What this runtime lacks of the internals above; empty when everything is as expected. */
export function runtimeProblems(): string[] {
  const problems: string[] = [];
  if (!common || typeof common.HTTPParser !== 'function') problems.push('the llhttp parser (_http_common.HTTPParser) is missing');
  else problems.push(...llhttpProblems());
  const ctx = tls.createSecureContext();
  if (!nativeContext(ctx)) problems.push('the native secure context (setTicketKeys, getCertificate, getIssuer) is missing');
  const raw = new Duplex({ read() {}, write(_c, _e, cb) { cb(); } });
  const sock = new tls.TLSSocket(raw, { isServer: true, secureContext: ctx });
  try {
    const h = (sock as unknown as { _handle?: { verifyError?: unknown } })._handle;
    if (!h || typeof h.verifyError !== 'function') problems.push('the TLS handle has no verifyError()');
    if (typeof (sock as unknown as { secureConnecting?: unknown }).secureConnecting !== 'boolean') problems.push('TLSSocket has no secureConnecting flag');
    // a net.Socket only gets its TCP handle once connected; the check is on the prototype chain
    // of a connected handle in the unit test (send-timeout.test.ts), and a missing field only
    // makes send_timeout use the public counters, so it is not a start-up failure
  } finally {
    sock.destroy();
    raw.destroy();
  }
  return problems;
}

/** Parses a small response with a body and one that stops after the head. */
function llhttpProblems(): string[] {
  const P = common!.HTTPParser;
  for (const k of ['REQUEST', 'RESPONSE', 'kOnHeaders', 'kOnHeadersComplete', 'kOnBody', 'kOnMessageComplete'] as const) {
    if (typeof P[k] !== 'number') return [`llhttp's HTTPParser.${k} is missing`];
  }
  const run = (headRet: number): { status: number; body: string; complete: boolean; consumed: number | Error } => {
    const p = new P();
    const out = { status: 0, body: '', complete: false, consumed: 0 as number | Error };
    p.initialize(P.RESPONSE, {}, 0, 0);
    p[P.kOnHeadersComplete] = (_maj: number, _min: number, _h: string[], _m: number, _u: string, status: number) => {
      out.status = status;
      return headRet;
    };
    p[P.kOnBody] = (b: Buffer) => (out.body += b.toString());
    p[P.kOnMessageComplete] = () => (out.complete = true);
    out.consumed = p.execute(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'));
    p.close();
    return out;
  };
  const a = run(HEAD_HAS_BODY);
  if (a.status !== 200 || a.body !== 'ok' || !a.complete) return [`llhttp parsed a test response as status ${a.status}, body ${JSON.stringify(a.body)}`];
  const b = run(HEAD_STOP);
  if (b.body !== '' || typeof b.consumed !== 'number' || b.consumed !== 38) return [`llhttp did not stop after the head when asked to (consumed ${String(b.consumed)})`];
  return [];
}

let checked = false;

/** Throws PCL_ERR_RUNTIME_UNSUPPORTED naming what changed; runs the checks once per process. */
export function checkRuntime(): void {
  if (checked) return;
  const problems = runtimeProblems();
  if (problems.length > 0) {
    throw new PortcullisError(
      ErrorCodes.RUNTIME_UNSUPPORTED,
      `Node.js ${process.version} changed internals portcullis relies on (${problems.join('; ')}); run portcullis on Node.js 22 or 24 LTS, or report this runtime`,
    );
  }
  checked = true;
}
