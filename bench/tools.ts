// Finds (or installs, when root on Debian) the external programs the benchmark drives, and
// builds the wrk client-certificate shim. A clean machine has only node, npm and gcc.
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { join } from 'node:path';

export interface Tools {
  nginx: string;
  wrk: string;
  curl: string;
  gcc: string;
  versions: Record<string, string>;
}

const NEEDED: { bin: keyof Omit<Tools, 'versions'>; packages: string[] }[] = [
  { bin: 'nginx', packages: ['nginx'] },
  { bin: 'wrk', packages: ['wrk'] },
  { bin: 'curl', packages: ['curl'] },
  { bin: 'gcc', packages: ['gcc', 'libc6-dev'] },
];

/** PATH plus the sbin folders, where Debian puts nginx and a non-root PATH does not look. */
function which(bin: string): string | null {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const d of dirs) {
    if (!d) continue;
    const p = join(d, bin);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return null;
}

function firstLine(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n').find((l) => l.trim())?.trim() ?? 'unknown';
}

export function ensureTools(): Tools {
  let missing = NEEDED.filter((n) => !which(n.bin));
  if (missing.length) {
    const pkgs = [...new Set(missing.flatMap((m) => m.packages))];
    const cmd = `apt-get update && apt-get install -y --no-install-recommends ${pkgs.join(' ')}`;
    const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
    if (!isRoot || !existsSync('/usr/bin/apt-get')) {
      throw new Error(`missing ${missing.map((m) => m.bin).join(', ')}; install with:\n  sudo sh -c '${cmd}'`);
    }
    console.log(`bench: installing ${pkgs.join(', ')}: ${cmd}`);
    const r = spawnSync('sh', ['-c', cmd], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    if (r.status !== 0) throw new Error(`apt-get failed (exit ${r.status}); run it by hand: ${cmd}`);
    missing = NEEDED.filter((n) => !which(n.bin));
    if (missing.length) throw new Error(`still missing after apt-get: ${missing.map((m) => m.bin).join(', ')}`);
  }
  const t = Object.fromEntries(NEEDED.map((n) => [n.bin, which(n.bin)!])) as Omit<Tools, 'versions'>;
  // The shim only works if wrk calls OpenSSL through the dynamic linker.
  const ldd = spawnSync('ldd', [t.wrk], { encoding: 'utf8' });
  if (ldd.status === 0 && !/libssl\.so/.test(ldd.stdout)) {
    throw new Error(`${t.wrk} is not dynamically linked against libssl, so the LD_PRELOAD client-certificate shim cannot hook it; use Debian's wrk package`);
  }
  return {
    ...t,
    versions: {
      node: process.version,
      nginx: firstLine(t.nginx, ['-v']),
      wrk: firstLine(t.wrk, ['-v']),
      curl: firstLine(t.curl, ['--version']),
      openssl_wrk: /libssl\.so\S*\s*=>\s*(\S+)/.exec(ldd.stdout ?? '')?.[1] ?? 'unknown',
      node_openssl: process.versions.openssl ?? 'unknown',
    },
  };
}

/** Compiles bench/wrk-shim.c into outDir; returns the .so path. */
export function buildShim(gcc: string, source: string, outDir: string): string {
  const out = join(outDir, 'wrk-shim.so');
  const r = spawnSync(gcc, ['-O2', '-Wall', '-shared', '-fPIC', '-o', out, source, '-ldl'], { encoding: 'utf8' });
  if (r.status !== 0) {
    throw new Error(`building the wrk shim failed (${gcc} exit ${r.status}); C headers come from libc6-dev:\n${r.stderr}`);
  }
  return out;
}
