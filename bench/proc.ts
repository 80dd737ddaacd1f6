// Process helpers for the benchmark: start servers under a raised file-descriptor limit,
// stop them (only the processes this harness started, by pid), and read the RSS and CPU
// time of a process tree from /proc.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';

/** Raise the soft fd limit as far as the hard limit allows (10k idle connections need it). */
export const RAISE_FD_LIMIT = 'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"';

export interface Proc {
  name: string;
  child: ChildProcess;
  pid: number;
  logPath: string;
  exited: Promise<number | null>;
  exitCode: number | null | undefined;
}

const running = new Set<Proc>();

/**
 * Starts argv through `bash -c 'ulimit ...; exec "$@"'`, so the pid we get is the
 * server's own pid; stdout and stderr go to logPath.
 */
export function startProcess(name: string, argv: string[], opts: { logPath: string; cwd?: string; env?: NodeJS.ProcessEnv }): Proc {
  const fd = openSync(opts.logPath, 'a');
  const child = spawn('bash', ['-c', `${RAISE_FD_LIMIT}; exec "$@"`, 'bash', ...argv], {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  if (child.pid === undefined) throw new Error(`${name}: could not start ${argv[0]}`);
  const proc: Proc = {
    name,
    child,
    pid: child.pid,
    logPath: opts.logPath,
    exitCode: undefined,
    exited: new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        proc.exitCode = code ?? (signal ? -1 : null);
        running.delete(proc);
        resolve(code);
      });
    }),
  };
  running.add(proc);
  return proc;
}

/** SIGTERM, then SIGKILL for the process and whatever it forked if it has not exited in time. */
export async function stopProcess(proc: Proc, timeoutMs = 5000): Promise<void> {
  if (proc.exitCode !== undefined) return;
  const tree = processTree(proc.pid);
  try {
    process.kill(proc.pid, 'SIGTERM');
  } catch {
    /* already gone */
  }
  const timedOut = await Promise.race([proc.exited.then(() => false), sleep(timeoutMs).then(() => true)]);
  if (timedOut) {
    for (const pid of tree) killQuietly(pid, 'SIGKILL');
    await proc.exited;
  }
  // workers of a primary that died first are ours too; give them a moment, then make sure
  await sleep(100);
  for (const pid of tree) if (pid !== proc.pid && isAlive(pid)) killQuietly(pid, 'SIGKILL');
}

/** Last resort on exit or Ctrl-C: kill every process this harness started, by pid. */
export function killAllStarted(): void {
  for (const p of running) {
    for (const pid of processTree(p.pid)) killQuietly(pid, 'SIGKILL');
  }
}

function killQuietly(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* gone */
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

interface StatFields {
  ppid: number;
  /** utime + stime in clock ticks */
  cpuTicks: number;
}

function readStat(pid: number): StatFields | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm may contain spaces and parentheses; the fields after the last ')' are fixed
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(f[1]), cpuTicks: Number(f[11]) + Number(f[12]) };
  } catch {
    return null;
  }
}

/** root and all its descendants, found through the ppid field of /proc/<pid>/stat */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const st = readStat(Number(d));
    if (!st) continue;
    const list = children.get(st.ppid);
    if (list) list.push(Number(d));
    else children.set(st.ppid, [Number(d)]);
  }
  const out: number[] = [];
  const queue = [root];
  while (queue.length) {
    const pid = queue.shift()!;
    if (readStat(pid) === null) continue;
    out.push(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  return out;
}

/** Sum of VmRSS over a process tree, KiB, and each process's share. */
export function treeRssKiB(root: number): { kib: number; pids: number[]; perPid: Record<number, number> } {
  const pids = processTree(root);
  const perPid: Record<number, number> = {};
  let kib = 0;
  for (const pid of pids) {
    try {
      const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) {
        kib += Number(m[1]);
        perPid[pid] = Number(m[1]);
      }
    } catch {
      /* exited meanwhile */
    }
  }
  return { kib, pids, perPid };
}

let clkTck = 0;
function ticksPerSecond(): number {
  if (!clkTck) {
    const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
    clkTck = Number(r.stdout.trim()) || 100;
  }
  return clkTck;
}

/** CPU seconds (user + system) used so far by a process tree. */
export function treeCpuSeconds(root: number): number {
  let ticks = 0;
  for (const pid of processTree(root)) ticks += readStat(pid)?.cpuTicks ?? 0;
  return ticks / ticksPerSecond();
}

/** Busy CPU seconds of the whole machine so far (all cores; /proc/stat minus idle and iowait). */
export function machineBusySeconds(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user)
  const busy = f.slice(0, 8).reduce((a, b) => a + b, 0) - f[3]! - f[4]!;
  return busy / ticksPerSecond();
}

export interface TimedResult {
  stdout: string;
  stderr: string;
  code: number | null;
  /** user + system CPU seconds of the command (bash's `times` for its children) */
  cpuS: number | null;
}

function timesToSeconds(s: string | undefined): number {
  const m = /^(\d+)m([\d.]+)s$/.exec(s ?? '');
  return m ? Number(m[1]) * 60 + Number(m[2]) : NaN;
}

/** Runs a short-lived command (a load generator) and reports the CPU time it used. */
export function runTimed(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<TimedResult> {
  const script = '"$@"; rc=$?; echo "__times__"; times; exit $rc';
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', script, 'bash', ...argv], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.on('error', reject);
    child.on('close', (code) => {
      const at = stdout.lastIndexOf('__times__');
      const out = at >= 0 ? stdout.slice(0, at) : stdout;
      // `times` prints the shell's own user/system time, then its children's
      const children = (at >= 0 ? stdout.slice(at + 9).trim().split('\n')[1] ?? '' : '').trim().split(/\s+/);
      const cpu = timesToSeconds(children[0]) + timesToSeconds(children[1]);
      resolve({ stdout: out, stderr, code, cpuS: Number.isFinite(cpu) ? cpu : null });
    });
  });
}

/**
 * On a shared VM other people's jobs steal the cores the bench needs. Waits (up to
 * maxWaitMs) until processes outside `ours` (process-tree roots) use less than
 * thresholdPct of one core over a 1 s sample; returns the last sample.
 */
export async function waitQuiet(ours: number[], thresholdPct: number, maxWaitMs: number): Promise<{ otherPct: number; waitedMs: number }> {
  const t0 = Date.now();
  for (;;) {
    const m0 = machineBusySeconds();
    const o0 = ours.reduce((a, pid) => a + treeCpuSeconds(pid), 0);
    const s0 = performance.now();
    await sleep(1000);
    const wall = (performance.now() - s0) / 1000;
    const ourS = ours.reduce((a, pid) => a + treeCpuSeconds(pid), 0) - o0;
    const otherPct = Math.max(0, ((machineBusySeconds() - m0 - ourS) / wall) * 100);
    const waitedMs = Date.now() - t0;
    if (otherPct < thresholdPct || waitedMs >= maxWaitMs) return { otherPct, waitedMs };
  }
}

// Free ports come from the tests' helper, which never hands out one port twice in a call.
export { freePort, freePorts } from '../test/helpers/ports.js';
