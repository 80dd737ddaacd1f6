// Shared end-to-end plumbing: an upstream that records exactly what it received, a
// launcher that runs the real CLI (`bin/portcullis.js run`) on a config written to a temp
// folder, and wrappers for curl / openssl / Node https clients.
import http from 'node:http';
import assert from 'node:assert/strict';
import { before, after } from 'node:test';
import https from 'node:https';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const CLI = join(REPO_ROOT, 'bin/portcullis.js');

export function tempDir(prefix = 'pcl-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface Received {
  method: string;
  url: string;
  /** raw header pairs exactly as they arrived */
  rawHeaders: string[];
  headers: http.IncomingHttpHeaders;
  bodyBytes: number;
}

export interface EchoUpstream {
  url: string;
  port: number;
  received: Received[];
  server: http.Server;
  close(): Promise<void>;
}

/** An upstream that answers JSON describing the request and records it. `handler` may take over. */
export async function startEchoUpstream(handler?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean | void): Promise<EchoUpstream> {
  const received: Received[] = [];
  const server = http.createServer((req, res) => {
    if (handler && handler(req, res)) return;
    let n = 0;
    req.on('data', (c: Buffer) => (n += c.length));
    req.on('end', () => {
      const r: Received = { method: req.method ?? '', url: req.url ?? '', rawHeaders: req.rawHeaders, headers: req.headers, bodyBytes: n };
      received.push(r);
      const body = JSON.stringify(r);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    received,
    server,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

export interface RunningCli {
  proc: ChildProcess;
  /** listener name -> port actually bound */
  ports: Record<string, number>;
  /** the admin listener's port */
  adminPort: number;
  port: number;
  dir: string;
  accessLog: string;
  stderr(): string;
  /** Waits until the proxy's stderr matches `re` (log lines are written asynchronously). */
  waitLog(re: RegExp, ms?: number): Promise<void>;
  accessLines(): Record<string, unknown>[];
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Writes `config` (an object; listener addresses may use port 0) as JSON into a fresh
 * folder and starts `portcullis run`. Resolves once every listener logged that it is ready.
 */
export async function startCli(config: Record<string, unknown>, opts: { dir?: string; env?: NodeJS.ProcessEnv } = {}): Promise<RunningCli> {
  const dir = opts.dir ?? tempDir();
  const accessLog = join(dir, 'access.log');
  const cfg = { workers: 1, admin: { address: '127.0.0.1:0' }, log: { level: 'info', access: accessLog }, ...config };
  const cfgPath = join(dir, `portcullis-${Date.now()}-${Math.random().toString(16).slice(2)}.json`);
  writeFileSync(cfgPath, JSON.stringify(cfg, null, 2));
  const proc = spawn(process.execPath, [CLI, 'run', '-c', cfgPath, '--drain-timeout', '3000'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  let err = '';
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const listeners = ((config.listeners as { name: string }[] | undefined) ?? []).map((l) => l.name);
  const ports: Record<string, number> = {};
  let adminPort = 0;
  await new Promise<void>((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`portcullis did not start in time:\n${err}${out}`)), 15_000);
    proc.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      for (const line of err.split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          const j = JSON.parse(line) as { event?: string; listener?: string; address?: string };
          if (j.event === 'listening' && j.listener && j.address) ports[j.listener] = Number(j.address.slice(j.address.lastIndexOf(':') + 1));
          if (j.event === 'admin_listening' && j.address) adminPort = Number(j.address.slice(j.address.lastIndexOf(':') + 1));
        } catch {
          // partial line
        }
      }
      if (listeners.every((n) => ports[n] !== undefined)) {
        clearTimeout(timer);
        resolvePromise();
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`portcullis exited with ${code} before it was ready:\n${err}${out}`));
    });
  });
  return {
    proc,
    ports,
    adminPort,
    port: ports[listeners[0]!]!,
    dir,
    accessLog,
    stderr: () => err,
    waitLog: async (re: RegExp, ms = 5000) => {
      const deadline = Date.now() + ms;
      while (!re.test(err)) {
        if (Date.now() > deadline) assert.fail(`the proxy never logged ${re}:\n${err.slice(-4000)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    accessLines: () => (existsSync(accessLog) ? readFileSync(accessLog, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) : []),
    stop: (signal: NodeJS.Signals = 'SIGTERM') =>
      new Promise((r) => {
        if (proc.exitCode !== null) return r(proc.exitCode);
        proc.once('exit', (code) => r(code));
        proc.kill(signal);
      }),
  };
}

/** Polls `pred` every 20 ms until it holds; fails after `ms` naming `what`. */
export async function eventually(pred: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) assert.fail(`${what} did not happen within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Runs the CLI to completion (for check, start-up failures, ca/cert commands). */
export function runCli(args: string[], opts: { cwd?: string; timeoutMs?: number } = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: opts.cwd, encoding: 'utf8', timeout: opts.timeoutMs ?? 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export interface CurlResult {
  code: number | null;
  status: number;
  body: string;
  stderr: string;
}

/** curl with -w status; `args` are extra curl arguments (e.g. --cert/--key/-H). */
export function curl(url: string, args: string[] = [], timeoutMs = 20_000): Promise<CurlResult> {
  return new Promise((resolvePromise) => {
    const p = spawn('curl', ['-sS', '--max-time', String(Math.ceil(timeoutMs / 1000)), '-o', '-', '-w', '\n%{http_code}', ...args, url]);
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('close', (code) => {
      const i = out.lastIndexOf('\n');
      resolvePromise({ code, status: Number(out.slice(i + 1)) || 0, body: out.slice(0, i), stderr: err });
    });
  });
}

/** curl arguments to present a client certificate (the leaf alone, or with `sendChain` leaf + intermediates) and trust the test root. */
export function certArgs(ca: string, entry?: { cert: string; key: string; chain?: string }, sendChain = false): string[] {
  const a = ['--cacert', ca];
  if (entry) a.push('--cert', sendChain && entry.chain ? entry.chain : entry.cert, '--key', entry.key);
  return a;
}

export interface NodeResult {
  status?: number;
  body?: string;
  headers?: http.IncomingHttpHeaders;
  error?: NodeJS.ErrnoException;
}

/** One request with Node's https client (fresh agent: no connection reuse across calls). */
export function nodeRequest(opts: https.RequestOptions & { body?: string | Buffer }): Promise<NodeResult> {
  return new Promise((resolvePromise) => {
    const req = https.request({ agent: false, ...opts }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolvePromise({ status: res.statusCode, body, headers: res.headers }));
      res.on('error', (error) => resolvePromise({ error }));
    });
    req.on('error', (error) => resolvePromise({ error }));
    req.end(opts.body);
  });
}

export function cleanup(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** A listener config with the usual test TLS set-up; override anything. */
export function tlsListener(pki: { ca: { cert: string }; server: { chain: string; key: string } }, over: Record<string, unknown> = {}): Record<string, unknown> {
  const { tls, ...rest } = over as { tls?: Record<string, unknown> };
  return {
    name: 'api',
    address: '127.0.0.1:0',
    tls: { cert: pki.server.chain, key: pki.server.key, client_ca: pki.ca.cert, ...tls },
    routes: [{ upstream: 'app' }],
    ...rest,
  };
}

export interface ProxyFixture {
  pki: import('./pki.js').TestPki;
  up: EchoUpstream;
  cli: RunningCli;
  dir: string;
}

/**
 * The set-up most end-to-end files share: a fresh test PKI, an echo upstream and the real
 * CLI running `config(fixture)`, started in `before` and torn down in `after`. The returned
 * object is filled in when `before` runs; tests read it as `fx.pki`, `fx.cli`, ...
 */
export function useProxy(
  config: (fx: Omit<ProxyFixture, 'cli'>) => Record<string, unknown>,
  opts: { upstream?: Parameters<typeof startEchoUpstream>[0]; env?: NodeJS.ProcessEnv } = {},
): ProxyFixture {
  const fx = {} as ProxyFixture;
  before(async () => {
    const { makeTestPki } = await import('./pki.js');
    fx.dir = tempDir();
    fx.pki = await makeTestPki(join(fx.dir, 'pki'));
    fx.up = await startEchoUpstream(opts.upstream);
    fx.cli = await startCli(config(fx), { dir: fx.dir, env: opts.env });
  });
  after(async () => {
    await fx.cli?.stop();
    await fx.up?.close();
    if (fx.dir) cleanup(fx.dir);
  });
  return fx;
}
