// A worker process: builds the configuration generation, serves the listeners, and
// drains when the primary says so (or when the primary goes away).
import { startProxy, type RunningProxy } from './proxy-process.js';
import { isPortcullisMessage, WORKER_ENV, type FromWorker, type ToWorker } from './ipc.js';
import { setTicketKeys } from '../tls/listener-tls.js';
import { PortcullisError, PortcullisErrors } from '../errors.js';
import type { MetricHooks } from '../telemetry/telemetry.js';

function send(m: FromWorker): void {
  process.send?.(m);
}

export async function runWorker(configPath: string, metrics?: MetricHooks): Promise<void> {
  const secretHex = process.env[WORKER_ENV.ticketSecret];
  const drainDefault = Number(process.env[WORKER_ENV.drainMs] ?? 30_000);
  let proxy: RunningProxy;
  try {
    proxy = await startProxy(configPath, { ticketSecret: secretHex ? Buffer.from(secretHex, 'hex') : undefined, metrics });
  } catch (err) {
    const message = err instanceof PortcullisErrors ? err.errors.map((e) => `${e.message} [${e.code}]`).join('\n') : err instanceof PortcullisError ? `${err.message} [${err.code}]` : (err as Error).message;
    send({ pcl: 'fatal', message });
    process.exitCode = 1;
    process.disconnect?.();
    return;
  }
  send({ pcl: 'ready', addresses: Object.fromEntries(proxy.addresses) });

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
    else if (msg.pcl === 'ticket-secret') {
      const secret = Buffer.from(msg.secret, 'hex');
      for (const l of proxy.generation.listeners.values()) if (l.tls) setTicketKeys(l.tls, secret);
    }
  });
  // Ctrl-C reaches the whole process group: the primary coordinates the shutdown.
  process.on('SIGINT', () => undefined);
  process.on('SIGTERM', () => stop(drainDefault));
  // the primary died: stop serving rather than run unsupervised
  process.on('disconnect', () => stop(drainDefault));
}
