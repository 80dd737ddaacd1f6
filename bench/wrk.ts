// Runs wrk (1 thread, client certificate through the LD_PRELOAD shim) and parses its
// report. wrk's own CPU time comes from bash's `times`, so a run can say whether the
// load generator or the proxy was the limit.
import { runTimed } from './proc.js';
import type { BenchPki } from './pki.js';

export interface WrkOptions {
  wrk: string;
  shim: string;
  pki: BenchPki;
  url: string;
  connections: number;
  durationS: number;
  /** send `Connection: close`: one full handshake + one request per connection */
  closeEach: boolean;
  /** drop the TLS session between connections (shim), so no handshake is resumed */
  noResume: boolean;
}

export interface WrkResult {
  requests: number;
  seconds: number;
  requestsPerSec: number;
  latencyMs: { avg: number; p50: number; p75: number; p90: number; p99: number; max: number } | null;
  socketErrors: { connect: number; read: number; write: number; timeout: number };
  non2xx: number;
  /** from the shim: completed TLS handshakes and how many of them resumed a session */
  handshakes: number | null;
  resumed: number | null;
  /** CPU seconds wrk used (user + system) */
  wrkCpuS: number | null;
  exitCode: number | null;
  output: string;
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

function toMs(v: string): number {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(v.trim());
  if (!m) return NaN;
  return Number(m[1]) * UNIT_MS[m[2]!]!;
}

export function parseWrk(out: string): Omit<WrkResult, 'exitCode' | 'output' | 'wrkCpuS' | 'handshakes' | 'resumed'> {
  const num = (re: RegExp) => {
    const m = re.exec(out);
    return m ? Number(m[1]) : NaN;
  };
  const reqLine = /(\d+) requests in ([\d.]+)(us|ms|s|m)/.exec(out);
  const lat = (p: string) => {
    const m = new RegExp(`^\\s+${p}%\\s+(\\S+)`, 'm').exec(out);
    return m ? toMs(m[1]!) : NaN;
  };
  const latLine = /^\s+Latency\s+(\S+)\s+(\S+)\s+(\S+)/m.exec(out);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  return {
    requests: reqLine ? Number(reqLine[1]) : 0,
    seconds: reqLine ? toMs(`${reqLine[2]}${reqLine[3]}`) / 1000 : NaN,
    requestsPerSec: num(/Requests\/sec:\s+([\d.]+)/),
    latencyMs: /Latency Distribution/.test(out)
      ? { avg: latLine ? toMs(latLine[1]!) : NaN, p50: lat('50'), p75: lat('75'), p90: lat('90'), p99: lat('99'), max: latLine ? toMs(latLine[3]!) : NaN }
      : null,
    socketErrors: sock
      ? { connect: Number(sock[1]), read: Number(sock[2]), write: Number(sock[3]), timeout: Number(sock[4]) }
      : { connect: 0, read: 0, write: 0, timeout: 0 },
    non2xx: num(/Non-2xx or 3xx responses:\s+(\d+)/) || 0,
  };
}

/** The environment that makes a load generator linked against libssl present the bench client certificate (bench/wrk-shim.c). */
export function shimEnv(shim: string, pki: BenchPki, noResume: boolean): NodeJS.ProcessEnv {
  return { ...process.env, LD_PRELOAD: shim, BENCH_SHIM_CERT: pki.clientChain, BENCH_SHIM_KEY: pki.clientKey, BENCH_SHIM_NO_RESUME: noResume ? '1' : '0' };
}

export async function runWrk(o: WrkOptions): Promise<WrkResult> {
  const args = ['-t1', `-c${o.connections}`, `-d${o.durationS}s`, '--timeout', '5s', '--latency'];
  if (o.closeEach) args.push('-H', 'Connection: close');
  args.push(o.url);
  const r = await runTimed([o.wrk, ...args], shimEnv(o.shim, o.pki, o.noResume));
  const shim = /wrk-shim: handshakes=(\d+) resumed=(\d+)/.exec(r.stderr);
  const shimErr = r.stderr.replace(/wrk-shim: handshakes=.*\n?/, '').trim();
  return {
    ...parseWrk(r.stdout),
    handshakes: shim ? Number(shim[1]) : null,
    resumed: shim ? Number(shim[2]) : null,
    wrkCpuS: r.cpuS,
    exitCode: r.code,
    output: shimErr ? `${r.stdout.trim()}\n[stderr] ${shimErr}` : r.stdout.trim(),
  };
}
