// The systemd unit (issue 14, item 3): deploy/systemd/portcullis.service passes
// `systemd-analyze verify`, has the sandbox the issue asks for (and an offline
// `systemd-analyze security` exposure of at most 2.0), its sysusers.d/tmpfiles.d files
// create the user and the file modes, and its ExecStartPre/ExecStart/ExecReload/KillSignal
// do what they say when run the way the unit runs them: as an unprivileged user whose
// only capability is CAP_NET_BIND_SERVICE, binding a port below 1024.
// No systemd runs as PID 1 here, so the unit itself is not started (docs/deploy.md says so).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync, copyFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { CLI, REPO_ROOT, certArgs, curl, startEchoUpstream, tempDir, type EchoUpstream } from '../helpers/proxy.js';
import { makeTestPki, type TestPki } from '../helpers/pki.js';

const UNIT = join(REPO_ROOT, 'deploy', 'systemd', 'portcullis.service');
const SYSUSERS = join(REPO_ROOT, 'deploy', 'systemd', 'portcullis.sysusers.conf');
const TMPFILES = join(REPO_ROOT, 'deploy', 'systemd', 'portcullis.tmpfiles.conf');
const INSTALLED_BIN = '/usr/local/bin/portcullis';

/** The unit as section -> key -> values (a key may repeat). */
function parseUnit(text: string): Record<string, Record<string, string[]>> {
  const out: Record<string, Record<string, string[]>> = {};
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const m = /^\[(.+)\]$/.exec(line);
    if (m) {
      section = m[1]!;
      out[section] ??= {};
      continue;
    }
    const i = line.indexOf('=');
    const key = line.slice(0, i);
    ((out[section]![key] ??= [])).push(line.slice(i + 1));
  }
  return out;
}

const unitText = readFileSync(UNIT, 'utf8');
const unit = parseUnit(unitText);
const svc = unit.Service!;
const one = (key: string) => {
  assert.equal(svc[key]?.length, 1, `Service.${key} should be set once`);
  return svc[key]![0]!;
};

const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
const noAnalyze = analyze.status === 0 ? '' : 'systemd-analyze is not installed (Debian package systemd; .ci/run installs it)';
const asRoot = process.getuid?.() === 0 ? '' : 'needs root (file owners, and dropping to an unprivileged user as systemd does); .ci/run runs as root';

/** A copy of the unit whose commands point at this checkout (verify checks that they exist). */
function unitForThisCheckout(dir: string): string {
  const path = join(dir, 'portcullis.service');
  writeFileSync(path, unitText.replaceAll(INSTALLED_BIN, CLI));
  return path;
}

test('the unit has its own user, reload by SIGHUP, the sandbox and limits the issue asks for', () => {
  assert.equal(one('User'), 'portcullis');
  assert.equal(one('Group'), 'portcullis');
  assert.equal(one('ExecReload'), '/bin/kill -HUP $MAINPID');
  assert.equal(one('ProtectSystem'), 'strict');
  assert.equal(one('NoNewPrivileges'), 'yes');
  assert.equal(one('CapabilityBoundingSet'), 'CAP_NET_BIND_SERVICE');
  assert.equal(one('AmbientCapabilities'), 'CAP_NET_BIND_SERVICE');
  assert.ok(Number(one('LimitNOFILE')) >= 65536, 'LimitNOFILE must allow many connections');
  // SIGTERM to the primary only, which drains the workers; then the drain has time to finish
  assert.equal(one('KillMode'), 'mixed');
  assert.equal(one('KillSignal'), 'SIGTERM');
  const drainMs = Number(/--drain-timeout (\d+)/.exec(one('ExecStart'))?.[1]);
  assert.ok(drainMs > 0, 'ExecStart passes --drain-timeout');
  assert.ok(Number.parseInt(one('TimeoutStopSec'), 10) * 1000 > drainMs, 'TimeoutStopSec must exceed --drain-timeout');
  assert.ok(!('MemoryDenyWriteExecute' in svc), 'V8 needs writable+executable memory');
  assert.deepEqual(unit.Install?.WantedBy, ['multi-user.target']);
});

