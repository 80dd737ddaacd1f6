// Throwaway PKI for the benchmark, made at run time with portcullis' own issuer (ECDSA
// P-256): one CA, a server certificate both proxies serve, one client certificate every
// load generator presents. Nothing here is ever committed.
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createCA, issueCert } from '../src/pki/issue.js';

export interface BenchPki {
  ca: string;
  serverChain: string;
  serverKey: string;
  /** client leaf + intermediates (none here; the CA is the root) */
  clientChain: string;
  clientKey: string;
  clientCn: string;
}

export async function makePki(dir: string): Promise<BenchPki> {
  const ca = await createCA({ name: 'portcullis bench CA' });
  const server = await issueCert(ca, { type: 'server', cn: 'localhost', dns: ['localhost'], ip: ['127.0.0.1'] });
  const clientCn = 'bench-client';
  const client = await issueCert(ca, { type: 'client', cn: clientCn, o: ['portcullis bench'], uri: ['spiffe://bench.local/load-generator'] });
  const p: BenchPki = {
    ca: join(dir, 'ca.crt'),
    serverChain: join(dir, 'server-chain.crt'),
    serverKey: join(dir, 'server.key'),
    clientChain: join(dir, 'client-chain.crt'),
    clientKey: join(dir, 'client.key'),
    clientCn,
  };
  writeFileSync(p.ca, ca.certPem);
  writeFileSync(p.serverChain, server.chainPem);
  writeFileSync(p.serverKey, server.keyPem, { mode: 0o600 });
  writeFileSync(p.clientChain, client.chainPem);
  writeFileSync(p.clientKey, client.keyPem, { mode: 0o600 });
  chmodSync(p.serverKey, 0o600);
  return p;
}
