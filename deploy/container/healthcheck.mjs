// The container image's HEALTHCHECK: GET /healthz on the probe listener
// (admin.probe_address) when there is one, else on the admin listener; exit 0 on 200.
// The address comes from the config the running proxy was started with (`-c` in PID 1's
// command line, else /etc/portcullis/portcullis.yaml), so a changed address needs no
// second setting; PORTCULLIS_HEALTHCHECK_URL overrides it. An admin listener with
// admin.tls wants a client certificate, which this check does not have: such a config
// needs admin.probe_address (the message says so).
// Installed as /opt/portcullis/healthcheck.mjs, where `yaml` resolves from the package.
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';

const DEFAULT_CONFIG = '/etc/portcullis/portcullis.yaml';
const DEFAULT_ADMIN = '127.0.0.1:9901';

function configPath() {
  try {
    const argv = readFileSync('/proc/1/cmdline', 'utf8').split('\0');
    if (argv.some((a) => a.endsWith('portcullis.js') || a.endsWith('/portcullis'))) {
      const i = argv.findIndex((a) => a === '-c' || a === '--config');
      if (i !== -1 && argv[i + 1]) return argv[i + 1];
      const eq = argv.find((a) => a.startsWith('--config='));
      if (eq) return eq.slice('--config='.length);
    }
  } catch {
    // not in a container (no /proc/1 of ours): the default path
  }
  return DEFAULT_CONFIG;
}

/** admin.address as a URL we can reach: a wildcard bind is asked on loopback. */
function adminUrl() {
  if (process.env.PORTCULLIS_HEALTHCHECK_URL) return process.env.PORTCULLIS_HEALTHCHECK_URL;
  let address = DEFAULT_ADMIN;
  try {
    const admin = parse(readFileSync(configPath(), 'utf8'))?.admin;
    if (typeof admin?.probe_address === 'string') address = admin.probe_address;
    else if (admin?.tls) {
      process.stderr.write('healthcheck: the admin listener requires a client certificate (admin.tls); set admin.probe_address for health checks, or PORTCULLIS_HEALTHCHECK_URL\n');
      process.exit(1);
    } else if (typeof admin?.address === 'string') address = admin.address;
  } catch {
    // unreadable config: the proxy would not be running either; try the default
  }
  const colon = address.lastIndexOf(':');
  let host = address.slice(0, colon).replace(/^\[|\]$/g, '');
  const port = address.slice(colon + 1);
  if (host === '' || host === '0.0.0.0') host = '127.0.0.1';
  if (host === '::') host = '::1';
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}/healthz`;
}

const url = adminUrl();
const req = http.get(url, { timeout: 2000 }, (res) => {
  res.resume();
  if (res.statusCode === 200) process.exit(0);
  process.stderr.write(`healthcheck: ${url} answered ${res.statusCode}\n`);
  process.exit(1);
});
req.on('timeout', () => req.destroy(new Error('no answer within 2 s')));
req.on('error', (err) => {
  process.stderr.write(`healthcheck: ${url}: ${err.message}\n`);
  process.exit(1);
});
