// RSS cost of idle mTLS connections: samples the proxy's process tree (primary + workers,
// or nginx master + workers) before and after a child process opens N connections that
// each did one keep-alive request, and reports KiB per connection.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import type { BenchPki } from './pki.js';
import { RAISE_FD_LIMIT, sleep, treeRssKiB, type Proc } from './proc.js';

export interface IdleResult {
  requested: number;
  open: number;
  failed: number;
  errors: Record<string, number>;
  /** connections the proxy closed between "ready" and the last RSS sample */
  closedWhileIdle: number;
  rampSeconds: number;
  rssBeforeKiB: number;
  rssAfterKiB: number;
  processes: number;
  /** RSS of each process (first = the one started: primary or master), KiB, before -> after */
  perProcessKiB: { pid: number; before: number | null; after: number }[];
  kibPerConnection: number;
}

interface ClientLine {
  event: string;
  open?: number;
  failed?: number;
  closed?: number;
  errors?: Record<string, number>;
  seconds?: number;
  message?: string;
}

/** Median of a few RSS samples, so one GC or page-in does not decide the number. */
async function sampleRss(pid: number, samples = 5, gapMs = 300): Promise<{ kib: number; processes: number; perPid: Record<number, number> }> {
  const runs: ReturnType<typeof treeRssKiB>[] = [];
  for (let i = 0; i < samples; i++) {
    runs.push(treeRssKiB(pid));
    if (i < samples - 1) await sleep(gapMs);
  }
  runs.sort((a, b) => a.kib - b.kib);
  const mid = runs[Math.floor(runs.length / 2)]!;
  return { kib: mid.kib, processes: mid.pids.length, perPid: mid.perPid };
}

export async function measureIdle(proxy: Proc, port: number, pki: BenchPki, count: number, distDir: string): Promise<IdleResult> {
  await sleep(1000);
  const before = await sampleRss(proxy.pid);
  const config = JSON.stringify({ port, count, concurrency: 64, ca: pki.ca, cert: pki.clientChain, key: pki.clientKey });
  const child = spawn('bash', ['-c', `${RAISE_FD_LIMIT}; exec "$@"`, 'bash', process.execPath, join(distDir, 'idle-client.js')], {
    env: { ...process.env, BENCH_IDLE_CONFIG: config },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout! });
  const waiters: ((l: ClientLine) => void)[] = [];
  const backlog: ClientLine[] = [];
  lines.on('line', (line) => {
    let msg: ClientLine;
    try {
      msg = JSON.parse(line) as ClientLine;
    } catch {
      return;
    }
    if (msg.event === 'progress') {
      console.log(`    … ${msg.open} open, ${msg.failed} failed`);
      return;
    }
    const w = waiters.shift();
    if (w) w(msg);
    else backlog.push(msg);
  });
  const exited = new Promise<ClientLine>((resolve) => child.once('exit', (code) => resolve({ event: 'error', message: `idle client exited with code ${code}` })));
  const nextLine = () => Promise.race([new Promise<ClientLine>((r) => (backlog.length ? r(backlog.shift()!) : waiters.push(r))), exited]);
  try {
    const ready = await nextLine();
    if (ready.event !== 'ready') throw new Error(`idle client: ${ready.message ?? JSON.stringify(ready)}`);
    await sleep(2000);
    const after = await sampleRss(proxy.pid);
    child.stdin!.write('check\n');
    const check = await nextLine();
    const open = ready.open ?? 0;
    return {
      requested: count,
      open,
      failed: ready.failed ?? 0,
      errors: ready.errors ?? {},
      closedWhileIdle: check.closed ?? NaN,
      rampSeconds: ready.seconds ?? NaN,
      rssBeforeKiB: before.kib,
      rssAfterKiB: after.kib,
      processes: after.processes,
      perProcessKiB: Object.entries(after.perPid).map(([pid, kib]) => ({ pid: Number(pid), before: before.perPid[Number(pid)] ?? null, after: kib })),
      kibPerConnection: open > 0 ? (after.kib - before.kib) / open : NaN,
    };
  } finally {
    if (child.exitCode === null) {
      child.stdin!.write('close\n');
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    }
  }
}
