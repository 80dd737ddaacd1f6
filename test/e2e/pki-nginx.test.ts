// Round trip with an independent server: nginx (Debian package) with ssl_verify_client on,
// our CA and our CRL accepts certificates from `portcullis cert issue`, refuses them once
// `portcullis cert revoke` put them on the CRL, and `portcullis doctor` explains nginx's
// refusals. Skipped, with a message, where nginx is not installed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../helpers/ports.js';

const BIN = fileURLToPath(new URL('../../../bin/portcullis.js', import.meta.url));
const NGINX = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => spawnSync(p, ['-v']).status === 0) ?? (spawnSync('nginx', ['-v']).status === 0 ? 'nginx' : undefined);
const skip = NGINX ? false : 'nginx is not installed (apt-get install -y nginx); skipping the nginx round trips';

function cli(cwd: string, ...args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}
function must(r: { code: number; out: string; err: string }): string {
  assert.equal(r.code, 0, r.err);
  return r.out;
}

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

interface Nginx {
  port: number;
  stop(): Promise<void>;
  errorLog(): string;
}

/** Starts nginx in the foreground with its own prefix, config, pid and logs in `dir`. */
async function startNginx(dir: string, o: { cert: string; key: string; clientCa: string; crl: string; depth: number; port?: number }): Promise<Nginx> {
  const port = o.port ?? (await freePort());
  const prefix = mkdtempSync(join(dir, 'nginx-'));
  mkdirSync(join(prefix, 'logs'));
  const conf = `daemon off;
worker_processes 1;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log info;
events { worker_connections 64; }
http {
  access_log ${prefix}/access.log;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  server {
    listen 127.0.0.1:${port} ssl;
    server_name localhost;
    ssl_certificate ${o.cert};
    ssl_certificate_key ${o.key};
    ssl_client_certificate ${o.clientCa};
    ssl_verify_client on;
    ssl_verify_depth ${o.depth};
    ssl_crl ${o.crl};
    location / {
      default_type text/plain;
      return 200 "hello $ssl_client_s_dn\\n";
    }
  }
}
`;
  writeFileSync(join(prefix, 'nginx.conf'), conf);
  const proc: ChildProcess = spawn(NGINX!, ['-p', prefix, '-c', join(prefix, 'nginx.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  try {
    await Promise.race([waitListening(port), exited.then(() => Promise.reject(new Error(`nginx exited: ${stderr}`)))]);
  } catch (err) {
    proc.kill('SIGKILL');
    throw err;
  }
  return {
    port,
    errorLog: () => {
      try {
        return readFileSync(join(prefix, 'error.log'), 'utf8');
      } catch {
        return '';
      }
    },
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        await exited;
      }
    },
  };
}

function curl(port: number, caFile: string, cert?: string, key?: string): { status: number; body: string; err: string } {
  const args = ['-sS', '--max-time', '10', '--cacert', caFile, '-w', '\n%{http_code}', `https://localhost:${port}/`];
  if (cert && key) args.push('--cert', cert, '--key', key);
  const r = spawnSync('curl', args, { encoding: 'utf8' });
  const i = r.stdout.lastIndexOf('\n');
  return { status: Number(r.stdout.slice(i + 1)) || 0, body: r.stdout.slice(0, i), err: r.stderr };
}

