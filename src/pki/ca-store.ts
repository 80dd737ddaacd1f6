// A CA folder on disk, as `portcullis ca init` creates it and `cert issue`, `cert revoke`
// and `crl` use it: certificates, keys (0600) and state.json, the index of every serial
// issued and revoked. Every change is written whole (temp file + rename) under a lock, so
// two commands running at once cannot lose an entry and a failure leaves nothing half-done.
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createCA, loadCA, type CaHandle } from './issue.js';
import type { KeyType } from './keys.js';
import type { RevocationReason } from './crl.js';
import { writeAllAtomic, type PendingFile } from './atomic-write.js';
import { ErrorCodes, PortcullisError } from '../errors.js';

export const CA_FILES = {
  rootCert: 'ca.crt',
  rootKey: 'ca.key',
  intermediateCert: 'intermediate.crt',
  intermediateKey: 'intermediate.key',
  state: 'state.json',
  crl: 'crl.pem',
  lock: 'state.lock',
} as const;

export type IssuerRole = 'root' | 'intermediate';

export interface IssuedRecord {
  serial: string;
  subject: string;
  /** client | server | both | ca */
  type: string;
  issuer: IssuerRole;
  issuedAt: string;
  notAfter: string;
}

export interface RevokedRecord {
  serial: string;
  issuer: IssuerRole;
  revokedAt: string;
  reason: RevocationReason;
}

export interface CaState {
  version: 1;
  name: string;
  keyType: KeyType;
  createdAt: string;
  /** which CA signs day-to-day certificates */
  signer: IssuerRole;
  issued: IssuedRecord[];
  revoked: RevokedRecord[];
  /** last CRL number used, per issuing CA */
  crlNumber: Record<IssuerRole, number>;
}

export interface CaDir {
  dir: string;
  state: CaState;
  /** the root certificate (trust anchor); its key only when it is still in the folder */
  rootCertPem: string;
  root: CaHandle | undefined;
  intermediate: CaHandle | undefined;
  /** the CA that signs leaves: the intermediate when there is one */
  signer: CaHandle;
}

export interface InitOptions {
  name: string;
  keyType: KeyType;
  days: number;
  intermediate: boolean;
  force: boolean;
}

export function caPaths(dir: string): Record<keyof typeof CA_FILES, string> {
  const out = {} as Record<keyof typeof CA_FILES, string>;
  for (const [k, v] of Object.entries(CA_FILES)) out[k as keyof typeof CA_FILES] = join(dir, v);
  return out;
}

/** Creates the CA folder. Refuses to replace an existing CA unless `force`. */
export async function initCaDir(dirArg: string, opts: InitOptions): Promise<CaDir> {
  const dir = resolve(dirArg);
  const p = caPaths(dir);
  if (existsSync(dir) && !statSync(dir).isDirectory()) {
    throw new PortcullisError(ErrorCodes.CA_DIR_INVALID, `${dir} exists and is not a folder; choose another --dir`, { path: dir });
  }
  const existing = [p.state, p.rootCert, p.rootKey, p.intermediateCert, p.intermediateKey].filter((f) => existsSync(f));
  if (existing.length && !opts.force) {
    throw new PortcullisError(ErrorCodes.CA_EXISTS, `${dir} already holds a CA (${existing.map((f) => f.slice(dir.length + 1)).join(', ')}); pass --force to replace it, which makes every certificate it issued untrusted`, {
      path: dir,
    });
  }
  const root = await createCA({ name: opts.name, keyType: opts.keyType, days: opts.days, pathLen: opts.intermediate ? 1 : 0 });
  const intermediate = opts.intermediate
    ? await createCA({ name: `${opts.name} Intermediate`, keyType: opts.keyType, days: Math.min(opts.days, Math.max(1, Math.floor(opts.days / 2))), parent: root, pathLen: 0 })
    : undefined;
  const now = new Date().toISOString();
  const state: CaState = {
    version: 1,
    name: opts.name,
    keyType: opts.keyType,
    createdAt: now,
    signer: intermediate ? 'intermediate' : 'root',
    issued: intermediate
      ? [{ serial: intermediate.cert.serialNumber.toUpperCase(), subject: intermediate.cert.subject, type: 'ca', issuer: 'root', issuedAt: now, notAfter: intermediate.cert.notAfter.toISOString() }]
      : [],
    revoked: [],
    crlNumber: { root: 0, intermediate: 0 },
  };
  const files: PendingFile[] = [
    { path: p.rootCert, data: root.certPem },
    { path: p.rootKey, data: root.keyPem, mode: 0o600 },
    { path: p.state, data: stateJson(state) },
  ];
  if (intermediate) {
    files.push({ path: p.intermediateCert, data: intermediate.certPem }, { path: p.intermediateKey, data: intermediate.keyPem, mode: 0o600 });
  }
  writeAllAtomic(files);
  // files of a replaced CA that the new one does not overwrite would now be lies
  if (!intermediate) {
    rmSync(p.intermediateCert, { force: true });
    rmSync(p.intermediateKey, { force: true });
  }
  rmSync(p.crl, { force: true });
  return { dir, state, rootCertPem: root.certPem, root, intermediate, signer: intermediate ?? root };
}

