// The platform floor for `npm run bench:floor`: a bare Node https server with a required
// client certificate, no portcullis code. FLOOR_MODE=answer replies "ok\n" itself (Node's
// TLS + HTTP/1.1 server alone); FLOOR_MODE=forward relays each request to the upstream
// through an undici Pool, streaming the answer back (the least any Node proxy on
// http.Server + undici does per request).
import https from 'node:https';
import { readFileSync } from 'node:fs';
import type { TLSSocket } from 'node:tls';
import { Pool } from 'undici';

const env = (k: string) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const mode = env('FLOOR_MODE');
const pool = mode === 'forward' ? new Pool(env('FLOOR_UPSTREAM'), { pipelining: 1 }) : undefined;

const server = https.createServer(
  { cert: readFileSync(env('FLOOR_CERT')), key: readFileSync(env('FLOOR_KEY')), ca: readFileSync(env('FLOOR_CA')), requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3', keepAliveTimeout: 600_000 },
  (req, res) => {
    if (!pool) {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '3' });
      res.end('ok\n');
      return;
    }
    const subject = (req.socket as TLSSocket).getPeerCertificate().subject?.CN ?? '';
    pool.dispatch(
      { path: req.url ?? '/', method: 'GET', headers: ['host', req.headers.host ?? 'localhost', 'x-client-subject', `CN=${subject}`] },
      {
        onRequestStart() {},
        onResponseStart(_c, status, headers) {
          res.statusCode = status;
          for (const k in headers) if (k !== 'connection' && k !== 'keep-alive') res.setHeader(k, headers[k] as string);
        },
        onResponseData(c, chunk) {
          if (!res.write(chunk)) {
            c.pause();
            res.once('drain', () => c.resume());
          }
        },
        onResponseEnd() {
          res.end();
        },
        onResponseError() {
          res.destroy();
        },
      },
    );
  },
);
server.listen(Number(env('FLOOR_PORT')), '127.0.0.1');
// exit cleanly on SIGTERM (lets --cpu-prof write its profile)
process.once('SIGTERM', () => process.exit(0));
