// A real grpc-js server (insecure, h2c) as a child process, so a test can SIGKILL it and
// start it again on the same port. Service `drill.Echo`, method `Unary`: JSON in, JSON out
// naming the server. It prints its call count every 50 ms when it changed (a line per call
// would cost the loaded test machine more than the calls do).
import { spawn, type ChildProcess } from 'node:child_process';
import { REPO_ROOT } from './proxy.js';
import { freePort } from './upstream-process.js';

export interface GrpcUpstreamProcess {
  name: string;
  port: number;
  url: string;
  proc: ChildProcess;
  calls: number;
  kill(): Promise<void>;
  restart(): Promise<void>;
}

const SCRIPT = `
const grpc = require('@grpc/grpc-js');
const [name, port] = [process.argv[1], process.argv[2]];
const ser = (m) => Buffer.from(JSON.stringify(m)), de = (b) => JSON.parse(b.toString());
const def = { unary: { path: '/drill.Echo/Unary', requestStream: false, responseStream: false, requestSerialize: ser, requestDeserialize: de, responseSerialize: ser, responseDeserialize: de } };
const server = new grpc.Server();
let calls = 0, told = 0;
setInterval(() => { if (calls !== told) { told = calls; console.log('calls ' + calls); } }, 50);
server.addService(def, { unary(call, cb) { calls++; cb(null, { server: name, n: call.request.n }); } });
server.bindAsync('127.0.0.1:' + port, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) { console.error(err.message); process.exit(1); }
  console.log('listening');
});
`;

export async function startGrpcUpstreamProcess(name: string): Promise<GrpcUpstreamProcess> {
  const port = await freePort();
  const up: GrpcUpstreamProcess = {
    name,
    port,
    url: `h2c://127.0.0.1:${port}`,
    proc: undefined as unknown as ChildProcess,
    calls: 0,
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
  let base = 0;
  const launch = () =>
    new Promise<void>((resolve, reject) => {
      base = up.calls;
      // run from the repository so require('@grpc/grpc-js') finds node_modules
      const p = spawn(process.execPath, ['-e', SCRIPT, name, String(port)], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
      up.proc = p;
      let buf = '';
      p.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (line === 'listening') resolve();
          else if (line.startsWith('calls ')) up.calls = base + Number(line.slice(6));
        }
      });
      p.once('exit', (code) => reject(new Error(`grpc upstream ${name} exited (${code}) before listening`)));
    });
  await launch();
  return up;
}
