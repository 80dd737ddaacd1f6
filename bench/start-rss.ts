// `npm run bench:memory`: memory of portcullis at start. Starts `portcullis run` with one
// worker (the bench's config: one mTLS listener, one upstream, access log off), waits for
// /readyz on the admin port, waits 3 s more, and prints VmRSS and Pss (from
// /proc/PID/smaps_rollup; Pss splits the pages the worker shares with its primary) of
// each process and their sum. Repeats BENCH_ROUNDS times (default 3) with a fresh process
// and prints the medians. Memory numbers do not need a quiet machine.
//
//   BENCH_NODE=/path/to/node   the Node.js binary to run portcullis with (default: this one)
//   BENCH_NODE_ARGS="--flag"    extra flags for it (cluster passes them on to the worker)
//   BENCH_WORKERS=1             workers
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makePki } from './pki.js';
import { portcullisConfig, startPortcullis } from './portcullis.js';
import { tail } from './probe.js';
import { freePorts, killAllStarted, processTree, sleep, stopProcess, type Proc } from './proc.js';

interface ProcMem {
  pid: number;
  role: string;
  rssKiB: number;
  pssKiB: number;
}

function field(text: string, name: string): number {
  const m = new RegExp(`^${name}:\\s+(\\d+)\\s+kB`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

function readMem(pid: number, role: string): ProcMem | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    return { pid, role, rssKiB: field(status, 'VmRSS'), pssKiB: field(rollup, 'Pss') };
  } catch {
    return null;
  }
}

function readyz(port: number): Promise<number> {
  return new Promise((res) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/readyz', agent: false, timeout: 2000 }, (r) => {
      r.resume();
      res(r.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => res(0));
  });
}

async function waitReadyz(proc: Proc, port: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.exitCode !== undefined) throw new Error(`portcullis exited (code ${proc.exitCode}) before it was ready:\n${tail(proc.logPath)}`);
    if ((await readyz(port)) === 200) return;
    await sleep(100);
  }
  throw new Error(`portcullis was not ready within ${timeoutMs} ms:\n${tail(proc.logPath)}`);
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const mib = (kib: number) => (kib / 1024).toFixed(1);

async function main(): Promise<void> {
  const here = dirname(fileURLToPath(import.meta.url)); // dist/bench
  const repoRoot = resolve(here, '..', '..');
  const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
  const workers = Number(process.env.BENCH_WORKERS ?? 1);
  const node = process.env.BENCH_NODE || process.execPath;
  const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
  const version = (await import('node:child_process')).spawnSync(node, ['--version'], { encoding: 'utf8' }).stdout.trim();
  console.log(`start RSS: node ${version} ${nodeArgs.join(' ')}, ${workers} worker(s), ${rounds} round(s), sampled ${Number(process.env.BENCH_SETTLE_MS ?? 3000) / 1000} s after /readyz`);
  const dir = mkdtempSync(join(os.tmpdir(), 'portcullis-start-rss-'));
  process.once('SIGINT', () => {
    killAllStarted();
    rmSync(dir, { recursive: true, force: true });
    process.exit(130);
  });
  const runs: ProcMem[][] = [];
  try {
    const pki = await makePki(dir);
    for (let round = 1; round <= rounds; round++) {
      const [port, adminPort, upstreamPort] = (await freePorts(3)) as [number, number, number];
      // nothing listens on the upstream port: start-up never connects to it
      const proc = startPortcullis(repoRoot, dir, portcullisConfig(port, adminPort, upstreamPort, pki, workers), {}, `portcullis-${round}`, node, nodeArgs);
      try {
        await waitReadyz(proc, adminPort);
        await sleep(Number(process.env.BENCH_SETTLE_MS ?? 3000));
        const mem = processTree(proc.pid).flatMap((pid, i) => readMem(pid, i === 0 ? 'primary' : `worker ${i}`) ?? []);
        runs.push(mem);
        const line = mem.map((m) => `${m.role} ${mib(m.rssKiB)}/${mib(m.pssKiB)}`).join(', ');
        const sum = (k: 'rssKiB' | 'pssKiB') => mem.reduce((a, m) => a + m[k], 0);
        console.log(`  round ${round}: ${line}; sum RSS ${mib(sum('rssKiB'))} MiB, Pss ${mib(sum('pssKiB'))} MiB`);
      } finally {
        await stopProcess(proc);
      }
    }
  } finally {
    killAllStarted();
    rmSync(dir, { recursive: true, force: true });
  }
  const roles = runs[0]!.map((m) => m.role);
  console.log('\n| process | RSS MiB (median) | Pss MiB (median) |\n|---|---:|---:|');
  for (const role of roles) {
    const of = (k: 'rssKiB' | 'pssKiB') => median(runs.map((r) => r.find((m) => m.role === role)?.[k] ?? NaN));
    console.log(`| ${role} | ${mib(of('rssKiB'))} | ${mib(of('pssKiB'))} |`);
  }
  const total = (k: 'rssKiB' | 'pssKiB') => median(runs.map((r) => r.reduce((a, m) => a + m[k], 0)));
  console.log(`| **sum** | **${mib(total('rssKiB'))}** | **${mib(total('pssKiB'))}** |`);
}

main().catch((err) => {
  console.error(`bench:memory: ${(err as Error).message}`);
  killAllStarted();
  process.exit(1);
});
