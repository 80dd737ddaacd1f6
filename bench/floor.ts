// `npm run bench:floor`: how far portcullis is from what Node itself allows. Next to
// portcullis and nginx it runs two bare Node https servers (bench/floor-server.ts, same
// certificates, client certificate required, TLS 1.3, one process, the same OpenSSL
// settings as portcullis' workers): one answering by itself, one forwarding through
// undici. Same wrk load as `npm run bench` (keep-alive, then full handshakes), runs
// alternating, medians printed with the proxy's CPU per request and the ratio to nginx.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { proxyConf, startNginx, upstreamConf } from './nginx.js';
import { makePki } from './pki.js';
import { portcullisConfig, startPortcullis } from './portcullis.js';
import { waitReady } from './probe.js';
import { freePort, killAllStarted, startProcess, stopProcess, waitQuiet, type Proc } from './proc.js';
import { median as medianOrNull, type SystemName } from './report.js';
import { BUSY_PCT, runTest, type Env } from './tests.js';
import { buildShim, ensureTools } from './tools.js';
import { runWrk } from './wrk.js';
import { WORKER_OPENSSL_CONFIG } from '../src/runtime/openssl-config.js';

const median = (xs: number[]) => medianOrNull(xs) ?? NaN;

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const DURATION = Number(process.env.BENCH_DURATION ?? 8);
const TESTS = (process.env.BENCH_ONLY ?? 'keepalive,handshake').split(',') as ('keepalive' | 'handshake')[];

async function main(): Promise<void> {
  const here = dirname(fileURLToPath(import.meta.url));
  const repoRoot = resolve(here, '..', '..');
  const tools = ensureTools();
  const dir = mkdtempSync(join(os.tmpdir(), 'portcullis-floor-'));
  chmodSync(dir, 0o755);
  const cleanup = () => {
    killAllStarted();
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => (cleanup(), process.exit(130)));
  try {
    const shim = buildShim(tools.gcc, join(repoRoot, 'bench', 'wrk-shim.c'), dir);
    const pki = await makePki(dir);
    const [upPort, pcPort, ngPort, adminPort, answerPort, forwardPort] = await Promise.all(Array.from({ length: 6 }, freePort));
    const upConf = join(dir, 'upstream.conf');
    writeFileSync(upConf, upstreamConf(dir, upPort!, join(dir, 'none'), 4096));
    const upstream = startNginx(tools.nginx, 'upstream', dir, upConf);
    await waitReady(upstream, upPort!);
    const ngConf = join(dir, 'nginx-proxy.conf');
    writeFileSync(ngConf, proxyConf(dir, ngPort!, upPort!, pki, 1, 4096));
    const floor = (mode: string, port: number) =>
      startProcess(`node-${mode}`, [process.execPath, `--openssl-config=${WORKER_OPENSSL_CONFIG}`, join(here, 'floor-server.js')], {
        logPath: join(dir, `node-${mode}.log`),
        env: { ...process.env, FLOOR_MODE: mode, FLOOR_PORT: String(port), FLOOR_UPSTREAM: `http://127.0.0.1:${upPort}`, FLOOR_CERT: pki.serverChain, FLOOR_KEY: pki.serverKey, FLOOR_CA: pki.ca },
      });
    const systems: { name: string; port: number; proc: Proc }[] = [
      { name: 'node https, answers itself', port: answerPort!, proc: floor('answer', answerPort!) },
      { name: 'node https + undici forward', port: forwardPort!, proc: floor('forward', forwardPort!) },
      { name: 'portcullis', port: pcPort!, proc: startPortcullis(repoRoot, dir, portcullisConfig(pcPort!, adminPort!, upPort!, pki, 1)) },
      { name: 'nginx', port: ngPort!, proc: startNginx(tools.nginx, 'nginx-proxy', dir, ngConf) },
    ];
    for (const s of systems) await waitReady(s.proc, s.port, pki);
    const env: Env = { wrk: tools.wrk, curl: tools.curl, shim, pki, upstream, streamBytes: 0 };
    for (const s of systems) {
      for (const closeEach of [false, true]) await runWrk({ wrk: tools.wrk, shim, pki, url: `https://127.0.0.1:${s.port}/`, connections: 64, durationS: 3, closeEach, noResume: true });
    }
    const results = new Map<string, number[]>();
    for (let round = 1; round <= ROUNDS; round++) {
      for (const test of TESTS) {
        for (const s of systems) {
          await waitQuiet([upstream.pid, ...systems.map((x) => x.proc.pid)], BUSY_PCT, 10_000);
          const r = await runTest(test, s.name as SystemName, s.proc, s.port, round, env, { durationS: DURATION, connections: 64, handshakeConnections: 64 });
          for (const v of r.values) {
            const k = `${test}|${v.metric}|${s.name}`;
            results.set(k, [...(results.get(k) ?? []), v.value]);
          }
          const main = r.values[0];
          console.log(`[round ${round}/${ROUNDS}] ${test.padEnd(9)} ${s.name.padEnd(28)} ${main ? main.value.toFixed(0) : 'failed'}  (proxy CPU ${r.record.cpu.proxy.toFixed(0)}%)${r.record.problems.length ? '  ' + r.record.problems.join('; ') : ''}`);
        }
      }
    }
    const rows: string[] = ['| test | system | median | proxy CPU per request, µs | ratio to nginx |', '|---|---|---:|---:|---:|'];
    for (const test of TESTS) {
      const main = test === 'keepalive' ? 'keepalive_rps' : 'handshake_cps';
      const cpu = test === 'keepalive' ? 'keepalive_cpu_us' : 'handshake_cpu_us';
      const ng = median(results.get(`${test}|${main}|nginx`) ?? []);
      for (const s of systems) {
        const m = median(results.get(`${test}|${main}|${s.name}`) ?? []);
        const c = median(results.get(`${test}|${cpu}|${s.name}`) ?? []);
        rows.push(`| ${test === 'keepalive' ? 'keep-alive req/s' : 'handshakes conn/s'} | ${s.name} | ${m.toFixed(0)} | ${c.toFixed(0)} | ${(m / ng).toFixed(2)} |`);
      }
    }
    console.log(`\nMedians of ${ROUNDS} × ${DURATION} s, one process/worker each, 2 CPUs:\n\n${rows.join('\n')}`);
    for (const s of systems) await stopProcess(s.proc);
    await stopProcess(upstream);
  } finally {
    cleanup();
  }
}

main().catch((err) => {
  console.error(err);
  killAllStarted();
  process.exit(1);
});
