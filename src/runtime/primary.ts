// The primary process: validates the config and provisions it once (so start-up fails
// closed with every error before any worker starts), runs the admin listener, forks the
// workers, replaces a worker that dies, coordinates reloads (SIGHUP, POST /reload, file
// changes), rotates the shared session-ticket secret, and drains on SIGTERM/SIGINT.
// It never serves proxy traffic itself.
//
// Shutdown (rolling updates): the signal turns /readyz to 503 at once; the workers keep
// accepting and serving for shutdown.delay, so load balancers take the endpoint out
// before anything is refused; then the workers close their listeners and drain (in-flight
// requests finish, open connections are told to close, --drain-timeout bounds it all).
// A second signal during the delay skips the rest of it.
import { checkRuntime } from '../platform/node-internals.js';
import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { randomBytes } from 'node:crypto';
import { loadConfig, referencedFiles } from '../config/load.js';
import type { LoadedConfig } from '../config/schema.js';
import { buildGeneration, releaseGeneration } from './generation.js';
import { createTelemetry, type Telemetry } from '../telemetry/telemetry.js';
import { isPortcullisMessage, WORKER_ENV, type FromWorker, type ToWorker } from './ipc.js';
import { ErrorCodes, PortcullisError } from '../errors.js';
import type { LoadedCert } from '../tls/listener-tls.js';
import { createPrimaryMetrics, collectClusterMetrics } from '../telemetry/metrics.js';
import { startAdmin, type AdminServer } from '../admin/server.js';
import { buildAdminTls, type AdminTls } from '../admin/admin-tls.js';
import { startProbe, type ProbeServer } from '../admin/probe-server.js';
import { buildStatus } from '../admin/status.js';
import { buildDashboard } from '../admin/ui-data.js';
import { collectClusterActivity } from '../telemetry/activity.js';
import { VERSION } from '../version.js';
import { ReloadCoordinator } from './reload.js';
import { watchFiles } from './watch.js';
import { workerOpenSslArgs } from './openssl-config.js';
import { HealthProbers, type ProbeReport } from '../upstream/health-check.js';
import type { HealthUpdate } from './ipc.js';
import { upstreamStatus, UPSTREAMS_QUERY, type WorkerUpstreams } from '../upstream/status.js';
import { queryWorkers } from '../telemetry/cluster-query.js';
import { DnsResolver, addressBook, dnsChangeLog, endpointTargets, type DnsChange } from '../upstream/dns.js';

export interface PrimaryOptions {
  drainMs: number;
  /** how often the session-ticket secret changes */
  ticketRotationMs?: number;
}

export interface PrimaryState {
  telemetry: Telemetry;
  admin: AdminServer;
  /** resolves once SIGTERM/SIGINT drained every worker */
  stopped: Promise<void>;
}

function workerCount(config: LoadedConfig): number {
  return config.workers === 'auto' ? Math.max(1, availableParallelism()) : config.workers;
}

const hostPort = (host: string, port: number) => `${host.includes(':') ? `[${host}]` : host}:${port}`;

/** Files whose change triggers a reload: everything the config references, and the config. */
function watchedFiles(config: LoadedConfig): string[] {
  return [config.configPath, ...referencedFiles(config).map((r) => r.file)];
}

