// One measurement of one system: runs the load, records the proxy's, the upstream's and
// the load generator's CPU use alongside, and flags anything that makes the number
// suspect (socket errors, non-2xx answers, resumed handshakes, short downloads).
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BenchPki } from './pki.js';
import { machineBusySeconds, treeCpuSeconds, type Proc } from './proc.js';
import type { MetricDef, MetricValue, SystemName } from './report.js';
import { runStream } from './stream.js';
import { runWrk, type WrkResult } from './wrk.js';
import { runH2load, type H2loadResult } from './h2load.js';

export type TestName = 'handshake' | 'keepalive' | 'stream' | 'idle' | 'h2' | 'latency';

export const METRICS: MetricDef[] = [
  { id: 'handshake_cps', label: 'full mTLS handshake + 1 request, conn/s', decimals: 0, better: 'higher' },
  { id: 'handshake_cpu_us', label: 'proxy CPU per connection (handshake test), µs', decimals: 0, better: 'lower' },
  { id: 'keepalive_rps', label: 'keep-alive requests/s', decimals: 0, better: 'higher' },
  { id: 'keepalive_cpu_us', label: 'proxy CPU per keep-alive request, µs', decimals: 0, better: 'lower' },
  { id: 'keepalive_p50_ms', label: 'keep-alive p50 latency, ms', decimals: 2, better: 'lower' },
  { id: 'keepalive_p99_ms', label: 'keep-alive p99 latency, ms', decimals: 2, better: 'lower' },
  { id: 'h2_rps', label: 'HTTP/2 requests/s (64 streams on 4 connections)', decimals: 0, better: 'higher' },
  { id: 'h2_cpu_us', label: 'proxy CPU per HTTP/2 request, µs', decimals: 0, better: 'lower' },
  { id: 'latency_rps', label: 'fixed-rate load (50% of portcullis\' keep-alive max), requests/s', decimals: 0, better: 'higher' },
  { id: 'latency_p50_ms', label: 'p50 latency at that fixed rate, ms', decimals: 2, better: 'lower' },
  { id: 'latency_p99_ms', label: 'p99 latency at that fixed rate, ms', decimals: 2, better: 'lower' },
  { id: 'stream_mbps', label: '1 GiB through one connection, MB/s', decimals: 0, better: 'higher' },
  { id: 'idle_kib_per_conn', label: 'RSS per idle mTLS connection, KiB', decimals: 1, better: 'lower' },
  { id: 'idle_rss_before_mib', label: 'RSS before idle connections, MiB', decimals: 1, better: 'lower' },
  { id: 'idle_rss_after_mib', label: 'RSS with idle connections, MiB', decimals: 1, better: 'lower' },
];

/** CPU used by processes outside the bench above which a run is flagged, % of one core */
export const BUSY_PCT = 15;

export interface Env {
  wrk: string;
  curl: string;
  shim: string;
  pki: BenchPki;
  upstream: Proc;
  streamBytes: number;
  /** nghttp2's h2load, for the 'h2' and 'latency' tests */
  h2load?: string;
}

export interface RunRecord {
  test: TestName;
  system: SystemName;
  round: number;
  /**
   * CPU use during the run, % of one core. `other` is everything else busy on the machine
   * (other people's processes on a shared VM): when it is high, the numbers are noise.
   */
  cpu: { proxy: number; upstream: number; loadGenerator: number | null; other: number | null };
  /**
   * What ran out of CPU first, judged from the CPU columns (≥ 85% of a core): the proxy,
   * the load generator, both (the 2 cores are full), or neither (waiting on something else).
   */
  limitedBy?: 'proxy' | 'load generator' | 'proxy and load generator' | 'other processes' | 'unclear';
  detail: unknown;
  problems: string[];
  /** a repeated run (the machine was busy) that does not count */
  discarded?: boolean;
}

const SATURATED_PCT = 85;

export function limitedBy(cpu: RunRecord['cpu']): NonNullable<RunRecord['limitedBy']> {
  const p = cpu.proxy >= SATURATED_PCT;
  const l = (cpu.loadGenerator ?? 0) >= SATURATED_PCT;
  if (p && l) return 'proxy and load generator';
  if (p) return 'proxy';
  if (l) return 'load generator';
  return (cpu.other ?? 0) > 50 ? 'other processes' : 'unclear';
}

