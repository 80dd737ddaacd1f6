// `portcullis check [-c FILE]`: validates a config file and provisions it without listening
// (certificates parsed, keys matched, rules compiled), and
// prints either a one-line summary (exit 0) or every problem, one per line (exit 1).
import type { Command } from 'commander';
import { loadConfig } from '../config/load.js';
import { buildGeneration, releaseGeneration } from '../runtime/generation.js';
import { createTelemetry } from '../telemetry/telemetry.js';
import type { ListenerConfig, LoadedConfig } from '../config/schema.js';

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** "api https :8443": name, what clients speak to it, and where it listens. */
function describeListener(l: ListenerConfig): string {
  const kind = l.protocol === 'http' ? (l.tls ? 'https' : 'http') : l.tls ? 'tls' : 'tcp';
  const host = l.host === '0.0.0.0' || l.host === '::' ? '' : l.host.includes(':') ? `[${l.host}]` : l.host;
  return `${l.name} ${kind} ${host}:${l.port}`;
}

export function summarizeConfig(c: LoadedConfig): string {
  const routes = c.listeners.reduce((n, l) => n + l.routes.length, 0);
  return (
    `config OK: ${plural(c.listeners.length, 'listener')} (${c.listeners.map(describeListener).join(', ')}), ` +
    `${plural(Object.keys(c.upstreams).length, 'upstream')}, ${plural(routes, 'route')}`
  );
}

export function register(program: Command): void {
  program
    .command('check')
    .description('validate a config file and the files it references; exit 1 listing every error')
    .option('-c, --config <file>', 'config file', './portcullis.yaml')
    .action(async (opts: { config: string }) => {
      // errors propagate to main's reportError, which prints each on its own line and exits 1
      const config = await loadConfig(opts.config, { checkFiles: true });
      // provision without listening, as `nginx -t` does: parse every certificate and key,
      // match keys to certificates, build TLS contexts, compile rules and routes
      const generation = buildGeneration(config, 0, createTelemetry({ level: 'error', access: 'off' }));
      await releaseGeneration(generation);
      process.stdout.write(`${summarizeConfig(config)}\n`);
    });
}
