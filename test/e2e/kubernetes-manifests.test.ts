// The Kubernetes manifests (issue 14, item 4): `kubectl kustomize` renders
// deploy/kubernetes/base and overlays/sidecar offline; every rendered object is validated
// against the Kubernetes (and cert-manager) schemas of kubernetes-models, fields the
// schema does not know included; the Deployment has what a cluster operator expects
// (probes on admin.probe_address, admin API on loopback, securityContext, resources, folder mounts); and the
// config inside the ConfigMap passes `portcullis check`, then serves, with certificates
// generated now in the layout the kubelet gives mounted Secrets, including a Secret
// rotation by the kubelet's symlink swap, picked up without a restart. The
// prometheus-mtls overlay carries the prometheus.io/* scrape annotations: they point at
// the admin port, which it opens on the pod IP behind admin.tls and admin.allow only, and
// Prometheus' certificate scrapes /metrics there while other clients are refused.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import tls from 'node:tls';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { REPO_ROOT, certArgs, curl, runCli, startCli, startEchoUpstream, tempDir, type EchoUpstream } from '../helpers/proxy.js';
import { makeTestPki, type TestPki } from '../helpers/pki.js';
import { issueCert } from '../../src/pki/issue.js';
import { freePort } from '../helpers/upstream-process.js';

// rendered YAML: shapes are checked by the schemas, so plain records here
type Obj = Record<string, any>;

const KUBE = join(REPO_ROOT, 'deploy', 'kubernetes');
const pkgVersion = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;

/** kubectl from PATH, or the one .ci/run unpacks from the npm registry when Debian has none. */
const kubectl = (() => {
  for (const bin of ['kubectl', join(REPO_ROOT, '.ci', 'kubectl', 'kubectl')]) {
    const r = spawnSync(bin, ['version', '--client'], { encoding: 'utf8' });
    if (r.status === 0) return bin;
  }
  return '';
})();
const noKubectl = kubectl ? '' : 'kubectl is not installed (bash .ci/run installs it); the manifests were not rendered';

