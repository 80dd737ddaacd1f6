// `portcullis policy test -c FILE --cert CERT [--method M] [--host H] --path P` (SPEC §10),
// like `istioctl x authz check`: which route a request takes, which rule allows or denies
// it, and why every earlier route and rule did not match — offline, from the config file.
//
// It runs the proxy's own code, not a model of it: the config is loaded and provisioned
// as `check` does (buildGeneration), the client certificate is verified against the CAs,
// CRLs, pins and cert_policy of the certificate entry its SNI selects (OCSP is not
// queried), and the request goes through the HTTP front ends' admitRequest (path
// normalization, Host checks, SNI/Host agreement, route table, per-route client_auth,
// authorize()); TCP listeners through authorize() as the TCP front end calls it. The
// explanations come from policy-explain.ts, which tests each condition with the same
// compilers and matchers.
import type { Command } from 'commander';
import type { X509Certificate } from 'node:crypto';
import { loadConfig } from '../config/load.js';
import { trustFor, type LoadedConfig, type RuleConfig } from '../config/schema.js';
import { buildGeneration, releaseGeneration } from '../runtime/generation.js';
import { connRules, type ConnState, type ListenerRuntime } from '../proxy/context.js';
import { admitRequest } from '../proxy/http/pipeline.js';
import { authorize } from '../policy/authorize.js';
import type { CompiledRule, Rule } from '../policy/rules.js';
import { normalizePath } from '../routing/path.js';
import { createTelemetry } from '../telemetry/telemetry.js';
import { selectEntry, type CertEntry, type PeerResult } from '../tls/listener-tls.js';
import { buildTrust } from '../tls/trust.js';
import { reasonMessage, type VerifyReason } from '../tls/verify-result.js';
import { buildIdentity } from '../pki/identity.js';
import type { Identity } from '../pki/identity-types.js';
import { readCerts } from '../pki/pem.js';
import { explainVerify, RESULT_OF_CODE } from '../pki/verify.js';
import { ErrorCodes, HttpErrors, PortcullisError } from '../errors.js';
import { explainRoute, explainRule, type Verdict } from './policy-explain.js';

interface PolicyOptions {
  config: string;
  listener?: string;
  cert?: string;
  spiffeId?: string;
  uri?: string[];
  dns?: string[];
  email?: string[];
  cn?: string[];
  ou?: string[];
  o?: string[];
  issuerCn?: string[];
  method: string;
  host?: string;
  servername?: string;
  path?: string;
  expect?: string;
  json: boolean;
}

const collect = (v: string, prev: string[] = []) => [...prev, ...v.split(',').map((s) => s.trim()).filter(Boolean)];
const usage = (message: string) => new PortcullisError(ErrorCodes.USAGE, message, { exitCode: 2 });


interface Client {
  peer: PeerResult;
  /** how the identity was obtained, for the report */
  source: string;
  notes: string[];
}

/** The certificate entry (and its config) that a handshake with this SNI selects. */
function entryFor(l: ListenerRuntime, servername: string): { entry: CertEntry | undefined; index: number } {
  if (!l.tls) return { entry: undefined, index: -1 };
  const entry = selectEntry(l.tls, servername || undefined);
  return { entry, index: l.tls.entries.indexOf(entry) };
}

