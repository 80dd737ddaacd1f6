// A bound listener socket that lives across configuration generations. Each accepted
// connection captures the listener runtime current at accept time and keeps it until it
// closes; a reload only changes what new connections get. After the handshake and the
// peer check, the connection goes to the front end for its protocol (and ALPN).
// Connection-level limits live here, once for every protocol: limits.max_connections
// (counted from accept, so handshakes and held-back failed handshakes count),
// limits.handshake_timeout, the bounded hold of failed handshakes, and
// limits.send_timeout (send-timeout.ts). docs/connection-limits.md explains them.
import net, { type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { startHandshake, startEntry, checkPeer, selectEntry, type PeerResult, type CertEntry } from '../tls/listener-tls.js';
import { peekClientHello, type ClientHelloHint } from '../tls/client-hello.js';
import { formatIdentityHeaders } from '../proxy/identity-headers.js';
import { http1Frontend } from '../proxy/http/http1.js';
import type { Frontend } from '../proxy/frontend.js';
import { kConn, type ConnRefusal, type ConnState, type ListenerRuntime } from '../proxy/context.js';
import { writeAccess } from '../telemetry/telemetry.js';
import { rfc3339 } from '../pki/identity.js';
import type { Identity } from '../pki/identity-types.js';
import { ErrorCodes, PortcullisError } from '../errors.js';
import { connectionError } from '../proxy/boundary.js';
import { reasonMessage } from '../tls/verify-result.js';
import { attachStapling, type Stapling } from '../tls/ocsp-stapling.js';
import { SendTimeouts } from './send-timeout.js';
import { openFileLimit, descriptorsFor } from './fd-limit.js';
import { interceptDestroy, restoreDestroy } from '../platform/node-internals.js';

/** Front ends by name; a listener creates the ones its protocol needs. */
export type FrontendKind = 'http1' | 'h2' | 'tcp';
export type FrontendFactory = (rt: ListenerRuntime) => Frontend;
const factories: Partial<Record<FrontendKind, FrontendFactory>> = {
  http1: (rt) => http1Frontend({ maxHeaderBytes: rt.cfg.limits.max_header_bytes, headerTimeout: rt.cfg.limits.header_timeout, idleTimeout: rt.cfg.limits.idle_timeout }),
};

/** Lets the HTTP/2 and TCP front ends plug in without this file importing them. */
export function registerFrontend(kind: FrontendKind, factory: FrontendFactory): void {
  factories[kind] = factory;
}

function alpnFor(rt: ListenerRuntime): string[] {
  if (rt.cfg.protocol === 'tcp') return [];
  return factories.h2 ? ['h2', 'http/1.1'] : ['http/1.1'];
}

interface RuntimeFrontends {
  kinds: Map<FrontendKind, Frontend>;
  /** open connections accepted under this runtime */
  sockets: number;
}

/** How long a failed handshake's close is held back, and for how many sockets at once. */
export const FAILED_HANDSHAKE_HOLD_MS = 200;
export const MAX_HELD_FAILED_HANDSHAKES = 32;

/**
 * Node destroys a TLS socket the moment its handshake fails (after queueing the alert).
 * A TLS 1.3 client has usually sent its first request bytes by then; closing with them
 * unread makes the kernel answer with a reset, and clients such as curl over HTTP/2 then
 * report "getpeername() failed" instead of the certificate_required alert. Holding the
 * close back briefly lets those bytes be read, so the alert arrives, followed by a FIN.
 * The hold is a courtesy for the occasional misconfigured client: only
 * MAX_HELD_FAILED_HANDSHAKES sockets per listener are held at once, so a flood of bad
 * handshakes cannot keep sockets (and their max_connections slots) open; past that cap a
 * failed handshake closes at once. Returns the unpatched destroy, for closes that should
 * never be held (the handshake timeout). Wrapping the instance's destroy relies on Node
 * closing a failed handshake through it: platform/node-internals.ts item 9.
 */
function delayFailedHandshakeClose(sock: TLSSocket, secured: () => boolean, failed: (err: Error & { code?: string }) => void, held: { count: number }): () => void {
  let delayed = false;
  const destroy = interceptDestroy(sock, (original, err) => {
    if (secured() || delayed || sock.destroyed) return original(err);
    delayed = true;
    if (err) failed(err);
    if (held.count >= MAX_HELD_FAILED_HANDSHAKES) return original();
    held.count++;
    sock.on('error', () => undefined);
    setTimeout(() => {
      held.count--;
      original();
    }, FAILED_HANDSHAKE_HOLD_MS).unref();
    return sock;
  });
  return () => {
    delayed = true;
    destroy();
  };
}

/** A connection's handshake deadline and how to end it; emptied once the handshake is done. */
interface Handshake {
  timer: NodeJS.Timeout | undefined;
  /** closes at once, bypassing the courtesy hold of failed handshakes */
  destroyNow: (() => void) | undefined;
  sock?: TLSSocket;
}

/** After the handshake, errors are the front end's (one shared listener keeps the old no-op). */
function ignoreError(): void {}

/** The access log's view of a verified identity, shared by its connections (identities are shared too). */
const logClients = new WeakMap<Identity, Record<string, string | undefined>>();

function logClientOf(peer: PeerResult): Record<string, string | undefined> {
  const id = peer.identity;
  if (peer.verify === 'SUCCESS' && id) {
    let c = logClients.get(id);
    if (!c) logClients.set(id, (c = Object.freeze(describeClient(peer))));
    return c;
  }
  return describeClient(peer);
}

function describeClient(peer: PeerResult): Record<string, string | undefined> {
  const id = peer.identity;
  return {
    verify: peer.verify === 'FAILED' ? `FAILED:${peer.reason}` : peer.verify,
    subject: id?.subject ?? peer.failed?.subject,
    issuer: id?.issuer ?? peer.failed?.issuer,
    serial: id?.serial ?? peer.failed?.serial,
    fingerprint: id?.fingerprint ?? peer.failed?.fingerprint,
    spiffe_id: id?.spiffeId,
    not_after: id ? rfc3339(id.notAfter) : peer.failed?.not_after,
  };
}

export class ListenerServer {
  private current: ListenerRuntime;
  private readonly stapling: Stapling;
  readonly server: net.Server;
  /** front ends per listener runtime: a reload's new limits apply to new connections only */
  private readonly frontends = new Map<ListenerRuntime, RuntimeFrontends>();
  private readonly sockets = new Set<Socket>();
  /** failed handshakes whose close is being held back (at most MAX_HELD_FAILED_HANDSHAKES) */
  private readonly held = { count: 0 };
  private readonly sendTimeouts: SendTimeouts;
  /** connections refused at max_connections since the last warning, and when that was */
  private refused = 0;
  private refusedLoggedAt = -Infinity;

  constructor(runtime: ListenerRuntime) {
    this.current = runtime;
    // limits.max_connections is enforced in onConnection, not with net.Server.maxConnections:
    // under cluster round-robin scheduling a worker at that limit hands the connection back
    // to the primary, which offers it to a worker again at once, in a loop that burns both
    // processes' CPU while the client waits instead of being refused
    this.server = net.createServer({ noDelay: true }, (raw) => {
      try {
        this.onConnection(raw);
      } catch (err) {
        connectionError({ listener: this.current, remoteAddress: raw.remoteAddress ?? '' }, raw, err, 'accept');
      }
    });
    // before any socket exists: Node only asks for staples on servers with an OCSPRequest listener
    this.stapling = attachStapling(this.server, () => this.current);
    this.sendTimeouts = new SendTimeouts((s) => {
      const rt = this.current;
      rt.telemetry.log.warn(
        { event: 'send_timeout', listener: rt.name, remote_addr: s.raw.remoteAddress, queued_bytes: s.queuedBytes, send_timeout_ms: s.timeoutMs },
        `listener ${rt.name}: closed the connection from ${s.raw.remoteAddress} because its client took no data for ${s.timeoutMs} ms with ${s.queuedBytes} bytes waiting (limits.send_timeout); raise send_timeout if clients this slow are expected`,
      );
      // a reset, like nginx's reset_timedout_connection: a plain close would leave the
      // kernel holding the unsent bytes for a client that is not reading them
      try {
        s.raw.resetAndDestroy();
      } catch {
        s.raw.destroy();
      }
      s.outer.destroy();
    });
    this.checkFileLimit(runtime);
  }

  /** Warns when max_connections cannot be reached before the process runs out of file descriptors. */
  private checkFileLimit(rt: ListenerRuntime): void {
    const max = rt.cfg.limits.max_connections;
    const limit = openFileLimit();
    if (max === 0 || limit === undefined || descriptorsFor(max) <= limit) return;
    rt.telemetry.log.warn(
      { event: 'connection_limit_over_file_limit', listener: rt.name, max_connections: max, open_file_limit: limit },
      `listener ${rt.name}: limits.max_connections ${max} may need ${descriptorsFor(max)} file descriptors (client and upstream) but this process may open ${limit}; raise the open-file limit (systemd LimitNOFILE=, ulimit -n) or lower max_connections`,
    );
  }

  get runtime(): ListenerRuntime {
    return this.current;
  }

  /** a reload's generation: new connections get it; the stapled certificates follow */
  set runtime(rt: ListenerRuntime) {
    if (rt.cfg.limits.max_connections !== this.current.cfg.limits.max_connections) this.checkFileLimit(rt);
    this.current = rt;
    this.stapling.sync();
  }

  private frontendsOf(rt: ListenerRuntime): RuntimeFrontends {
    let fe = this.frontends.get(rt);
    if (!fe) {
      fe = { kinds: new Map(), sockets: 0 };
      this.frontends.set(rt, fe);
    }
    return fe;
  }

  private frontend(rt: ListenerRuntime, kind: FrontendKind): Frontend {
    const fe = this.frontendsOf(rt);
    let f = fe.kinds.get(kind);
    if (!f) {
      const make = factories[kind];
      if (!make) throw new Error(`no ${kind} front end registered`);
      f = make(rt);
      fe.kinds.set(kind, f);
    }
    return f;
  }

  listen(): Promise<{ host: string; port: number }> {
    const { host, port } = this.runtime.cfg;
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        reject(new PortcullisError(ErrorCodes.LISTEN_FAILED, `listener ${this.runtime.name}: cannot listen on ${this.runtime.cfg.address} (${err.code ?? err.message}); pick a free port or stop what uses it`, { cause: err }));
      };
      this.server.once('error', onError);
      this.server.listen({ host, port }, () => {
        this.server.off('error', onError);
        const a = this.server.address() as net.AddressInfo;
        resolve({ host: a.address, port: a.port });
      });
    });
  }

  private onConnection(raw: Socket): void {
    const rt = this.runtime;
    const max = rt.cfg.limits.max_connections;
    // every open socket counts: handshakes in progress and failed handshakes held back too
    if (max > 0 && this.sockets.size >= max) {
      this.refuse(raw, rt, max);
      return;
    }
    this.sockets.add(raw);
    this.sendTimeouts.watch(raw, rt.cfg.limits.send_timeout);
    rt.refs.acquire();
    this.frontendsOf(rt).sockets++;
    rt.telemetry.connection(rt.name, 1);
    // one close listener per connection; it also ends the handshake deadline (hs.timer),
    // which the handshake drops once it is done, so an idle connection keeps no timer
    const hs: Handshake = { timer: undefined, destroyNow: undefined };
    raw.once('close', () => {
      if (hs.timer) clearTimeout(hs.timer);
      this.sockets.delete(raw);
      this.sendTimeouts.unwatch(raw);
      rt.telemetry.connection(rt.name, -1);
      rt.refs.release();
      const fe = this.frontends.get(rt);
      // an old generation's front ends go once its last connection has closed
      if (fe && --fe.sockets === 0 && rt !== this.runtime) this.frontends.delete(rt);
    });
    const remoteAddress = raw.remoteAddress ?? '';
    // a TCP client may send its data and half-close before the upstream is even connected;
    // the TLS socket inherits this, so an early EOF cannot end our side before the front end runs
    if (rt.cfg.protocol === 'tcp') raw.allowHalfOpen = true;
    if (!rt.tls) {
      this.attach(raw, rt, undefined, undefined, { verify: 'NONE' }, null, remoteAddress);
      return;
    }
    // one deadline, limits.handshake_timeout, for reading the ClientHello (when it is
    // peeked) and the whole handshake; a client that never finishes its handshake is not a
    // failed handshake to be polite to (no courtesy hold)
    hs.timer = setTimeout(() => {
      rt.telemetry.log.debug({ event: 'handshake_timeout', listener: rt.name, remote_addr: remoteAddress }, 'TLS handshake not finished within limits.handshake_timeout; connection closed');
      if (hs.destroyNow) hs.destroyNow();
      else (hs.sock ?? raw).destroy();
    }, rt.cfg.limits.handshake_timeout);
    if (!rt.tls.peekHello) {
      this.handshake(raw, rt, remoteAddress, hs, undefined);
      return;
    }
    peekClientHello(raw, (hint) => {
      try {
        this.handshake(raw, rt, remoteAddress, hs, hint);
      } catch (err) {
        connectionError({ listener: rt, remoteAddress }, raw, err, 'accept');
      }
    });
  }

  private handshake(raw: Socket, rt: ListenerRuntime, remoteAddress: string, hs: Handshake, hint: ClientHelloHint | undefined): void {
    const sock = startHandshake(raw, rt.tls!, alpnFor(rt), this.server, hint);
    hs.sock = sock;
    this.sendTimeouts.setOuter(raw, sock);
    let secured = false;
    let reported = false;
    const onFailure = (err: Error & { code?: string }) => {
      if (hs.timer) clearTimeout(hs.timer);
      hs.timer = undefined;
      if (secured || reported) return;
      reported = true;
      const noCert = err.code === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE';
      const reason = noCert ? 'no_cert' : 'error';
      const msg = noCert ? reasonMessage('no_cert') : `TLS handshake failed: ${err.code ?? err.message}`;
      this.handshakeFailed(rt, remoteAddress, null, reason, msg, undefined);
    };
    hs.destroyNow = delayFailedHandshakeClose(sock, () => secured, onFailure, this.held);
    const onError = (err: Error & { code?: string }) => {
      if (secured) return;
      onFailure(err);
      sock.destroy();
    };
    sock.once('secure', () => {
      secured = true;
      if (hs.timer) clearTimeout(hs.timer);
      // what only the handshake needed goes now, so an idle connection does not keep it
      // (the timer, the held-close wrapper and its closures, this error handler's scope)
      hs.timer = undefined;
      hs.destroyNow = undefined;
      hs.sock = undefined;
      restoreDestroy(sock);
      sock.off('error', onError);
      sock.on('error', ignoreError);
      // OpenSSL refuses a TLS 1.2 renegotiation (SSL_OP_NO_RENEGOTIATION, listener-tls.ts)
      // but Node still reports the attempt as another 'secure'; a client that tries is
      // closed, as nginx does, rather than left to try again
      this.refuseRenegotiation(sock, rt, remoteAddress);
      // TLS data that arrives meanwhile stays buffered in the socket until a front end reads
      this.afterHandshake(sock, rt, remoteAddress, hint).catch((err: unknown) => connectionError({ listener: rt, remoteAddress }, sock, err, 'after handshake'));
    });
    sock.on('error', onError);
  }

  /** Its own method so that the listener, kept for the connection's life, holds no handshake state. */
  private refuseRenegotiation(sock: TLSSocket, rt: ListenerRuntime, remoteAddress: string): void {
    sock.on('secure', () => this.renegotiationAttempt(sock, rt, remoteAddress));
  }

  /** Closes a connection that tried to renegotiate (the attempt itself was refused by OpenSSL). */
  private renegotiationAttempt(sock: TLSSocket, rt: ListenerRuntime, remoteAddress: string): void {
    if (sock.destroyed) return;
    rt.telemetry.log.warn(
      { event: 'tls_renegotiation_refused', listener: rt.name, remote_addr: remoteAddress },
      `listener ${rt.name}: ${remoteAddress} tried to renegotiate TLS, which portcullis never allows; connection closed (the client should open a new connection instead)`,
    );
    // after the current read is processed, so OpenSSL's no_renegotiation alert goes out first
    setImmediate(() => sock.destroy());
  }

  /** Closes a connection over max_connections at once; warns at most every 10 s with the count. */
  private refuse(raw: Socket, rt: ListenerRuntime, max: number): void {
    raw.destroy();
    this.refused++;
    const now = performance.now();
    if (now - this.refusedLoggedAt < 10_000) return;
    rt.telemetry.log.warn(
      { event: 'connection_limit_reached', listener: rt.name, max_connections: max, refused: this.refused },
      `listener ${rt.name}: ${this.refused} connection(s) closed on accept because this worker already has limits.max_connections (${max}) open; raise max_connections (within the open-file limit) or add workers`,
    );
    this.refused = 0;
    this.refusedLoggedAt = now;
  }

  private async afterHandshake(sock: TLSSocket, rt: ListenerRuntime, remoteAddress: string, hint: ClientHelloHint | undefined): Promise<void> {
    const tlsRt = rt.tls!;
    // Node 20 reports no server name for a resumed TLS 1.2 session; the handshake started
    // on the entry of the name in its ClientHello and resumes only there (initialContext)
    const servername = typeof sock.servername === 'string' ? sock.servername : hint?.serverName;
    const entry = selectEntry(tlsRt, servername);
    if (sock.isSessionReused() && entry !== startEntry(tlsRt, hint)) {
      // OpenSSL resumed the session on the context the handshake started on, so it was
      // made under that entry's trust, not this one's. The ClientHello reader picks the
      // entry of the SNI name, so this means a hello it could not read: refuse, never
      // carry an identity across entries.
      this.handshakeFailed(rt, remoteAddress, sock.getProtocol(), 'error', 'a TLS session made for another certificate entry was offered; connect again without it', undefined);
      sock.destroy();
      return;
    }
    let peer: PeerResult;
    try {
      peer = await checkPeer(sock, entry.trust);
    } catch (err) {
      peer = { verify: 'FAILED', reason: 'error', message: reasonMessage('error', (err as Error).message) };
    }
    if (sock.destroyed) return;
    const tlsVersion = sock.getProtocol();
    if (entry.trust.clientAuth === 'require' && peer.verify !== 'SUCCESS') {
      // Node completes the handshake before reporting the verification error. Logged and
      // counted as a refused handshake either way; then either closed before any request
      // is read (tls.reject: close), or kept to answer every request with 401/403 naming
      // the reason (tls.reject: http, and on HTTP listeners the checks SPEC §2 runs after
      // the handshake: pins, OCSP, cert_policy). (A missing certificate only gets here
      // when other SNI entries made the certificate optional, or with reject: http.)
      const reason = peer.reason ?? 'no_cert';
      const message = peer.message ?? reasonMessage(reason);
      this.handshakeFailed(rt, remoteAddress, tlsVersion, reason, message, peer.failed);
      if (rt.cfg.protocol === 'http' && (rt.tls!.reject === 'http' || (peer.verify === 'FAILED' && peer.afterHandshake))) {
        const refusal: ConnRefusal = peer.verify === 'NONE'
          ? { code: 'client_certificate_required', reason, message }
          : { code: 'client_certificate_invalid', reason, message: `${reason}: ${message}` };
        this.attach(sock, rt, entry, servername, peer, tlsVersion, remoteAddress, refusal);
        return;
      }
      sock.destroy();
      return;
    }
    rt.telemetry.handshake(rt.name, peer.verify === 'SUCCESS' ? 'ok' : peer.reason ?? 'ok');
    this.attach(sock, rt, entry, servername, peer, tlsVersion, remoteAddress);
  }

  private handshakeFailed(rt: ListenerRuntime, remote: string, tlsVersion: string | null, reason: string, message: string, failed: PeerResult['failed']): void {
    rt.telemetry.handshake(rt.name, reason);
    const client = failed ? { verify: `FAILED:${reason}`, ...failed } : { verify: reason === 'no_cert' ? 'NONE' : `FAILED:${reason}` };
    rt.telemetry.handshakeRefused(rt.name, reason, message, client, remote);
    writeAccess(rt.telemetry, {
      event: 'tls_handshake_failed',
      listener: rt.name,
      remote_addr: remote,
      tls_version: tlsVersion,
      client,
      decision: { allowed: false, reason: `${reason}: ${message}` },
    });
  }

  private attach(sock: Socket | TLSSocket, rt: ListenerRuntime, entry: CertEntry | undefined, servername: string | undefined, peer: PeerResult, tlsVersion: string | null, remoteAddress: string, refusal?: ConnRefusal): void {
    const conn: ConnState = {
      listener: rt,
      entry,
      servername,
      peer,
      identityHeaders: formatIdentityHeaders(peer, rt.identity),
      tlsVersion,
      remoteAddress,
      logClient: logClientOf(peer),
      ...(refusal ? { refusal } : {}),
    };
    (sock as unknown as { [kConn]: ConnState })[kConn] = conn;
    const kind: FrontendKind = rt.cfg.protocol === 'tcp' ? 'tcp' : (sock as TLSSocket).alpnProtocol === 'h2' ? 'h2' : 'http1';
    this.frontend(rt, kind).accept(sock, conn);
  }

  /** Stops accepting, lets in-flight requests finish, then closes what is left. */
  async drain(timeoutMs: number): Promise<void> {
    // close() calls back only once every connection has ended, so do not wait for it here
    this.server.close();
    const deadline = Date.now() + timeoutMs;
    while (this.sockets.size > 0 && Date.now() < deadline) {
      for (const fe of this.frontends.values()) for (const f of fe.kinds.values()) f.closeIdle();
      await new Promise((r) => setTimeout(r, 50));
    }
    for (const s of this.sockets) s.destroy();
    this.sendTimeouts.stop();
  }
}
