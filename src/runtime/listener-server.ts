// A bound listener socket that lives across configuration generations. Each accepted
// connection captures the listener runtime current at accept time and keeps it until it
// closes; a reload only changes what new connections get.
import net, { type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type http from 'node:http';
import { startHandshake, checkPeer, type PeerResult } from '../tls/listener-tls.js';
import { formatIdentityHeaders } from '../proxy/identity-headers.js';
import { createHttp1Frontend } from '../proxy/http/http1.js';
import { kConn, type ConnState, type ListenerRuntime } from './types.js';
import { writeAccess } from '../telemetry/telemetry.js';
import { rfc3339 } from '../pki/identity.js';
import { ErrorCodes, PortcullisError } from '../errors.js';
import { reasonMessage } from '../tls/verify-result.js';

export class ListenerServer {
  runtime: ListenerRuntime;
  readonly server: net.Server;
  private readonly http1: http.Server;
  private readonly sockets = new Set<Socket>();

  constructor(runtime: ListenerRuntime) {
    this.runtime = runtime;
    const limits = runtime.cfg.limits;
    this.http1 = createHttp1Frontend({
      maxHeaderBytes: limits.max_header_bytes,
      headerTimeout: limits.header_timeout,
      idleTimeout: limits.idle_timeout,
    });
    // The HTTP server never listens itself; 'listening' starts its header/request timeout
    // bookkeeping, which Node only sets up for servers that listen.
    this.http1.emit('listening');
    this.server = net.createServer({ noDelay: true }, (raw) => this.onConnection(raw));
    if (limits.max_connections > 0) this.server.maxConnections = limits.max_connections;
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
    rt.telemetry.connection(rt.name, 1);
    raw.once('close', () => {
      this.sockets.delete(raw);
      rt.telemetry.connection(rt.name, -1);
    });
    const remoteAddress = raw.remoteAddress ?? '';
    if (!rt.tls) {
      const peer: PeerResult = { verify: 'NONE' };
      this.attach(raw, rt, peer, null, remoteAddress);
      return;
    }
    const tlsRt = rt.tls;
    const sock = startHandshake(raw, tlsRt, ['http/1.1']);
    let secured = false;
    const timer = setTimeout(() => sock.destroy(), rt.cfg.limits.header_timeout);
    sock.once('secure', () => {
      secured = true;
      clearTimeout(timer);
      const peer = checkPeer(sock, tlsRt.trust);
      const tlsVersion = sock.getProtocol();
      if (peer.verify === 'FAILED' && tlsRt.trust.clientAuth === 'require') {
        // Node completes the handshake before reporting the verification error; the
        // connection is closed before any request is read.
        this.handshakeFailed(rt, remoteAddress, tlsVersion, peer.reason ?? 'error', peer.message ?? '', peer.failed);
        sock.destroy();
        return;
      }
      rt.telemetry.handshake(rt.name, peer.verify === 'SUCCESS' ? 'ok' : peer.reason ?? 'ok');
      this.attach(sock, rt, peer, tlsVersion, remoteAddress);
    });
    sock.on('error', (err: Error & { code?: string }) => {
      clearTimeout(timer);
      if (secured) return;
      const noCert = err.code === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE';
      const reason = noCert ? 'no_cert' : 'error';
      const msg = noCert ? reasonMessage('no_cert') : `TLS handshake failed: ${err.code ?? err.message}`;
      this.handshakeFailed(rt, remoteAddress, null, reason, msg, undefined);
      sock.destroy();
    });
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

  private attach(sock: Socket | TLSSocket, rt: ListenerRuntime, peer: PeerResult, tlsVersion: string | null, remoteAddress: string): void {
    const id = peer.identity;
    const conn: ConnState = {
      listener: rt,
      peer,
      identityHeaders: formatIdentityHeaders(peer, rt.identity),
      tlsVersion,
      remoteAddress,
      logClient: {
        verify: peer.verify === 'FAILED' ? `FAILED:${peer.reason}` : peer.verify,
        subject: id?.subject ?? peer.failed?.subject,
        issuer: id?.issuer ?? peer.failed?.issuer,
        serial: id?.serial ?? peer.failed?.serial,
        fingerprint: id?.fingerprint ?? peer.failed?.fingerprint,
        spiffe_id: id?.spiffeId,
        not_after: id ? rfc3339(id.notAfter) : peer.failed?.not_after,
      },
    };
    (sock as unknown as { [kConn]: ConnState })[kConn] = conn;
    this.http1.emit('connection', sock);
  }

  /** Stops accepting, lets in-flight requests finish, then closes what is left. */
  async drain(timeoutMs: number): Promise<void> {
    // close() calls back only once every connection has ended, so do not wait for it here
    this.server.close();
    const deadline = Date.now() + timeoutMs;
    while (this.sockets.size > 0 && Date.now() < deadline) {
      this.http1.closeIdleConnections();
      await new Promise((r) => setTimeout(r, 50));
    }
    for (const s of this.sockets) s.destroy();
  }
}
