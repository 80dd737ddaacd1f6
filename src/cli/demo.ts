// `portcullis demo`: a throwaway CA and certificates, an echo upstream, and the proxy in
// front of it — then one verified request made for you and the curl commands to try.
// Works offline; nothing to install beyond portcullis itself. The temp folder holds
// private keys, so it is removed however the demo ends (Ctrl-C, SIGTERM, SIGHUP, --exit,
// an error); only a folder the user chose with --dir is kept.
import type { Command } from 'commander';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import https from 'node:https';
import type { EventEmitter } from 'node:events';
import pino from 'pino';
import { createCA, issueCert } from '../pki/issue.js';
import { startProxy, type RunningProxy } from '../runtime/proxy-process.js';
import { startDemoUpstream } from './demo-upstream.js';

interface DemoOptions {
  port: string;
  dir?: string;
  exit?: boolean;
}

export function register(program: Command): void {
  program
    .command('demo')
    .description('generate a throwaway CA and certificates, start an echo upstream and a proxy in front of it, print the curl commands to try')
    .option('--port <port>', 'port for the demo listener (0 = any free port)', '8443')
    .option('--dir <dir>', 'folder for the demo PKI and config (default: a new temp folder)')
    .option('--exit', 'make the three example requests, print them, and exit (no serving)')
    .action(async (opts: DemoOptions) => {
      await runDemo(opts);
    });
}

async function runDemo(opts: DemoOptions): Promise<void> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'portcullis-demo-'));
  const removeDir = () => {
    if (!opts.dir) rmSync(dir, { recursive: true, force: true });
  };
  // the backstop for any way out of this process (an exception, process.exit): rmSync is
  // synchronous, so it still runs in an 'exit' handler
  process.once('exit', removeDir);
  const stopping = stopSignals();
  try {
    await demo(opts, dir, stopping);
  } finally {
    stopping.dispose();
    removeDir();
  }
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * Resolves on the first of SIGINT, SIGTERM or SIGHUP, from the moment the folder exists:
 * a Ctrl-C while the CA is still being generated must clean up too. A second signal while
 * the proxy drains exits at once (the 'exit' handler still removes the folder).
 */
function stopSignals(): { stopped: Promise<NodeJS.Signals>; dispose(): void } {
  let fired = false;
  let resolveStop!: (s: NodeJS.Signals) => void;
  const stopped = new Promise<NodeJS.Signals>((r) => (resolveStop = r));
  const onSignal = (signal: NodeJS.Signals) => {
    if (fired) process.exit(130);
    fired = true;
    resolveStop(signal);
  };
  for (const s of SIGNALS) process.on(s, onSignal);
  return { stopped, dispose: () => SIGNALS.forEach((s) => process.off(s, onSignal)) };
}

/** Rejects when a stop signal arrives first, so the demo's requests are abandoned. */
function unlessStopped<T>(work: Promise<T>, stopping: { stopped: Promise<NodeJS.Signals> }): Promise<T> {
  return Promise.race([work, stopping.stopped.then((s) => Promise.reject(new DemoStopped(s)))]);
}

class DemoStopped extends Error {
  constructor(readonly signal: NodeJS.Signals) {
    super(`stopped by ${signal}`);
  }
}

async function demo(opts: DemoOptions, dir: string, stopping: { stopped: Promise<NodeJS.Signals> }): Promise<void> {
  const out = (s = '') => process.stdout.write(s + '\n');
  out(`portcullis demo — files in ${dir}${opts.dir ? '' : ' (removed when the demo stops)'}`);

  const ca = await createCA({ name: 'portcullis demo CA', o: ['portcullis demo'] });
  const [server, allowed, denied] = await Promise.all([
    issueCert(ca, { type: 'server', cn: 'localhost', dns: ['localhost'], ip: ['127.0.0.1', '::1'] }),
    issueCert(ca, { type: 'client', cn: 'billing', o: ['portcullis demo'], ou: ['payments'], uri: ['spiffe://demo.local/ns/payments/sa/billing'] }),
    issueCert(ca, { type: 'client', cn: 'intruder', o: ['portcullis demo'], ou: ['guests'], uri: ['spiffe://demo.local/ns/guests/sa/intruder'] }),
  ]);
  const files: Record<string, string> = {
    'ca.crt': ca.certPem,
    'server.crt': server.chainPem,
    'server.key': server.keyPem,
    'allowed.crt': allowed.certPem,
    'allowed.key': allowed.keyPem,
    'denied.crt': denied.certPem,
    'denied.key': denied.keyPem,
  };
  for (const [name, data] of Object.entries(files)) writeFileSync(join(dir, name), data, { mode: name.endsWith('.key') ? 0o600 : 0o644 });

  const upstream = await startDemoUpstream();
  try {
    // not raced against the signal: start-up takes well under a second, and a proxy
    // abandoned half-started would keep writing into the folder being removed
    const proxy = await startDemoProxy(opts, dir, upstream.url, out);
    try {
      await serveDemo(opts, dir, proxy, files, out, stopping);
    } catch (err) {
      if (!(err instanceof DemoStopped)) throw err;
      out(`\n${err.signal}: stopping`);
    } finally {
      await proxy.stop(2000);
    }
  } finally {
    await upstream.close();
  }
}

