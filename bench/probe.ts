// Single requests used to wait for servers to come up and to check, before measuring,
// that both proxies really authenticate the client and forward its identity.
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import type { BenchPki } from './pki.js';
import { sleep, type Proc } from './proc.js';

export interface ProbeResult {
  status: number;
  body: string;
}

export function get(port: number, path: string, pki?: BenchPki): Promise<ProbeResult> {
  return new Promise((resolve, reject) => {
    const opts = { host: '127.0.0.1', port, path, agent: false, timeout: 5000 } as const;
    const onRes = (res: http.IncomingMessage) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    };
    const req = pki
      ? https.get(
          {
            ...opts,
            servername: 'localhost',
            ca: readFileSync(pki.ca),
            cert: readFileSync(pki.clientChain),
            key: readFileSync(pki.clientKey),
          },
          onRes,
        )
      : http.get(opts, onRes);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/** Polls GET / until it answers 200, failing early when the process exits. */
export async function waitReady(proc: Proc, port: number, pki?: BenchPki, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (proc.exitCode !== undefined) {
      throw new Error(`${proc.name} exited with code ${proc.exitCode} before it was ready; see ${proc.logPath}:\n${tail(proc.logPath)}`);
    }
    try {
      const r = await get(port, '/', pki);
      if (r.status === 200) return;
      last = `status ${r.status}: ${r.body.slice(0, 200)}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(100);
  }
  throw new Error(`${proc.name} did not answer on 127.0.0.1:${port} within ${timeoutMs} ms (last: ${last}); see ${proc.logPath}:\n${tail(proc.logPath)}`);
}

export function tail(path: string, lines = 20): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}
