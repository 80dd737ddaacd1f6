// Free loopback TCP ports for servers a test starts in another process (nginx, openssl,
// a container). The port is closed again before that process binds it, so a port can
// only be "free" in the sense that nothing held it a moment ago; freePorts holds every
// listener open until all are allocated, so one call never returns the same port twice
// (two sequential freePort calls can: the kernel may hand a just-closed port out again,
// and nginx then serves two sites' server blocks on one port, the first one winning).
import { createServer, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';

export async function freePorts(n: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = createServer();
      servers.push(s);
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(0, '127.0.0.1', resolve);
      });
    }
    return servers.map((s) => (s.address() as AddressInfo).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

export async function freePort(): Promise<number> {
  const [port] = await freePorts(1);
  return port!;
}
