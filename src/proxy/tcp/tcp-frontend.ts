// The TCP front end (protocol: tcp, like Hitch and ghostunnel): a connection whose TLS
// handshake and client check are done is authorized once with the listener's rules (and
// its SNI entry's), then joined byte for byte to a fresh upstream connection, optionally
// after a PROXY v1/v2 header. Either side may half-close; the other direction keeps
// flowing until its own end. One `connection` access-log line when both sides are closed.
import { guard } from '../boundary.js';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { Frontend } from '../frontend.js';
import { connRules, type ConnState, type ListenerRuntime } from '../context.js';
import type { TcpConnectError, TcpEndpoint } from '../../upstream/tcp-upstream.js';
import { authorize, type Decision } from '../../policy/authorize.js';
import { writeAccess } from '../../telemetry/telemetry.js';
import { proxyV1Header, proxyV2Header, type ConnectionAddresses, type SslFacts } from './proxy-protocol.js';

/** Metric label for the authorization decisions of TCP listeners, which have no routes. */
const NO_ROUTE = '-';

export function tcpFrontend(rt: ListenerRuntime): Frontend {
  return {
    accept: (sock, conn) => guard(conn, sock, 'tcp accept', () => serve(rt, sock, conn)),
    // A TCP connection has no request boundary to stop at, so it is never idle: a drain
    // leaves it running until the listener's drain deadline destroys it.
    closeIdle: () => undefined,
  };
}

interface LogState {
  decision: Decision | undefined;
  error: string | undefined;
  bytesIn: number;
  bytesOut: number;
}

