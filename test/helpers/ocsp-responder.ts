// A real OCSP responder for tests: `openssl ocsp` serving an index.txt in OpenSSL's CA
// database format, either as an HTTP server on a port or one-shot on a request file.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync, readFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { freePort } from './ports.js';

export interface IndexEntry {
  /** uppercase hex, as issueCert returns it */
  serial: string;
  revokedAt?: Date;
  reason?: string;
}

/** OpenSSL writes UTCTime as YYMMDDHHMMSSZ in its index. */
function utc(d: Date): string {
  return d.toISOString().replace(/^\d\d(\d\d)-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d).*$/, '$1$2$3$4$5$6Z');
}

/** index.txt lines: V (valid) or R (revoked, with date and reason); serials not listed answer "unknown". */
export function writeIndex(file: string, entries: IndexEntry[]): void {
  const far = utc(new Date(Date.now() + 365 * 86_400_000));
  const lines = entries.map((e) => {
    const serial = e.serial.length % 2 ? `0${e.serial}` : e.serial;
    const rev = e.revokedAt ? `${utc(e.revokedAt)}${e.reason ? `,${e.reason}` : ''}` : '';
    return `${e.revokedAt ? 'R' : 'V'}\t${far}\t${rev}\t${serial}\tunknown\t/CN=${serial}`;
  });
  writeFileSync(file, lines.join('\n') + '\n');
}

/** Writes the CA's certificate and key as files the openssl CLI can read. */
export function writeCaFiles(dir: string, name: string, ca: { certPem: string; keyPem: string }): { cert: string; key: string } {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  writeFileSync(cert, ca.certPem);
  writeFileSync(key, ca.keyPem, { mode: 0o600 });
  return { cert, key };
}

export interface ResponderFiles {
  index: string;
  /** the issuing CA certificate */
  ca: string;
  /** who signs responses: the CA itself or a delegated responder */
  signerCert: string;
  signerKey: string;
  /** nextUpdate = now + nmin minutes; left out: responses carry no nextUpdate */
  nmin?: number;
}

function responderArgs(f: ResponderFiles): string[] {
  return ['ocsp', '-index', f.index, '-CA', f.ca, '-rsigner', f.signerCert, '-rkey', f.signerKey, ...(f.nmin ? ['-nmin', String(f.nmin)] : [])];
}

/** One request answered offline (no network): request DER in, response DER out. */
export function respondOnce(dir: string, f: ResponderFiles, request: Buffer, extra: string[] = []): Buffer {
  const reqFile = join(dir, `req-${process.pid}-${Math.random().toString(16).slice(2)}.der`);
  const respFile = `${reqFile}.resp`;
  writeFileSync(reqFile, request);
  const r = spawnSync('openssl', [...responderArgs(f), '-reqin', reqFile, '-respout', respFile, ...extra], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ocsp failed: ${r.stderr}`);
  return readFileSync(respFile);
}

export { freePort } from './ports.js';

export interface RunningResponder {
  url: string;
  proc: ChildProcess;
  stop(): Promise<void>;
  /** stops and starts it again (same port), e.g. after writeIndex */
  restart(): Promise<void>;
}

/**
 * `openssl ocsp -port` on a fixed port. OpenSSL 3.0 reads index.txt once, so a change
 * of status is a restart on the same port. It serves one connection at a time and hangs
 * on one that closes without a request, so readiness comes from its ACCEPT line, never
 * from a probing connection.
 */
export async function startResponder(f: ResponderFiles, port?: number): Promise<RunningResponder> {
  const p = port ?? (await freePort());
  const spawnOne = async (): Promise<ChildProcess> => {
    const proc = spawn('openssl', [...responderArgs(f), '-port', String(p), '-ignore_err'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`openssl ocsp did not start: ${out}`)), 10_000);
      const onData = (d: Buffer) => {
        out += d.toString();
        if (/ACCEPT /.test(out)) {
          clearTimeout(timer);
          resolve();
        }
      };
      proc.stdout!.on('data', onData);
      proc.stderr!.on('data', onData);
      proc.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`openssl ocsp exited with ${code}: ${out}`));
      });
    });
    return proc;
  };
  const stopOne = (proc: ChildProcess) =>
    new Promise<void>((r) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return r();
      proc.once('exit', () => r());
      proc.kill();
    });
  const r: RunningResponder = {
    url: `http://127.0.0.1:${p}`,
    proc: await spawnOne(),
    stop: () => stopOne(r.proc),
    restart: async () => {
      await stopOne(r.proc);
      r.proc = await spawnOne();
    },
  };
  return r;
}

/** A server that accepts connections and never answers: a responder that hangs. */
export async function startSilentServer(): Promise<{ url: string; stop(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const s = net.createServer((c) => {
    sockets.add(c);
    c.on('close', () => sockets.delete(c));
    c.on('error', () => undefined);
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(s.address() as AddressInfo).port}`,
    stop: () => new Promise((r) => {
      for (const c of sockets) c.destroy();
      s.close(() => r());
    }),
  };
}

/** A delegated OCSP responder certificate (id-kp-OCSPSigning) issued by `ca` with the openssl CLI. */
export function issueResponderCert(dir: string, name: string, ca: { cert: string; key: string }, eku = 'OCSPSigning'): { cert: string; key: string } {
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const cert = join(dir, `${name}.crt`);
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=${eku}\n`);
  const run = (args: string[]) => {
    const r = spawnSync('openssl', args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr}`);
  };
  run(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${name}`]);
  run(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-days', '30', '-extfile', ext, '-out', cert]);
  return { cert, key };
}

/** A TCP relay in front of a responder that counts connections (one per OCSP lookup). */
export async function startCountingRelay(target: string): Promise<{ url: string; count(): number; stop(): Promise<void> }> {
  const t = new URL(target);
  let n = 0;
  const sockets = new Set<net.Socket>();
  const s = net.createServer((c) => {
    n++;
    const u = net.connect(Number(t.port), t.hostname);
    for (const x of [c, u]) {
      sockets.add(x);
      x.on('close', () => sockets.delete(x));
      x.on('error', () => undefined);
    }
    c.pipe(u).pipe(c);
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(s.address() as AddressInfo).port}`,
    count: () => n,
    stop: () => new Promise((r) => {
      for (const x of sockets) x.destroy();
      s.close(() => r());
    }),
  };
}
