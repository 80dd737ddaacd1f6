// Plumbing shared by the revocation, OCSP, pin/policy and resumption end-to-end tests: one
// TLS connection with a hand-written HTTP/1.1 request (session, resumption and staple
// visible), waiting for log lines, and reading one metric from the admin listener.
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import type { RunningCli } from './proxy.js';

export interface Exchange {
  /** HTTP status, 0 when the connection closed without an answer (a refusal in require mode) */
  status: number;
  body: string;
  reused: boolean;
  /** a session to resume with */
  session: Buffer | undefined;
  /** the OCSP response the server stapled, if asked for */
  staple: Buffer | null | undefined;
  error: string | undefined;
  ms: number;
}

export interface ExchangeOptions {
  port: number;
  ca: string;
  client?: { cert: string; key: string; chain?: string };
  session?: Buffer;
  version?: 'TLSv1.2' | 'TLSv1.3';
  path?: string;
  /** SNI; false sends none */
  servername?: string | false;
  /** the Host header; default localhost */
  host?: string;
  requestOCSP?: boolean;
}

export function exchange(o: ExchangeOptions): Promise<Exchange> {
  const started = Date.now();
  return new Promise((resolve) => {
    let session: Buffer | undefined;
    let staple: Buffer | null | undefined;
    let reused = false;
    let error: string | undefined;
    const chunks: Buffer[] = [];
    const sock = tls.connect({
      host: '127.0.0.1',
      port: o.port,
      ...(o.servername === false ? {} : { servername: o.servername ?? 'localhost' }),
      ca: readFileSync(o.ca),
      ...(o.version ? { minVersion: o.version, maxVersion: o.version } : {}),
      ...(o.session ? { session: o.session } : {}),
      ...(o.client ? { cert: readFileSync(o.client.chain ?? o.client.cert), key: readFileSync(o.client.key) } : {}),
      ...(o.requestOCSP ? { requestOCSP: true } : {}),
    });
    sock.on('session', (s: Buffer) => (session = s));
    sock.on('OCSPResponse', (r: Buffer | null) => (staple = r));
    sock.on('secureConnect', () => {
      reused = sock.isSessionReused();
      sock.write(`GET ${o.path ?? '/'} HTTP/1.1\r\nHost: ${o.host ?? 'localhost'}\r\nConnection: close\r\n\r\n`);
    });
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('error', (e: Error) => (error = e.message));
    sock.setTimeout(15_000, () => sock.destroy(new Error('timed out')));
    sock.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      const body = text.slice(text.indexOf('\r\n\r\n') + 4);
      resolve({ status: m ? Number(m[1]) : 0, body: m ? body : '', reused, session, staple, error, ms: Date.now() - started });
    });
  });
}

export async function waitFor(pred: () => boolean, ms = 8000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

type Line = Record<string, unknown> & { client?: { serial?: string; verify?: string; issuer?: string }; decision?: { reason?: string } };

/** The tls_handshake_failed line for a certificate serial on a listener, once it is written. */
export async function refusal(cli: RunningCli, listener: string, serial: string): Promise<Line> {
  const find = () => (cli.accessLines() as Line[]).find((l) => l.event === 'tls_handshake_failed' && l.listener === listener && l.client?.serial === serial);
  await waitFor(() => find() !== undefined, 8000, `a refusal of ${serial} on ${listener}`);
  return find()!;
}

/** stderr JSON lines (the operational log) with this event. */
export function logEvents(cli: RunningCli, event: string): Record<string, unknown>[] {
  return cli
    .stderr()
    .split('\n')
    .filter((l) => l.startsWith('{') && l.includes(`"${event}"`))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.event === event);
}

/** One sample of a metric from the admin listener's /metrics. */
export async function metric(cli: RunningCli, name: string, labels: Record<string, string>): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${cli.adminPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`)));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

/**
 * Waits until a reload that started after the first `startedBefore` reload_started lines
 * (so after the caller changed its files) has succeeded. The file watcher and SIGHUP may
 * both trigger one; either reads the new files.
 */
export async function reloadedAfter(cli: RunningCli, startedBefore: number): Promise<void> {
  await waitFor(
    () => {
      const gen = logEvents(cli, 'reload_started')[startedBefore]?.generation;
      return gen !== undefined && logEvents(cli, 'reload_succeeded').some((l) => (l.generation as number) >= (gen as number));
    },
    15_000,
    'a reload after the change',
  );
}
