// The primary's side of a reload (SIGHUP, POST /reload, `portcullis reload`, or a watched
// file changing): validate and provision the new config in the primary, then have every
// worker prepare generation N+1 and commit it only if all of them prepared it. Any
// failure leaves the old generation serving and is logged, counted and kept for /status.
import type { Worker } from 'node:cluster';
import { loadConfig } from '../config/load.js';
import type { LoadedConfig } from '../config/schema.js';
import { buildGeneration, releaseGeneration } from './generation.js';
import { createTelemetry, type Telemetry } from '../telemetry/telemetry.js';
import type { LoadedCert } from '../tls/listener-tls.js';
import { describeError, type FromWorker, type ToWorker } from './ipc.js';

export interface ReloadResult {
  ok: boolean;
  generation: number;
  error?: string;
}

export interface LastReload {
  at: Date;
  ok: boolean;
  generation: number;
  trigger: string;
  error?: string;
}

export interface ReloadDeps {
  configPath: string;
  telemetry: Telemetry;
  workers(): Worker[];
  /** called once the new config is provisioned, before the workers prepare it (e.g. resolve its new host names) */
  provisioned?(config: LoadedConfig): Promise<void>;
  /** provisions what the primary itself serves (admin.tls); throwing fails the reload before any worker is asked */
  prepare?(config: LoadedConfig): void;
  /** called after every worker committed the new generation */
  applied(config: LoadedConfig, certificates: LoadedCert[], generation: number): void;
  counted(result: 'success' | 'failure'): void;
  timeoutMs?: number;
}

type Phase = 'prepared' | 'committed';

/** How many reloads the admin dashboard lists (newest first); older ones are in the log. */
export const RELOAD_HISTORY = 20;

export class ReloadCoordinator {
  generation = 1;
  last: LastReload | undefined;
  /** the last RELOAD_HISTORY reloads, newest first */
  readonly history: LastReload[] = [];
  private running: Promise<ReloadResult> | undefined;
  private again: Promise<ReloadResult> | undefined;
  private readonly waiters = new Map<string, (m: FromWorker & { pcl: Phase }) => void>();

  constructor(private readonly deps: ReloadDeps) {}

  /** Feed worker messages here (prepared / committed). */
  onWorkerMessage(w: Worker, m: FromWorker): void {
    if (m.pcl !== 'prepared' && m.pcl !== 'committed') return;
    this.waiters.get(`${w.id}/${m.pcl}/${m.id}`)?.(m);
  }

  /** Reloads now, or once more right after the reload in progress (triggers coalesce). */
  reload(trigger: string): Promise<ReloadResult> {
    if (!this.running) {
      this.running = this.run(trigger).finally(() => (this.running = undefined));
      return this.running;
    }
    this.again ??= this.running.then(() => {
      this.again = undefined;
      return this.reload(trigger);
    });
    return this.again;
  }

  private async run(trigger: string): Promise<ReloadResult> {
    const id = this.generation + 1;
    const log = this.deps.telemetry.log;
    log.info({ event: 'reload_started', trigger, generation: id }, `reload (${trigger}) started`);
    let config: LoadedConfig;
    let certificates: LoadedCert[];
    try {
      config = await loadConfig(this.deps.configPath, { checkFiles: true });
      // provision here first: every file read, every key matched, before a worker is asked
      const probe = buildGeneration(config, id, createTelemetry({ level: 'error', access: 'off' }));
      certificates = [...probe.listeners.values()].flatMap((l) => l.tls?.loaded ?? []);
      await releaseGeneration(probe);
      this.deps.prepare?.(config);
      await this.deps.provisioned?.(config);
    } catch (err) {
      return this.failed(trigger, id, describeError(err));
    }
    const workers = this.deps.workers().filter((w) => w.isConnected());
    const prepared = await Promise.all(workers.map((w) => this.ask(w, { pcl: 'prepare', id, config }, 'prepared')));
    const bad = prepared.find((m) => !m.ok);
    if (bad) {
      for (const w of workers) if (w.isConnected()) w.send({ pcl: 'abort', id } satisfies ToWorker);
      return this.failed(trigger, id, bad.error ?? 'a worker failed to prepare the new configuration');
    }
    const committed = await Promise.all(workers.map((w) => this.ask(w, { pcl: 'commit', id }, 'committed')));
    const notCommitted = committed.find((m) => !m.ok);
    if (notCommitted) {
      return this.failed(trigger, id, notCommitted.error ?? 'a worker failed to switch to the new configuration');
    }
    this.generation = id;
    this.remember({ at: new Date(), ok: true, generation: id, trigger });
    this.deps.counted('success');
    this.deps.applied(config, certificates, id);
    log.info({ event: 'reload_succeeded', trigger, generation: id }, `reload (${trigger}) succeeded: generation ${id}`);
    return { ok: true, generation: id };
  }

  private failed(trigger: string, id: number, error: string): ReloadResult {
    this.remember({ at: new Date(), ok: false, generation: this.generation, trigger, error });
    this.deps.counted('failure');
    this.deps.telemetry.log.error({ event: 'reload_failed', trigger, attempted_generation: id, generation: this.generation, error }, `reload (${trigger}) failed; still serving generation ${this.generation}: ${error}`);
    return { ok: false, generation: this.generation, error };
  }

  private remember(r: LastReload): void {
    this.last = r;
    this.history.unshift(r);
    if (this.history.length > RELOAD_HISTORY) this.history.length = RELOAD_HISTORY;
  }

  private ask(w: Worker, msg: ToWorker & { id: number }, phase: Phase): Promise<{ ok: boolean; error?: string }> {
    const key = `${w.id}/${phase}/${msg.id}`;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters.delete(key);
        resolve({ ok: false, error: `worker ${w.id} did not answer ${msg.pcl} in time` });
      }, this.deps.timeoutMs ?? 30_000);
      const onExit = () => {
        clearTimeout(timer);
        this.waiters.delete(key);
        resolve({ ok: false, error: `worker ${w.id} exited during the reload` });
      };
      w.once('exit', onExit);
      this.waiters.set(key, (m) => {
        clearTimeout(timer);
        w.off('exit', onExit);
        this.waiters.delete(key);
        resolve({ ok: m.ok, error: m.error });
      });
      w.send(msg);
    });
  }
}
