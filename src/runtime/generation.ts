// One configuration generation: everything built from one config (TLS contexts, route
// tables, compiled rules, upstream pools). Built whole or not at all — provision
// collects every error before failing — so a reload can swap generations atomically.
import type { LoadedConfig, ListenerConfig, RouteConfig } from '../config/schema.js';
import { PortcullisError, PortcullisErrors, ErrorCodes } from '../errors.js';
import { buildListenerTls, type TlsRuntime } from '../tls/listener-tls.js';
import { compileRules } from '../policy/rules.js';
import { compileRoutes } from '../routing/route-table.js';
import { UpstreamPool } from '../upstream/pool.js';
import type { ListenerRuntime, RouteRuntime } from './types.js';
import type { Telemetry } from '../telemetry/telemetry.js';

export interface Generation {
  id: number;
  config: LoadedConfig;
  listeners: Map<string, ListenerRuntime>;
  upstreams: Map<string, UpstreamPool>;
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

export function buildGeneration(config: LoadedConfig, id: number, telemetry: Telemetry, ticketSecret?: Buffer): Generation {
  const errors: PortcullisError[] = [];
  const upstreams = new Map<string, UpstreamPool>();
  for (const [name, up] of Object.entries(config.upstreams)) {
    collect(errors, () => upstreams.set(name, new UpstreamPool(name, up, `upstreams.${name}`)));
  }
  const listeners = new Map<string, ListenerRuntime>();
  config.listeners.forEach((l, i) => {
    collect(errors, () => {
      const rt = buildListener(l, i, id, upstreams, telemetry, ticketSecret);
      if (rt) listeners.set(l.name, rt);
    });
  });
  if (errors.length > 0) {
    for (const p of upstreams.values()) void p.close();
    throw new PortcullisErrors(errors);
  }
  return { id, config, listeners, upstreams };
}

function buildListener(l: ListenerConfig, i: number, gen: number, upstreams: Map<string, UpstreamPool>, telemetry: Telemetry, ticketSecret: Buffer | undefined): ListenerRuntime | undefined {
  const field = `listeners[${i}]`;
  if (l.protocol !== 'http') {
    throw new PortcullisError(ErrorCodes.CONFIG_INVALID, `${field}.protocol: ${l.protocol} listeners are not supported yet; use protocol: http`);
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
      allow: compileRules(r.allow, `routes[${r.name}].allow`),
      deny: compileRules(r.deny, `routes[${r.name}].deny`),
      upstream,
      upstreamName: r.upstream,
      timeout: r.timeout,
    };
  });
  return {
    name: l.name,
    generation: gen,
    cfg: l,
    tls,
    table: compileRoutes(l.routes),
    routes,
    allow: compileRules(l.allow, `listeners[${l.name}].allow`),
    deny: compileRules(l.deny, `listeners[${l.name}].deny`),
    identity: { headers: l.identity.headers, forward_cert: l.identity.forward_cert },
    telemetry,
  };
}

export async function releaseGeneration(g: Generation): Promise<void> {
  await Promise.all([...g.upstreams.values()].map((p) => p.close()));
}
