// Starts portcullis for the benchmark: a JSON config with the bench PKI, one listener in
// front of the shared upstream, access log off and an admin port of its own (the default
// 9901 may be taken by someone else's instance on a shared machine).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchPki } from './pki.js';
import { startProcess, type Proc } from './proc.js';

export function portcullisConfig(port: number, adminPort: number, upstreamPort: number, pki: BenchPki, workers: number): object {
  return {
    workers,
    admin: { address: `127.0.0.1:${adminPort}` },
    log: { level: 'warn', access: 'off' },
    listeners: [
      {
        name: 'bench',
        address: `127.0.0.1:${port}`,
        tls: { cert: pki.serverChain, key: pki.serverKey, client_ca: pki.ca, min_version: 'TLSv1.3' },
        // idle connections must outlive the 10k-connection ramp-up of the RSS test, and the
        // per-worker connection cap (default 1024) must not refuse them (0 = no cap; the bench
        // raises the open-file limit instead)
        limits: { idle_timeout: '10m', max_connections: 0 },
        routes: [{ upstream: 'up' }],
      },
    ],
    upstreams: { up: { endpoints: [`http://127.0.0.1:${upstreamPort}`] } },
  };
}

/**
 * `node` is the Node.js binary to run it with (default: the one running the bench);
 * `nodeArgs` go to it (and, through cluster's execArgv, to the workers).
 */
export function startPortcullis(repoRoot: string, dir: string, config: object, env: Record<string, string> = {}, name = 'portcullis', node = process.execPath, nodeArgs: string[] = []): Proc {
  const configPath = join(dir, `${name}.json`);
  writeFileSync(configPath, JSON.stringify(config, null, 2));
  return startProcess(name, [node, ...nodeArgs, join(repoRoot, 'bin', 'portcullis.js'), 'run', '-c', configPath], {
    cwd: dir,
    logPath: join(dir, `${name}.log`),
    env: { ...process.env, ...env },
  });
}
