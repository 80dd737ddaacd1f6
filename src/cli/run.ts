// `portcullis run [-c FILE]`: the primary validates and supervises `workers` worker
// processes, which serve the listeners; SIGTERM/SIGINT drain them and exit 0.
import cluster from 'node:cluster';
import type { Command } from 'commander';
import { DEFAULT_DRAIN_MS } from '../runtime/ipc.js';

/**
 * How connections reach workers. 'none' lets every worker accept on the shared socket
 * (like nginx); 'rr' has the primary accept and hand each connection over IPC. The
 * default is the one that measured faster (README, Performance).
 */
export function schedulingPolicy(): number {
  return process.env.PORTCULLIS_SCHED === 'rr' ? cluster.SCHED_RR : cluster.SCHED_NONE;
}

export function register(program: Command): void {
  program
    .command('run')
    .description('run the proxy')
    .option('-c, --config <file>', 'config file (YAML or JSON)', 'portcullis.yaml')
    .option('--drain-timeout <ms>', 'how long in-flight requests may take to finish on shutdown', String(DEFAULT_DRAIN_MS))
    .action(async (opts: { config: string; drainTimeout: string }) => {
      // Each side loads only its own code (imported here, not at the top): the primary
      // never serves traffic, so it does without the proxy's front ends and upstream
      // clients, and a worker does without the admin listener, the dashboard and the
      // health probers. Both processes are a full Node.js each; what they load is RSS.
      if (cluster.isWorker) {
        const [{ runWorker }, { createWorkerMetrics, registerWorkerRegistry }, { createActivityRecorder, registerWorkerActivity }] = await Promise.all([
          import('../runtime/worker.js'),
          import('../telemetry/metrics.js'),
          import('../telemetry/activity.js'),
        ]);
        // one metrics registry per worker process, answering the primary's scrapes
        const metrics = createWorkerMetrics();
        registerWorkerRegistry(metrics.registry);
        // and one recorder of what the admin dashboard (/ui) shows, asked for the same way
        const activity = createActivityRecorder();
        registerWorkerActivity(activity);
        await runWorker(opts.config, metrics, activity);
        return;
      }
      cluster.schedulingPolicy = schedulingPolicy();
      const { startPrimary } = await import('../runtime/primary.js');
      const primary = await startPrimary(opts.config, { drainMs: Number(opts.drainTimeout) });
      await primary.stopped;
      process.exitCode = 0;
    });
}
