// HTTP/2 next to HTTP/1.1 through portcullis (`npm run bench:h2`): keep-alive requests/s,
// latency and the worker's CPU per request, with Node clients presenting a client
// certificate — HTTP/1.1 over C kept-alive connections, HTTP/2 as C streams on one
// session. Runs alternate h1, h2, h1, h2 and the medians are printed and written to
// bench/results/h2.json. The CPU per request (from /proc) is the robust number on a
// shared machine; requests/s is also bounded by the Node client itself.
import https from 'node:https';
import http from 'node:http';
import http2 from 'node:http2';
import { readFileSync, mkdirSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, type AddressInfo } from 'node:net';
import { makePki } from './pki.js';
import { portcullisConfig, startPortcullis } from './portcullis.js';
import { processTree, stopProcess, sleep, killAllStarted } from './proc.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const C = Number(process.env.BENCH_H2_CONCURRENCY ?? 32);
const SECONDS = Number(process.env.BENCH_DURATION ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

interface Run { mode: 'h1' | 'h2'; rps: number; p50_ms: number; p99_ms: number; worker_cpu_us_per_req: number; errors: number }

function cpuTicks(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(f[11]) + Number(f[12]);
}

async function measure(mode: 'h1' | 'h2', port: number, worker: number, tlsOpts: { ca: Buffer; cert: Buffer; key: Buffer }): Promise<Run> {
  let n = 0;
  let errors = 0;
  const lat: number[] = [];
  let agent: https.Agent | undefined;
  let session: http2.ClientHttp2Session | undefined;
  let one: () => Promise<void>;
  if (mode === 'h1') {
    const a = new https.Agent({ keepAlive: true, maxSockets: C, ...tlsOpts });
    agent = a;
    one = () =>
      new Promise((res) => {
        const t = performance.now();
        const r = https.get({ host: '127.0.0.1', servername: 'localhost', port, path: '/bench', agent: a }, (rs) => {
          rs.resume();
          rs.on('end', () => { lat.push(performance.now() - t); n++; res(); });
        });
        r.on('error', () => { errors++; res(); });
      });
  } else {
    const s = http2.connect(`https://localhost:${port}`, tlsOpts);
    session = s;
    one = () =>
      new Promise((res) => {
        const t = performance.now();
        const r = s.request({ ':path': '/bench' });
        r.resume();
        r.on('end', () => { lat.push(performance.now() - t); n++; res(); });
        r.on('error', () => { errors++; res(); });
      });
  }
  await Promise.all(Array.from({ length: C }, () => one())); // warm-up: open the connections
  n = 0;
  lat.length = 0;
  const t0 = cpuTicks(worker);
  const end = Date.now() + SECONDS * 1000;
  await Promise.all(Array.from({ length: C }, async () => { while (Date.now() < end) await one(); }));
  const cpuMs = (cpuTicks(worker) - t0) * 10;
  agent?.destroy();
  session?.close();
  lat.sort((a, b) => a - b);
  return {
    mode,
    rps: Math.round(n / SECONDS),
    p50_ms: +(lat[Math.floor(lat.length * 0.5)] ?? 0).toFixed(2),
    p99_ms: +(lat[Math.floor(lat.length * 0.99)] ?? 0).toFixed(2),
    worker_cpu_us_per_req: Math.round((cpuMs * 1000) / Math.max(1, n)),
    errors,
  };
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port }, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-bench-h2-'));
  const pki = await makePki(dir);
  const upstream = http.createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 3 });
    res.end('ok\n');
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const upPort = (upstream.address() as AddressInfo).port;
  const port = 20000 + Math.floor(Math.random() * 20000);
  const proxy = startPortcullis(REPO, dir, portcullisConfig(port, 0, upPort, pki, 1));
  // the bench config logs at warn, so readiness is: the port accepts and a worker exists
  let worker = 0;
  for (let i = 0; i < 100 && !worker; i++) {
    await sleep(200);
    const tree = processTree(proxy.pid).filter((p) => p !== proxy.pid);
    if (tree.length > 0 && (await accepts(port))) worker = tree[0]!;
  }
  if (!worker) throw new Error(`portcullis did not start; see ${join(dir, 'portcullis.log')}`);
  const tlsOpts = { ca: readFileSync(pki.ca), cert: readFileSync(pki.clientChain), key: readFileSync(pki.clientKey) };
  const runs: Run[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    for (const mode of ['h1', 'h2'] as const) {
      const run = await measure(mode, port, worker, tlsOpts);
      runs.push(run);
      process.stdout.write(`${JSON.stringify(run)}\n`);
    }
  }
  await stopProcess(proxy);
  upstream.close();
  const pick = (m: 'h1' | 'h2', k: keyof Omit<Run, 'mode'>) => median(runs.filter((x) => x.mode === m).map((x) => x[k] as number));
  const rows = (['rps', 'p50_ms', 'p99_ms', 'worker_cpu_us_per_req'] as const).map((k) => ({ metric: k, h1: pick('h1', k), h2: pick('h2', k), ratio_h2_h1: +(pick('h2', k) / pick('h1', k)).toFixed(2) }));
  console.table(rows);
  mkdirSync(join(REPO, 'bench/results'), { recursive: true });
  writeFileSync(join(REPO, 'bench/results/h2.json'), JSON.stringify({ concurrency: C, seconds: SECONDS, rounds: ROUNDS, runs, medians: rows }, null, 2));
  rmSync(dir, { recursive: true, force: true });
}

main().catch((err) => {
  killAllStarted();
  console.error(err);
  process.exit(1);
});
