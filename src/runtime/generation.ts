// One configuration generation: everything built from one config (TLS contexts, route
// tables, compiled rules, upstream pools). Built whole or not at all — provision
// collects every error before failing — so a reload can swap generations atomically.
import type { LoadedConfig, ListenerConfig, RouteConfig } from '../config/schema.js';
import { PortcullisError, PortcullisErrors, ErrorCodes } from '../errors.js';
import { buildListenerTls, type TlsRuntime, type CertEntry } from '../tls/listener-tls.js';
import { compileRules, type CompiledRule } from '../policy/rules.js';
import { compileRoutes } from '../routing/route-table.js';
import { UpstreamPool } from '../upstream/pool.js';
import { TcpUpstream } from '../upstream/tcp-upstream.js';
import { TCP_SCHEMES } from '../config/shared.js';
import type { ListenerRuntime, RouteRuntime } from '../proxy/context.js';
import type { Telemetry } from '../telemetry/telemetry.js';
import type { UpstreamObserver } from '../upstream/balancer.js';

export interface Generation {
  id: number;
  config: LoadedConfig;
  listeners: Map<string, ListenerRuntime>;
  upstreams: Map<string, UpstreamPool>;
  /** upstreams of tcp listeners (they follow DNS changes until the generation is released) */
  tcpUpstreams: Map<string, TcpUpstream>;
  /** connections still using this generation; it is released when retired and at zero */
  refs: GenerationRefs;
}

/**
 * Counts the connections that use a generation. A reload retires the old generation;
 * its upstream pools close only when the last of its connections has closed, so
 * in-flight and kept-alive requests finish on the configuration they started with.
 */
export class GenerationRefs {
  private count = 0;
  private retired = false;
  private released = false;
  constructor(private readonly onRelease: () => void) {}
  acquire(): void {
    this.count++;
  }
  release(): void {
    this.count--;
    this.maybeRelease();
  }
  retire(): void {
    this.retired = true;
    this.maybeRelease();
  }
  get connections(): number {
    return this.count;
  }
  private maybeRelease(): void {
    if (this.retired && this.count <= 0 && !this.released) {
      this.released = true;
      this.onRelease();
    }
  }
}

function collect(errors: PortcullisError[], fn: () => void): void {
  try {
    fn();
  } catch (err) {
    if (err instanceof PortcullisErrors) errors.push(...err.errors);
    else if (err instanceof PortcullisError) errors.push(err);
    else errors.push(new PortcullisError(ErrorCodes.CONFIG_INVALID, (err as Error).message, { cause: err }));
  }
}

/** Balancer events to metrics and the log (an ejection and its end are logged once each, per worker). */
function upstreamObserver(t: Telemetry): UpstreamObserver {
  return {
    result: t.upstreamResult,
    retry: t.upstreamRetry,
    ejected(upstream, endpoint, ms, reason) {
      t.upstreamEjection(upstream, endpoint);
      t.log.warn({ event: 'upstream_endpoint_ejected', upstream, endpoint, ejection_ms: ms, error: reason }, `upstream ${upstream} endpoint ${endpoint} ejected for ${Math.round(ms / 1000)} s after failures in a row (last: ${reason})`);
    },
    returned(upstream, endpoint) {
      t.log.info({ event: 'upstream_endpoint_returned', upstream, endpoint }, `upstream ${upstream} endpoint ${endpoint} takes traffic again after its ejection`);
    },
  };
}

