// The primary process: validates the config and provisions it once (so start-up fails
// closed with every error before any worker starts), forks the workers, replaces a
// worker that dies, rotates the shared session-ticket secret, and drains on SIGTERM.
// It never serves proxy traffic itself.
import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { randomBytes } from 'node:crypto';
import { loadConfig } from '../config/load.js';
import type { LoadedConfig } from '../config/schema.js';
import { buildGeneration, releaseGeneration } from './generation.js';
import { createTelemetry, type Telemetry } from '../telemetry/telemetry.js';
import { isPortcullisMessage, WORKER_ENV, type FromWorker, type ToWorker } from './ipc.js';
import { ErrorCodes, PortcullisError } from '../errors.js';
import type { LoadedCert } from '../tls/listener-tls.js';
import { createPrimaryMetrics, collectClusterMetrics } from '../telemetry/metrics.js';
import { startAdmin, type AdminServer } from '../admin/server.js';
import { buildStatus } from '../admin/status.js';
import { VERSION } from '../version.js';

export interface PrimaryOptions {
  drainMs: number;
  /** how often the session-ticket secret changes */
  ticketRotationMs?: number;
}

export interface PrimaryState {
  config: LoadedConfig;
  telemetry: Telemetry;
  startedAt: Date;
  workersWanted: number;
  ready(): boolean;
  workers(): { id: number; pid: number | undefined; ready: boolean; started: string }[];
  addresses: Map<string, { host: string; port: number }>;
  certificates: LoadedCert[];
  generation: number;
  /** resolves once SIGTERM/SIGINT drained every worker */
  stopped: Promise<void>;
  admin: AdminServer;
}

function workerCount(config: LoadedConfig): number {
  return config.workers === 'auto' ? Math.max(1, availableParallelism()) : config.workers;
}

