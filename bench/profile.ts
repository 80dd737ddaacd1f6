// `npm run bench:profile`: where a portcullis worker spends its CPU under one load.
// Starts portcullis (1 worker) with V8's --cpu-prof, drives it with wrk exactly as the
// bench does (BENCH_ONLY=handshake: a full mTLS handshake + 1 request per connection;
// keepalive: 64 keep-alive connections), stops it cleanly so the profile is written, and
// prints the worker's self time grouped by where the code lives (portcullis' own modules,
// Node's JavaScript, native/GC/idle) and the top functions. Use it before and after a
// change; docs/performance.md records the breakdowns.
//
// BENCH_PROFILE_KIND=heap measures memory work instead of CPU: V8's sampling heap
// profiler (bench/heap-sampler.ts) over two equal windows of the load, the first counting
// every allocation, the second only what no scavenge freed (what ends in the old
// generation and has to wait for a full mark-compact: the part of allocation that costs
// GC time), both printed in KB per request with the top allocation sites.
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startNginx, upstreamConf } from './nginx.js';
import { makePki } from './pki.js';
import { portcullisConfig, startPortcullis } from './portcullis.js';
import { waitReady } from './probe.js';
import { freePorts, killAllStarted, processTree, stopProcess } from './proc.js';
import { buildShim, ensureTools } from './tools.js';
import { runWrk } from './wrk.js';
import { runH2load } from './h2load.js';

interface HeapNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: HeapNode[];
}

