// `portcullis reload [-c FILE]`: asks a running instance to reload, through the admin
// address named in the config (default 127.0.0.1:9901), and prints the outcome.
import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseConfigText } from '../config/load.js';
import { DEFAULT_ADMIN_ADDRESS, splitAddress } from '../config/schema.js';
import { ErrorCodes, PortcullisError } from '../errors.js';

/**
 * Only the admin address is read, and without validating the rest: the point of a reload
 * is often a config that the running instance should judge (and report on).
 */
function adminAddress(configPath: string): { host: string; port: number } {
  let raw: unknown = {};
  try {
    raw = parseConfigText(readFileSync(configPath, 'utf8'), configPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new PortcullisError(ErrorCodes.CONFIG_NOT_FOUND, `config file not found: ${resolve(configPath)}; pass -c FILE (the admin address is read from it)`);
    }
    // guessing the default address here could reload some other instance and report success
    throw new PortcullisError(
      ErrorCodes.CONFIG_PARSE,
      `cannot read the admin address from ${resolve(configPath)} (${(err as Error).message.split('\n')[0]}); fix the file or pass --admin HOST:PORT of the instance to reload`,
    );
  }
  const address = (raw as { admin?: { address?: unknown } })?.admin?.address;
  const a = splitAddress(typeof address === 'string' ? address : DEFAULT_ADMIN_ADDRESS);
  if ('problem' in a) throw new PortcullisError(ErrorCodes.CONFIG_INVALID, `admin.address: ${a.problem}`);
  // a wildcard admin address is reached on loopback
  return { host: a.host === '0.0.0.0' ? '127.0.0.1' : a.host === '::' ? '::1' : a.host, port: a.port };
}

export function register(program: Command): void {
  program
    .command('reload')
    .description('reload a running instance through its admin address')
    .option('-c, --config <file>', 'config file of the running instance', 'portcullis.yaml')
    .option('--admin <host:port>', 'admin address (overrides the config)')
    .action(async (opts: { config: string; admin?: string }) => {
      let target: { host: string; port: number };
      if (opts.admin) {
        const a = splitAddress(opts.admin);
        if ('problem' in a) throw new PortcullisError(ErrorCodes.USAGE, `--admin: ${a.problem}`, { exitCode: 2 });
        target = a;
      } else {
        target = adminAddress(opts.config);
      }
      const url = `http://${target.host.includes(':') ? `[${target.host}]` : target.host}:${target.port}/reload`;
      let res: Response;
      try {
        res = await fetch(url, { method: 'POST' });
      } catch (err) {
        throw new PortcullisError(ErrorCodes.ADMIN_UNREACHABLE, `no portcullis admin listener answers at ${url} (${(err as Error & { cause?: { code?: string } }).cause?.code ?? (err as Error).message}); is it running with this config?`);
      }
      const body = (await res.json().catch(() => ({}))) as { ok?: boolean; generation?: number; error?: string };
      if (res.ok && body.ok) {
        process.stdout.write(`reloaded: now serving generation ${body.generation}\n`);
        return;
      }
      throw new PortcullisError(ErrorCodes.RELOAD_FAILED, `reload failed, still serving generation ${body.generation ?? '?'}: ${body.error ?? `HTTP ${res.status}`}`);
    });
}
