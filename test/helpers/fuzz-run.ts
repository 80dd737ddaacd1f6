// Runs fuzz inputs against the real CLI a few at a time and watches the proxy while they
// run. A worker crash (the primary logs `worker_exited`) pauses the run: the inputs in
// flight settle, the replacement worker is awaited (or the CLI restarted, so crash-loop
// back-off cannot stall the test), and the candidates are replayed one at a time until
// one crashes the worker alone: that input is the finding's reproducer. A phase stops
// after FUZZ_MAX_CRASHES crashes or FUZZ_BUDGET_MS, and says so as a finding: nothing is
// skipped silently.
import { startCli, type RunningCli } from './proxy.js';
import type { FuzzEndpoint } from './fuzz-h1-client.js';
import type { Findings, ListenerName } from './fuzz-oracle.js';

export interface Job {
  id: string;
  /** registers the requests this input may cause upstream; called before it runs */
  register(): void;
  run(ep: FuzzEndpoint): Promise<unknown>;
  /** crashAffected: a worker crash happened while it was in flight */
  judge(outcome: unknown, crashAffected: boolean): void;
  describe(): string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface StatusDoc {
  workers: { pid: number; ready: boolean }[];
  listeners: { name: string; bound: { port: number } | null }[];
}

/** The running CLI, its ports, and what it printed about crashes. */
export class ProxyUnderTest {
  cli!: RunningCli;
  ports: Record<ListenerName, number> = { req: 0, opt: 0 };
  /** worker_exited lines already handled, and how far the crash text was read */
  private exitsSeen = 0;
  private stderrSeen = 0;
  restarts = 0;
  readonly deadPids = new Set<number>();

  constructor(
    private readonly config: Record<string, unknown>,
    private readonly dir: string,
  ) {}

  async start(): Promise<void> {
    this.cli = await startCli(this.config, { dir: this.dir });
    this.exitsSeen = 0;
    this.stderrSeen = 0;
    this.ports = { req: this.cli.ports.req!, opt: this.cli.ports.opt! };
  }

  private exits(): number {
    return this.cli.stderr().split('"event":"worker_exited"').length - 1;
  }

  crashed(): boolean {
    return this.exits() > this.exitsSeen || this.cli.proc.exitCode !== null;
  }

  async status(): Promise<StatusDoc | undefined> {
    try {
      const r = await fetch(`http://127.0.0.1:${this.cli.adminPort}/status`, { signal: AbortSignal.timeout(2000) });
      return (await r.json()) as StatusDoc;
    } catch {
      return undefined;
    }
  }

  async workerPid(): Promise<number | undefined> {
    return (await this.status())?.workers.find((w) => w.ready)?.pid;
  }

  /** The crash as the worker printed it: its error line and first stack frame, the raw text, and when (the log's time). */
  takeCrash(): { signature: string; text: string; at: number } {
    const all = this.cli.stderr();
    const text = all.slice(this.stderrSeen);
    this.stderrSeen = all.length;
    this.exitsSeen = this.exits();
    for (const m of text.matchAll(/"event":"worker_exited"[^\n]*"pid":(\d+)/g)) this.deadPids.add(Number(m[1]));
    const err = /^(\w*Error\b[^\n]*)\n\s+at ([^\n]+)/m.exec(text);
    const signature = this.cli.proc.exitCode !== null ? `the portcullis process exited with ${this.cli.proc.exitCode}` : err ? `${err[1]!.slice(0, 160)} at ${err[2]!.replace(/\(?file:\/\/\S*?\/(dist\/)?(src\/)/, '$2').replace(/\)$/, '')}` : 'worker exited without an error on stderr';
    const lines = text.split('\n').filter((l) => l && !l.startsWith('{"level":"info"'));
    const time = /"time":"([^"]+)","event":"worker_exited"/.exec(text)?.[1];
    return { signature, text: lines.slice(0, 14).join('\n'), at: time ? Date.parse(time) : Date.now() };
  }

  /** Waits for a replacement worker; restarts the CLI if none is ready in time. */
  async recover(): Promise<void> {
    if (this.cli.proc.exitCode === null) {
      const until = Date.now() + 4000;
      while (Date.now() < until) {
        const s = await this.status();
        const w = s?.workers.find((x) => x.ready && !this.deadPids.has(x.pid));
        const req = s?.listeners.find((l) => l.name === 'req')?.bound?.port;
        const opt = s?.listeners.find((l) => l.name === 'opt')?.bound?.port;
        if (w && req && opt) {
          this.ports = { req, opt };
          this.exitsSeen = this.exits();
          return;
        }
        await sleep(50);
      }
    }
    await this.cli.stop('SIGKILL');
    this.restarts++;
    await this.start();
  }

  async stop(): Promise<void> {
    await this.cli?.stop();
  }
}

export interface PhaseOptions {
  jobs: Job[];
  proxy: ProxyUnderTest;
  ep: FuzzEndpoint;
  findings: Findings;
  concurrency: number;
  maxCrashes: number;
  budgetMs: number;
  /** replays per new crash signature, to find the input that crashes the worker alone */
  maxReplays: number;
}

