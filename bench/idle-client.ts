// Child process of the RSS test: opens N mTLS connections to a proxy (full handshakes,
// client certificate), sends one keep-alive request on each, then leaves them idle.
// Talks to the harness in JSON lines: prints {"event":"ready",...} once every connection
// is up (or failed); answers "check" with how many are still open; exits on "close".
// Config comes in BENCH_IDLE_CONFIG (JSON); run it under a raised `ulimit -n`.
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

interface IdleConfig {
  port: number;
  count: number;
  concurrency: number;
  ca: string;
  cert: string;
  key: string;
}

const cfg = JSON.parse(process.env.BENCH_IDLE_CONFIG ?? '{}') as IdleConfig;
const ctx = tls.createSecureContext({
  ca: readFileSync(cfg.ca),
  cert: readFileSync(cfg.cert),
  key: readFileSync(cfg.key),
  minVersion: 'TLSv1.3',
});
const open = new Set<tls.TLSSocket>();
const errors = new Map<string, number>();
let closedAfterReady = 0;
let failed = 0;

function emit(obj: object): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function responseComplete(buf: string): { done: boolean; status: number } {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return { done: false, status: 0 };
  const head = buf.slice(0, end);
  const status = Number(head.slice(9, 12));
  const body = buf.slice(end + 4);
  const len = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  if (len) return { done: body.length >= Number(len[1]), status };
  if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) return { done: /(^|\r\n)0\r\n\r\n$/.test(body), status };
  return { done: true, status };
}

function openOne(): Promise<void> {
  return new Promise((resolve) => {
    let settled = false;
    let buf = '';
    const s = tls.connect({ host: '127.0.0.1', port: cfg.port, servername: 'localhost', secureContext: ctx });
    const fail = (why: string) => {
      if (settled) return;
      settled = true;
      failed++;
      errors.set(why, (errors.get(why) ?? 0) + 1);
      s.destroy();
      resolve();
    };
    s.setEncoding('latin1');
    s.setTimeout(60_000, () => fail('timeout'));
    s.once('secureConnect', () => s.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n'));
    s.on('data', (chunk: string) => {
      if (settled) return;
      buf += chunk;
      const r = responseComplete(buf);
      if (!r.done) return;
      if (r.status !== 200) return fail(`HTTP ${r.status}`);
      settled = true;
      s.setTimeout(0);
      open.add(s);
      resolve();
    });
    s.on('error', (err: Error & { code?: string }) => fail(err.code ?? err.message));
    s.on('close', () => {
      if (open.delete(s)) closedAfterReady++;
      else fail('closed before the response');
    });
  });
}

async function main(): Promise<void> {
  const started = Date.now();
  let next = 0;
  let lastReport = Date.now();
  const lane = async () => {
    while (next < cfg.count) {
      next++;
      await openOne();
      if (Date.now() - lastReport > 5000) {
        lastReport = Date.now();
        emit({ event: 'progress', open: open.size, failed });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(cfg.concurrency, cfg.count) }, lane));
  emit({ event: 'ready', open: open.size, failed, errors: Object.fromEntries(errors), seconds: (Date.now() - started) / 1000 });
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    if (line === 'check') emit({ event: 'check', open: open.size, closed: closedAfterReady });
    if (line === 'close') {
      for (const s of open) s.destroy();
      process.exit(0);
    }
  });
  rl.on('close', () => process.exit(0));
}

main().catch((err) => {
  emit({ event: 'error', message: (err as Error).message });
  process.exit(1);
});