/** Verifies the certificate as the listener's handshake and post-handshake checks would. */
async function verifyCert(file: string, l: ListenerRuntime, entry: CertEntry, index: number): Promise<Client> {
  const [leaf, ...presented] = readCerts(file, 'client certificate');
  const source = `certificate ${file}`;
  const notes: string[] = [];
  if (entry.trust.clientAuth === 'none') {
    return { peer: { verify: 'NONE' }, source, notes: ['this certificate entry has client_auth: none, so no certificate is asked for and it is never sent'] };
  }
  const r = explainVerify(leaf!, { cas: entry.trust.caCerts, intermediates: presented, verifyDepth: entry.trust.verifyDepth, purpose: 'client' });
  const failed = (reason: VerifyReason, detail: string, afterHandshake = false): Client => ({
    peer: { verify: 'FAILED', reason, message: reasonMessage(reason, detail), ...(afterHandshake ? { afterHandshake } : {}) },
    source,
    notes,
  });
  if (!r.accepted) {
    const first = r.reasons[0]!;
    return failed((RESULT_OF_CODE[first.code] as VerifyReason | undefined) ?? 'error', `${first.message}; ${first.fix}`);
  }
  const chain: X509Certificate[] = r.chain.slice(1, r.trusted ? -1 : undefined);
  const identity = buildIdentity(leaf!, chain);
  // CRL, pins and cert_policy exactly as the listener runs them; OCSP would ask a
  // responder over the network, which an offline test must not do
  const tlsCfg = l.cfg.tls!;
  const entryCfg = index >= 0 ? tlsCfg.certificates[index] : undefined;
  const cfg = trustFor(tlsCfg, entryCfg);
  if (cfg.ocsp.mode !== 'off') notes.push(`OCSP (mode ${cfg.ocsp.mode}) is not queried by policy test`);
  const field = index >= 0 ? `listeners[${l.name}].tls.certificates[${index}]` : `listeners[${l.name}].tls`;
  const trust = buildTrust({ ...cfg, ocsp: { ...cfg.ocsp, mode: 'off' } }, field, tlsCfg.min_version);
  for (const check of trust.checks) {
    const f = await check(leaf!, chain, identity);
    if (f) return failed(f.reason, f.detail, f.afterHandshake === true);
  }
  return { peer: { verify: 'SUCCESS', identity }, source, notes };
}

/** An identity from --spiffe-id/--cn/... flags: taken as verified, certificate checks skipped. */
function identityFromFlags(o: PolicyOptions): Identity | undefined {
  const uris = [...(o.spiffeId ? [o.spiffeId] : []), ...(o.uri ?? [])];
  const given = uris.length + (o.dns?.length ?? 0) + (o.email?.length ?? 0) + (o.cn?.length ?? 0) + (o.ou?.length ?? 0) + (o.o?.length ?? 0) + (o.issuerCn?.length ?? 0);
  if (given === 0) return undefined;
  const rdn = (k: string, v: string[] | undefined) => (v ?? []).map((x) => `${k}=${x}`);
  return {
    subject: [...rdn('CN', o.cn), ...rdn('OU', o.ou), ...rdn('O', o.o)].join(','),
    issuer: rdn('CN', o.issuerCn).join(','),
    cn: o.cn ?? [],
    ou: o.ou ?? [],
    o: o.o ?? [],
    issuerCn: o.issuerCn ?? [],
    serial: '',
    fingerprint: '',
    spkiFingerprint: '',
    spiffeId: uris.find((u) => u.toLowerCase().startsWith('spiffe://')),
    uris,
    dns: (o.dns ?? []).map((d) => d.toLowerCase()),
    emails: o.email ?? [],
    ips: [],
    notBefore: new Date(0),
    notAfter: new Date(0),
    der: Buffer.alloc(0),
    chainDer: [],
  };
}

/** Config rules by the names compileRules gave them in generation.ts / listener-tls.ts. */
function ruleConfigs(c: LoadedConfig, l: ListenerRuntime): Map<string, RuleConfig> {
  const m = new Map<string, RuleConfig>();
  const add = (where: string, rules: readonly RuleConfig[] | undefined) => rules?.forEach((r, i) => m.set(`${where}[${i}]`, r));
  const i = c.listeners.findIndex((x) => x.name === l.name);
  add(`listeners[${l.name}].allow`, l.cfg.allow);
  add(`listeners[${l.name}].deny`, l.cfg.deny);
  for (const r of l.cfg.routes) {
    add(`routes[${r.name}].allow`, r.allow);
    add(`routes[${r.name}].deny`, r.deny);
  }
  l.cfg.tls?.certificates.forEach((e, j) => {
    add(`listeners[${i}].tls.certificates[${j}].allow`, e.allow);
    add(`listeners[${i}].tls.certificates[${j}].deny`, e.deny);
  });
  return m;
}

interface RuleStep extends Verdict {
  kind: 'allow' | 'deny';
  name: string;
}

