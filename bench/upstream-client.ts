// Which HTTP/1.1 client forwards to upstreams (`npm run bench:upstream-client`):
// portcullis' own H1Pool (what the proxy uses), undici's Pool.dispatch (what it used
// before) and node:http with a keep-alive Agent, 64
// requests in flight to a small upstream in a child process (so its CPU is not counted),
// alternating rounds. Prints requests/s and the client's CPU per request.
import http from 'node:http';
import { spawn } from 'node:child_process';
import { Pool } from 'undici';
import { H1Pool } from '../src/upstream/h1-pool.js';

const N = Number(process.env.BENCH_REQUESTS ?? 40_000);
const C = 64;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

async function startUpstream(): Promise<{ port: number; stop(): void }> {
  const code = "require('http').createServer((q,s)=>{q.resume();s.writeHead(200,{'content-length':3});s.end('ok\\n')}).listen(0,'127.0.0.1',function(){process.send(this.address().port)})";
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const port = await new Promise<number>((resolve) => child.once('message', (m) => resolve(Number(m))));
  return { port, stop: () => child.kill() };
}

async function run(name: string, one: () => Promise<void>): Promise<{ name: string; rps: number; cpuUsPerReq: number }> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  let i = 0;
  await Promise.all(Array.from({ length: C }, async () => { while (i++ < N) await one(); }));
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(c0);
  return { name, rps: Math.round(N / (ms / 1000)), cpuUsPerReq: +((cpu.user + cpu.system) / N).toFixed(1) };
}

async function main(): Promise<void> {
  const up = await startUpstream();
  const origin = `http://127.0.0.1:${up.port}`;
  const pool = new Pool(origin, { pipelining: 1 });
  const viaUndici = () =>
    new Promise<void>((resolve, reject) =>
      pool.dispatch({ path: '/', method: 'GET', headers: ['x-a', '1'] }, {
        onRequestStart() {},
        onResponseStart() {},
        onResponseData() {},
        onResponseEnd() { resolve(); },
        onResponseError(_c, e) { reject(e); },
      }),
    );
  const h1 = new H1Pool(new URL(origin), { connectTimeout: 2000, idleTimeout: 60_000, tls: undefined });
  const viaH1 = () =>
    new Promise<void>((resolve, reject) => {
      h1.request({ path: '/', method: 'GET', headers: ['x-a', '1'], body: null, headersTimeout: 30_000, bodyTimeout: 60_000 }, {
        onResponseStart() {},
        onResponseData: () => true,
        onResponseEnd() { resolve(); },
        onResponseError(e) { reject(e); },
      });
    });
  const agent = new http.Agent({ keepAlive: true, maxSockets: C });
  const viaHttp = () =>
    new Promise<void>((resolve, reject) => {
      const r = http.request(`${origin}/`, { agent, headers: { 'x-a': '1' } }, (rs) => {
        rs.resume();
        rs.on('end', resolve);
      });
      r.on('error', reject);
      r.end();
    });
  for (let k = 0; k < ROUNDS; k++) {
    for (const r of [await run('portcullis H1Pool', viaH1), await run('undici Pool.dispatch', viaUndici), await run('node:http keep-alive Agent', viaHttp)]) {
      console.log(`${r.name}: ${r.rps} requests/s, ${r.cpuUsPerReq} µs CPU per request`);
    }
  }
  await pool.close();
  await h1.close();
  agent.destroy();
  up.stop();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