async function startDemoProxy(opts: DemoOptions, dir: string, upstreamUrl: string, out: (s?: string) => void): Promise<RunningProxy> {
  const configFor = (port: number) => `# portcullis demo config: edit it and run \`portcullis run -c ${join(dir, 'portcullis.yaml')}\`
log:
  level: warn
  access: ${join(dir, 'access.log')}
listeners:
  - name: demo
    address: 127.0.0.1:${port}
    tls:
      cert: server.crt
      key: server.key
      client_ca: ca.crt
      client_auth: require
    routes:
      - name: payments
        allow:
          - spiffe_id: "spiffe://demo.local/ns/payments/**"
        upstream: echo
upstreams:
  echo:
    endpoints: [${upstreamUrl}]
`;
  const cfgPath = join(dir, 'portcullis.yaml');
  writeFileSync(cfgPath, configFor(Number(opts.port)));
  let proxy: RunningProxy;
  try {
    proxy = await startProxy(cfgPath);
  } catch (err) {
    if (Number(opts.port) === 0 || !/EADDRINUSE|EACCES/.test(String((err as Error).message))) throw err;
    out(`port ${opts.port} is busy; using a free port instead`);
    writeFileSync(cfgPath, configFor(0));
    proxy = await startProxy(cfgPath);
  }
  await accessLogOpen(proxy);
  return proxy;
}

/**
 * The access log file opens asynchronously; removing the folder before it has opened
 * would make that open fail and crash the process, so wait for it (a few ms at most).
 */
async function accessLogOpen(proxy: RunningProxy): Promise<void> {
  const access = proxy.telemetry.access as unknown as Record<symbol, unknown> | null;
  const stream = access?.[pino.symbols.streamSym] as (EventEmitter & { fd?: number }) | undefined;
  if (!stream || typeof stream.fd !== 'number' || stream.fd >= 0) return;
  await new Promise<void>((resolve) => {
    stream.once('ready', resolve);
    stream.once('error', () => resolve());
  });
}

async function serveDemo(
  opts: DemoOptions,
  dir: string,
  proxy: RunningProxy,
  files: Record<string, string>,
  out: (s?: string) => void,
  stopping: { stopped: Promise<NodeJS.Signals> },
): Promise<void> {
  const port = proxy.addresses.get('demo')!.port;
  const url = `https://localhost:${port}/hello`;
  const c = (cert?: string) => `curl --cacert ${join(dir, 'ca.crt')}${cert ? ` --cert ${join(dir, cert + '.crt')} --key ${join(dir, cert + '.key')}` : ''} ${url}`;

  out('');
  out('1) allowed client (spiffe://demo.local/ns/payments/sa/billing): 200 and the identity the upstream received');
  out(`   ${c('allowed')}`);
  out('2) denied client (spiffe://demo.local/ns/guests/sa/intruder): 403 forbidden');
  out(`   ${c('denied')}`);
  out('3) no client certificate: the TLS handshake fails (certificate required)');
  out(`   ${c()}`);
  out('');

  const ca1 = readFileSync(join(dir, 'ca.crt'));
  const results = await unlessStopped(
    (async () => [
      await request(port, ca1, files['allowed.crt']!, files['allowed.key']!),
      await request(port, ca1, files['denied.crt']!, files['denied.key']!),
      await request(port, ca1),
    ])(),
    stopping,
  );
  out('Made these requests for you just now:');
  out(`1) allowed -> ${results[0]!.summary}`);
  if (results[0]!.body) out(results[0]!.body.replace(/^/gm, '   '));
  out(`2) denied  -> ${results[1]!.summary}`);
  out(`3) no cert -> ${results[2]!.summary}`);
  const ok = results[0]!.status === 200 && results[1]!.status === 403 && results[2]!.status === undefined;
  out('');
  out(ok ? 'demo OK: a verified request went through, the others were refused.' : 'demo FAILED: the results above are not what the demo expects.');

  if (opts.exit) {
    process.exitCode = ok ? 0 : 1;
    return;
  }
  out(`serving on ${url} (access log: ${join(dir, 'access.log')}); press Ctrl-C to stop`);
  const signal = await stopping.stopped;
  out(`\n${signal}: stopping${opts.dir ? `; the files stay in ${dir}` : `; removing ${dir}`}`);
}

function request(port: number, ca: Buffer, cert?: string, key?: string): Promise<{ status?: number; summary: string; body?: string }> {
  return new Promise((resolve) => {
    const req = https.request({ host: '127.0.0.1', servername: 'localhost', port, path: '/hello', ca, cert, key, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        let summary = `${res.statusCode}`;
        if (res.statusCode !== 200) {
          try {
            const j = JSON.parse(body) as { error: string; message: string };
            summary += ` ${j.error}: ${j.message}`;
          } catch {
            summary += ` ${body.slice(0, 200)}`;
          }
          resolve({ status: res.statusCode, summary });
          return;
        }
        resolve({ status: res.statusCode, summary: `${res.statusCode} OK`, body: body.trimEnd() });
      });
    });
    req.on('error', (err: Error & { code?: string }) => resolve({ summary: `connection refused by the proxy (${err.code ?? err.message})` }));
    req.end();
  });
}
