// `portcullis run [-c FILE]`: start the proxy and serve until SIGTERM/SIGINT, then drain.
import type { Command } from 'commander';
import { startProxy, DEFAULT_DRAIN_MS } from '../runtime/proxy-process.js';

export function register(program: Command): void {
  program
    .command('run')
    .description('run the proxy')
    .option('-c, --config <file>', 'config file (YAML or JSON)', 'portcullis.yaml')
    .option('--drain-timeout <ms>', 'how long in-flight requests may take to finish on shutdown', String(DEFAULT_DRAIN_MS))
    .action(async (opts: { config: string; drainTimeout: string }) => {
      const proxy = await startProxy(opts.config);
      for (const [name, a] of proxy.addresses) {
        const rt = proxy.generation.listeners.get(name)!;
        proxy.telemetry.log.info({ event: 'listening', listener: name, address: `${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`, tls: !!rt.tls, client_auth: rt.tls?.trust.clientAuth ?? 'none' }, `listener ${name} ready`);
      }
      const drainMs = Number(opts.drainTimeout);
      await new Promise<void>((resolve) => {
        const onSignal = (sig: NodeJS.Signals) => {
          proxy.telemetry.log.info({ event: 'shutdown', signal: sig }, 'draining connections');
          process.off('SIGTERM', onSignal);
          process.off('SIGINT', onSignal);
          proxy.stop(drainMs).then(resolve, resolve);
        };
        process.on('SIGTERM', onSignal);
        process.on('SIGINT', onSignal);
      });
      proxy.telemetry.log.info({ event: 'stopped' }, 'stopped');
      process.exitCode = 0;
    });
}