function render(dir: string): Obj[] {
  const r = spawnSync(kubectl, ['kustomize', join(KUBE, dir)], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  return parseAllDocuments(r.stdout).map((d) => d.toJS() as Obj);
}

// ---- schema validation ----

type Model = { prototype: { validate(): void } };

async function modelFor(apiVersion: string, kind: string): Promise<Model> {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  const module = group === 'cert-manager.io' ? `@kubernetes-models/cert-manager/cert-manager.io/${version}` : group ? `kubernetes-models/${group}/${version}` : `kubernetes-models/${version}`;
  const mod = (await import(module)) as Record<string, Model>;
  const model = mod[kind!];
  assert.ok(model, `no schema for ${apiVersion} ${kind} in ${module}`);
  return model;
}

/**
 * The schema validators (compiled JSON schema) read every property they know. Reading the
 * object through a proxy that records each property read finds the properties nobody
 * read: fields the schema does not have (a misspelt `securityContex` is otherwise ignored,
 * as `kubectl apply` without --validate=strict would).
 */
function unknownFields(obj: Obj, validate: (o: Obj) => void): string[] {
  const seen = new Set<string>();
  const track = (o: unknown, path: string): unknown => {
    if (o === null || typeof o !== 'object') return o;
    return new Proxy(o as object, {
      get(t, k, r) {
        if (typeof k === 'string') seen.add(`${path}/${k}`);
        return track(Reflect.get(t, k, r), `${path}/${String(k)}`);
      },
    });
  };
  validate(track(obj, '') as Obj);
  const out: string[] = [];
  const walk = (o: unknown, path: string) => {
    if (o === null || typeof o !== 'object') return;
    for (const k of Object.keys(o)) {
      const p = `${path}/${k}`;
      if (!seen.has(p)) out.push(p);
      else walk((o as Obj)[k], p);
    }
  };
  walk(obj, '');
  return out;
}

async function validateAll(objects: Obj[]): Promise<void> {
  assert.ok(objects.length > 0);
  for (const o of objects) {
    const what = `${o.kind}/${o.metadata?.name}`;
    const model = await modelFor(o.apiVersion, o.kind);
    const validate = (x: Obj) => model.prototype.validate.call(x);
    assert.doesNotThrow(() => validate(o), what);
    // ConfigMap data values are free-form strings the validator does not open
    const unknown = unknownFields(o, validate).filter((p) => !(o.kind === 'ConfigMap' && p.startsWith('/data/')));
    assert.deepEqual(unknown, [], `${what}: fields the ${o.apiVersion} ${o.kind} schema does not have`);
  }
}

test('the schema check finds what it must: a wrong type and a misspelt field', { skip: noKubectl || false }, async () => {
  const d = render('base').find((o) => o.kind === 'Deployment')!;
  const model = await modelFor('apps/v1', 'Deployment');
  const validate = (x: Obj) => model.prototype.validate.call(x);
  const badType = structuredClone(d);
  badType.spec.template.spec.containers[0].ports[0].containerPort = 'https';
  assert.throws(() => validate(badType), /containerPort/);
  const misspelt = structuredClone(d);
  misspelt.spec.template.spec.containers[0].securityContex = misspelt.spec.template.spec.containers[0].securityContext;
  assert.deepEqual(unknownFields(misspelt, validate), ['/spec/template/spec/containers/0/securityContex']);
});

const find = (objs: Obj[], kind: string) => objs.filter((o) => o.kind === kind);
const one = (objs: Obj[], kind: string) => {
  const all = find(objs, kind);
  assert.equal(all.length, 1, `expected one ${kind}`);
  return all[0]!;
};
const matches = (selector: Record<string, string>, labels: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v);

/** What holds for the proxy's pods in both layouts. */
function checkWorkload(objs: Obj[], deploymentName: string): { config: Obj; pod: Obj; proxy: Obj } {
  const deployment = one(objs, 'Deployment');
  assert.equal(deployment.metadata.name, deploymentName);
  const pod = deployment.spec.template;
  const podLabels = pod.metadata.labels as Record<string, string>;
  assert.ok(matches(deployment.spec.selector.matchLabels, podLabels));
  const proxy = (pod.spec.containers as Obj[]).find((c) => c.name === 'portcullis')!;
  assert.ok(proxy, 'a container named portcullis');
  assert.equal(proxy.image, `portcullis:${pkgVersion}`, 'the image tag follows package.json');

  // the config the container is started with is the ConfigMap, mounted as a folder
  const cm = one(objs, 'ConfigMap');
  const cfgPath = proxy.args[proxy.args.indexOf('-c') + 1] as string;
  const mountOf = (path: string) => (proxy.volumeMounts as Obj[]).find((m) => path.startsWith(`${m.mountPath}/`));
  const cfgMount = mountOf(cfgPath)!;
  assert.ok(cfgMount, `${cfgPath} is not under a mount`);
  const cfgVolume = (pod.spec.volumes as Obj[]).find((v) => v.name === cfgMount.name)!;
  assert.equal(cfgVolume.configMap.name, cm.metadata.name);
  assert.ok(cm.data[cfgPath.slice(cfgMount.mountPath.length + 1)], 'the config file is a key of the ConfigMap');
  const config = parse(cm.data[cfgPath.slice(cfgMount.mountPath.length + 1)]) as Obj;

  // every mount is a read-only folder (subPath mounts never see a Secret rotation)
  for (const m of proxy.volumeMounts as Obj[]) {
    assert.equal(m.readOnly, true, `${m.name} must be read-only`);
    assert.equal(m.subPath, undefined, `${m.name}: a subPath mount is never updated, so rotation would not reload`);
  }
  // every file the config names is on a mount; keys come from Secrets not readable by others
  const listener = config.listeners[0];
  for (const file of [listener.tls.cert, listener.tls.key, listener.tls.client_ca]) {
    const m = mountOf(file);
    assert.ok(m, `${file} is not under any mount`);
    const vol = (pod.spec.volumes as Obj[]).find((v) => v.name === m.name)!;
    assert.ok(vol.secret, `${file} comes from a Secret`);
    if (file === listener.tls.key) assert.equal(vol.secret.defaultMode & 0o007, 0, 'the key must not be readable by others');
  }

  // probes on the probe listener's port (admin.probe_address): readiness /readyz, liveness
  // /healthz; kubelet probes come from the node, so it binds every address, while the
  // admin API (reload, status, metrics) stays on the pod's loopback
  const probePort = Number(String(config.admin.probe_address).split(':').pop());
  const adminPort = Number(String(config.admin.address).split(':').pop());
  const portOf = (name: string | number) => (typeof name === 'number' ? name : (proxy.ports as Obj[]).find((p) => p.name === name)?.containerPort);
  assert.equal(proxy.readinessProbe.httpGet.path, '/readyz');
  assert.equal(proxy.livenessProbe.httpGet.path, '/healthz');
  for (const probe of [proxy.readinessProbe, proxy.livenessProbe, proxy.startupProbe]) assert.equal(portOf(probe.httpGet.port), probePort);
  assert.match(config.admin.probe_address, /^0\.0\.0\.0:/);
  assert.match(config.admin.address, /^127\.0\.0\.1:/);
  assert.equal(config.admin.allow_remote, undefined, 'allow_remote is gone');
  assert.ok(!(proxy.ports as Obj[]).some((p) => p.containerPort === adminPort), 'the admin port is not a container port');
  // no scrape annotations pointing at a port that is not reachable from outside the pod
  assert.equal(pod.metadata.annotations?.['prometheus.io/port'], undefined);

  // non-root, read-only root, no privilege escalation, no capabilities
  assert.equal(pod.spec.securityContext.runAsNonRoot, true);
  assert.ok(pod.spec.securityContext.runAsUser >= 1000);
  assert.equal(pod.spec.securityContext.seccompProfile.type, 'RuntimeDefault');
  for (const c of pod.spec.containers as Obj[]) {
    assert.equal(c.securityContext.allowPrivilegeEscalation, false, c.name);
    assert.equal(c.securityContext.readOnlyRootFilesystem, true, c.name);
    assert.deepEqual(c.securityContext.capabilities.drop, ['ALL'], c.name);
    assert.ok(c.resources.requests.cpu && c.resources.requests.memory, `${c.name} has resource requests`);
  }
  assert.ok(proxy.resources.limits.memory);
  // the drain fits in the grace period
  const drain = Number(proxy.args[proxy.args.indexOf('--drain-timeout') + 1]);
  assert.ok(pod.spec.terminationGracePeriodSeconds * 1000 > drain);

  // the Service and the PDB select these pods; the Service targets the listener's port
  const svc = one(objs, 'Service');
  assert.ok(matches(svc.spec.selector, podLabels));
  const listenerPort = Number(String(listener.address).split(':').pop());
  assert.equal(portOf(svc.spec.ports[0].targetPort), listenerPort);
  assert.ok(!(svc.spec.ports as Obj[]).some((p) => portOf(p.targetPort) === adminPort || portOf(p.targetPort) === probePort), 'neither the admin nor the probe port is in the Service');
  assert.ok(matches(one(objs, 'PodDisruptionBudget').spec.selector.matchLabels, podLabels));
  // the Certificate fills the Secret the server certificate comes from
  const cert = one(objs, 'Certificate');
  const tlsVolume = (pod.spec.volumes as Obj[]).find((v) => v.name === mountOf(listener.tls.cert)!.name)!;
  assert.equal(cert.spec.secretName, tlsVolume.secret.secretName);
  assert.ok((cert.spec.dnsNames as string[]).includes(svc.metadata.name), 'the certificate names the Service');
  // the NetworkPolicy for these pods opens the listener to all and nothing else (the
  // kubelet's probes come from the node, which NetworkPolicies always allow)
  const np = find(objs, 'NetworkPolicy').find((p) => matches(p.spec.podSelector.matchLabels, podLabels))!;
  assert.ok(np, 'a NetworkPolicy selects the pods');
  const rules = np.spec.ingress as Obj[];
  assert.ok(rules.some((r) => !r.from && r.ports.some((p: Obj) => portOf(p.port) === listenerPort)));
  assert.ok(rules.every((r) => r.ports.every((p: Obj) => portOf(p.port) === listenerPort)), 'only the listener port is open to other pods');
  return { config, pod, proxy };
}

test('base: every rendered object is valid against the Kubernetes and cert-manager schemas', { skip: noKubectl || false }, async () => {
  const objs = render('base');
  assert.deepEqual(objs.map((o) => o.kind).sort(), ['Certificate', 'ConfigMap', 'Deployment', 'NetworkPolicy', 'NetworkPolicy', 'PodDisruptionBudget', 'Service']);
  await validateAll(objs);
});

test('base: a portcullis Deployment in front of the app Service, probes, securityContext, PDB, NetworkPolicy', { skip: noKubectl || false }, () => {
  const objs = render('base');
  const { config, pod } = checkWorkload(objs, 'portcullis');
  assert.equal(pod.spec.containers.length, 1);
  assert.ok(one(objs, 'Deployment').spec.replicas >= 2, 'more than one replica');
  assert.deepEqual(config.upstreams.app.endpoints, ['http://app:8080']);
  // the app accepts connections from portcullis only
  const appPolicy = find(objs, 'NetworkPolicy').find((p) => p.spec.podSelector.matchLabels['app.kubernetes.io/name'] === 'app')!;
  assert.deepEqual(appPolicy.spec.ingress[0].from[0].podSelector.matchLabels, { 'app.kubernetes.io/name': 'portcullis' });
});

test('overlays/sidecar: valid objects; portcullis beside the app in one Pod, forwarding over loopback', { skip: noKubectl || false }, async () => {
  const objs = render('overlays/sidecar');
  await validateAll(objs);
  const { config, pod } = checkWorkload(objs, 'app');
  assert.deepEqual((pod.spec.containers as Obj[]).map((c) => c.name).sort(), ['app', 'portcullis']);
  assert.deepEqual(config.upstreams.app.endpoints, ['http://127.0.0.1:8080']);
  assert.equal(find(objs, 'Deployment').length, 1, 'no separate portcullis Deployment');
  // the spread constraint follows the pods' new labels
  assert.ok(matches(pod.spec.topologySpreadConstraints[0].labelSelector.matchLabels, pod.metadata.labels));
  // only 8443 and the admin port are open: nothing reaches the app's own port
  const np = one(objs, 'NetworkPolicy');
  assert.ok(!(np.spec.ingress as Obj[]).some((r) => r.ports.some((p: Obj) => p.port === 8080 || p.port === 'app')));
});

// ---- the ConfigMap's config, checked and served with certificates made now ----

let pki: TestPki;
let work: string;
let up: EchoUpstream;

before(async () => {
  if (noKubectl) return;
  work = tempDir('pcl-k8s-');
  pki = await makeTestPki(join(work, 'pki'));
  up = await startEchoUpstream();
});

after(async () => {
  await up?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

/**
 * A folder as the kubelet lays out a mounted Secret: the files live in a timestamped
 * folder, `..data` links to it, and each key is a link through `..data`. An update writes
 * a new folder and renames a new `..data` link over the old one (one atomic swap).
 */
function kubeletVolume(dir: string, files: Record<string, string>, generation: number): void {
  mkdirSync(dir, { recursive: true });
  const ts = `..2026_01_01_00_00_0${generation}.${1000 + generation}`;
  mkdirSync(join(dir, ts));
  for (const [name, data] of Object.entries(files)) writeFileSync(join(dir, ts, name), data, { mode: 0o440 });
  symlinkSync(ts, join(dir, '..data_tmp'));
  renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
  for (const name of Object.keys(files)) if (!existsSync(join(dir, name))) symlinkSync(join('..data', name), join(dir, name));
}

/** The ConfigMap's config with /etc/portcullis/ moved to `root`, and the volumes laid out there. */
function materialize(objs: Obj[], root: string, opsCa?: string): { path: string; config: Obj } {
  const cm = one(objs, 'ConfigMap');
  const text = (cm.data['portcullis.yaml'] as string).replaceAll('/etc/portcullis/', `${root}/`);
  kubeletVolume(join(root, 'config'), { 'portcullis.yaml': text }, 1);
  // what cert-manager writes into portcullis-server-tls, and the client CA Secret
  kubeletVolume(join(root, 'tls'), { 'tls.crt': readFileSync(pki.server.chain, 'utf8'), 'tls.key': readFileSync(pki.server.key, 'utf8'), 'ca.crt': readFileSync(pki.ca.cert, 'utf8') }, 1);
  kubeletVolume(join(root, 'client-ca'), { 'ca.crt': readFileSync(pki.ca.cert, 'utf8') }, 1);
  // the prometheus-mtls overlay's Secret portcullis-ops-ca: the scrapers' CA
  if (opsCa) kubeletVolume(join(root, 'ops-ca'), { 'ca.crt': readFileSync(opsCa, 'utf8') }, 1);
  return { path: join(root, 'config', 'portcullis.yaml'), config: parse(text) as Obj };
}

for (const dir of ['base', 'overlays/sidecar']) {
  test(`${dir}: the ConfigMap's portcullis.yaml passes portcullis check`, { skip: noKubectl || false }, () => {
    const root = join(work, dir.replace('/', '-'), 'check');
    const { path } = materialize(render(dir), root);
    const r = runCli(['check', '-c', path]);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^config OK: 1 listener \(https https :8443\), 1 upstream, 1 route\n$/);
    assert.equal(r.stderr, '');
  });
}

function servedSerial(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca: readFileSync(pki.ca.cert), servername: 'localhost', cert: readFileSync(pki.client.cert), key: readFileSync(pki.client.key) }, () => {
      const serial = s.getPeerCertificate().serialNumber.toUpperCase();
      s.end();
      resolve(serial);
    });
    s.on('error', reject);
  });
}