test('systemd-analyze verify accepts the unit', { skip: noAnalyze || false }, (t) => {
  const dir = tempDir('pcl-systemd-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // --recursive-errors=no: a warning about the unit itself fails (the default exits 0 on warnings)
  const verify = (unitPath: string) => spawnSync('systemd-analyze', ['verify', '--man=no', '--recursive-errors=no', unitPath], { encoding: 'utf8', timeout: 60_000 });
  const r = verify(unitForThisCheckout(dir));
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.equal(r.stderr.trim(), '');
  // and it does look: a misspelt key is reported
  const bad = join(dir, 'bad', 'portcullis.service');
  mkdirSync(join(dir, 'bad'));
  writeFileSync(bad, readFileSync(join(dir, 'portcullis.service'), 'utf8').replace('ProtectSystem=strict', 'ProtectSystem=strikt'));
  const r2 = verify(bad);
  assert.notEqual(r2.status, 0);
  assert.match(r2.stderr, /protect system value/i);
});

test('systemd-analyze security rates the unit at most 2.0 (OK)', { skip: noAnalyze || false }, (t) => {
  const dir = tempDir('pcl-systemd-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const r = spawnSync('systemd-analyze', ['security', '--offline=true', '--no-pager', unitForThisCheckout(dir)], { encoding: 'utf8', timeout: 60_000 });
  const m = /Overall exposure level for portcullis\.service: ([\d.]+)/.exec(r.stdout + r.stderr);
  assert.ok(m, r.stdout + r.stderr);
  assert.ok(Number(m[1]) <= 2.0, `exposure ${m[1]}`);
});

test('sysusers.d and tmpfiles.d: the user exists, keys are readable by its group only', { skip: noAnalyze || asRoot || false }, (t) => {
  const root = tempDir('pcl-systemd-root-');
  t.after(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'etc', 'portcullis', 'tls'), { recursive: true });
  for (const f of ['portcullis.yaml', 'tls/server.crt', 'tls/ca.crt', 'tls/server.key']) writeFileSync(join(root, 'etc', 'portcullis', f), 'x', { mode: 0o666 });
  const users = spawnSync('systemd-sysusers', [`--root=${root}`, SYSUSERS], { encoding: 'utf8' });
  assert.equal(users.status, 0, users.stderr);
  const passwd = readFileSync(join(root, 'etc', 'passwd'), 'utf8');
  const entry = /^portcullis:x:(\d+):(\d+):[^:\n]*:([^:\n]*):([^:\n]*)$/m.exec(passwd);
  assert.ok(entry, passwd);
  assert.ok(Number(entry[1]) < 1000, 'a system user');
  assert.equal(entry[4], '/usr/sbin/nologin');
  const gid = Number(entry[2]);
  const files = spawnSync('systemd-tmpfiles', [`--root=${root}`, '--create', TMPFILES], { encoding: 'utf8' });
  assert.equal(files.status, 0, files.stderr);
  const mode = (p: string) => {
    const s = statSync(join(root, 'etc', 'portcullis', p));
    return { mode: (s.mode & 0o7777).toString(8), uid: s.uid, gid: s.gid };
  };
  assert.deepEqual(mode('.'), { mode: '750', uid: 0, gid });
  assert.deepEqual(mode('tls'), { mode: '750', uid: 0, gid });
  assert.deepEqual(mode('portcullis.yaml'), { mode: '640', uid: 0, gid });
  assert.deepEqual(mode('tls/server.crt'), { mode: '644', uid: 0, gid });
  assert.deepEqual(mode('tls/server.key'), { mode: '640', uid: 0, gid });
});

// ---- the unit's commands, run as the unit runs them ----

const UID = 10002;
const GID = 10002;
let pki: TestPki;
let up: EchoUpstream;
let etc: string;
let work: string;
let lowPort = 0;

async function freeLowPort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = 600 + Math.floor(Math.random() * 400);
    const ok = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (ok) return port;
  }
  throw new Error('no free port below 1024');
}

/** A command line from the unit, with the installed binary replaced by this checkout's. */
function command(key: string, vars: Record<string, string> = {}): string[] {
  let line = one(key).replaceAll(INSTALLED_BIN, CLI).replaceAll('/etc/portcullis', etc);
  for (const [k, v] of Object.entries(vars)) line = line.replaceAll(`$${k}`, v);
  return line.split(/\s+/);
}