/** The rules authorize() walks, in its order (authorize.ts header), each judged and explained. */
function explainDecision(allowList: readonly CompiledRule[], denyList: readonly CompiledRule[], configs: Map<string, RuleConfig>, identity: Identity | undefined): { steps: RuleStep[]; allowFrom: string } {
  const steps: RuleStep[] = [];
  const step = (kind: 'allow' | 'deny', r: CompiledRule) => {
    const v = explainRule(configs.get(r.name) as Rule | undefined, r, identity);
    steps.push({ kind, name: r.name, ...v });
    return v.matched;
  };
  const allowFrom = allowList.length === 0 ? 'none' : allowList[0]!.name.replace(/\[\d+\]$/, '');
  if (identity === undefined) {
    // no identity: denies cannot match; a non-empty allow list refuses
    for (const r of allowList) step('allow', r);
    return { steps, allowFrom };
  }
  for (const r of denyList) if (step('deny', r)) return { steps, allowFrom };
  for (const r of allowList) if (step('allow', r)) break;
  return { steps, allowFrom };
}

interface Report {
  listener: string;
  protocol: string;
  request: { method: string; host: string; servername: string; path: string; normalized_path?: string };
  client: { source: string; verify: string; reason?: string; message?: string; subject?: string; spiffe_id?: string; issuer?: string; notes: string[] };
  entry?: string;
  routes: { index: number; name: string; matched: boolean; why: string[] }[];
  route?: string;
  rules: RuleStep[];
  allow_rules_from?: string;
  decision: { allowed: boolean; status?: number; error?: string; rule?: string; reason: string; message?: string; upstream?: string };
}

async function policyTest(o: PolicyOptions): Promise<void> {
  const config = await loadConfig(o.config, { checkFiles: true });
  const generation = buildGeneration(config, 0, createTelemetry({ level: 'error', access: 'off' }));
  try {
    const report = await evaluate(o, config, generation.listeners);
    // without --expect: exit 0 when allowed, so `policy test ... && deploy` reads naturally
    const expected = o.expect === undefined || o.expect === 'allow';
    process.stdout.write(o.json ? JSON.stringify(report, null, 2) + '\n' : render(report));
    if (o.expect !== undefined && !o.json) {
      process.stdout.write(report.decision.allowed === expected ? `as expected (--expect ${o.expect})\n` : `NOT as expected: --expect ${o.expect}\n`);
    }
    process.exitCode = report.decision.allowed === expected ? 0 : 1;
  } finally {
    await releaseGeneration(generation);
  }
}