test('base: the config serves, its probes answer, and a Secret rotation (kubelet symlink swap) reloads without a restart', { skip: noKubectl || false }, async () => {
  const objs = render('base');
  const root = join(work, 'base', 'run');
  const { config } = materialize(objs, root);
  const { proxy } = checkWorkload(objs, 'portcullis');
  // on this machine: loopback ports, and the echo upstream in place of the app Service
  config.listeners[0].address = '127.0.0.1:0';
  config.admin.address = '127.0.0.1:0';
  const probePort = await freePort();
  config.admin.probe_address = `127.0.0.1:${probePort}`;
  config.upstreams.app.endpoints = [up.url];
  const cli = await startCli(config, { dir: root });
  try {
    await cli.waitLog(/"event":"probe_listening"/);
    for (const probe of [proxy.readinessProbe, proxy.livenessProbe, proxy.startupProbe]) {
      const r = await fetch(`http://127.0.0.1:${probePort}${probe.httpGet.path}`);
      assert.equal(r.status, 200, `${probe.httpGet.path}: ${await r.text()}`);
    }
    // the probe port serves nothing else
    assert.equal((await fetch(`http://127.0.0.1:${probePort}/reload`, { method: 'POST' })).status, 404);
    const url = `https://localhost:${cli.port}/orders`;
    const ok = await curl(url, certArgs(pki.ca.cert, pki.client));
    assert.equal(ok.status, 200, ok.stderr + ok.body);
    assert.equal(up.received.at(-1)?.headers['x-client-spiffe-id'], 'spiffe://example.org/ns/prod/sa/payment');
    const denied = await curl(url, certArgs(pki.ca.cert, pki.client2));
    assert.equal(denied.status, 403);

    // cert-manager renews: the kubelet swaps ..data to a folder with the new certificate
    assert.equal(await servedSerial(cli.port), pki.server.serial);
    const renewed = await issueCert(pki.handles.root, { type: 'server', cn: 'localhost', dns: ['localhost'], ip: ['127.0.0.1'] });
    kubeletVolume(join(root, 'tls'), { 'tls.crt': renewed.chainPem, 'tls.key': renewed.keyPem, 'ca.crt': readFileSync(pki.ca.cert, 'utf8') }, 2);
    const deadline = Date.now() + 15_000;
    let serial = '';
    while (Date.now() < deadline && (serial = await servedSerial(cli.port)) !== renewed.serial) await new Promise((r) => setTimeout(r, 200));
    assert.equal(serial, renewed.serial, `the renewed certificate was not picked up:\n${cli.stderr()}`);
    assert.equal(cli.proc.exitCode, null, 'no restart');
    await cli.waitLog(/"event":"reload_succeeded","trigger":"file"/);
    const after = await curl(url, certArgs(pki.ca.cert, pki.client));
    assert.equal(after.status, 200);
  } finally {
    assert.equal(await cli.stop(), 0);
  }
});