function stateJson(state: CaState): string {
  return JSON.stringify(state, null, 2) + '\n';
}

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new PortcullisError(ErrorCodes.FILE_NOT_FOUND, `${what} ${path} is missing`, { path, cause: err });
    throw new PortcullisError(ErrorCodes.FILE_UNREADABLE, `cannot read ${what} ${path} (${code ?? (err as Error).message})`, { path, cause: err });
  }
}

/** Opens a CA folder made by `ca init`. */
export async function openCaDir(dirArg: string): Promise<CaDir> {
  const dir = resolve(dirArg);
  const p = caPaths(dir);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new PortcullisError(ErrorCodes.CA_DIR_INVALID, `${dir} is not a folder; create a CA with: portcullis ca init --dir ${dirArg}`, { path: dir });
  }
  if (!existsSync(p.state)) {
    throw new PortcullisError(ErrorCodes.CA_DIR_INVALID, `${dir} is not a portcullis CA folder (no ${CA_FILES.state}); create one with: portcullis ca init --dir ${dirArg}`, { path: dir });
  }
  let state: CaState;
  try {
    state = JSON.parse(readText(p.state, 'the CA state')) as CaState;
    if (state.version !== 1 || !Array.isArray(state.issued) || !Array.isArray(state.revoked)) throw new Error('unexpected shape');
  } catch (err) {
    if (err instanceof PortcullisError) throw err;
    throw new PortcullisError(ErrorCodes.CA_DIR_INVALID, `${p.state} is damaged (${(err as Error).message}); restore it from a backup`, { path: p.state, cause: err });
  }
  const rootCertPem = readText(p.rootCert, 'the root CA certificate');
  const root = existsSync(p.rootKey) ? await loadCA(rootCertPem, readText(p.rootKey, 'the root CA key'), undefined, { cert: p.rootCert, key: p.rootKey }) : undefined;
  let intermediate: CaHandle | undefined;
  if (state.signer === 'intermediate') {
    const certPem = readText(p.intermediateCert, 'the intermediate CA certificate');
    intermediate = await loadCA(certPem, readText(p.intermediateKey, 'the intermediate CA key'), certPem, { cert: p.intermediateCert, key: p.intermediateKey });
  }
  const signer = intermediate ?? root;
  if (!signer) {
    throw new PortcullisError(ErrorCodes.CA_DIR_INVALID, `${p.rootKey} is missing, so this CA cannot sign; put the root key back to issue, revoke or sign CRLs`, { path: p.rootKey });
  }
  return { dir, state, rootCertPem, root, intermediate, signer };
}

/**
 * Runs `fn` with the CA's state locked, then writes its files and the new state in one
 * atomic step. `fn` changes `ca.state` in place and returns the extra files to write.
 */
export async function updateCaDir<T>(dirArg: string, fn: (ca: CaDir) => Promise<{ files: PendingFile[]; result: T }>): Promise<T> {
  const dir = resolve(dirArg);
  const release = await lock(caPaths(dir).lock, dir);
  try {
    const ca = await openCaDir(dir);
    const { files, result } = await fn(ca);
    writeAllAtomic([...files, { path: caPaths(dir).state, data: stateJson(ca.state) }]);
    return result;
  } finally {
    release();
  }
}

async function lock(path: string, dir: string): Promise<() => void> {
  if (!existsSync(dir)) {
    throw new PortcullisError(ErrorCodes.CA_DIR_INVALID, `${dir} does not exist; create a CA with: portcullis ca init --dir ${dir}`, { path: dir });
  }
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      writeFileSync(path, String(process.pid), { flag: 'wx', mode: 0o600 });
      return () => rmSync(path, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new PortcullisError(ErrorCodes.FILE_UNREADABLE, `cannot write to the CA folder ${dir} (${(err as NodeJS.ErrnoException).code}); check its permissions`, { path: dir, cause: err });
      }
      // a lock left by a crashed command must not block the CA for ever
      try {
        if (Date.now() - statSync(path).mtimeMs > 60_000) rmSync(path, { force: true });
      } catch {
        /* it went away meanwhile */
      }
      if (Date.now() > deadline) {
        throw new PortcullisError(ErrorCodes.CA_DIR_INVALID, `the CA folder ${dir} is locked by another portcullis command (${path}); wait for it, or delete the lock file if none is running`, { path });
      }
      await sleep(50);
    }
  }
}

/** The record for a serial, looking through what the CA issued. */
export function findIssued(state: CaState, serial: string): IssuedRecord | undefined {
  const want = serial.replace(/^0+(?=.)/, '');
  return state.issued.find((r) => r.serial.replace(/^0+(?=.)/, '') === want);
}
