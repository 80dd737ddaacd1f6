// A worker process: builds the configuration generation, serves the listeners, and
// drains when the primary says so (or when the primary goes away). Shutdown signals are
// the primary's to handle.
import { startProxy, type RunningProxy } from './proxy-process.js';
import { describeError, isPortcullisMessage, WORKER_ENV, type FromWorker, type ToWorker } from './ipc.js';
import { setTicketKeys } from '../tls/listener-tls.js';
import type { Generation } from './generation.js';
import type { LoadedConfig } from '../config/schema.js';
import type { MetricHooks } from '../telemetry/telemetry.js';
import type { ActivityHooks } from '../telemetry/activity.js';
import { applyProbe } from '../upstream/endpoint-state.js';
import type { HealthUpdate } from './ipc.js';
import { applyAddresses, type HostAddresses } from '../upstream/dns.js';
import { answerClusterQueries } from '../telemetry/cluster-query.js';
import { UPSTREAMS_QUERY, workerUpstreamSnapshot } from '../upstream/status.js';

function applyHealth(updates: HealthUpdate[]): void {
  for (const u of updates) applyProbe(u.upstream, u.endpoint, u.healthy, u.outcome);
}

function send(m: FromWorker): void {
  process.send?.(m);
}


/**
 * The configuration the primary validated (and serves from): asked for over IPC, so the
 * worker neither re-reads the file (which may have changed since) nor loads the validator.
 */
function configFromPrimary(configPath: string): Promise<LoadedConfig> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: unknown) => {
      if (!isPortcullisMessage(m) || (m as ToWorker).pcl !== 'config') return;
      done();
      resolve((m as ToWorker & { pcl: 'config' }).config);
    };
    const onDisconnect = () => {
      done();
      reject(new Error(`the primary went away before it sent the configuration (${configPath})`));
    };
    const done = () => {
      process.off('message', onMessage);
      process.off('disconnect', onDisconnect);
    };
    if (!process.connected) return reject(new Error(`no connection to the primary to ask for the configuration (${configPath})`));
    process.on('message', onMessage);
    process.once('disconnect', onDisconnect);
    send({ pcl: 'config-request' });
  });
}

export async function runWorker(configPath: string, metrics?: MetricHooks, activity?: ActivityHooks): Promise<void> {
  const secretHex = process.env[WORKER_ENV.ticketSecret];
  const drainDefault = Number(process.env[WORKER_ENV.drainMs] ?? 30_000);
  let proxy: RunningProxy;
  // the health check verdicts so far, before the first request is served
  try {
    applyHealth(JSON.parse(process.env[WORKER_ENV.health] ?? '[]') as HealthUpdate[]);
  } catch {
    // no verdicts: endpoints start healthy and the next change arrives by message
  }
  // the primary's resolver's address sets, before the generation expands its endpoints
  try {
    applyAddresses(JSON.parse(process.env[WORKER_ENV.dns] ?? '[]') as HostAddresses[]);
  } catch {
    // none: named endpoints have no address until the primary's next message
  }
  try {
    proxy = await startProxy(await configFromPrimary(configPath), {
      ticketSecret: secretHex ? Buffer.from(secretHex, 'hex') : undefined,
      metrics,
      activity,
      generation: Number(process.env[WORKER_ENV.generation] ?? 1),
    });
  } catch (err) {
    send({ pcl: 'fatal', message: describeError(err) });
    process.exitCode = 1;
    process.disconnect?.();
    return;
  }
  // /status: this worker's requests in flight, ejections and last errors per endpoint
  answerClusterQueries(UPSTREAMS_QUERY, () => {
    const g = proxy.generation;
    return workerUpstreamSnapshot([...g.upstreams.values(), ...g.tcpUpstreams.values()]);
  });
  send({ pcl: 'ready', generation: proxy.generation.id, addresses: Object.fromEntries(proxy.addresses) });

  const pending = new Map<number, Generation>();
  let stopping = false;
  const stop = (drainMs: number) => {
    if (stopping) return;
    stopping = true;
    void proxy.stop(drainMs).finally(() => process.exit(0));
  };
  process.on('message', (m: unknown) => {
    if (!isPortcullisMessage(m)) return;
    const msg = m as ToWorker;
    if (msg.pcl === 'shutdown') stop(msg.drainMs);
    else if (msg.pcl === 'health') applyHealth(msg.updates);
    else if (msg.pcl === 'dns') applyAddresses(msg.hosts);
    else if (msg.pcl === 'ticket-secret') {
      const secret = Buffer.from(msg.secret, 'hex');
      for (const l of proxy.generation.listeners.values()) if (l.tls) setTicketKeys(l.tls, secret);
    } else if (msg.pcl === 'prepare') {
      proxy.prepare(msg.id, msg.config).then(
        (g) => {
          pending.set(msg.id, g);
          send({ pcl: 'prepared', id: msg.id, ok: true });
        },
        (err) => send({ pcl: 'prepared', id: msg.id, ok: false, error: describeError(err) }),
      );
    } else if (msg.pcl === 'commit') {
      const g = pending.get(msg.id);
      pending.delete(msg.id);
      if (!g) {
        send({ pcl: 'committed', id: msg.id, ok: false, error: `generation ${msg.id} was not prepared` });
        return;
      }
      proxy.commit(g).then(
        () => send({ pcl: 'committed', id: msg.id, ok: true, addresses: Object.fromEntries(proxy.addresses) }),
        (err) => {
          void proxy.abort(g);
          send({ pcl: 'committed', id: msg.id, ok: false, error: describeError(err) });
        },
      );
    } else if (msg.pcl === 'abort') {
      const g = pending.get(msg.id);
      pending.delete(msg.id);
      if (g) void proxy.abort(g);
    }
  });
  // the primary coordinates reloads; a SIGHUP sent to the whole process group must not kill us
  process.on('SIGHUP', () => undefined);
  // Ctrl-C, and systemd's default KillMode=control-group, signal every process of the
  // group: the primary coordinates the shutdown (shutdown.delay, then the drain), so a
  // worker that still has its primary leaves it to that; one without stops by itself.
  process.on('SIGINT', () => undefined);
  process.on('SIGTERM', () => {
    if (!process.connected) stop(drainDefault);
  });
  // the primary died: stop serving rather than run unsupervised
  process.on('disconnect', () => stop(drainDefault));
}