async function evaluate(o: PolicyOptions, config: LoadedConfig, listeners: Map<string, ListenerRuntime>): Promise<Report> {
  const names = [...listeners.keys()];
  const l = o.listener === undefined ? listeners.get(names[0]!)! : listeners.get(o.listener);
  if (!l) throw usage(`no listener named "${o.listener}" in ${config.configPath}; use one of: ${names.join(', ')}`);
  const method = o.method;
  const host = o.host ?? 'localhost';
  const servername = o.servername ?? host.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  if (l.cfg.protocol === 'http' && o.path === undefined) throw usage('--path is required for an http listener; give the request path, e.g. --path /v1/charge');
  if (o.cert && identityFromFlags(o)) throw usage('give either --cert or identity flags (--spiffe-id, --cn, ...), not both');

  const { entry, index } = entryFor(l, servername);
  let client: Client;
  const flagged = identityFromFlags(o);
  if (o.cert) {
    client = entry ? await verifyCert(o.cert, l, entry, index) : { peer: { verify: 'NONE' }, source: `certificate ${o.cert}`, notes: ['this listener has no tls, so no certificate is ever presented'] };
  } else if (flagged) {
    client = { peer: { verify: 'SUCCESS', identity: flagged }, source: 'identity flags (taken as verified: no certificate checks)', notes: [] };
  } else {
    client = { peer: { verify: 'NONE' }, source: 'no client certificate', notes: [] };
  }
  const { peer } = client;
  const id = peer.verify === 'SUCCESS' ? peer.identity : undefined;
  const report: Report = {
    listener: l.name,
    protocol: l.cfg.protocol,
    request: { method, host, servername, path: o.path ?? '' },
    client: {
      source: client.source,
      verify: peer.verify === 'FAILED' ? `FAILED:${peer.reason}` : peer.verify,
      ...(peer.reason && peer.verify === 'FAILED' ? { reason: peer.reason, message: peer.message } : {}),
      ...(id ? { subject: id.subject, spiffe_id: id.spiffeId, issuer: id.issuer } : {}),
      notes: client.notes,
    },
    ...(entry ? { entry: entry.name === 'default' ? 'default certificate' : `certificates entry for ${entry.serverNames.join(', ')}` } : {}),
    routes: [],
    rules: [],
    decision: { allowed: false, reason: '' },
  };

  // the handshake stage, as listener-server.ts decides it after checkPeer: on a require
  // entry a missing or failed certificate closes the connection before any request
  // (checks SPEC §2 runs after the handshake answer each HTTP request with 403 instead)
  if (entry && entry.trust.clientAuth === 'require' && peer.verify !== 'SUCCESS' && !(peer.verify === 'FAILED' && peer.afterHandshake && l.cfg.protocol === 'http')) {
    const reason = peer.reason ?? 'no_cert';
    report.decision = { allowed: false, reason: `handshake refused: ${reason}`, message: peer.message ?? reasonMessage(reason) };
    return report;
  }

  const configs = ruleConfigs(config, l);
  const listenerRules = connRules(l, entry);
  if (l.cfg.protocol === 'tcp') {
    if (peer.verify === 'FAILED') {
      report.decision = { allowed: false, reason: `connection refused: ${peer.reason}`, message: peer.message };
      return report;
    }
    const decision = authorize({ listenerAllow: listenerRules.allow, listenerDeny: listenerRules.deny, routeAllow: [], routeDeny: [], identity: id, facts: { method: '', host: '', path: '' } });
    const ex = explainDecision(listenerRules.allow, listenerRules.deny, configs, id);
    report.rules = ex.steps;
    report.allow_rules_from = ex.allowFrom;
    report.decision = { allowed: decision.allowed, ...(decision.rule ? { rule: decision.rule } : {}), reason: decision.reason, ...(decision.allowed ? { upstream: l.tcpUpstreamName } : {}) };
    return report;
  }

  const conn: ConnState = {
    listener: l,
    entry,
    servername: servername || undefined,
    peer,
    identityHeaders: [],
    tlsVersion: l.tls ? 'TLSv1.3' : null,
    remoteAddress: '127.0.0.1',
    logClient: {},
  };
  const result = admitRequest({ conn, method, target: o.path!, rawHeaders: ['host', host], contentLength: undefined });
  const normalized = normalizePath(o.path!.startsWith('/') ? o.path! : `/${o.path}`, l.cfg.merge_slashes);
  if (normalized.ok) report.request.normalized_path = normalized.path;
  // refusals before routing (400, 421) have no route and list none; a 404 lists them all
  const routed = result.route;
  const reachedRouting = result.ok || routed !== undefined || result.code === 'no_route';
  if (reachedRouting && normalized.ok) {
    const last = routed ? routed.index : l.cfg.routes.length - 1;
    for (let i = 0; i <= last; i++) {
      const r = l.cfg.routes[i]!;
      report.routes.push({ index: i, name: r.name, ...explainRoute(r, host, normalized.path, method) });
    }
  }
  if (routed) report.route = routed.name;
  // the rules were looked at when the request got past the route's client_auth
  if (routed && (result.ok || result.code === 'forbidden' || result.code === 'body_too_large')) {
    const ex = explainDecision(routed.allow.length > 0 ? routed.allow : listenerRules.allow, [...listenerRules.deny, ...routed.deny], configs, id);
    report.rules = ex.steps;
    report.allow_rules_from = ex.allowFrom;
  }
  if (result.ok) {
    report.decision = { allowed: true, status: 200, ...(result.decision.rule ? { rule: result.decision.rule } : {}), reason: result.decision.reason, upstream: result.route.upstreamName };
  } else {
    report.decision = {
      allowed: false,
      status: HttpErrors[result.code],
      error: result.code,
      ...(result.decision?.rule ? { rule: result.decision.rule } : {}),
      reason: result.decision?.reason ?? result.code,
      message: result.message,
    };
  }
  return report;
}