export async function startPrimary(configPath: string, opts: PrimaryOptions): Promise<PrimaryState> {
  // a runtime whose internals changed stops start-up here, with one sentence, before any fork
  checkRuntime();
  let config = await loadConfig(configPath, { checkFiles: true });
  const telemetry = createTelemetry(config.log);
  // provision once here: a bad certificate or key stops start-up before any fork
  const probe = buildGeneration(config, 1, telemetry);
  let certificates: LoadedCert[] = [...probe.listeners.values()].flatMap((l) => l.tls?.loaded ?? []);
  await releaseGeneration(probe);
  // admin.tls: read and checked like a listener's, before anything starts
  const adminTls = buildAdminTls(config.admin);
  /** a reload's admin.tls, built in prepare, swapped in once every worker committed */
  let nextAdminTls: AdminTls | undefined;

  let secret = randomBytes(32);
  const wanted = workerCount(config);
  const startedAtPrimary = new Date();
  const metrics = createPrimaryMetrics();
  metrics.setCertificates(certificates);
  const readyIds = new Set<number>();
  const startedAt = new Map<number, Date>();
  /** the generation each worker serves, as it reported it */
  const workerGeneration = new Map<number, number>();
  const addresses = new Map<string, { host: string; port: number }>();
  let shuttingDown = false;
  /** when the signal came and when the workers are told to drain (for /status) */
  let shutdown: { signal: string; at: Date; drainAt: Date } | undefined;
  /** set while shutdown.delay runs: workers still serve, and one that dies is replaced */
  let grace: NodeJS.Timeout | undefined;
  let startupDone = false;
  let recentCrashes: number[] = [];
  // a worker whose process has exited is not live, even while cluster.workers still holds
  // it: cluster removes a worker only once both 'exit' and 'disconnect' have happened, and
  // they come in either order
  const liveWorkers = () => Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w && !w.isDead());

  // one prober per endpoint for the whole process tree; workers learn the verdicts by IPC
  const toUpdate = (r: { upstream: string; endpoint: string; healthy: boolean; last_probe?: HealthUpdate['outcome'] | null; outcome?: HealthUpdate['outcome'] }): HealthUpdate => ({
    upstream: r.upstream,
    endpoint: r.endpoint,
    healthy: r.healthy,
    outcome: r.outcome ?? r.last_probe ?? { ok: true, at: 0 },
  });
  const probers = new HealthProbers((r: ProbeReport) => {
    metrics.probe(r.upstream, r.endpoint, r.outcome.ok);
    if (!r.changed) return;
    metrics.setEndpointHealth(r.upstream, r.endpoint, r.healthy);
    if (r.healthy) telemetry.log.info({ event: 'upstream_endpoint_healthy', upstream: r.upstream, endpoint: r.endpoint }, `upstream ${r.upstream} endpoint ${r.endpoint} passes its health check again`);
    else telemetry.log.warn({ event: 'upstream_endpoint_unhealthy', upstream: r.upstream, endpoint: r.endpoint, error: r.outcome.error }, `upstream ${r.upstream} endpoint ${r.endpoint} fails its health check (${r.outcome.error ?? 'failed'}); no traffic goes to it until it passes`);
    broadcast({ pcl: 'health', updates: [toUpdate(r)] });
  });
  const healthGauges = (c: LoadedConfig) => {
    metrics.resetEndpointHealth();
    const verdicts = new Map(probers.status().map((s) => [`${s.upstream}\0${s.endpoint}`, s.healthy]));
    for (const [name, up] of Object.entries(c.upstreams)) {
      for (const raw of up.endpoints) {
        for (const t of endpointTargets(raw).targets) metrics.setEndpointHealth(name, t.label, verdicts.get(`${name}\0${t.label}`) ?? true);
      }
    }
  };
  // one resolver for the process tree (upstream/dns.ts): address sets reach the workers by
  // IPC, the probers follow them here
  const resolver = new DnsResolver((c: DnsChange) => {
    const line = dnsChangeLog(c);
    telemetry.log[line.level](line.fields, line.message);
    broadcast({ pcl: 'dns', hosts: [c.now] });
    if (c.kind === 'changed' && !shuttingDown) {
      probers.update(config);
      healthGauges(config);
    }
  });
  /** both configurations' names, while a reload is being prepared */
  const bothUpstreams = (a: LoadedConfig, b: LoadedConfig) => ({
    upstreams: Object.fromEntries([...Object.entries(a.upstreams).map(([k, v]) => [`old:${k}`, v] as const), ...Object.entries(b.upstreams).map(([k, v]) => [`new:${k}`, v] as const)]),
  });
  await resolver.update(config);
  probers.update(config);
  healthGauges(config);

  const reloads = new ReloadCoordinator({
    configPath,
    telemetry,
    workers: liveWorkers,
    counted: (r) => metrics.reload(r),
    // names new in this config resolve before the workers build their generation
    provisioned: (next) => resolver.update(bothUpstreams(config, next)),
    prepare: (next) => {
      nextAdminTls = buildAdminTls(next.admin);
    },
    applied: (next, certs) => {
      if (nextAdminTls) admin.setTls(nextAdminTls);
      nextAdminTls = undefined;
      const before = config;
      config = next;
      certificates = certs;
      metrics.setCertificates(certs);
      watcher.update(watchedFiles(next));
      void resolver.update(next);
      probers.update(next);
      healthGauges(next);
      const adminShape = (c: LoadedConfig) => JSON.stringify([c.admin.address, c.admin.probe_address, !!c.admin.tls]);
      if (workerCount(next) !== workerCount(before) || adminShape(next) !== adminShape(before) || JSON.stringify(next.log) !== JSON.stringify(before.log)) {
        telemetry.log.warn({ event: 'reload_needs_restart' }, 'changes to workers, admin or log settings take effect after a restart');
      }
    },
  });

  const openssl = workerOpenSslArgs();
  cluster.setupPrimary({ execArgv: openssl.execArgv });
  if (openssl.skipped) {
    telemetry.log.info({ event: 'openssl_config_kept', reason: openssl.skipped }, 'workers keep the operator\'s OpenSSL configuration; TLS 1.3 sends OpenSSL\'s default of 2 session tickets');
  }

  const fork = (): Worker => {
    const w = cluster.fork({
      [WORKER_ENV.ticketSecret]: secret.toString('hex'),
      [WORKER_ENV.drainMs]: String(opts.drainMs),
      [WORKER_ENV.generation]: String(reloads.generation),
      [WORKER_ENV.health]: JSON.stringify(probers.status().map(toUpdate)),
      [WORKER_ENV.dns]: JSON.stringify(addressBook()),
    });
    startedAt.set(w.id, new Date());
    w.on('message', (m: unknown) => {
      if (!isPortcullisMessage(m)) return;
      const msg = m as FromWorker;
      if (msg.pcl === 'config-request') {
        // the configuration in force (a reload's new one only once every worker committed it)
        w.send({ pcl: 'config', config } satisfies ToWorker);
      } else if (msg.pcl === 'ready') {
        // address sets and verdicts that changed while it started
        w.send({ pcl: 'dns', hosts: addressBook() } satisfies ToWorker);
        w.send({ pcl: 'health', updates: probers.status().map(toUpdate) } satisfies ToWorker);
        readyIds.add(w.id);
        workerGeneration.set(w.id, msg.generation);
        for (const [name, a] of Object.entries(msg.addresses)) addresses.set(name, a);
        if (!startupDone && readyIds.size === wanted) {
          startupDone = true;
          for (const [name, a] of addresses) {
            const l = config.listeners.find((x) => x.name === name);
            telemetry.log.info({ event: 'listening', listener: name, address: hostPort(a.host, a.port), tls: !!l?.tls, client_auth: l?.tls?.client_auth ?? 'none', workers: wanted }, `listener ${name} ready`);
          }
          onReady();
        }
      } else if (msg.pcl === 'fatal') {
        telemetry.log.error({ event: 'worker_failed', worker: w.id, error: msg.message }, msg.message);
        if (!startupDone) onFatal(msg.message);
      } else if (msg.pcl === 'committed' && msg.ok && msg.addresses) {
        workerGeneration.set(w.id, msg.id);
        addresses.clear();
        for (const [name, a] of Object.entries(msg.addresses)) addresses.set(name, a);
        reloads.onWorkerMessage(w, msg);
      } else {
        reloads.onWorkerMessage(w, msg);
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
    workerGeneration.delete(w.id);
    if (shuttingDown && !grace) return;
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
      if (!shuttingDown || grace) fork();
    }, delay);
  });

  const workersInfo = () =>
    liveWorkers().map((w) => ({ id: w.id, pid: w.process.pid, ready: readyIds.has(w.id), generation: workerGeneration.get(w.id) ?? null, started: (startedAt.get(w.id) ?? new Date()).toISOString() }));
  const ready = () => startupDone && !shuttingDown && readyIds.size > 0;
  const reload = async (trigger: string) => {
    if (!startupDone || shuttingDown) return { ok: false, generation: reloads.generation, error: 'not running yet (or shutting down); try again' };
    const r = await reloads.reload(trigger);
    watcher.markTried();
    return r;
  };
  // the admin listener comes up first, so /readyz can say 503 until every worker listens
  const admin = await startAdmin({
    host: config.admin.host,
    port: config.admin.port,
    log: telemetry.log,
    provider: {
      ready,
      shuttingDown: () => shuttingDown,
      metrics: () => collectClusterMetrics(metrics.registry),
      status: async () => ({
        ...buildStatus({
          version: VERSION,
          startedAt: startedAtPrimary,
          generation: reloads.generation,
          certificates,
          workers: workersInfo(),
          listeners: config.listeners.map((l) => ({ name: l.name, address: l.address, bound: addresses.get(l.name) ?? null, protocol: l.protocol, tls: !!l.tls, client_auth: l.tls?.client_auth ?? 'none' })),
          ...(reloads.last ? { lastReload: { at: reloads.last.at, ok: reloads.last.ok, generation: reloads.last.generation, error: reloads.last.error } } : {}),
        }),
        ...(reloads.last ? { last_reload_trigger: reloads.last.trigger } : {}),
        ...(shutdown ? { shutdown: { signal: shutdown.signal, since: shutdown.at.toISOString(), drain_from: shutdown.drainAt.toISOString() } } : {}),
        // live state (in flight, ejections, last error) is per worker: asked for per request
        upstreams: upstreamStatus(config.upstreams, probers.status(), await queryWorkers<WorkerUpstreams>(UPSTREAMS_QUERY, { timeoutMs: 1_000 })),
      }),
      reload: () => reload('admin'),
      // the dashboard polls this every 2 s; a worker slower than 1 s is left out of one answer
      ui: async () => {
        const [activity, live] = await Promise.all([collectClusterActivity({ timeoutMs: 1000 }), queryWorkers<WorkerUpstreams>(UPSTREAMS_QUERY, { timeoutMs: 1_000 })]);
        return buildDashboard({
          version: VERSION,
          startedAt: startedAtPrimary,
          generation: reloads.generation,
          workers: { configured: workerCount(config), live: readyIds.size, answered: activity.workers_answered },
          certificates,
          config,
          upstreams: upstreamStatus(config.upstreams, probers.status(), live),
          reloads: reloads.history,
          activity,
        });
      },
    },
    tls: adminTls,
  });
  telemetry.log.info({ event: 'admin_listening', address: hostPort(config.admin.host, admin.port), tls: !!adminTls }, 'admin listener ready');
  let probeServer: ProbeServer | undefined;
  if (config.admin.probe) {
    try {
      probeServer = await startProbe({ host: config.admin.probe.host, port: config.admin.probe.port, source: { ready, shuttingDown: () => shuttingDown }, log: telemetry.log });
    } catch (err) {
      await admin.close();
      throw err;
    }
    telemetry.log.info({ event: 'probe_listening', address: hostPort(config.admin.probe.host, probeServer.port) }, 'probe listener ready (/healthz, /readyz)');
  }
  const closeAdmin = () => Promise.all([admin.close(), probeServer?.close()]);

  const watcher = watchFiles(watchedFiles(config), () => void reload('file'));
  const rotation = setInterval(() => {
    secret = randomBytes(32);
    broadcast({ pcl: 'ticket-secret', secret: secret.toString('hex') });
  }, opts.ticketRotationMs ?? 3_600_000);
  rotation.unref();

  // Signals are handled from before the first fork: a SIGTERM that arrives while workers
  // start (or the instant they are ready) must drain, not kill the primary outright.
  const stopped = new Promise<void>((resolve) => {
    const onSignal = (sig: NodeJS.Signals) => {
      if (shuttingDown) {
        if (grace) {
          clearTimeout(grace);
          grace = undefined;
          telemetry.log.info({ event: 'shutdown_delay_skipped', signal: sig }, `${sig} again: draining now`);
          if (shutdown) shutdown.drainAt = new Date();
          drain(true);
        }
        return;
      }
      shuttingDown = true;
      clearInterval(rotation);
      watcher.close();
      // nothing routes to a proxy that never became ready: no reason to wait
      const delay = startupDone ? config.shutdown.delay : 0;
      shutdown = { signal: sig, at: new Date(), drainAt: new Date(Date.now() + delay) };
      if (delay > 0) {
        telemetry.log.info({ event: 'shutdown', signal: sig, delay_ms: delay }, `/readyz is 503; serving for shutdown.delay (${delay} ms) before draining`);
        grace = setTimeout(() => {
          grace = undefined;
          drain(true);
        }, delay);
      } else {
        telemetry.log.info({ event: 'shutdown', signal: sig, delay_ms: 0 }, 'draining workers');
        drain(false);
      }
    };
    const drain = (afterDelay: boolean) => {
      if (afterDelay) telemetry.log.info({ event: 'drain_started' }, 'closing listeners and draining workers');
      // workers keep serving with the last verdicts during shutdown.delay; none after this
      probers.stop();
      resolver.stop();
      for (const w of liveWorkers()) {
        if (w.isConnected()) w.send({ pcl: 'shutdown', drainMs: opts.drainMs } satisfies ToWorker);
        // A worker still starting has no handlers yet, so SIGTERM's default action stops it;
        // one that has them (installed with its message handler) ignores SIGTERM and acts
        // on the message. Either way it stops.
        if (!readyIds.has(w.id)) w.process.kill('SIGTERM');
      }
      const deadline = setTimeout(() => {
        for (const w of liveWorkers()) w.process.kill('SIGKILL');
      }, opts.drainMs + 5_000);
      let closing = false;
      const check = () => {
        if (!closing && liveWorkers().length === 0) {
          closing = true;
          clearTimeout(deadline);
          void closeAdmin().finally(() => {
            telemetry.log.info({ event: 'stopped' }, 'stopped');
            resolve();
          });
        }
      };
      // on both: whichever of a worker's 'exit' and 'disconnect' comes last ends it
      cluster.on('exit', check);
      cluster.on('disconnect', check);
      check();
      onReady();
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    process.on('SIGHUP', () => void reload('SIGHUP'));
  });
  for (let i = 0; i < wanted; i++) fork();
  try {
    await started;
  } catch (err) {
    shuttingDown = true;
    watcher.close();
    probers.stop();
    resolver.stop();
    clearInterval(rotation);
    for (const w of liveWorkers()) w.kill();
    await closeAdmin();
    throw err;
  }


  return { telemetry, admin, stopped };
}

function broadcast(m: ToWorker): void {
  for (const w of Object.values(cluster.workers ?? {})) {
    if (w?.isConnected()) w.send(m);
  }
}
