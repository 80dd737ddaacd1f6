// `portcullis reload [-c FILE]`: asks a running instance to reload, through the admin
// address named in the config (default 127.0.0.1:9901), and prints the outcome. With
// admin.tls in the config, the admin listener speaks HTTPS and wants a client
// certificate: --admin-cert/--admin-key present one, --admin-ca verifies the server.
import type { Command } from 'commander';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseConfigText } from '../config/load.js';
import { DEFAULT_ADMIN_ADDRESS, splitAddress } from '../config/schema.js';
import { ErrorCodes, PortcullisError } from '../errors.js';

/**
 * Only the admin address is read, and without validating the rest: the point of a reload
 * is often a config that the running instance should judge (and report on).
 */
function adminAddress(configPath: string): { host: string; port: number; tls: boolean } {
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
  const admin = (raw as { admin?: { address?: unknown; tls?: unknown } })?.admin;
  const address = admin?.address;
  const a = splitAddress(typeof address === 'string' ? address : DEFAULT_ADMIN_ADDRESS);
  if ('problem' in a) throw new PortcullisError(ErrorCodes.CONFIG_INVALID, `admin.address: ${a.problem}`);
  // a wildcard admin address is reached on loopback
  return { host: a.host === '0.0.0.0' ? '127.0.0.1' : a.host === '::' ? '::1' : a.host, port: a.port, tls: admin?.tls !== undefined && admin.tls !== null };
}

interface AdminClientTls {
  cert: Buffer;
  key: Buffer;
  ca: Buffer;
}

function readFlagFile(flag: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new PortcullisError(ErrorCodes.FILE_UNREADABLE, `${flag}: cannot read ${resolve(file)} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); check the path`, { exitCode: 2 });
  }
}

/** POST /reload over HTTPS with a client certificate; the status and body. */
function postTls(url: string, t: AdminClientTls): Promise<{ status: number; body: string }> {
  return new Promise((resolvePost, reject) => {
    const req = https.request(url, { method: 'POST', cert: t.cert, key: t.key, ca: t.ca, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolvePost({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

export function register(program: Command): void {
  program
    .command('reload')
    .description('reload a running instance through its admin address')
    .option('-c, --config <file>', 'config file of the running instance', 'portcullis.yaml')
    .option('--admin <host:port>', 'admin address (overrides the config)')
    .option('--admin-cert <file>', 'client certificate for an admin listener with admin.tls (PEM)')
    .option('--admin-key <file>', 'private key of --admin-cert (PEM)')
    .option('--admin-ca <file>', 'CA that signed the admin listener\'s certificate (PEM)')
    .action(async (opts: { config: string; admin?: string; adminCert?: string; adminKey?: string; adminCa?: string }) => {
      let target: { host: string; port: number; tls: boolean };
      const given = [opts.adminCert, opts.adminKey, opts.adminCa].filter((v) => v !== undefined).length;
      if (given !== 0 && given !== 3) {
        throw new PortcullisError(ErrorCodes.USAGE, '--admin-cert, --admin-key and --admin-ca go together; give all three for an admin listener with admin.tls', { exitCode: 2 });
      }
      if (opts.admin) {
        const a = splitAddress(opts.admin);
        if ('problem' in a) throw new PortcullisError(ErrorCodes.USAGE, `--admin: ${a.problem}`, { exitCode: 2 });
        target = { ...a, tls: given === 3 };
      } else {
        target = adminAddress(opts.config);
      }
      if (target.tls && given === 0) {
        throw new PortcullisError(ErrorCodes.USAGE, `the admin listener of ${resolve(opts.config)} requires a client certificate (admin.tls); pass --admin-cert, --admin-key and --admin-ca (or send SIGHUP to the process)`, { exitCode: 2 });
      }
      const useTls = given === 3;
      const url = `${useTls ? 'https' : 'http'}://${target.host.includes(':') ? `[${target.host}]` : target.host}:${target.port}/reload`;
      let status: number;
      let text: string;
      try {
        if (useTls) {
          ({ status, body: text } = await postTls(url, { cert: readFlagFile('--admin-cert', opts.adminCert!), key: readFlagFile('--admin-key', opts.adminKey!), ca: readFlagFile('--admin-ca', opts.adminCa!) }));
        } else {
          const res = await fetch(url, { method: 'POST' });
          status = res.status;
          text = await res.text();
        }
      } catch (err) {
        if (err instanceof PortcullisError) throw err;
        const e = err as Error & { code?: string; cause?: { code?: string } };
        throw new PortcullisError(ErrorCodes.ADMIN_UNREACHABLE, `no portcullis admin listener answers at ${url} (${e.cause?.code ?? e.code ?? e.message}); is it running with this config?`);
      }
      let body: { ok?: boolean; generation?: number; error?: string; message?: string } = {};
      try {
        body = JSON.parse(text) as typeof body;
      } catch {
        // not JSON: the status says enough
      }
      if (status >= 200 && status < 300 && body.ok) {
        process.stdout.write(`reloaded: now serving generation ${body.generation}\n`);
        return;
      }
      if (status === 401 || status === 403) {
        throw new PortcullisError(ErrorCodes.RELOAD_FAILED, `the admin listener at ${url} refused this client (HTTP ${status}): ${body.message ?? body.error ?? 'no reason given'}`);
      }
      throw new PortcullisError(ErrorCodes.RELOAD_FAILED, `reload failed, still serving generation ${body.generation ?? '?'}: ${body.error ?? `HTTP ${status}`}`);
    });
}