export function buildGeneration(config: LoadedConfig, id: number, telemetry: Telemetry, ticketSecret?: Buffer): Generation {
  const errors: PortcullisError[] = [];
  const observer = upstreamObserver(telemetry);
  const upstreams = new Map<string, UpstreamPool>();
  const tcpUpstreams = new Map<string, TcpUpstream>();
  for (const [name, up] of Object.entries(config.upstreams)) {
    // the schema forbids mixing schemes, so the first endpoint tells the kind
    const tcp = (TCP_SCHEMES as readonly string[]).includes(new URL(up.endpoints[0]!).protocol.slice(0, -1));
    if (tcp) collect(errors, () => tcpUpstreams.set(name, new TcpUpstream(name, up, `upstreams.${name}`, observer)));
    else collect(errors, () => upstreams.set(name, new UpstreamPool(name, up, `upstreams.${name}`, observer)));
  }
  const listeners = new Map<string, ListenerRuntime>();
  const refs = new GenerationRefs(() => {
    for (const p of upstreams.values()) void p.close();
    for (const p of tcpUpstreams.values()) p.close();
  });
  config.listeners.forEach((l, i) => {
    collect(errors, () => {
      const rt = buildListener(l, i, id, upstreams, telemetry, ticketSecret, refs, tcpUpstreams);
      if (rt) listeners.set(l.name, rt);
    });
  });
  if (errors.length > 0) {
    for (const p of upstreams.values()) void p.close();
    for (const p of tcpUpstreams.values()) p.close();
    throw new PortcullisErrors(errors, config.configPath);
  }
  return { id, config, listeners, upstreams, tcpUpstreams, refs };
}

function buildListener(l: ListenerConfig, i: number, gen: number, upstreams: Map<string, UpstreamPool>, telemetry: Telemetry, ticketSecret: Buffer | undefined, refs: GenerationRefs, tcpUpstreams: Map<string, TcpUpstream>): ListenerRuntime | undefined {
  const field = `listeners[${i}]`;
  const tcpUpstream = l.protocol === 'tcp' ? tcpUpstreams.get(l.upstream ?? '') : undefined;
  if (l.protocol === 'tcp' && !tcpUpstream) {
    throw new PortcullisError(ErrorCodes.CONFIG_INVALID, `${field}.upstream: no upstream with tcp:// or tls:// endpoints named ${l.upstream ?? '(none)'}; define it under upstreams`);
  }
  let tls: TlsRuntime | undefined;
  if (l.tls) tls = buildListenerTls(l.tls, `${field}.tls`, ticketSecret);
  const listenerAuth = l.tls?.client_auth ?? 'none';
  const routes: RouteRuntime[] = l.routes.map((r: RouteConfig, j: number) => {
    const upstream = upstreams.get(r.upstream);
    if (!upstream) {
      throw new PortcullisError(ErrorCodes.CONFIG_INVALID, `${field}.routes[${j}].upstream: no upstream named ${r.upstream}; define it under upstreams`);
    }
    return {
      name: r.name,
      index: j,
      clientAuth: r.client_auth ?? listenerAuth,
      ownClientAuth: r.client_auth,
      allow: compileRules(r.allow, `routes[${r.name}].allow`),
      deny: compileRules(r.deny, `routes[${r.name}].deny`),
      upstream,
      upstreamName: r.upstream,
      timeout: r.timeout,
    };
  });
  const allow = compileRules(l.allow, `listeners[${l.name}].allow`);
  const deny = compileRules(l.deny, `listeners[${l.name}].deny`);
  const entryRules = new Map<CertEntry, { allow: CompiledRule[]; deny: CompiledRule[] }>();
  for (const e of tls?.entries ?? []) {
    if (e.allow.length > 0 || e.deny.length > 0) {
      entryRules.set(e, { allow: e.allow.length > 0 ? e.allow : allow, deny: e.deny.length > 0 ? [...deny, ...e.deny] : deny });
    }
  }
  return {
    name: l.name,
    generation: gen,
    cfg: l,
    tls,
    table: compileRoutes(l.routes),
    routes,
    allow,
    deny,
    entryRules,
    identity: { headers: l.identity.headers, forward_cert: l.identity.forward_cert },
    telemetry,
    refs,
    ...(tcpUpstream ? { tcpUpstream, tcpUpstreamName: l.upstream } : {}),
  };
}

/** Closes a generation's pools now (start-up failures, check, shutdown). */
export async function releaseGeneration(g: Generation): Promise<void> {
  for (const t of g.tcpUpstreams.values()) t.close();
  await Promise.all([...g.upstreams.values()].map((p) => p.close()));
}
