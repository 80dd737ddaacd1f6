// Upstreams as real processes (so a test can SIGKILL one and start it again on the same
// port): HTTP/1.1 or h2c servers that answer every request with JSON naming the server,
// count /healthz probes, and, with `delayMs`, answer slowly. Also a raw TCP echo.
import { spawn, type ChildProcess } from 'node:child_process';
import { freePort } from './ports.js';

export interface UpstreamProcess {
  port: number;
  url: string;
  proc: ChildProcess;
  /** lines the server printed: "probe" per health check, "req <path>" per request */
  lines: string[];
  kill(): Promise<void>;
  /** starts it again on the same port */
  restart(): Promise<void>;
}

const SCRIPT = `
const kind = process.argv[1], port = Number(process.argv[2]), name = process.argv[3], delay = Number(process.argv[4]);
const handler = (req, res) => {
  if (req.url === '/healthz') { console.log('probe'); res.writeHead(200); res.end('ok'); return; }
  console.log('req ' + req.url);
  let n = 0;
  req.on('data', (c) => (n += c.length));
  req.on('end', () => setTimeout(() => {
    const body = JSON.stringify({ server: name, method: req.method, url: req.url, bodyBytes: n });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }, delay));
};
let server;
if (kind === 'h2c') server = require('node:http2').createServer(handler);
else if (kind === 'tcp') server = require('node:net').createServer((s) => { console.log('conn'); s.on('error', () => {}); s.write(name + '\\n'); s.pipe(s); });
else server = require('node:http').createServer({ keepAliveTimeout: 60000 }, handler);
server.listen(port, '127.0.0.1', () => console.log('listening'));
`;

export { freePort } from './ports.js';

export async function startUpstreamProcess(name: string, opts: { kind?: 'http' | 'h2c' | 'tcp'; delayMs?: number; port?: number } = {}): Promise<UpstreamProcess> {
  const kind = opts.kind ?? 'http';
  const port = opts.port ?? (await freePort());
  const lines: string[] = [];
  const up: UpstreamProcess = {
    port,
    url: `${kind === 'h2c' ? 'h2c' : kind}://127.0.0.1:${port}`,
    proc: undefined as unknown as ChildProcess,
    lines,
    async kill() {
      const p = up.proc;
      if (p.exitCode !== null || p.signalCode !== null) return;
      await new Promise((r) => {
        p.once('exit', r);
        p.kill('SIGKILL');
      });
    },
    async restart() {
      await up.kill();
      await launch();
    },
  };
  const launch = () =>
    new Promise<void>((resolve, reject) => {
      const p = spawn(process.execPath, ['-e', SCRIPT, kind, String(port), name, String(opts.delayMs ?? 0)], { stdio: ['ignore', 'pipe', 'inherit'] });
      up.proc = p;
      let buf = '';
      p.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (line === 'listening') resolve();
          else lines.push(line);
        }
      });
      p.once('exit', (code) => reject(new Error(`upstream ${name} exited (${code}) before listening`)));
    });
  await launch();
  return up;
}