function serve(rt: ListenerRuntime, sock: Socket, conn: ConnState): void {
  const start = performance.now();
  // the client may end its side while the upstream still answers (TLS 1.3 close_notify
  // closes one direction only); without this Node would end ours at once
  sock.allowHalfOpen = true;
  const addrs: ConnectionAddresses = { srcAddr: sock.remoteAddress, srcPort: sock.remotePort, dstAddr: sock.localAddress, dstPort: sock.localPort };
  const st: LogState = { decision: undefined, error: undefined, bytesIn: 0, bytesOut: 0 };
  let logged = false;
  const log = () => {
    if (logged) return;
    logged = true;
    writeAccess(rt.telemetry, {
      event: 'connection',
      listener: rt.name,
      remote_addr: conn.remoteAddress,
      tls_version: conn.tlsVersion,
      client: conn.logClient,
      decision: st.decision && { allowed: st.decision.allowed, rule: st.decision.rule, reason: st.decision.reason },
      upstream: rt.tcpUpstreamName,
      bytes_in: st.bytesIn,
      bytes_out: st.bytesOut,
      duration_ms: Math.round((performance.now() - start) * 1000) / 1000,
      error: st.error,
    });
  };
  const refuse = (error: string) => {
    st.error = error;
    // close_notify, then gone: the client learns the connection was closed on purpose
    sock.on('error', () => undefined);
    sock.destroySoon();
    log();
  };

  const up = rt.tcpUpstream;
  if (!up) return refuse('no tcp upstream for this listener');
  if (conn.peer.verify === 'FAILED') {
    // client_auth optional: a certificate that was presented but failed a check is
    // refused; a byte stream has no way to tell the upstream (SPEC §2)
    st.decision = { allowed: false, reason: `${conn.peer.reason ?? 'error'}: ${conn.peer.message ?? 'the client certificate failed verification'}` };
    rt.telemetry.authz(rt.name, NO_ROUTE, false);
    rt.telemetry.clientActivity(rt.name, NO_ROUTE, conn.logClient, conn.remoteAddress, 0, st.decision, 'client_certificate_invalid', st.decision.reason);
    return refuse('client_certificate_invalid');
  }
  const identity = conn.peer.verify === 'SUCCESS' ? conn.peer.identity : undefined;
  const rules = connRules(rt, conn.entry);
  const decision = authorize({
    // the listener's rules with the SNI entry's applied (built once per generation)
    listenerAllow: rules.allow,
    listenerDeny: rules.deny,
    routeAllow: [],
    routeDeny: [],
    identity,
    facts: { method: '', host: '', path: '' },
  });
  st.decision = decision;
  rt.telemetry.authz(rt.name, NO_ROUTE, decision.allowed);
  // the dashboard counts a TCP connection as one request, at its authorization
  if (decision.allowed) rt.telemetry.clientActivity(rt.name, NO_ROUTE, conn.logClient, conn.remoteAddress, 0, decision, undefined, undefined);
  else {
    const message = `listener ${rt.name} does not allow this client (${decision.reason}); ask for access or use an allowed identity`;
    rt.telemetry.clientActivity(rt.name, NO_ROUTE, conn.logClient, conn.remoteAddress, 0, decision, 'forbidden', message);
    return refuse('forbidden');
  }

  let upstream: Socket | undefined;
  let abort: (() => void) | undefined;
  let open = 1; // sockets not yet closed; the log line waits for all of them
  const closed = () => {
    if (--open === 0) log();
  };
  const fail = (error: string) => {
    st.error ??= error;
    sock.destroy();
    upstream?.destroy();
  };
  sock.on('error', (e: Error & { code?: string }) => fail(`client: ${e.code ?? e.message}`));
  sock.setTimeout(rt.cfg.limits.idle_timeout, () => fail('idle_timeout'));
  sock.once('close', () => {
    if (abort) {
      st.error ??= 'client closed before the upstream connected';
      abort();
    }
    // flush what the client sent, then close: the upstream cannot answer anyone any more
    upstream?.destroySoon();
    closed();
  });

  // the shared balancer picks; a connect failure moves on to an endpoint not tried yet,
  // at most `retries` times (nothing reached the upstream, so any connection may move)
  const b = up.balancer;
  const tried: TcpEndpoint[] = [];
  const attempt = (ep: TcpEndpoint | undefined) => {
    if (!ep) {
      st.error = `no_healthy_upstream: upstream ${rt.tcpUpstreamName} has no healthy endpoint: ${b.downReason()}`;
      sock.on('error', () => undefined);
      sock.destroySoon();
      return;
    }
    tried.push(ep);
    abort = up.connect(ep, (err: TcpConnectError | undefined, s?: Socket) => {
      abort = undefined;
      if (err) {
        // the limits are the upstream's, not the endpoint's: another endpoint would wait again
        const overloaded = err.code === 'upstream_overloaded';
        if (!overloaded) b.failed(ep, 'connect_failure', err.code);
        const next = !overloaded && !sock.destroyed && tried.length <= b.retries ? b.pick(undefined, tried) : undefined;
        if (next) {
          b.countRetry();
          return attempt(next);
        }
        st.error = `${overloaded ? 'upstream_overloaded' : 'upstream_unavailable'}: ${err.message}`;
        sock.on('error', () => undefined);
        sock.destroySoon();
        return;
      }
      b.succeeded(ep);
      if (sock.destroyed) return void s!.destroy();
      join(rt, sock, s!, conn, addrs, st);
      upstream = s!;
      open++;
      upstream.on('error', (e: Error & { code?: string }) => fail(`upstream: ${e.code ?? e.message}`));
      upstream.setTimeout(rt.cfg.limits.idle_timeout, () => fail('idle_timeout'));
      upstream.once('close', () => {
        // deliver what the upstream already sent, then close the client
        if (!sock.destroyed) sock.destroySoon();
        closed();
      });
    });
  };
  attempt(b.pick(identity?.spiffeId ?? identity?.fingerprint));
}

/** PROXY header first, then both directions with backpressure; end() on one side's EOF half-closes the other. */
function join(rt: ListenerRuntime, client: Socket, upstream: Socket, conn: ConnState, addrs: ConnectionAddresses, st: LogState): void {
  const mode = rt.cfg.proxy_protocol;
  if (mode === 'v1') upstream.write(proxyV1Header(addrs));
  else if (mode === 'v2') upstream.write(proxyV2Header(addrs, sslFacts(client, conn)));
  client.on('data', (c: Buffer) => (st.bytesIn += c.length));
  upstream.on('data', (c: Buffer) => (st.bytesOut += c.length));
  client.pipe(upstream);
  upstream.pipe(client);
}

function sslFacts(sock: Socket, conn: ConnState): SslFacts | undefined {
  if (!(sock instanceof TLSSocket)) return undefined;
  const id = conn.peer.verify === 'SUCCESS' ? conn.peer.identity : undefined;
  return {
    version: sock.getProtocol() ?? conn.tlsVersion ?? '',
    cipher: sock.getCipher()?.name,
    verified: id && { cn: id.cn[0], der: id.der },
    resumed: sock.isSessionReused(),
  };
}