// ---- overlays/prometheus-mtls: scrape annotations without opening the admin API ----

test('overlays/prometheus-mtls: valid objects; the scrape annotations point at the admin port, which only mTLS and the monitoring namespace reach', { skip: noKubectl || false }, async () => {
  const objs = render('overlays/prometheus-mtls');
  await validateAll(objs);
  const pod = one(objs, 'Deployment').spec.template;
  const proxy = (pod.spec.containers as Obj[]).find((c) => c.name === 'portcullis')!;
  const config = parse(one(objs, 'ConfigMap').data['portcullis.yaml']) as Obj;
  const adminPort = Number(String(config.admin.address).split(':').pop());
  const ann = pod.metadata.annotations as Record<string, string>;
  assert.deepEqual(ann, { 'prometheus.io/scrape': 'true', 'prometheus.io/scheme': 'https', 'prometheus.io/port': String(adminPort), 'prometheus.io/path': '/metrics' });
  assert.equal((proxy.ports as Obj[]).find((p) => p.name === 'admin')?.containerPort, adminPort);
  // the admin API off loopback only behind mTLS with its own CA and an allow rule
  assert.ok(config.admin.tls && config.admin.allow.length > 0, 'admin.tls and admin.allow are set');
  const volumeOf = (file: string) => {
    const m = (proxy.volumeMounts as Obj[]).find((x) => file.startsWith(`${x.mountPath}/`))!;
    return (pod.spec.volumes as Obj[]).find((v) => v.name === m.name)!;
  };
  assert.notEqual(volumeOf(config.admin.tls.client_ca).secret.secretName, volumeOf(config.listeners[0].tls.client_ca).secret.secretName, "the scrapers' CA is not the listeners' client CA");
  // probes stay on the plain probe listener; the Service does not expose the admin port
  const probePort = Number(String(config.admin.probe_address).split(':').pop());
  for (const probe of [proxy.readinessProbe, proxy.livenessProbe, proxy.startupProbe]) assert.equal((proxy.ports as Obj[]).find((p) => p.name === probe.httpGet.port)?.containerPort, probePort);
  assert.ok(!(one(objs, 'Service').spec.ports as Obj[]).some((p) => p.targetPort === 'admin' || p.targetPort === adminPort));
  // the NetworkPolicy opens the admin port to the monitoring namespace, not to everyone
  const np = find(objs, 'NetworkPolicy').find((p) => p.metadata.name === 'portcullis')!;
  const adminRules = (np.spec.ingress as Obj[]).filter((r) => r.ports.some((p: Obj) => p.port === 'admin' || p.port === adminPort));
  assert.equal(adminRules.length, 1);
  assert.deepEqual(adminRules[0]!.from, [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }]);
});