function tmp(t: { after: (fn: () => void | Promise<void>) => void }): string {
  const d = mkdtempSync(join(tmpdir(), 'pcl-nginx-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

test('nginx trusts our root CA and CRL: accepts a client certificate, refuses it once revoked', { skip }, async (t) => {
  const d = tmp(t);
  must(cli(d, 'ca', 'init', '--dir', 'pki', '--name', 'Round Trip CA'));
  must(cli(d, 'cert', 'issue', '--ca', 'pki', '--type', 'server', '--cn', 'localhost', '--ip', '127.0.0.1', '--out', 'server'));
  must(cli(d, 'cert', 'issue', '--ca', 'pki', '--type', 'client', '--cn', 'payment-service', '--o', 'Example', '--spiffe-id', 'spiffe://example.org/pay', '--out', 'client'));
  must(cli(d, 'cert', 'issue', '--ca', 'pki', '--type', 'client', '--cn', 'bystander', '--out', 'other'));
  must(cli(d, 'crl', '--ca', 'pki'));
  const conf = { cert: join(d, 'server.chain.crt'), key: join(d, 'server.key'), clientCa: join(d, 'pki/ca.crt'), crl: join(d, 'pki/crl.pem'), depth: 1 };
  let nginx = await startNginx(d, conf);
  t.after(() => nginx.stop());

  const ok = curl(nginx.port, conf.clientCa, join(d, 'client.crt'), join(d, 'client.key'));
  assert.equal(ok.status, 200, `${ok.err}\n${nginx.errorLog()}`);
  assert.match(ok.body, /hello CN=payment-service,O=Example/);
  const none = curl(nginx.port, conf.clientCa);
  assert.equal(none.status, 400);
  assert.match(none.body, /No required SSL certificate was sent/);

  must(cli(d, 'cert', 'revoke', '--ca', 'pki', 'client.crt', '--reason', 'keyCompromise'));
  await nginx.stop();
  nginx = await startNginx(d, { ...conf, port: nginx.port });
  const revoked = curl(nginx.port, conf.clientCa, join(d, 'client.crt'), join(d, 'client.key'));
  assert.equal(revoked.status, 400);
  assert.match(revoked.body, /The SSL certificate error/);
  assert.match(nginx.errorLog(), /certificate revoked/);
  // the CRL did not take the others down with it
  assert.equal(curl(nginx.port, conf.clientCa, join(d, 'other.crt'), join(d, 'other.key')).status, 200);
});

test('nginx with an intermediate CA: the chain file is accepted, the CRL bundle covers both CAs', { skip }, async (t) => {
  const d = tmp(t);
  must(cli(d, 'ca', 'init', '--dir', 'pki', '--intermediate', '--key-type', 'ec-p384'));
  must(cli(d, 'cert', 'issue', '--ca', 'pki', '--type', 'server', '--cn', 'localhost', '--out', 'server'));
  must(cli(d, 'cert', 'issue', '--ca', 'pki', '--type', 'client', '--cn', 'svc', '--key-type', 'rsa-2048', '--out', 'client'));
  must(cli(d, 'crl', '--ca', 'pki'));
  const conf = { cert: join(d, 'server.chain.crt'), key: join(d, 'server.key'), clientCa: join(d, 'pki/ca.crt'), crl: join(d, 'pki/crl.pem'), depth: 2 };
  let nginx = await startNginx(d, conf);
  t.after(() => nginx.stop());
  const ok = curl(nginx.port, conf.clientCa, join(d, 'client.chain.crt'), join(d, 'client.key'));
  assert.equal(ok.status, 200, `${ok.err}\n${nginx.errorLog()}`);
  // without the intermediate nginx cannot build the chain
  assert.equal(curl(nginx.port, conf.clientCa, join(d, 'client.crt'), join(d, 'client.key')).status, 400);

  must(cli(d, 'cert', 'revoke', '--ca', 'pki', 'client.crt'));
  await nginx.stop();
  nginx = await startNginx(d, { ...conf, port: nginx.port });
  assert.equal(curl(nginx.port, conf.clientCa, join(d, 'client.chain.crt'), join(d, 'client.key')).status, 400);
  assert.match(nginx.errorLog(), /certificate revoked/);
});

test('doctor explains nginx: certificate required, rejected certificate, success', { skip }, async (t) => {
  const d = tmp(t);
  must(cli(d, 'ca', 'init', '--dir', 'pki', '--name', 'Doctor CA'));
  must(cli(d, 'ca', 'init', '--dir', 'other', '--name', 'Stranger CA'));
  must(cli(d, 'cert', 'issue', '--ca', 'pki', '--type', 'server', '--cn', 'localhost', '--out', 'server'));
  must(cli(d, 'cert', 'issue', '--ca', 'pki', '--type', 'client', '--cn', 'good', '--out', 'good'));
  must(cli(d, 'cert', 'issue', '--ca', 'other', '--type', 'client', '--cn', 'stranger', '--out', 'stranger'));
  must(cli(d, 'crl', '--ca', 'pki'));
  const nginx = await startNginx(d, { cert: join(d, 'server.chain.crt'), key: join(d, 'server.key'), clientCa: join(d, 'pki/ca.crt'), crl: join(d, 'pki/crl.pem'), depth: 1 });
  t.after(() => nginx.stop());
  const url = `https://localhost:${nginx.port}/`;

  const none = cli(d, 'doctor', url, '--ca', 'pki/ca.crt');
  assert.equal(none.code, 1, none.out + none.err);
  assert.match(none.out, /TLSv1\.[23], cipher /);
  assert.match(none.out, /verifies, and is valid for localhost/);
  assert.match(none.out, /the server requires a client certificate/);
  assert.match(none.out, /Diagnosis: the server \(nginx\) requires a client certificate and none was sent/);
  assert.match(none.out, /pass --cert and --key/);
  assert.match(none.out, /GET \/ -> 400/);

  const stranger = cli(d, 'doctor', url, '--ca', 'pki/ca.crt', '--cert', 'stranger.crt', '--key', 'stranger.key', '--json');
  assert.equal(stranger.code, 1);
  const j = JSON.parse(stranger.out);
  assert.equal(j.client.refused.code, 'certificate_rejected');
  assert.match(j.client.refused.cause, /CN=Stranger CA/);
  assert.equal(j.http.status, 400);

  const good = cli(d, 'doctor', url, '--ca', 'pki/ca.crt', '--cert', 'good.crt', '--key', 'good.key');
  assert.equal(good.code, 0, good.out);
  assert.match(good.out, /ours: CN=good .* was sent/);
  assert.match(good.out, /GET \/ -> 200 \(server: nginx/);
  assert.match(good.out, /Diagnosis: no problem found/);
});