async function withCpu<T>(proxy: Proc, upstream: Proc, fn: () => Promise<T>, loadGenCpuS: (r: T) => number | null): Promise<{ result: T; cpu: RunRecord['cpu']; wallS: number }> {
  const p0 = treeCpuSeconds(proxy.pid);
  const u0 = treeCpuSeconds(upstream.pid);
  const m0 = machineBusySeconds();
  const t0 = performance.now();
  const result = await fn();
  const wallS = (performance.now() - t0) / 1000;
  const proxyS = treeCpuSeconds(proxy.pid) - p0;
  const upstreamS = treeCpuSeconds(upstream.pid) - u0;
  const machineS = machineBusySeconds() - m0;
  const lg = loadGenCpuS(result);
  const pct = (x: number) => (x / wallS) * 100;
  return {
    result,
    wallS,
    cpu: {
      proxy: pct(proxyS),
      upstream: pct(upstreamS),
      loadGenerator: lg === null ? null : pct(lg),
      other: lg === null ? null : Math.max(0, pct(machineS - proxyS - upstreamS - lg)),
    },
  };
}

function wrkProblems(r: WrkResult, expectFullHandshakes: boolean): string[] {
  const p: string[] = [];
  if (r.exitCode !== 0) p.push(`wrk exited with ${r.exitCode}: ${r.output.slice(-500)}`);
  if (!r.requests) p.push('wrk completed no requests');
  const se = r.socketErrors;
  if (se.connect + se.read + se.write + se.timeout > 0) p.push(`wrk socket errors: connect ${se.connect}, read ${se.read}, write ${se.write}, timeout ${se.timeout}`);
  if (r.non2xx) p.push(`${r.non2xx} non-2xx/3xx responses`);
  if (r.handshakes === null) p.push('the wrk shim did not report (client certificate not loaded?)');
  if (expectFullHandshakes && r.resumed) p.push(`${r.resumed} of ${r.handshakes} handshakes were resumed, not full`);
  return p;
}

export async function runTest(
  test: Exclude<TestName, 'idle'>,
  system: SystemName,
  proxy: Proc,
  port: number,
  round: number,
  env: Env,
  opts: { durationS: number; connections: number; handshakeConnections: number; latencyRps?: number },
): Promise<{ record: RunRecord; values: MetricValue[] }> {
  const v = (metric: string, value: number): MetricValue => ({ metric, system, round, value });
  if (test === 'h2' || test === 'latency') return runH2loadTest(test, system, proxy, port, round, env, opts, v);
  if (test === 'stream') {
    const m = await withCpu(proxy, env.upstream, () => runStream(env.curl, env.pki, port, env.streamBytes), (r) => r.curlCpuS);
    const r = m.result;
    const problems = r.error ? [`curl: ${r.error} (exit ${r.exitCode})`] : [];
    if (m.cpu.other !== null && m.cpu.other > BUSY_PCT) problems.push(`machine busy: other processes used ${m.cpu.other.toFixed(0)}% of a core during the run`);
    return {
      record: { test, system, round, cpu: m.cpu, limitedBy: limitedBy(m.cpu), detail: r, problems },
      values: r.error ? [] : [v('stream_mbps', r.mbPerSec)],
    };
  }
  const closeEach = test === 'handshake';
  const m = await withCpu(proxy, env.upstream, () =>
    runWrk({
      wrk: env.wrk,
      shim: env.shim,
      pki: env.pki,
      url: `https://127.0.0.1:${port}/`,
      connections: closeEach ? opts.handshakeConnections : opts.connections,
      durationS: opts.durationS,
      closeEach,
      noResume: true,
    }),
    (r) => r.wrkCpuS,
  );
  const r = m.result;
  const problems = wrkProblems(r, closeEach);
  if (closeEach && r.handshakes !== null && r.requests && r.handshakes < r.requests) {
    problems.push(`wrk reported ${r.requests} requests but only ${r.handshakes} handshakes: connections were reused`);
  }
  // the proxy's CPU per request: steadier than requests/s on a shared VM, where a
  // neighbour's load moves throughput more than it moves the work each request costs
  const cpuUs = r.requests ? (m.cpu.proxy / 100) * m.wallS * 1e6 / r.requests : NaN;
  const values = closeEach
    ? [v('handshake_cps', r.requestsPerSec), v('handshake_cpu_us', cpuUs)]
    : [v('keepalive_rps', r.requestsPerSec), v('keepalive_cpu_us', cpuUs), v('keepalive_p50_ms', r.latencyMs?.p50 ?? NaN), v('keepalive_p99_ms', r.latencyMs?.p99 ?? NaN)];
  if (m.cpu.other !== null && m.cpu.other > BUSY_PCT) problems.push(`machine busy: other processes used ${m.cpu.other.toFixed(0)}% of a core during the run`);
  return {
    record: {
      test,
      system,
      round,
      cpu: m.cpu,
      limitedBy: limitedBy(m.cpu),
      detail: r,
      problems,
    },
    values: r.requests ? values : [],
  };
}