export interface PhaseStats {
  ran: number;
  notRun: number;
  crashes: number;
  ms: number;
  /** the slowest inputs, "id (ms)" */
  slowest: string[];
}

export async function runPhase(o: PhaseOptions): Promise<PhaseStats> {
  const started = Date.now();
  const queue = o.jobs.slice();
  for (const j of queue) j.register();
  interface Rec {
    job: Job;
    start: number;
    end: number;
    outcome: unknown;
  }
  const done: Rec[] = [];
  const inFlight = new Set<Rec>();
  /** from the worker's death to its replacement serving: inputs overlapping one prove nothing */
  const crashes: { from: number; to: number }[] = [];
  const knownCrashes = new Set<string>();
  let gate: Promise<void> | null = null;
  let stop = false;
  let lanesDone = false;
  const lane = async () => {
    for (;;) {
      while (gate) await gate;
      if (stop) return;
      const job = queue.shift();
      if (!job) return;
      if (Date.now() - started > o.budgetMs) {
        queue.unshift(job);
        stop = true;
        return;
      }
      const rec: Rec = { job, start: Date.now(), end: 0, outcome: undefined };
      inFlight.add(rec);
      try {
        rec.outcome = await job.run(o.ep);
      } catch (e) {
        o.findings.add('harness-error', (e as Error).message.slice(0, 80), job.id, (e as Error).stack ?? String(e));
      }
      rec.end = Date.now();
      inFlight.delete(rec);
      done.push(rec);
    }
  };
  const handleCrash = async () => {
    let open!: () => void;
    gate = new Promise((r) => (open = r));
    // the crash cut the in-flight inputs' connections: let them settle
    while (inFlight.size > 0) await sleep(10);
    const crash = o.proxy.takeCrash();
    await o.proxy.recover();
    crashes.push({ from: crash.at, to: Date.now() });
    // inputs that started after the worker died met a dead port: run them again
    for (let i = done.length - 1; i >= 0; i--) {
      if (done[i]!.start >= crash.at) queue.unshift(done.splice(i, 1)[0]!.job);
    }
    // likeliest first: inputs whose connection was open when the worker died, by how close
    // their end (the crash cut their connection) was to that moment
    const candidates = done
      .filter((r) => r.end >= crash.at - 1000)
      .sort((a, b) => Number(b.start <= crash.at) - Number(a.start <= crash.at) || Math.abs(a.end - crash.at) - Math.abs(b.end - crash.at))
      .map((r) => r.job);
    let culprit: Job | undefined;
    if (!knownCrashes.has(crash.signature)) {
      for (const c of candidates.slice(0, o.maxReplays)) {
        await c.run(o.ep).catch(() => undefined);
        await sleep(300);
        if (o.proxy.crashed()) {
          culprit = c;
          const again = o.proxy.takeCrash();
          await o.proxy.recover();
          crashes.push({ from: again.at, to: Date.now() });
          knownCrashes.add(crash.signature);
          break;
        }
      }
    }
    const who = culprit ? `reproduced alone by ${culprit.id}:\n${culprit.describe()}` : `in flight: ${candidates.map((c) => c.id).join(', ')}${knownCrashes.has(crash.signature) ? ' (signature already reproduced)' : ' (none crashed it alone)'}`;
    o.findings.add('worker-crash', crash.signature, culprit?.id ?? candidates[0]?.id, `${crash.text}\n${who}`);
    if (crashes.length >= o.maxCrashes) stop = true;
    gate = null;
    open();
  };
  const watcher = async () => {
    while (!lanesDone) {
      await sleep(25);
      if (o.proxy.crashed()) await handleCrash();
    }
    // a crash caused by the last inputs shows up a moment later
    await sleep(300);
    if (o.proxy.crashed()) await handleCrash();
  };
  const w = watcher();
  await Promise.all(Array.from({ length: o.concurrency }, lane));
  lanesDone = true;
  await w;
  for (const r of done) {
    const affected = crashes.some((c) => r.start <= c.to && r.end >= c.from - 50);
    r.job.judge(r.outcome, affected);
  }
  if (queue.length > 0) {
    const why = crashes.length >= o.maxCrashes ? `the worker crashed ${crashes.length} times (FUZZ_MAX_CRASHES=${o.maxCrashes})` : `the time budget of ${o.budgetMs} ms ran out (FUZZ_BUDGET_MS)`;
    o.findings.add('phase-incomplete', `${queue.length} of ${o.jobs.length} inputs not run`, queue[0]!.id, `stopped because ${why}; first input not run: ${queue[0]!.id}`);
  }
  const slowest = done
    .sort((a, b) => b.end - b.start - (a.end - a.start))
    .slice(0, 5)
    .map((r) => `${r.job.id} (${r.end - r.start} ms)`);
  return { ran: done.length, notRun: queue.length, crashes: crashes.length, ms: Date.now() - started, slowest };
}
