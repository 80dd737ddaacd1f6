// Plain-HTTP helpers for tests against plain listeners and the admin API: one request
// (with its time), a /metrics scrape, and the sum of a metric's samples matching labels.
import http from 'node:http';

export function get(port: number, path: string, opts: { method?: string; body?: string; headers?: Record<string, string>; agent?: http.Agent } = {}): Promise<{ status: number; body: string; ms: number }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: opts.method ?? 'GET', headers: opts.headers, agent: opts.agent ?? false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body, ms: performance.now() - t0 }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

export function metrics(adminPort: number): Promise<string> {
  return get(adminPort, '/metrics').then((r) => r.body);
}

export function sample(text: string, name: string, labels: Record<string, string>): number {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    if (want.every((w) => line.includes(w))) total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

