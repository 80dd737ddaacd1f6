// The connection context: what one configuration generation provides for a listener and
// a route, and what a connection carries. runtime/ builds it and the front ends read it,
// so it lives here, below runtime/ (front ends never import runtime/).
import type { TlsRuntime, PeerResult, CertEntry } from '../tls/listener-tls.js';
import type { ListenerConfig, ClientAuth } from '../config/schema.js';
import type { CompiledRule } from '../policy/rules.js';
import type { RouteTable } from '../routing/route-table.js';
import type { UpstreamPool } from '../upstream/pool.js';
import type { TcpUpstream } from '../upstream/tcp-upstream.js';
import type { IdentityHeaderOptions } from './identity-headers.js';
import type { Telemetry } from '../telemetry/telemetry.js';

export interface RouteRuntime {
  name: string;
  index: number;
  /** the route's own client_auth, or the listener's */
  clientAuth: ClientAuth;
  /** the route's own client_auth when it set one (an SNI entry's setting applies otherwise) */
  ownClientAuth: ClientAuth | undefined;
  allow: CompiledRule[];
  deny: CompiledRule[];
  upstream: UpstreamPool;
  upstreamName: string;
  timeout: number | undefined;
}

export interface ListenerRuntime {
  name: string;
  generation: number;
  cfg: ListenerConfig;
  tls: TlsRuntime | undefined;
  table: RouteTable;
  routes: RouteRuntime[];
  allow: CompiledRule[];
  deny: CompiledRule[];
  identity: IdentityHeaderOptions;
  telemetry: Telemetry;
  /**
   * The listener-level rules for a connection, by the certificate entry its handshake
   * chose (built once per generation): an entry's allow list replaces the listener's,
   * its deny list adds to the listener's. Read it through connRules().
   */
  entryRules: Map<CertEntry, { allow: CompiledRule[]; deny: CompiledRule[] }>;
  /** reference count of the generation this runtime belongs to */
  refs: { acquire(): void; release(): void };
  /** protocol: tcp only: where every connection is forwarded */
  tcpUpstream?: TcpUpstream;
  tcpUpstreamName?: string;
}

/** Per-connection state, computed once when the handshake completes. */
export interface ConnState {
  listener: ListenerRuntime;
  /** the certificate entry the handshake chose by SNI (undefined on plain listeners) */
  entry: CertEntry | undefined;
  /** the SNI server name the client sent, if any */
  servername: string | undefined;
  peer: PeerResult;
  identityHeaders: string[];
  tlsVersion: string | null;
  remoteAddress: string;
  /** the client{} object of access log lines */
  logClient: Record<string, string | undefined>;
  /**
   * Set when the handshake's certificate was refused but the connection is kept to say so
   * over HTTP (tls.reject: http, or a check SPEC §2 runs after the handshake): every
   * request gets this answer, none is routed or forwarded, and the connection closes after it.
   */
  refusal?: ConnRefusal;
}

export interface ConnRefusal {
  code: 'client_certificate_required' | 'client_certificate_invalid';
  /** one sentence naming the reason and the fix (the log line's reason) */
  message: string;
  /** the handshake result (no_cert, expired, unknown_ca, ...) */
  reason: string;
}

export const kConn = Symbol.for('portcullis.conn');

export function connOf(socket: unknown): ConnState | undefined {
  return (socket as { [kConn]?: ConnState })[kConn];
}

/** The listener-level allow/deny rules that apply to a connection (see entryRules). */
export function connRules(l: ListenerRuntime, entry: CertEntry | undefined): { allow: CompiledRule[]; deny: CompiledRule[] } {
  return (entry && l.entryRules.get(entry)) || l;
}
