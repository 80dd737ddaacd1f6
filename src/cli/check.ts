// `portcullis check [-c FILE] [--strict]`: validates a config file and provisions it
// without listening (certificates parsed, keys matched, rules compiled), and prints either
// a one-line summary (exit 0) or every problem, one per line (exit 1). A config that works
// but will hurt (check-warnings.ts) gets warnings on stderr and still exits 0, unless
// --strict makes them errors (for CI).
import type { Command } from 'commander';
import { loadConfig } from '../config/load.js';
import { buildGeneration, releaseGeneration } from '../runtime/generation.js';
import { createTelemetry } from '../telemetry/telemetry.js';
import type { ListenerConfig, LoadedConfig } from '../config/schema.js';
import { configWarnings } from './check-warnings.js';
import { buildAdminTls } from '../admin/admin-tls.js';

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
    .description('validate a config file and the files it references; exit 1 listing every error, warnings on stderr')
    .option('-c, --config <file>', 'config file', './portcullis.yaml')
    .option('--strict', 'treat warnings (incomplete chain, CRL lock-out, expiring certificates, readable keys, unenforced optional client auth) as errors', false)
    .action(async (opts: { config: string; strict: boolean }) => {
      // errors propagate to main's reportError, which prints each on its own line and exits 1
      const config = await loadConfig(opts.config, { checkFiles: true });
      // provision without listening, as `nginx -t` does: parse every certificate and key,
      // match keys to certificates, build TLS contexts, compile rules and routes
      const generation = buildGeneration(config, 0, createTelemetry({ level: 'error', access: 'off' }));
      await releaseGeneration(generation);
      // and the admin listener's TLS, as `run` builds it before it starts
      buildAdminTls(config.admin);
      const warnings = configWarnings(config);
      if (opts.strict && warnings.length > 0) {
        process.stderr.write(`${config.configPath}: ${plural(warnings.length, 'problem')} in this configuration (--strict):\n`);
        for (const w of warnings) process.stderr.write(`error: ${w.message} [${w.code}]\n`);
        process.exitCode = 1;
        return;
      }
      for (const w of warnings) process.stderr.write(`warning: ${w.message} [${w.code}]\n`);
      const note = warnings.length > 0 ? `; ${plural(warnings.length, 'warning')} (--strict makes them errors)` : '';
      process.stdout.write(`${summarizeConfig(config)}${note}\n`);
    });
}
