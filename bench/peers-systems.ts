// The peers of `npm run bench:peers`: how each one is configured so it does the same job
// as portcullis (TLS 1.3 only, ECDSA P-256 certificate, a required client certificate
// verified against the bench CA, the same nginx upstream) and how it is started in the
// foreground with a given number of workers/threads. HTTP peers: nginx (bench/nginx.ts),
// HAProxy, Caddy. TCP peer: Hitch (TLS unwrapping only, like a portcullis tcp listener).
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchPki } from './pki.js';
import { startProcess, type Proc } from './proc.js';

/** HAProxy and Hitch want the certificate chain and its key in one PEM file. */
function combinedPem(dir: string, pki: BenchPki, name: string): string {
  const p = join(dir, `${name}.pem`);
  writeFileSync(p, readFileSync(pki.serverChain, 'utf8') + readFileSync(pki.serverKey, 'utf8'), { mode: 0o600 });
  return p;
}

/**
 * HAProxy in HTTP mode: TLS 1.3, `verify required` against the bench CA, the identity
 * headers it can produce (as nginx and portcullis do), server-side keep-alive reused by
 * every client connection (`http-reuse always`), `nbthread` = workers.
 */
export function startHaproxy(bin: string, dir: string, port: number, upstreamPort: number, pki: BenchPki, workers: number, fdLimit: number): Proc {
  const pem = combinedPem(dir, pki, 'haproxy');
  const conf = join(dir, `haproxy-${workers}.cfg`);
  writeFileSync(
    conf,
    `global
  nbthread ${workers}
  maxconn ${Math.max(512, Math.floor((fdLimit - 500) / 2))}
  log stderr format raw local0 warning
defaults
  mode http
  log global
  timeout connect 5s
  timeout client 600s
  timeout server 600s
  timeout http-keep-alive 600s
  http-reuse always
frontend fe
  bind 127.0.0.1:${port} ssl crt ${pem} ca-file ${pki.ca} verify required ssl-min-ver TLSv1.3 alpn h2,http/1.1
  http-request set-header X-Client-Verify %[ssl_c_verify]
  http-request set-header X-Client-Subject %[ssl_c_s_dn]
  http-request set-header X-Client-Issuer %[ssl_c_i_dn]
  http-request set-header X-Client-Serial %[ssl_c_serial,hex]
  http-request set-header X-Client-Fingerprint %[ssl_c_sha1,hex]
  http-request set-header X-Client-Not-Before %[ssl_c_notbefore]
  http-request set-header X-Client-Not-After %[ssl_c_notafter]
  http-request set-header X-Forwarded-For %[src]
  http-request set-header X-Forwarded-Proto https
  http-request set-header X-Request-Id %[uuid]
  default_backend be
backend be
  server up 127.0.0.1:${upstreamPort}
`,
  );
  return startProcess(`haproxy×${workers}`, [bin, '-db', '-f', conf], { logPath: join(dir, `haproxy-${workers}.log`) });
}

/**
 * Caddy: a site on 127.0.0.1 with the bench certificate (automatic HTTPS and the admin
 * API off), TLS 1.3, `require_and_verify` against the bench CA, reverse_proxy with the
 * identity headers Caddy's placeholders give. Workers = GOMAXPROCS.
 */
export function startCaddy(bin: string, dir: string, port: number, upstreamPort: number, pki: BenchPki, workers: number): Proc {
  const conf = join(dir, `Caddyfile-${workers}`);
  writeFileSync(
    conf,
    `{
  admin off
  auto_https off
  default_sni localhost
  servers {
    strict_sni_host insecure_off
  }
  log {
    level ERROR
  }
}
https://:${port} {
  tls ${pki.serverChain} ${pki.serverKey} {
    protocols tls1.3
    client_auth {
      mode require_and_verify
      trusted_ca_cert_file ${pki.ca}
    }
  }
  reverse_proxy 127.0.0.1:${upstreamPort} {
    header_up X-Client-Subject {http.request.tls.client.subject}
    header_up X-Client-Issuer {http.request.tls.client.issuer}
    header_up X-Client-Serial {http.request.tls.client.serial}
    header_up X-Client-Fingerprint {http.request.tls.client.fingerprint}
    flush_interval -1
  }
}
`,
  );
  return startProcess(`caddy×${workers}`, [bin, 'run', '--adapter', 'caddyfile', '--config', conf], {
    logPath: join(dir, `caddy-${workers}.log`),
    env: { ...process.env, GOMAXPROCS: String(workers), HOME: dir, XDG_DATA_HOME: join(dir, 'caddy-data'), XDG_CONFIG_HOME: join(dir, 'caddy-config') },
  });
}

/** Hitch: TLS 1.3 unwrapping with `client-verify = required`, bytes to the upstream. */
export function startHitch(bin: string, dir: string, port: number, upstreamPort: number, pki: BenchPki, workers: number): Proc {
  const pem = combinedPem(dir, pki, 'hitch');
  const conf = join(dir, `hitch-${workers}.conf`);
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  writeFileSync(
    conf,
    `frontend = "[127.0.0.1]:${port}"
backend = "[127.0.0.1]:${upstreamPort}"
pem-file = "${pem}"
workers = ${workers}
tls-protos = TLSv1.3
client-verify = required
client-verify-ca = "${pki.ca}"
daemon = off
log-level = 1
${root ? 'user = "nobody"\ngroup = "nogroup"\n' : ''}`,
  );
  return startProcess(`hitch×${workers}`, [bin, `--config=${conf}`], { logPath: join(dir, `hitch-${workers}.log`) });
}

/** portcullis as a TCP listener (TLS unwrapping to the same upstream), for the Hitch column. */
export function portcullisTcpConfig(port: number, adminPort: number, upstreamPort: number, pki: BenchPki, workers: number): object {
  return {
    workers,
    admin: { address: `127.0.0.1:${adminPort}` },
    log: { level: 'warn', access: 'off' },
    listeners: [
      {
        name: 'bench-tcp',
        address: `127.0.0.1:${port}`,
        protocol: 'tcp',
        tls: { cert: pki.serverChain, key: pki.serverKey, client_ca: pki.ca, min_version: 'TLSv1.3' },
        limits: { idle_timeout: '10m' },
        upstream: 'up',
      },
    ],
    upstreams: { up: { endpoints: [`tcp://127.0.0.1:${upstreamPort}`] } },
  };
}