function h2loadProblems(r: H2loadResult): string[] {
  const p: string[] = [];
  if (r.exitCode !== 0) p.push(`h2load exited with ${r.exitCode}: ${r.output.slice(-500)}`);
  if (!r.requests) p.push(`h2load completed no requests: ${r.output.slice(-500)}`);
  if (r.failed) p.push(`h2load: ${r.failed} requests failed or errored`);
  if (r.non2xx) p.push(`${r.non2xx} non-2xx responses`);
  if (r.handshakes === null) p.push('the shim did not report (client certificate not loaded?)');
  return p;
}

/**
 * h2: 4 connections × 16 streams of HTTP/2 (64 in flight), as fast as possible.
 * latency: HTTP/1.1 on `connections` kept-alive connections at a fixed total rate
 * (opts.latencyRps, spread evenly over the connections); p50/p99 from every request.
 */
async function runH2loadTest(
  test: 'h2' | 'latency',
  system: SystemName,
  proxy: Proc,
  port: number,
  round: number,
  env: Env,
  opts: { durationS: number; connections: number; latencyRps?: number },
  v: (metric: string, value: number) => MetricValue,
): Promise<{ record: RunRecord; values: MetricValue[] }> {
  if (!env.h2load) throw new Error(`the ${test} test needs h2load (Debian package nghttp2-client)`);
  if (test === 'latency' && !opts.latencyRps) throw new Error('the latency test needs a rate: run keepalive first or set BENCH_LATENCY_RPS');
  const perClient = test === 'latency' ? Math.max(1, Math.round(opts.latencyRps! / opts.connections)) : undefined;
  const m = await withCpu(proxy, env.upstream, () =>
    runH2load({
      h2load: env.h2load!,
      shim: env.shim,
      pki: env.pki,
      url: `https://127.0.0.1:${port}/`,
      clients: test === 'h2' ? 4 : opts.connections,
      streams: test === 'h2' ? 16 : 1,
      durationS: opts.durationS,
      ...(test === 'latency' ? { h1: true, rpsPerClient: perClient!, logFile: join(tmpdir(), `h2load-${process.pid}-${round}.log`) } : {}),
    }),
    (r) => r.h2loadCpuS,
  );
  const r = m.result;
  const problems = h2loadProblems(r);
  if (m.cpu.other !== null && m.cpu.other > BUSY_PCT) problems.push(`machine busy: other processes used ${m.cpu.other.toFixed(0)}% of a core during the run`);
  const cpuUs = r.requests ? (m.cpu.proxy / 100) * m.wallS * 1e6 / r.requests : NaN;
  const values =
    test === 'h2'
      ? [v('h2_rps', r.requestsPerSec), v('h2_cpu_us', cpuUs)]
      : [v('latency_rps', r.requestsPerSec), v('latency_p50_ms', r.latencyMs?.p50 ?? NaN), v('latency_p99_ms', r.latencyMs?.p99 ?? NaN)];
  return {
    record: { test, system, round, cpu: m.cpu, limitedBy: limitedBy(m.cpu), detail: { ...r, output: r.output.slice(-2000), ratePerConnection: perClient ?? null }, problems },
    values: r.requests ? values : [],
  };
}