/** "function file:line" of a profile frame, the same for CPU and heap profiles. */
function frameName(f: { functionName: string; url: string; lineNumber: number }): string {
  return `${f.functionName || '(anonymous)'} ${f.url ? `${f.url.replace(/^.*\/dist\//, '').replace(/^file:\/\//, '')}:${f.lineNumber + 1}` : ''}`;
}

/** Bytes by allocating function (self), from a sampling heap profile. */
function heapSites(root: HeapNode): { total: number; sites: Map<string, number> } {
  const sites = new Map<string, number>();
  let total = 0;
  const walk = (n: HeapNode) => {
    if (n.selfSize) {
      const key = frameName(n.callFrame);
      sites.set(key, (sites.get(key) ?? 0) + n.selfSize);
      total += n.selfSize;
    }
    for (const c of n.children) walk(c);
  };
  walk(root);
  return { total, sites };
}

/** Each window's bytes divided by that window's own request count. */
function heapReport(all: HeapNode, allRequests: number, survived: HeapNode, survivedRequests: number, top: number): string {
  const a = heapSites(all);
  const s = heapSites(survived);
  const kb = (bytes: number, requests: number) => `${(bytes / Math.max(1, requests) / 1024).toFixed(2)} KB`;
  const share = s.total / Math.max(1, survivedRequests) / (a.total / Math.max(1, allRequests));
  const lines = [
    `allocated per request: ${kb(a.total, allRequests)}; not freed by a scavenge: ${kb(s.total, survivedRequests)} (${(share * 100).toFixed(0)}%)`,
    '',
    `top ${top} allocation sites, per request (all / not freed by a scavenge):`,
  ];
  for (const [site, bytes] of [...a.sites].sort((x, y) => y[1] - x[1]).slice(0, top)) {
    lines.push(`  ${kb(bytes, allRequests).padStart(10)} / ${kb(s.sites.get(site) ?? 0, survivedRequests).padStart(10)}  ${site}`);
  }
  return lines.join('\n');
}

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: Node[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Self time per node id, from the sample deltas (µs). */
function selfTimes(p: Profile): Map<number, number> {
  const t = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) t.set(p.samples[i]!, (t.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i + 1] ?? 0));
  return t;
}

function category(url: string, fn: string): string {
  if (url.includes('/dist/src/')) return `portcullis ${url.slice(url.indexOf('/dist/src/') + 10).split('/')[0]}/`;
  if (url.includes('node_modules/')) return `npm ${url.slice(url.lastIndexOf('node_modules/') + 13).split('/')[0]}`;
  if (url.startsWith('node:')) return `node ${url.slice(5).split('/')[0]}`;
  if (fn === '(idle)' || fn === '(program)' || fn === '(garbage collector)') return fn;
  if (!url) return `native ${fn || '(anonymous)'}`;
  return 'other';
}

function analyse(p: Profile, top: number): string {
  const self = selfTimes(p);
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const idle = [...self].filter(([id]) => byId.get(id)?.callFrame.functionName === '(idle)').reduce((a, [, v]) => a + v, 0);
  const busy = total - idle;
  const cats = new Map<string, number>();
  const fns = new Map<string, number>();
  for (const [id, us] of self) {
    const n = byId.get(id)!;
    const { functionName: fn, url } = n.callFrame;
    if (fn === '(idle)') continue;
    const c = category(url, fn);
    cats.set(c, (cats.get(c) ?? 0) + us);
    const key = frameName(n.callFrame);
    fns.set(key, (fns.get(key) ?? 0) + us);
  }
  const pct = (us: number) => `${((us / busy) * 100).toFixed(1).padStart(5)}%`;
  const lines = [`busy ${(busy / 1e6).toFixed(2)} s of ${(total / 1e6).toFixed(2)} s sampled`, '', 'self time by where the code lives:'];
  for (const [c, us] of [...cats].sort((a, b) => b[1] - a[1]).slice(0, 25)) lines.push(`  ${pct(us)}  ${c}`);
  lines.push('', `top ${top} functions by self time:`);
  for (const [f, us] of [...fns].sort((a, b) => b[1] - a[1]).slice(0, top)) lines.push(`  ${pct(us)}  ${f}`);
  return lines.join('\n');
}

async function main(): Promise<void> {
  const here = dirname(fileURLToPath(import.meta.url));
  const repoRoot = resolve(here, '..', '..');
  const test = (process.env.BENCH_ONLY ?? 'handshake') as 'handshake' | 'keepalive' | 'h2';
  const kind = process.env.BENCH_PROFILE_KIND ?? 'cpu';
  if (kind !== 'cpu' && kind !== 'heap') throw new Error(`BENCH_PROFILE_KIND must be cpu or heap, not ${kind}`);
  const durationS = Number(process.env.BENCH_DURATION ?? 10);
  const tools = ensureTools();
  const dir = mkdtempSync(join(os.tmpdir(), 'portcullis-profile-'));
  chmodSync(dir, 0o755);
  const profDir = join(dir, 'prof');
  mkdirSync(profDir);
  try {
    const shim = buildShim(tools.gcc, join(repoRoot, 'bench', 'wrk-shim.c'), dir);
    const pki = await makePki(dir);
    const [upPort, pcPort, adminPort] = (await freePorts(3)) as [number, number, number];
    const upConf = join(dir, 'upstream.conf');
    writeFileSync(upConf, upstreamConf(dir, upPort, join(dir, 'none'), 4096));
    const upstream = startNginx(tools.nginx, 'upstream', dir, upConf);
    await waitReady(upstream, upPort);
    const nodeArgs =
      kind === 'heap'
        ? [`--import=${join(here, 'heap-sampler.js')}`]
        : ['--cpu-prof', `--cpu-prof-dir=${profDir}`, `--cpu-prof-interval=${process.env.BENCH_PROFILE_INTERVAL_US ?? 200}`];
    const env: Record<string, string> = kind === 'heap' ? { BENCH_HEAP_DIR: profDir } : {};
    const proc = startPortcullis(repoRoot, dir, portcullisConfig(pcPort, adminPort, upPort, pki, 1), env, 'portcullis', process.execPath, nodeArgs);
    await waitReady(proc, pcPort, pki);
    const closeEach = test === 'handshake';
    const url = `https://127.0.0.1:${pcPort}/`;
    // h2: h2load, 4 connections x 16 streams, as bench:peers does
    const load = (s: number) =>
      test === 'h2'
        ? runH2load({ h2load: 'h2load', shim, pki, url, clients: 4, streams: 16, durationS: s })
        : runWrk({ wrk: tools.wrk, shim, pki, url, connections: 64, durationS: s, closeEach, noResume: true });
    await load(2);
    if (kind === 'heap') {
      // the worker is the primary's child; two windows of the same load, one per sampling mode
      const worker = processTree(proc.pid).find((pid) => pid !== proc.pid);
      if (worker === undefined) throw new Error('no worker process found under the primary');
      const profiles: HeapNode[] = [];
      const requests: number[] = [];
      for (const name of ['all', 'survived']) {
        process.kill(worker, 'SIGUSR2');
        const r = await load(durationS);
        requests.push(r.requests);
        process.kill(worker, 'SIGUSR2');
        const file = join(profDir, `${worker}-${name}.heapprofile`);
        const deadline = Date.now() + 10_000;
        while (!existsSync(file) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 100));
        profiles.push((JSON.parse(readFileSync(file, 'utf8')) as { head: HeapNode }).head);
        console.log(`bench:profile: ${test}, ${name === 'all' ? 'every allocation' : 'what no scavenge freed'}: ${r.requests} requests, ${r.requestsPerSec.toFixed(0)} req/s over ${durationS} s`);
      }
      await stopProcess(proc, 15_000);
      await stopProcess(upstream);
      console.log(heapReport(profiles[0]!, requests[0]!, profiles[1]!, requests[1]!, Number(process.env.BENCH_PROFILE_TOP ?? 20)));
      return;
    }
    const r = await load(durationS);
    console.log(`bench:profile: ${test}, ${r.requestsPerSec.toFixed(0)} ${closeEach ? 'conn' : 'req'}/s over ${durationS} s (profiler on: slower than the bench)`);
    await stopProcess(proc, 15_000);
    await stopProcess(upstream);
    // the busiest profile is the worker's (the primary sleeps once it has started)
    const files = readdirSync(profDir).map((f) => join(profDir, f));
    const busy = (p: Profile) => {
      const idle = new Set(p.nodes.filter((n) => n.callFrame.functionName === '(idle)').map((n) => n.id));
      return p.samples.reduce((a, id, i) => a + (idle.has(id) ? 0 : (p.timeDeltas[i + 1] ?? 0)), 0);
    };
    const profiles = files.map((f) => ({ f, p: JSON.parse(readFileSync(f, 'utf8')) as Profile })).sort((a, b) => busy(b.p) - busy(a.p));
    console.log(`bench:profile: ${profiles.length} profile(s) written (primary + worker expected)`);
    if (profiles.length < 2) throw new Error('the worker wrote no profile (did it exit cleanly?)');
    console.log(analyse(profiles[0]!.p, Number(process.env.BENCH_PROFILE_TOP ?? 30)));
    if (process.env.BENCH_PROFILE_OUT) {
      writeFileSync(process.env.BENCH_PROFILE_OUT, readFileSync(profiles[0]!.f));
      console.log(`\nworker profile written to ${process.env.BENCH_PROFILE_OUT} (open it in Chrome DevTools)`);
    }
  } finally {
    killAllStarted();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  killAllStarted();
  console.error(`bench:profile failed: ${(err as Error).stack ?? err}`);
  process.exit(1);
});