export async function startPrimary(configPath: string, opts: PrimaryOptions): Promise<PrimaryState> {
  const config = await loadConfig(configPath, { checkFiles: true });
  const telemetry = createTelemetry(config.log);
  // provision once here: a bad certificate or key stops start-up before any fork
  const probe = buildGeneration(config, 1, telemetry);
  const certificates = [...probe.listeners.values()].flatMap((l) => l.tls?.loaded ?? []);
  await releaseGeneration(probe);

  let secret = randomBytes(32);
  const wanted = workerCount(config);
  const primaryStartedAt = new Date();
  const metrics = createPrimaryMetrics();
  metrics.setCertificates(certificates);
  const readyIds = new Set<number>();
  const startedAt = new Map<number, Date>();
  const addresses = new Map<string, { host: string; port: number }>();
  let shuttingDown = false;
  let startupDone = false;
  let recentCrashes: number[] = [];

  const fork = (): Worker => {
    const w = cluster.fork({ [WORKER_ENV.ticketSecret]: secret.toString('hex'), [WORKER_ENV.drainMs]: String(opts.drainMs) });
    startedAt.set(w.id, new Date());
    w.on('message', (m: unknown) => {
      if (!isPortcullisMessage(m)) return;
      const msg = m as FromWorker;
      if (msg.pcl === 'ready') {
        readyIds.add(w.id);
        for (const [name, a] of Object.entries(msg.addresses)) addresses.set(name, a);
        if (!startupDone && readyIds.size === wanted) {
          startupDone = true;
          for (const [name, a] of addresses) {
            const l = config.listeners.find((x) => x.name === name);
            telemetry.log.info({ event: 'listening', listener: name, address: `${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`, tls: !!l?.tls, client_auth: l?.tls?.client_auth ?? 'none', workers: wanted }, `listener ${name} ready`);
          }
          onReady();
        }
      } else if (msg.pcl === 'fatal') {
        telemetry.log.error({ event: 'worker_failed', worker: w.id, error: msg.message }, msg.message);
        if (!startupDone) onFatal(msg.message);
      }
    });
    return w;
  };

  let onReady: () => void = () => undefined;
  let onFatal: (m: string) => void = () => undefined;
  const started = new Promise<void>((resolve, reject) => {
    onReady = resolve;
    onFatal = (m) => reject(new PortcullisError(ErrorCodes.LISTEN_FAILED, m.replace(/ \[PCL_ERR_[A-Z_]+\]$/, '')));
  });

  cluster.on('exit', (w, code, signal) => {
    readyIds.delete(w.id);
    startedAt.delete(w.id);
    if (shuttingDown) return;
    if (!startupDone) {
      onFatal(`worker ${w.id} exited during start-up (${signal ?? `exit code ${code}`}); see the messages above`);
      return;
    }
    telemetry.log.warn({ event: 'worker_exited', worker: w.id, pid: w.process.pid, code, signal }, `worker ${w.id} exited (${signal ?? code}); starting a replacement`);
    const now = Date.now();
    recentCrashes = recentCrashes.filter((t) => now - t < 10_000);
    recentCrashes.push(now);
    // a worker that dies at once every time would otherwise spin the CPU
    const delay = recentCrashes.length > 3 ? Math.min(30_000, 250 * 2 ** (recentCrashes.length - 3)) : 0;
    setTimeout(() => {
      if (!shuttingDown) fork();
    }, delay);
  });

  const workersInfo = () =>
    Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w).map((w) => ({ id: w.id, pid: w.process.pid, ready: readyIds.has(w.id), started: (startedAt.get(w.id) ?? new Date()).toISOString() }));
  // the admin listener comes up first, so /readyz can say 503 until every worker listens
  const admin = await startAdmin({
    host: config.admin.host,
    port: config.admin.port,
    log: telemetry.log,
    provider: {
      ready: () => startupDone && !shuttingDown && readyIds.size > 0,
      metrics: () => collectClusterMetrics(metrics.registry),
      status: () =>
        buildStatus({
          version: VERSION,
          startedAt: primaryStartedAt,
          generation: 1,
          certificates,
          workers: workersInfo(),
          listeners: config.listeners.map((l) => ({ name: l.name, address: l.address, bound: addresses.get(l.name) ?? null, protocol: l.protocol, tls: !!l.tls, client_auth: l.tls?.client_auth ?? 'none' })),
        }),
    },
  });
  telemetry.log.info({ event: 'admin_listening', address: `${config.admin.host.includes(':') ? `[${config.admin.host}]` : config.admin.host}:${admin.port}` }, 'admin listener ready');

  for (let i = 0; i < wanted; i++) fork();
  try {
    await started;
  } catch (err) {
    shuttingDown = true;
    for (const w of Object.values(cluster.workers ?? {})) w?.kill();
    await admin.close();
    throw err;
  }

  const rotation = setInterval(() => {
    secret = randomBytes(32);
    broadcast({ pcl: 'ticket-secret', secret: secret.toString('hex') });
  }, opts.ticketRotationMs ?? 3_600_000);
  rotation.unref();

  const stopped = new Promise<void>((resolve) => {
    const onSignal = (sig: NodeJS.Signals) => {
      if (shuttingDown) return;
      shuttingDown = true;
      clearInterval(rotation);
      telemetry.log.info({ event: 'shutdown', signal: sig }, 'draining workers');
      broadcast({ pcl: 'shutdown', drainMs: opts.drainMs });
      const deadline = setTimeout(() => {
        for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGKILL');
      }, opts.drainMs + 5_000);
      const check = () => {
        if (Object.keys(cluster.workers ?? {}).length === 0) {
          clearTimeout(deadline);
          void admin.close().finally(() => {
            telemetry.log.info({ event: 'stopped' }, 'stopped');
            resolve();
          });
        }
      };
      cluster.on('exit', check);
      check();
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });

  return {
    config,
    telemetry,
    startedAt: primaryStartedAt,
    workersWanted: wanted,
    ready: () => startupDone && !shuttingDown && readyIds.size > 0,
    workers: workersInfo,
    addresses,
    certificates,
    generation: 1,
    stopped,
    admin,
  };
}

function broadcast(m: ToWorker): void {
  for (const w of Object.values(cluster.workers ?? {})) {
    if (w?.isConnected()) w.send(m);
  }
}
