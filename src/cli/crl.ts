// `portcullis crl --ca DIR`: signs a fresh CRL for every CA of the folder whose key is
// present and writes them as one PEM bundle (DIR/crl.pem by default), the file a
// listener's `tls.crl` (or nginx's ssl_crl) points at.
import type { Command } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { relative, resolve } from 'node:path';
import { caPaths, updateCaDir, type CaDir, type IssuerRole } from '../pki/ca-store.js';
import { createCrl, crlSignedBy, crlToPem, parseCrls } from '../pki/crl.js';
import type { PendingFile } from '../pki/atomic-write.js';
import { parseDays } from './ca.js';
import { X509Certificate } from 'node:crypto';

/**
 * CRLs for the folder's CAs. With an intermediate there are two: Node and nginx check
 * revocation of every certificate in the chain, so the intermediate itself needs the
 * root's CRL. A CA whose key was moved offline keeps its last signed CRL in the bundle.
 */
export async function buildCrlFiles(ca: CaDir, opts: { days: number; out?: string }): Promise<{ files: PendingFile[]; path: string; missing: IssuerRole[]; nextUpdate: Date }> {
  const path = resolve(opts.out ?? caPaths(ca.dir).crl);
  const roles: IssuerRole[] = ca.intermediate ? ['intermediate', 'root'] : ['root'];
  const thisUpdate = new Date();
  const nextUpdate = new Date(thisUpdate.getTime() + opts.days * 86_400_000);
  const previous = existsSync(caPaths(ca.dir).crl) ? safeParse(readFileSync(caPaths(ca.dir).crl)) : [];
  const pems: string[] = [];
  const missing: IssuerRole[] = [];
  for (const role of roles) {
    const handle = role === 'root' ? ca.root : ca.intermediate;
    if (!handle) {
      missing.push(role);
      // only the root's key can go missing (an intermediate CA folder needs its key to work)
      const rootCert = new X509Certificate(ca.rootCertPem);
      const kept = previous.find((c) => crlSignedBy(c, rootCert));
      if (kept) pems.push(crlToPem(kept.der));
      continue;
    }
    ca.state.crlNumber[role] = (ca.state.crlNumber[role] ?? 0) + 1;
    const entries = ca.state.revoked
      .filter((r) => r.issuer === role)
      .map((r) => ({ serial: r.serial, date: new Date(r.revokedAt), reason: r.reason }));
    pems.push(await createCrl(handle, entries, { thisUpdate, nextUpdate, crlNumber: ca.state.crlNumber[role] }));
  }
  return { files: [{ path, data: pems.join('') }], path, missing, nextUpdate };
}

function safeParse(data: Buffer): ReturnType<typeof parseCrls> {
  try {
    return parseCrls(data);
  } catch {
    return [];
  }
}

function show(path: string): string {
  const r = relative(process.cwd(), path);
  return r && !r.startsWith('..') ? r : path;
}

export function register(program: Command): void {
  program
    .command('crl')
    .description('sign and write the CRL of a CA folder (revoke with: portcullis cert revoke)')
    .requiredOption('--ca <dir>', 'CA folder made by portcullis ca init')
    .option('--days <n>', 'days until the next update; relying parties refuse the CRL after that', '30')
    .option('--out <file>', 'where to write the PEM CRL bundle (default: DIR/crl.pem)')
    .action(async (opts: { ca: string; days: string; out?: string }) => {
      const days = parseDays('--days', opts.days);
      const built = await updateCaDir(opts.ca, async (ca) => {
        const b = await buildCrlFiles(ca, { days, out: opts.out });
        return { files: b.files, result: { ...b, revoked: ca.state.revoked.length } };
      });
      process.stdout.write(`Wrote CRL ${show(built.path)}: ${built.revoked} revoked certificate(s), next update ${built.nextUpdate.toISOString()}\n`);
      for (const m of built.missing) process.stdout.write(`  note: the ${m} CA key is not in the folder, so its CRL was not re-signed (the last one is kept if there was one)\n`);
      process.stdout.write(`  Point listeners[].tls.crl at it and reload; re-run before ${built.nextUpdate.toISOString()}.\n`);
    });
}
