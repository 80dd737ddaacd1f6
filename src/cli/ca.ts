// `portcullis ca init`: creates a private CA folder (root, optionally an intermediate that
// does the day-to-day signing) that `cert issue`, `cert revoke` and `crl` then use.
import { Command, Option } from 'commander';
import { relative } from 'node:path';
import { initCaDir, caPaths } from '../pki/ca-store.js';
import { KEY_TYPES, parseKeyType } from '../pki/keys.js';
import { ErrorCodes, PortcullisError } from '../errors.js';

/** Parses a positive whole number of days, as a usage error (exit 2) when it is not one. */
export function parseDays(flag: string, v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < 1) {
    throw new PortcullisError(ErrorCodes.USAGE, `${flag} must be a whole number of days above 0, got "${v}"`, { exitCode: 2 });
  }
  return n;
}

function show(path: string): string {
  const r = relative(process.cwd(), path);
  return r && !r.startsWith('..') ? r : path;
}

export function register(program: Command): void {
  const ca = program.command('ca').description('manage a private certificate authority');
  ca.command('init')
    .description('create a root CA (ECDSA P-256 by default) in a folder')
    .requiredOption('--dir <dir>', 'folder for the CA (created if missing)')
    .option('--name <name>', 'common name of the CA', 'Portcullis CA')
    .addOption(new Option('--key-type <type>', `key type: ${KEY_TYPES.join(', ')}`).default('ec-p256'))
    .option('--days <n>', 'validity of the root in days', '3650')
    .option('--intermediate', 'also create an intermediate CA that signs certificates, so the root key can be kept offline', false)
    .option('--force', 'replace an existing CA in the folder (everything it issued stops being trusted)', false)
    .action(async (opts: { dir: string; name: string; keyType: string; days: string; intermediate: boolean; force: boolean }) => {
      const keyType = parseKeyType(opts.keyType);
      const days = parseDays('--days', opts.days);
      if (!opts.name.trim()) throw new PortcullisError(ErrorCodes.USAGE, '--name must not be empty', { exitCode: 2 });
      const created = await initCaDir(opts.dir, { name: opts.name, keyType, days, intermediate: opts.intermediate, force: opts.force });
      const p = caPaths(created.dir);
      const out = process.stdout;
      out.write(`Created CA "${opts.name}" (${keyType}) in ${show(created.dir)}\n`);
      out.write(`  root certificate:   ${show(p.rootCert)}   <- trust this: listeners[].tls.client_ca\n`);
      out.write(`  root key:           ${show(p.rootKey)}   (mode 0600)\n`);
      if (created.intermediate) {
        out.write(`  intermediate:       ${show(p.intermediateCert)}\n`);
        out.write(`  intermediate key:   ${show(p.intermediateKey)}   (mode 0600; signs certificates and CRLs)\n`);
        out.write(`  The root key is only needed to renew or revoke the intermediate: move ${show(p.rootKey)} to offline storage.\n`);
      }
      out.write(`  state:              ${show(p.state)}   (issued and revoked serials)\n`);
      out.write(`Next: portcullis cert issue --ca ${show(created.dir)} --type server --cn localhost --out server\n`);
    });
}
