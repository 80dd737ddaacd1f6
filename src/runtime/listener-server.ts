// A bound listener socket that lives across configuration generations. Each accepted
// connection captures the listener runtime current at accept time and keeps it until it
// closes; a reload only changes what new connections get. After the handshake and the
// peer check, the connection goes to the front end for its protocol (and ALPN).
import net, { type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { startHandshake, startEntry, checkPeer, selectEntry, type PeerResult, type CertEntry } from '../tls/listener-tls.js';
import { peekClientHello, type ClientHelloHint } from '../tls/client-hello.js';
import { formatIdentityHeaders } from '../proxy/identity-headers.js';
import { http1Frontend } from '../proxy/http/http1.js';
import type { Frontend } from '../proxy/frontend.js';
import { kConn, type ConnState, type ListenerRuntime } from './types.js';
import { writeAccess } from '../telemetry/telemetry.js';
import { rfc3339 } from '../pki/identity.js';
import type { Identity } from '../pki/identity-types.js';
import { ErrorCodes, PortcullisError } from '../errors.js';
import { connectionError } from '../proxy/boundary.js';
import { reasonMessage } from '../tls/verify-result.js';
import { attachStapling, type Stapling } from '../tls/ocsp-stapling.js';

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

/**
 * Node destroys a TLS socket the moment its handshake fails (after queueing the alert).
 * A TLS 1.3 client has usually sent its first request bytes by then; closing with them
 * unread makes the kernel answer with a reset, and clients such as curl over HTTP/2 then
 * report "getpeername() failed" instead of the certificate_required alert. Holding the
 * close back briefly lets those bytes be read, so the alert arrives, followed by a FIN.
 */
function delayFailedHandshakeClose(sock: TLSSocket, secured: () => boolean, failed: (err: Error & { code?: string }) => void): void {
  const destroy = sock.destroy.bind(sock);
  let delayed = false;
  sock.destroy = ((err?: Error) => {
    if (secured() || delayed || sock.destroyed) return destroy(err);
    delayed = true;
    if (err) failed(err);
    sock.on('error', () => undefined);
    setTimeout(() => destroy(), 200).unref();
    return sock;
  }) as typeof sock.destroy;
}

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

  constructor(runtime: ListenerRuntime) {
    this.current = runtime;
    this.server = net.createServer({ noDelay: true }, (raw) => {
      try {
        this.onConnection(raw);
      } catch (err) {
        connectionError({ listener: this.current, remoteAddress: raw.remoteAddress ?? '' }, raw, err, 'accept');
      }
    });
    // before any socket exists: Node only asks for staples on servers with an OCSPRequest listener
    this.stapling = attachStapling(this.server, () => this.current);
    const max = runtime.cfg.limits.max_connections;
    if (max > 0) this.server.maxConnections = max;
  }

  get runtime(): ListenerRuntime {
    return this.current;
  }

  /** a reload's generation: new connections get it; the stapled certificates follow */
  set runtime(rt: ListenerRuntime) {
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
    this.sockets.add(raw);
    rt.refs.acquire();
    this.frontendsOf(rt).sockets++;
    rt.telemetry.connection(rt.name, 1);
    raw.once('close', () => {
      this.sockets.delete(raw);
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
    // one deadline for reading the ClientHello (when peeked) and the whole handshake
    let sock: TLSSocket | undefined;
    const timer = setTimeout(() => (sock ?? raw).destroy(), rt.cfg.limits.header_timeout);
    if (!rt.tls.peekHello) {
      sock = this.handshake(raw, rt, remoteAddress, timer, undefined);
      return;
    }
    raw.once('close', () => clearTimeout(timer));
    peekClientHello(raw, (hint) => {
      try {
        sock = this.handshake(raw, rt, remoteAddress, timer, hint);
      } catch (err) {
        connectionError({ listener: rt, remoteAddress }, raw, err, 'accept');
      }
    });
  }

  private handshake(raw: Socket, rt: ListenerRuntime, remoteAddress: string, timer: NodeJS.Timeout, hint: ClientHelloHint | undefined): TLSSocket {
    const sock = startHandshake(raw, rt.tls!, alpnFor(rt), this.server, hint);
    let secured = false;
    let reported = false;
    const onFailure = (err: Error & { code?: string }) => {
      clearTimeout(timer);
      if (secured || reported) return;
      reported = true;
      const noCert = err.code === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE';
      const reason = noCert ? 'no_cert' : 'error';
      const msg = noCert ? reasonMessage('no_cert') : `TLS handshake failed: ${err.code ?? err.message}`;
      this.handshakeFailed(rt, remoteAddress, null, reason, msg, undefined);
    };
    delayFailedHandshakeClose(sock, () => secured, onFailure);
    sock.once('secure', () => {
      secured = true;
      clearTimeout(timer);
      // TLS data that arrives meanwhile stays buffered in the socket until a front end reads
      this.afterHandshake(sock, rt, remoteAddress, hint).catch((err: unknown) => connectionError({ listener: rt, remoteAddress }, sock, err, 'after handshake'));
    });
    sock.on('error', (err: Error & { code?: string }) => {
      if (secured) return;
      onFailure(err);
      sock.destroy();
    });
    return sock;
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
    if (entry.trust.clientAuth === 'require' && peer.verify === 'FAILED' && peer.afterHandshake && rt.cfg.protocol === 'http') {
      // pins, OCSP and cert_policy run after the handshake (SPEC §2): logged and counted as
      // a refused handshake, then every request on the connection gets 403 with the reason
      this.handshakeFailed(rt, remoteAddress, tlsVersion, peer.reason ?? 'error', peer.message ?? '', peer.failed);
      this.attach(sock, rt, entry, servername, peer, tlsVersion, remoteAddress);
      return;
    }
    if (entry.trust.clientAuth === 'require' && peer.verify !== 'SUCCESS') {
      // Node completes the handshake before reporting the verification error; the
      // connection is closed before any request is read. (A missing certificate only
      // gets here when other SNI entries made the certificate optional.)
      const reason = peer.reason ?? 'no_cert';
      this.handshakeFailed(rt, remoteAddress, tlsVersion, reason, peer.message ?? reasonMessage(reason), peer.failed);
      sock.destroy();
      return;
    }
    rt.telemetry.handshake(rt.name, peer.verify === 'SUCCESS' ? 'ok' : peer.reason ?? 'ok');
    this.attach(sock, rt, entry, servername, peer, tlsVersion, remoteAddress);
  }

  private handshakeFailed(rt: ListenerRuntime, remote: string, tlsVersion: string | null, reason: string, message: string, failed: PeerResult['failed']): void {
    rt.telemetry.handshake(rt.name, reason);
    writeAccess(rt.telemetry, {
      event: 'tls_handshake_failed',
      listener: rt.name,
      remote_addr: remote,
      tls_version: tlsVersion,
      client: failed ? { verify: `FAILED:${reason}`, ...failed } : { verify: reason === 'no_cert' ? 'NONE' : `FAILED:${reason}` },
      decision: { allowed: false, reason: `${reason}: ${message}` },
    });
  }

  private attach(sock: Socket | TLSSocket, rt: ListenerRuntime, entry: CertEntry | undefined, servername: string | undefined, peer: PeerResult, tlsVersion: string | null, remoteAddress: string): void {
    const conn: ConnState = {
      listener: rt,
      entry,
      servername,
      peer,
      identityHeaders: formatIdentityHeaders(peer, rt.identity),
      tlsVersion,
      remoteAddress,
      logClient: logClientOf(peer),
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
  }
}