function render(r: Report): string {
  const out: string[] = [];
  const say = (s = '') => out.push(s);
  const req = r.protocol === 'tcp' ? 'a connection' : `${r.request.method} ${r.request.path} (Host ${r.request.host}${r.request.servername && r.request.servername !== r.request.host ? `, SNI ${r.request.servername}` : ''})`;
  say(`portcullis policy test: ${req} on listener ${r.listener}${r.entry ? `, ${r.entry}` : ''}`);
  say('');
  say(`client: ${r.client.source}`);
  if (r.client.subject !== undefined) say(`  identity: ${r.client.subject || '(no subject)'}${r.client.spiffe_id ? `, SPIFFE ID ${r.client.spiffe_id}` : ''}${r.client.issuer ? `, issued by ${r.client.issuer}` : ''}`);
  say(`  verify: ${r.client.verify}${r.client.message ? ` — ${r.client.message}` : ''}`);
  for (const n of r.client.notes) say(`  note: ${n}`);
  if (r.request.normalized_path !== undefined && r.request.normalized_path !== r.request.path) say(`  path as routed and forwarded: ${r.request.normalized_path}`);
  if (r.routes.length > 0) {
    say('');
    say('routes (first match wins):');
    for (const rt of r.routes) {
      say(`  [${rt.index}] ${rt.name}: ${rt.matched ? 'MATCHES' : 'no'}`);
      for (const w of rt.why) say(`        ${rt.matched ? '+' : '-'} ${w}`);
    }
    if (!r.route) say('  no route matched');
  }
  if (r.rules.length > 0 || r.allow_rules_from) {
    say('');
    say(`rules${r.route ? ` for route ${r.route}` : ''} (denies first, then ${r.allow_rules_from === 'none' ? 'no allow rules' : `the allow rules of ${r.allow_rules_from}`}):`);
    for (const s of r.rules) {
      say(`  ${s.kind.padEnd(5)} ${s.name}: ${s.matched ? 'MATCHES' : 'no'}`);
      for (const w of s.why) say(`        ${s.matched ? '+' : '-'} ${w}`);
    }
    if (r.rules.length === 0) say('  none apply');
  }
  say('');
  const d = r.decision;
  if (d.allowed) {
    say(`decision: ALLOWED${d.rule ? ` by ${d.rule}` : ` (${d.reason})`}${d.upstream ? `; forwarded to upstream ${d.upstream}` : ''}`);
  } else {
    const why = d.rule ? `, by ${d.rule}` : d.reason !== d.error ? ` (${d.reason})` : '';
    say(`decision: DENIED${d.status ? `: ${d.status} ${d.error}` : ''}${why}`);
    if (d.message) say(`  ${d.message}`);
  }
  return out.join('\n') + '\n';
}

export function register(program: Command): void {
  const policy = program.command('policy').description('test authorization policy offline against a config file');
  policy
    .command('test')
    .description('show which route a request takes and which rule allows or denies it, and why every earlier route and rule did not match (exit 0 allowed, 1 denied)')
    .option('-c, --config <file>', 'config file', './portcullis.yaml')
    .option('--cert <file>', 'client certificate (PEM; intermediates may follow the leaf), verified as the listener would')
    .option('--spiffe-id <id>', 'instead of --cert: the identity\'s SPIFFE ID (taken as verified)')
    .option('--uri <uri>', 'URI SAN (repeatable)', collect)
    .option('--dns <name>', 'DNS SAN (repeatable)', collect)
    .option('--email <addr>', 'email SAN (repeatable)', collect)
    .option('--cn <name>', 'subject CN (repeatable)', collect)
    .option('--ou <unit>', 'subject OU (repeatable)', collect)
    .option('--o <org>', 'subject O (repeatable)', collect)
    .option('--issuer-cn <name>', 'issuer CN (repeatable)', collect)
    .option('--listener <name>', 'listener to test (default: the first)')
    .option('--method <method>', 'request method', 'GET')
    .option('--host <host>', 'Host header (default: localhost)')
    .option('--servername <name>', 'SNI the client sends (default: the host)')
    .option('--path <path>', 'request path, e.g. /v1/charge (required for http listeners)')
    .option('--expect <decision>', 'allow or deny: exit 0 when the decision is this one, 1 otherwise (for CI)')
    .option('--json', 'machine-readable output', false)
    .action(async (o: PolicyOptions) => {
      if (o.expect !== undefined && o.expect !== 'allow' && o.expect !== 'deny') throw usage(`--expect must be allow or deny, got "${o.expect}"`);
      await policyTest(o);
    });
}
