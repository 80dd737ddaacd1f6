// nginx configurations for the benchmark: the shared upstream (small body, a 1 GB sparse
// file served with sendfile, and an echo of the identity header) and the nginx mTLS
// proxy that portcullis is compared with. Both run in the foreground with their own
// prefix, pid and error log under the bench's temp folder.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchPki } from './pki.js';
import { startProcess, type Proc } from './proc.js';

const q = (s: string) => JSON.stringify(s); // nginx accepts double-quoted strings

function common(dir: string, name: string, workers: number, fdLimit: number): string {
  const tmp = join(dir, `${name}-tmp`);
  mkdirSync(tmp, { recursive: true });
  return `
worker_processes ${workers};
daemon off;
master_process on;
error_log ${q(join(dir, `${name}-error.log`))} warn;
pid ${q(join(dir, `${name}.pid`))};
worker_rlimit_nofile ${fdLimit};
events { worker_connections ${Math.max(1024, fdLimit - 200)}; }
`.trimStart() + `
# temp paths inside the bench folder (the defaults under /var/lib/nginx may not exist)
http {
  client_body_temp_path ${q(join(tmp, 'body'))};
  proxy_temp_path ${q(join(tmp, 'proxy'))};
  fastcgi_temp_path ${q(join(tmp, 'fastcgi'))};
  uwsgi_temp_path ${q(join(tmp, 'uwsgi'))};
  scgi_temp_path ${q(join(tmp, 'scgi'))};
  access_log off;
  # keep-alive connections are never closed during a run (nginx's default is 1000
  # requests / 75 s, which would add reconnects and handshakes to the keep-alive test)
  keepalive_requests 100000000;
  keepalive_timeout 600s;
`;
}

export function upstreamConf(dir: string, port: number, bigFile: string, fdLimit: number): string {
  return `${common(dir, 'upstream', 1, fdLimit)}
  sendfile on;
  tcp_nopush on;
  server {
    listen 127.0.0.1:${port} backlog=4096;
    default_type text/plain;
    location = /big { default_type application/octet-stream; alias ${q(bigFile)}; }
    location = /whoami { return 200 "$http_x_client_subject\\n"; }
    location / { return 200 "ok\\n"; }
  }
}
`;
}

/**
 * The nginx mTLS proxy: same certificate, CA and TLS version as portcullis, upstream
 * keep-alive pool of 64, and the identity headers nginx can produce, so it does
 * comparable per-request work.
 */
export function proxyConf(dir: string, port: number, upstreamPort: number, pki: BenchPki, workers: number, fdLimit: number): string {
  return `${common(dir, 'nginx-proxy', workers, fdLimit)}
  upstream up {
    server 127.0.0.1:${upstreamPort};
    keepalive 64;
  }
  server {
    listen 127.0.0.1:${port} ssl http2;
    ssl_certificate ${q(pki.serverChain)};
    ssl_certificate_key ${q(pki.serverKey)};
    ssl_protocols TLSv1.3;
    ssl_verify_client on;
    ssl_client_certificate ${q(pki.ca)};
    ssl_verify_depth 3;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Client-Verify $ssl_client_verify;
      proxy_set_header X-Client-Subject $ssl_client_s_dn;
      proxy_set_header X-Client-Issuer $ssl_client_i_dn;
      proxy_set_header X-Client-Serial $ssl_client_serial;
      proxy_set_header X-Client-Fingerprint $ssl_client_fingerprint;
      proxy_set_header X-Client-Not-Before $ssl_client_v_start;
      proxy_set_header X-Client-Not-After $ssl_client_v_end;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Request-Id $request_id;
      # stream large bodies at the client's pace instead of spooling them to disk,
      # which is what portcullis does (backpressure, no temp files)
      proxy_max_temp_file_size 0;
    }
  }
}
`;
}

export function startNginx(nginxBin: string, name: string, dir: string, confPath: string): Proc {
  return startProcess(name, [nginxBin, '-p', dir, '-c', confPath, '-e', join(dir, `${name}-error.log`)], {
    logPath: join(dir, `${name}.out.log`),
  });
}
