// Runs the proxy in this process (a worker, or the demo): validate (a worker is handed the
// config the primary validated instead) -> provision (build a generation) -> serve ->
// drain, and reloads as prepare (build a whole new generation, nothing changes yet) ->
// commit (swap it in; new connections use it, open ones finish on the old one, which is
// released when its last connection closes).
import { checkRuntime } from '../platform/node-internals.js';
import type { LoadedConfig } from '../config/schema.js';
import { buildGeneration, releaseGeneration, type Generation } from './generation.js';
import { ListenerServer } from './listener-server.js';
import { createTelemetry, flushTelemetry, type Telemetry, type MetricHooks } from '../telemetry/telemetry.js';
import type { ActivityHooks } from '../telemetry/activity.js';
import './frontends.js';
import cluster from 'node:cluster';
import { DnsResolver, dnsChangeLog } from '../upstream/dns.js';
import { DEFAULT_DRAIN_MS } from './ipc.js';

export interface RunningProxy {
  readonly generation: Generation;
  servers: Map<string, ListenerServer>;
  addresses: Map<string, { host: string; port: number }>;
  telemetry: Telemetry;
  /**
   * builds a new generation from `config` (a worker gets it validated by the primary) or
   * else from the config file; throws (changing nothing) on any error
   */
  prepare(id: number, config?: LoadedConfig): Promise<Generation>;
  /** swaps a prepared generation in; throws if a new listener cannot bind (nothing swapped) */
  commit(next: Generation): Promise<void>;
  /** drops a prepared generation that will not be committed */
  abort(next: Generation): Promise<void>;
  stop(drainMs?: number): Promise<void>;
}

export { DEFAULT_DRAIN_MS };

export interface StartOptions {
  /** shared by all workers so TLS sessions resume on any of them */
  ticketSecret?: Buffer;
  metrics?: MetricHooks;
  /** what the admin dashboard shows (recent clients, refusals, rule hits) */
  activity?: ActivityHooks;
  /** generation number to start with (a replacement worker joins the current one) */
  generation?: number;
}

/**
 * Reads and validates the config file. Imported on use: a worker is handed its config
 * already validated and never loads the validator (zod) or the YAML parser.
 */
async function loadFile(path: string): Promise<LoadedConfig> {
  const { loadConfig } = await import('../config/load.js');
  return loadConfig(path, { checkFiles: true });
}

const sameAddress = (a: { host: string; port: number }, b: { host: string; port: number }) => a.host === b.host && a.port === b.port;

export async function startProxy(configOrPath: string | LoadedConfig, opts: StartOptions = {}): Promise<RunningProxy> {
  checkRuntime();
  const configPath = typeof configOrPath === 'string' ? configOrPath : configOrPath.configPath;
  const config = typeof configOrPath === 'string' ? await loadFile(configOrPath) : configOrPath;
  const telemetry = createTelemetry(config.log, opts.metrics, opts.activity);
  // a worker gets address sets from the primary's resolver; a process on its own (the demo) resolves itself
  const resolver = cluster.isWorker
    ? undefined
    : new DnsResolver((c) => {
        const line = dnsChangeLog(c);
        telemetry.log[line.level](line.fields, line.message);
      });
  await resolver?.update(config);
  let generation = buildGeneration(config, opts.generation ?? 1, telemetry, opts.ticketSecret);
  const servers = new Map<string, ListenerServer>();
  const addresses = new Map<string, { host: string; port: number }>();
  try {
    for (const [name, rt] of generation.listeners) {
      const s = new ListenerServer(rt);
      servers.set(name, s);
      addresses.set(name, await s.listen());
    }
  } catch (err) {
    for (const s of servers.values()) s.server.close();
    resolver?.stop();
    await releaseGeneration(generation);
    throw err;
  }
  let stopping: Promise<void> | undefined;
  return {
    get generation() {
      return generation;
    },
    servers,
    addresses,
    telemetry,
    async prepare(id: number, config?: LoadedConfig) {
      const next = config ?? (await loadFile(configPath));
      await resolver?.update(next);
      return buildGeneration(next, id, telemetry, opts.ticketSecret);
    },
    async commit(next: Generation) {
      // bind the listeners that are new (or moved) first: if one cannot bind, nothing changes
      const started = new Map<string, ListenerServer>();
      try {
        for (const [name, rt] of next.listeners) {
          const cur = servers.get(name);
          if (cur && sameAddress(cur.runtime.cfg, rt.cfg)) continue;
          const s = new ListenerServer(rt);
          addresses.set(name, await s.listen());
          started.set(name, s);
        }
      } catch (err) {
        for (const s of started.values()) s.server.close();
        throw err;
      }
      const old = generation;
      for (const [name, rt] of next.listeners) {
        const fresh = started.get(name);
        const cur = servers.get(name);
        if (fresh) {
          if (cur) void cur.drain(DEFAULT_DRAIN_MS);
          servers.set(name, fresh);
        } else if (cur) {
          cur.runtime = rt;
        }
      }
      for (const [name, s] of servers) {
        if (!next.listeners.has(name)) {
          servers.delete(name);
          addresses.delete(name);
          void s.drain(DEFAULT_DRAIN_MS);
        }
      }
      generation = next;
      old.refs.retire();
    },
    async abort(next: Generation) {
      await releaseGeneration(next);
    },
    stop(drainMs = DEFAULT_DRAIN_MS) {
      stopping ??= (async () => {
        resolver?.stop();
        await Promise.all([...servers.values()].map((s) => s.drain(drainMs)));
        generation.refs.retire();
        await releaseGeneration(generation);
        flushTelemetry(telemetry);
      })();
      return stopping;
    },
  };
}
