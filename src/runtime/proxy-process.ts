// Runs the proxy in this process: validate -> provision (build a generation) -> serve ->
// drain. Start-up fails closed: any config or file error stops it with exit code 1.
import { loadConfig } from '../config/load.js';
import type { LoadedConfig } from '../config/schema.js';
import { buildGeneration, releaseGeneration, type Generation } from './generation.js';
import { ListenerServer } from './listener-server.js';
import { createTelemetry, flushTelemetry, type Telemetry, type MetricHooks } from '../telemetry/telemetry.js';

export interface RunningProxy {
  generation: Generation;
  servers: Map<string, ListenerServer>;
  addresses: Map<string, { host: string; port: number }>;
  telemetry: Telemetry;
  stop(drainMs?: number): Promise<void>;
}

export const DEFAULT_DRAIN_MS = 30_000;

export interface StartOptions {
  /** shared by all workers so TLS sessions resume on any of them */
  ticketSecret?: Buffer;
  metrics?: MetricHooks;
}

export async function startProxy(configOrPath: string | LoadedConfig, opts: StartOptions = {}): Promise<RunningProxy> {
  const config = typeof configOrPath === 'string' ? await loadConfig(configOrPath, { checkFiles: true }) : configOrPath;
  const telemetry = createTelemetry(config.log, opts.metrics);
  const generation = buildGeneration(config, 1, telemetry, opts.ticketSecret);
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
    await releaseGeneration(generation);
    throw err;
  }
  let stopping: Promise<void> | undefined;
  return {
    generation,
    servers,
    addresses,
    telemetry,
    stop(drainMs = DEFAULT_DRAIN_MS) {
      stopping ??= (async () => {
        await Promise.all([...servers.values()].map((s) => s.drain(drainMs)));
        await releaseGeneration(generation);
        flushTelemetry(telemetry);
      })();
      return stopping;
    },
  };
}