test("overlays/prometheus-mtls: check passes, Prometheus' certificate scrapes /metrics, other clients are refused", { skip: noKubectl || false }, async () => {
  const root = join(work, 'prometheus-mtls');
  const { path, config } = materialize(render('overlays/prometheus-mtls'), root, pki.otherCa.cert);
  const checked = runCli(['check', '-c', path]);
  assert.equal(checked.status, 0, checked.stdout + checked.stderr);
  assert.equal(checked.stderr, '');
  // Prometheus' client certificate and one the allow rule does not name, from the scrapers' CA
  const certs: Record<string, { cert: string; key: string }> = {};
  for (const cn of ['prometheus', 'grafana']) {
    const c = await issueCert(pki.handles.other, { type: 'client', cn });
    certs[cn] = { cert: join(root, `${cn}.crt`), key: join(root, `${cn}.key`) };
    writeFileSync(certs[cn].cert, c.certPem);
    writeFileSync(certs[cn].key, c.keyPem, { mode: 0o600 });
  }
  // on this machine: loopback ports and the echo upstream in place of the app Service
  config.listeners[0].address = '127.0.0.1:0';
  config.admin.address = '127.0.0.1:0';
  config.admin.probe_address = `127.0.0.1:${await freePort()}`;
  config.upstreams.app.endpoints = [up.url];
  const cli = await startCli(config, { dir: root });
  try {
    const metrics = `https://localhost:${cli.adminPort}/metrics`;
    const scrape = await curl(metrics, certArgs(pki.ca.cert, certs.prometheus));
    assert.equal(scrape.status, 200, scrape.stderr + scrape.body);
    assert.match(scrape.body, /^portcullis_certificate_expiry_timestamp_seconds\{/m);
    for (const [who, args, status] of [
      ['no certificate', certArgs(pki.ca.cert), 401],
      ["the listeners' client", certArgs(pki.ca.cert, pki.client), 403],
      ['a scrapers-CA certificate admin.allow does not name', certArgs(pki.ca.cert, certs.grafana), 403],
    ] as const) {
      const r = await curl(metrics, [...args]);
      assert.equal(r.status, status, `${who}: ${r.stderr}${r.body}`);
      assert.doesNotMatch(r.body, /portcullis_/, who);
    }
    // and nothing else moved: reload is refused to the grafana certificate too
    assert.equal((await curl(`https://localhost:${cli.adminPort}/reload`, [...certArgs(pki.ca.cert, certs.grafana), '-X', 'POST'])).status, 403);
  } finally {
    assert.equal(await cli.stop(), 0);
  }
});
