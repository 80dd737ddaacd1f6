// Runs h2load (nghttp2's load generator, one thread, client certificate through the same
// LD_PRELOAD shim as wrk) for the two loads wrk cannot make: HTTP/2 with many streams on
// a few connections, and a fixed request rate (`--rps`), which is what "p99 at 50% of
// the maximum load" needs (wrk only knows "as fast as possible"). With a log file h2load
// writes one line per request (start µs, status, µs to the end of the response), so the
// percentiles are exact, not read off a histogram.
import { readFileSync, rmSync } from 'node:fs';
import type { BenchPki } from './pki.js';
import { runTimed } from './proc.js';
import { shimEnv } from './wrk.js';

export interface H2loadOptions {
  h2load: string;
  shim: string;
  pki: BenchPki;
  url: string;
  /** connections (h2load -c) */
  clients: number;
  /** concurrent streams per connection (h2load -m); 1 for HTTP/1.1 */
  streams: number;
  durationS: number;
  /** HTTP/1.1 instead of HTTP/2 (h2load --h1) */
  h1?: boolean;
  /** requests per second per connection (h2load --rps); unset = as fast as possible */
  rpsPerClient?: number;
  /** where h2load writes its per-request log; read for the percentiles, then removed */
  logFile?: string;
}

export interface H2loadResult {
  requests: number;
  requestsPerSec: number;
  /** responses that were not 2xx, and requests that failed or errored */
  non2xx: number;
  failed: number;
  /** from the per-request log, when one was asked for */
  latencyMs: { p50: number; p90: number; p99: number; max: number } | null;
  handshakes: number | null;
  h2loadCpuS: number | null;
  exitCode: number | null;
  output: string;
}

function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

export async function runH2load(o: H2loadOptions): Promise<H2loadResult> {
  const args = ['-t1', `-c${o.clients}`, `-m${o.streams}`, `-D${o.durationS}`, '-T5'];
  if (o.h1) args.push('--h1');
  if (o.rpsPerClient !== undefined) args.push(`--rps=${o.rpsPerClient}`);
  if (o.logFile) args.push(`--log-file=${o.logFile}`);
  args.push(o.url);
  const r = await runTimed([o.h2load, ...args], shimEnv(o.shim, o.pki, true));
  const out = r.stdout;
  // "requests: 100 total, 100 started, 100 done, 100 succeeded, 0 failed, 0 errored, 0 timeout"
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(out);
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out);
  const fin = /finished in ([\d.]+)(ms|s), ([\d.]+) req\/s/.exec(out);
  let latencyMs: H2loadResult['latencyMs'] = null;
  if (o.logFile) {
    try {
      const us = readFileSync(o.logFile, 'utf8')
        .split('\n')
        .map((l) => l.split('\t'))
        .filter((f) => f.length >= 3 && f[1] !== '-1')
        .map((f) => Number(f[2]))
        .filter(Number.isFinite)
        .sort((a, b) => a - b);
      latencyMs = { p50: percentile(us, 50) / 1000, p90: percentile(us, 90) / 1000, p99: percentile(us, 99) / 1000, max: (us[us.length - 1] ?? NaN) / 1000 };
    } finally {
      rmSync(o.logFile, { force: true });
    }
  }
  const shim = /wrk-shim: handshakes=(\d+) resumed=(\d+)/.exec(r.stderr);
  const done = req ? Number(req[3]) : 0;
  const succeeded = req ? Number(req[4]) : 0;
  return {
    requests: succeeded,
    requestsPerSec: fin ? Number(fin[3]) * (done ? succeeded / done : 0) : 0,
    non2xx: codes ? Number(codes[2]) + Number(codes[3]) + Number(codes[4]) : 0,
    failed: req ? Number(req[5]) + Number(req[6]) : 0,
    latencyMs,
    handshakes: shim ? Number(shim[1]) : null,
    h2loadCpuS: r.cpuS,
    exitCode: r.code,
    output: `${out.trim()}${r.stderr.trim() ? `\n[stderr] ${r.stderr.trim()}` : ''}`,
  };
}
