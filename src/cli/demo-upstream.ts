// The demo's upstream: a plain HTTP service that knows nothing about certificates and
// answers with the identity headers portcullis forwarded to it, as JSON.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export async function startDemoUpstream(): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const identity: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) {
        if (k.startsWith('x-client-') || k.startsWith('x-forwarded-') || k === 'x-request-id') identity[k] = String(v);
      }
      const body = JSON.stringify({ message: 'hello from the upstream, which never saw a certificate', method: req.method, path: req.url, identity }, null, 2) + '\n';
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}