/** What systemd does with User=, Group=, NoNewPrivileges= and the capability lines. */
function asUnitUser(argv: string[]): [string, string[]] {
  const caps = one('AmbientCapabilities').toLowerCase().replace(/^cap_/, '');
  return [
    'setpriv',
    [`--reuid=${UID}`, `--regid=${GID}`, '--clear-groups', '--no-new-privs', `--inh-caps=-all,+${caps}`, `--ambient-caps=-all,+${caps}`, `--bounding-set=-all,+${caps}`, '--', process.execPath, ...argv],
  ];
}

before(async () => {
  if (asRoot) return;
  work = tempDir('pcl-systemd-run-');
  chmodSync(work, 0o755);
  etc = join(work, 'etc-portcullis');
  mkdirSync(join(etc, 'tls'), { recursive: true });
  pki = await makeTestPki(join(work, 'pki'));
  copyFileSync(pki.server.chain, join(etc, 'tls', 'server.crt'));
  copyFileSync(pki.ca.cert, join(etc, 'tls', 'ca.crt'));
  copyFileSync(pki.server.key, join(etc, 'tls', 'server.key'));
  up = await startEchoUpstream();
  lowPort = await freeLowPort();
  writeFileSync(
    join(etc, 'portcullis.yaml'),
    `workers: 1\nadmin: { address: 127.0.0.1:0 }\nlisteners:\n  - name: api\n    address: 127.0.0.1:${lowPort}\n    tls: { cert: tls/server.crt, key: tls/server.key, client_ca: tls/ca.crt }\n    routes: [{ upstream: app }]\nupstreams:\n  app: { endpoints: ["${up.url}"] }\n`,
  );
  // the modes portcullis.tmpfiles.conf sets, with our test group in place of portcullis
  for (const [p, mode] of [['.', 0o750], ['tls', 0o750], ['portcullis.yaml', 0o640], ['tls/server.crt', 0o644], ['tls/ca.crt', 0o644], ['tls/server.key', 0o640]] as const) {
    chownSync(join(etc, p), 0, GID);
    chmodSync(join(etc, p), mode);
  }
});

after(async () => {
  await up?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

/**
 * The unit user must be able to read this checkout, as it reads /usr/lib/portcullis once
 * installed; a clone under a private folder (mktemp -d is 0700) is not readable by it.
 */
function checkoutUnreadable(): string | false {
  if (asRoot) return false;
  const r = spawnSync('setpriv', [`--reuid=${UID}`, `--regid=${GID}`, '--clear-groups', 'test', '-r', CLI]);
  return r.status === 0 ? false : `the unit user (uid ${UID}) cannot read ${CLI}: a folder above the checkout is private; clone it under a folder others may enter`;
}

test('ExecStartPre, ExecStart, ExecReload and KillSignal work as the unprivileged unit user on a port below 1024', { skip: asRoot || checkoutUnreadable() }, async () => {
  const [pre, preArgs] = asUnitUser(command('ExecStartPre'));
  const checked = spawnSync(pre, preArgs, { encoding: 'utf8', timeout: 30_000 });
  assert.equal(checked.status, 0, checked.stdout + checked.stderr);

  const [cmd, args] = asUnitUser(command('ExecStart'));
  const proc = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  let err = '';
  const waitFor = (re: RegExp, ms: number) =>
    new Promise<void>((resolve, reject) => {
      if (re.test(err)) return resolve();
      const timer = setTimeout(() => reject(new Error(`no ${re} within ${ms} ms:\n${err}`)), ms);
      proc.stderr!.on('data', () => {
        if (re.test(err)) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  try {
    await waitFor(/"event":"listening","listener":"api"/, 20_000);
    const r = await curl(`https://localhost:${lowPort}/`, certArgs(pki.ca.cert, pki.client));
    assert.equal(r.status, 200, r.stderr + r.body);
    assert.equal(up.received.at(-1)?.headers['x-client-verify'], 'SUCCESS');

    // ExecReload, with $MAINPID as systemd fills it in
    const reload = command('ExecReload', { MAINPID: String(proc.pid) });
    const k = spawnSync(reload[0]!, reload.slice(1), { encoding: 'utf8' });
    assert.equal(k.status, 0, k.stderr);
    await waitFor(/"event":"reload_succeeded","trigger":"SIGHUP"/, 20_000);
    assert.equal(proc.exitCode, null, 'the reload must not stop the service');
  } finally {
    proc.kill(one('KillSignal') as NodeJS.Signals);
  }
  assert.equal(await exited, 0, err);
});
