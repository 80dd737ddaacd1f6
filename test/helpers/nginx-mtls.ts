// A real nginx (Debian's package, run without root from a temporary prefix) acting as an
// mTLS upstream: one process, several `server` blocks, each on its own port with its own
// server certificate and its own access log, all with `ssl_verify_client on`. Each answers
// with what it saw of the client's certificate and of the request (body and headers), so
// tests assert on what the upstream actually received rather than on a status code.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { freePorts } from './ports.js';

/** The nginx binary, or undefined where nginx is not installed. */
export const NGINX = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => existsSync(p) && spawnSync(p, ['-v']).status === 0);

export interface NginxSite {
  name: string;
  cert: string;
  key: string;
  /** CA bundle nginx verifies client certificates against */
  clientCa: string;
  /** ssl_protocols; default TLSv1.2 TLSv1.3 (nginx 1.22's own default has no TLS 1.3) */
  protocols?: string;
}

export interface MtlsNginx {
  ports: Record<string, number>;
  /** parsed lines of the site's access log (one per request that reached its location) */
  accessLines(site: string): Record<string, string>[];
  errorLog(): string;
  stop(): Promise<void>;
}

export { freePort } from './ports.js';

async function waitListening(port: number, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const ok = await new Promise<boolean>((r) => {
      const c = connect(port, '127.0.0.1', () => (c.destroy(), r(true)));
      c.on('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nginx did not listen on ${port}`);
}

// What the location echoes, in its body (one `key=value` per line) and as headers.
// escape=json keeps a quote or newline in a header value from breaking the log's JSON.
const FIELDS: [string, string][] = [
  ['verify', '$ssl_client_verify'],
  ['serial', '$ssl_client_serial'],
  ['subject', '$ssl_client_s_dn'],
  ['issuer', '$ssl_client_i_dn'],
  ['protocol', '$ssl_protocol'],
  ['session_reused', '$ssl_session_reused'],
  ['server_name', '$ssl_server_name'],
  ['method', '$request_method'],
  ['uri', '$request_uri'],
  ['host', '$http_host'],
  ['x_test', '$http_x_test'],
  ['x_forwarded_for', '$http_x_forwarded_for'],
  ['x_request_id', '$http_x_request_id'],
  ['connection_id', '$connection'],
  ['connection_requests', '$connection_requests'],
  ['status', '$status'],
];

/**
 * Starts nginx in the foreground with `sites`, each on a free port. Every site answers
 * 200 with the FIELDS; a client certificate nginx cannot verify gets nginx's own 400
 * ("The SSL certificate error"), which is also logged.
 */
export async function startMtlsNginx(dir: string, sites: NginxSite[]): Promise<MtlsNginx> {
  if (!NGINX) throw new Error('nginx is not installed');
  mkdirSync(dir, { recursive: true });
  const ports: Record<string, number> = {};
  const allocated = await freePorts(sites.length);
  sites.forEach((s, i) => (ports[s.name] = allocated[i]!));
  const body = FIELDS.filter(([k]) => k !== 'status').map(([k, v]) => `${k}=${v}\\n`).join('');
  const headers = FIELDS.filter(([k]) => k !== 'status').map(([k, v]) => `      add_header X-Seen-${k.replace(/_/g, '-')} "${v}" always;`).join('\n');
  const logFormat = `{${FIELDS.map(([k, v]) => `"${k}":"${v}"`).join(',')}}`;
  const servers = sites
    .map(
      (s) => `  server {
    listen 127.0.0.1:${ports[s.name]} ssl;
    server_name _;
    ssl_certificate ${s.cert};
    ssl_certificate_key ${s.key};
    ssl_protocols ${s.protocols ?? 'TLSv1.2 TLSv1.3'};
    ssl_client_certificate ${s.clientCa};
    ssl_verify_client on;
    ssl_verify_depth 2;
    access_log ${dir}/access-${s.name}.log seen;
    keepalive_requests 100000;
    location / {
      default_type text/plain;
${headers}
      return 200 "site=${s.name}\\n${body}";
    }
  }`,
    )
    .join('\n');
  const conf = `daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log info;
events { worker_connections 512; }
http {
  log_format seen escape=json '${logFormat}';
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
${servers}
}
`;
  writeFileSync(join(dir, 'nginx.conf'), conf);
  const proc: ChildProcess = spawn(NGINX, ['-p', dir, '-c', join(dir, 'nginx.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  try {
    await Promise.race([Promise.all(Object.values(ports).map((p) => waitListening(p))), exited.then(() => Promise.reject(new Error(`nginx exited: ${stderr}`)))]);
  } catch (err) {
    proc.kill('SIGKILL');
    throw err;
  }
  const read = (f: string) => (existsSync(f) ? readFileSync(f, 'utf8') : '');
  return {
    ports,
    accessLines: (site) =>
      read(join(dir, `access-${site}.log`))
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, string>),
    errorLog: () => read(join(dir, 'error.log')),
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        await exited;
      }
    },
  };
}

/** nginx's echo body (`key=value` lines) as an object. */
export function parseSeen(body: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of body.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}
