// `portcullis cert issue | inspect | verify | revoke`: issue certificates from a CA folder,
// read certificates, say whether one would be accepted (and why not), and revoke.
import { Command, Option } from 'commander';
import { existsSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { basename, relative, resolve } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { issueCert, signCsr, type LeafType } from '../pki/issue.js';
import { KEY_TYPES, parseKeyType } from '../pki/keys.js';
import { caPaths, findIssued, updateCaDir, type CaDir, type IssuerRole, type RevokedRecord } from '../pki/ca-store.js';
import { readCerts, readFileFor } from '../pki/pem.js';
import { renderSummary, summarize } from '../pki/inspect.js';
import { explainVerify } from '../pki/verify.js';
import { reconcile } from '../pki/verdict.js';
import { engineVerdict, type EngineTrust } from '../tls/verify-engine.js';
import { loadConfig } from '../config/load.js';
import { trustFor } from '../config/schema.js';
import { parseCrls, parseRevocationReason, REVOCATION_REASONS, type CrlInfo } from '../pki/crl.js';
import { buildCrlFiles } from './crl.js';
import { parseDays } from './ca.js';
import type { PendingFile } from '../pki/atomic-write.js';
import { ErrorCodes, PortcullisError } from '../errors.js';

const collect = (v: string, prev: string[] = []): string[] => [...prev, ...v.split(',').map((s) => s.trim()).filter(Boolean)];
const usage = (msg: string): PortcullisError => new PortcullisError(ErrorCodes.USAGE, msg, { exitCode: 2 });

function show(path: string): string {
  const r = relative(process.cwd(), path);
  return r && !r.startsWith('..') ? r : path;
}

interface IssueFlags {
  ca: string;
  type?: string;
  cn?: string;
  dns?: string[];
  ip?: string[];
  uri?: string[];
  email?: string[];
  spiffeId?: string;
  ou?: string[];
  o?: string[];
  days: string;
  keyType: string;
  out?: string;
  csr?: string;
  force: boolean;
}

/** A SPIFFE ID per the SPIFFE spec: spiffe://<trust domain>[/path], lowercase trust domain. */
function checkSpiffeId(id: string): string {
  if (!/^spiffe:\/\/[a-z0-9._-]+(\/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*$/.test(id)) {
    throw usage(`--spiffe-id "${id}" is not a SPIFFE ID; expected spiffe://trust-domain/path (lowercase trust domain, no trailing slash)`);
  }
  return id;
}

async function issueAction(f: IssueFlags): Promise<void> {
  const type = f.type as LeafType | undefined;
  if (!type || !['client', 'server', 'both'].includes(type)) throw usage(`--type must be client, server or both${f.type ? `, got "${f.type}"` : ''}`);
  if (!f.csr && !f.cn) throw usage('--cn is required (the certificate\'s common name), unless --csr supplies the subject');
  const days = parseDays('--days', f.days);
  const keyType = parseKeyType(f.keyType);
  for (const ip of f.ip ?? []) if (!isIP(ip)) throw usage(`--ip "${ip}" is not an IPv4 or IPv6 address`);
  for (const e of f.email ?? []) if (!/^[^@\s]+@[^@\s]+$/.test(e)) throw usage(`--email "${e}" is not an e-mail address`);
  for (const d of f.dns ?? []) if (!/^(\*\.)?[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$/.test(d)) throw usage(`--dns "${d}" is not a DNS name`);
  for (const u of f.uri ?? []) if (!/^[a-z][a-z0-9+.-]*:\S+$/i.test(u)) throw usage(`--uri "${u}" is not an absolute URI`);
  const uri = [...(f.spiffeId ? [checkSpiffeId(f.spiffeId)] : []), ...(f.uri ?? [])];
  const csrPem = f.csr ? readFileFor(f.csr, 'CSR file').toString('utf8') : undefined;

  const nameForFiles = (f.cn ?? (f.csr ? basename(f.csr).replace(/\.(csr|pem|req)$/i, '') : 'cert')).replace(/[^A-Za-z0-9._-]+/g, '_');
  const prefix = resolve(f.out ?? nameForFiles);
  const paths = { cert: `${prefix}.crt`, key: `${prefix}.key`, chain: `${prefix}.chain.crt` };
  const targets = csrPem ? [paths.cert, paths.chain] : [paths.cert, paths.key, paths.chain];
  const clash = targets.filter((p) => existsSync(p));
  if (clash.length && !f.force) {
    throw new PortcullisError(ErrorCodes.USAGE, `${clash.map(show).join(', ')} already exist; choose another --out or pass --force to overwrite`, { exitCode: 1 });
  }

  const result = await updateCaDir(f.ca, async (ca) => {
    const common = { type, ou: f.ou, o: f.o, dns: f.dns, ip: f.ip, uri, email: f.email, days };
    let serial: string;
    let subject: string;
    let notAfter: string;
    const files: PendingFile[] = [];
    // a collision of 128-bit random serials is practically impossible, but a CA must never reuse one
    for (let attempt = 0; ; attempt++) {
      if (csrPem) {
        const signed = await signCsr(ca.signer, csrPem, { ...common, cn: f.cn }, f.csr);
        files.splice(0, files.length, { path: paths.cert, data: signed.certPem }, { path: paths.chain, data: signed.chainPem });
        serial = signed.serial;
        subject = signed.subject;
      } else {
        const issued = await issueCert(ca.signer, { ...common, cn: f.cn!, keyType });
        files.splice(0, files.length, { path: paths.cert, data: issued.certPem }, { path: paths.key, data: issued.keyPem, mode: 0o600 }, { path: paths.chain, data: issued.chainPem });
        serial = issued.serial;
        subject = new X509Certificate(issued.certPem).subject;
      }
      notAfter = new X509Certificate(files[0]!.data).validTo;
      if (!findIssued(ca.state, serial) || attempt > 3) break;
    }
    ca.state.issued.push({ serial, subject, type, issuer: ca.state.signer, issuedAt: new Date().toISOString(), notAfter: new Date(notAfter).toISOString() });
    return { files, result: { serial, subject, signer: ca.signer.name } };
  });

  const out = process.stdout;
  out.write(`Issued ${type} certificate ${result.subject.split('\n').reverse().join(',')} (serial ${result.serial}), signed by "${result.signer}"\n`);
  out.write(`  certificate: ${show(paths.cert)}\n`);
  if (!csrPem) out.write(`  key:         ${show(paths.key)}   (mode 0600)\n`);
  out.write(`  chain:       ${show(paths.chain)}   (certificate + intermediates: what a ${type === 'server' ? 'server' : 'client'} should present)\n`);
}

function inspectAction(file: string, f: { json: boolean }): void {
  const certs = readCerts(file);
  const now = new Date();
  const summaries = certs.map((c) => summarize(c, now));
  if (f.json) {
    process.stdout.write(JSON.stringify({ file, certificates: summaries }, null, 2) + '\n');
    return;
  }
  process.stdout.write(`${file}: ${certs.length} certificate${certs.length === 1 ? '' : 's'}\n\n`);
  process.stdout.write(summaries.map((s, i) => renderSummary(s, i, summaries.length)).join('\n\n') + '\n');
}

interface VerifyFlags {
  ca?: string[];
  crl?: string[];
  crlMode?: string;
  chain?: string;
  verifyDepth?: string;
  strictRfc5280?: boolean;
  config?: string;
  listener?: string;
  serverName?: string;
  server: boolean;
  json: boolean;
}

/**
 * `--ca` takes CA files, or a CA folder made by `ca init` (its root is trusted, its
 * intermediate known: named when missing, never trusted).
 */
function loadTrust(specs: string[]): { files: string[]; cas: X509Certificate[]; known: X509Certificate[] } {
  const files: string[] = [];
  const known: X509Certificate[] = [];
  for (const spec of specs) {
    if (existsSync(spec) && statSync(spec).isDirectory()) {
      const p = caPaths(spec);
      if (!existsSync(p.rootCert)) {
        throw new PortcullisError(ErrorCodes.CA_DIR_INVALID, `${spec} is a folder without ${basename(p.rootCert)}; pass a CA file or a folder made by portcullis ca init`, { path: spec });
      }
      files.push(resolve(p.rootCert));
      if (existsSync(p.intermediateCert)) known.push(...readCerts(p.intermediateCert, 'intermediate CA file'));
    } else {
      readCerts(spec, 'CA file');
      files.push(resolve(spec));
    }
  }
  return { files, cas: files.flatMap((f) => readCerts(f, 'CA file')), known };
}

/** The trust of a listener (or its SNI entry) in a config file: what `run` would verify with. */
async function trustFromConfig(f: VerifyFlags): Promise<EngineTrust> {
  const config = await loadConfig(f.config!);
  const withTls = config.listeners.filter((l) => l.tls);
  const l = f.listener ? config.listeners.find((x) => x.name === f.listener) : withTls[0];
  if (!l || !l.tls) {
    throw usage(f.listener ? `${f.config} has no TLS listener named "${f.listener}" (listeners: ${withTls.map((x) => x.name).join(', ') || 'none'})` : `${f.config} has no TLS listener`);
  }
  const name = f.serverName?.toLowerCase();
  const entry = name ? l.tls.certificates.find((e) => e.server_names.some((n) => n.toLowerCase() === name || (n.startsWith('*.') && name.endsWith(n.slice(1)) && !name.slice(0, -n.length + 1).includes('.')))) : undefined;
  const t = trustFor(l.tls, entry);
  if (t.client_auth === 'none') throw usage(`listener "${l.name}"${entry ? ` (server name ${name})` : ''} does not ask for client certificates (client_auth: none)`);
  return { client_ca: [...t.client_ca], verify_depth: t.verify_depth, crl: [...t.crl], crl_mode: t.crl_mode, ocsp: t.ocsp, pins: [...t.pins], cert_policy: t.cert_policy };
}

async function verifyAction(files: string[], f: VerifyFlags): Promise<void> {
  if (!f.config && !f.ca?.length) throw usage('pass --ca <file> (the trusted client CAs), or -c <config> to verify with a listener\'s trust');
  if (f.config && (f.ca?.length || f.crl?.length || f.crlMode || f.verifyDepth || f.strictRfc5280)) throw usage('-c takes every trust setting from the listener; do not combine it with --ca, --crl, --crl-mode, --verify-depth or --strict-rfc5280');
  if (f.crlMode && !['chain', 'leaf'].includes(f.crlMode)) throw usage(`--crl-mode must be chain or leaf, got "${f.crlMode}"`);
  if (f.chain && files.length > 1) throw usage('--chain goes with one certificate; with several, put each chain (leaf, then intermediates) in its file');
  const depthText = f.verifyDepth ?? '3';
  const depth = Number(depthText);
  if (!/^\d+$/.test(depthText) || depth > 16) throw usage(`--verify-depth must be a whole number from 0 to 16 (as tls.verify_depth), got "${depthText}"`);

  let trust: EngineTrust;
  let known: X509Certificate[] = [];
  if (f.config) trust = await trustFromConfig(f);
  else {
    const t = loadTrust(f.ca!);
    known = t.known;
    trust = { client_ca: t.files, verify_depth: depth, crl: (f.crl ?? []).map((p) => resolve(p)), crl_mode: (f.crlMode ?? 'chain') as 'chain' | 'leaf', cert_policy: { ...DEFAULT_POLICY, strict_rfc5280: !!f.strictRfc5280 } };
  }
  const cas = trust.client_ca.flatMap((p) => readCerts(p, 'CA file'));
  const crls: CrlInfo[] = (trust.crl ?? []).flatMap((p) => parseCrls(readFileFor(p, 'CRL file'), p));
  const policy = { ...DEFAULT_POLICY, ...trust.cert_policy };
  const role = f.server ? 'server' : 'client';
  const json: unknown[] = [];
  let refused = 0;
  for (const file of files) {
    const [leaf, ...rest] = readCerts(file);
    // a chain file usually starts with the leaf again (cert issue writes leaf + intermediates)
    const presented = [...rest, ...(f.chain ? readCerts(f.chain, 'chain file') : [])].filter((c, i, all) => c.fingerprint256 !== leaf!.fingerprint256 && all.findIndex((x) => x.fingerprint256 === c.fingerprint256) === i);
    const now = new Date();
    const explained = explainVerify(leaf!, {
      cas,
      intermediates: presented,
      knownIntermediates: known,
      crls,
      now,
      verifyDepth: trust.verify_depth ?? 3,
      purpose: role,
      crlMode: trust.crl_mode ?? 'chain',
      strict: policy.strict_rfc5280,
      policy,
    });
    // The verdict: a listener's engine for client certificates; the explainer alone for
    // --server (no listener verifies servers)
    const engine = f.server ? undefined : await engineVerdict([leaf!, ...presented], trust);
    const v = reconcile(explained, engine);
    if (!v.accepted) refused++;
    const out = process.stdout;
    if (f.json) {
      json.push({
        file,
        accepted: v.accepted,
        purpose: role,
        checkedAt: now.toISOString(),
        ...(engine ? { result: engine.result, engine: { result: engine.result, message: engine.message ?? null, handshakeError: engine.handshakeError ?? null }, explainerAgrees: v.agrees } : {}),
        chain: explained.chain.map((c) => summarize(c, now).subject),
        reasons: v.reasons,
        warnings: v.warnings,
      });
    } else {
      const who = `${files.length > 1 ? `${file}: ` : ''}${summarize(leaf!, now).subject}`;
      if (v.accepted) {
        out.write(`accepted: ${who} would be accepted as a ${role} certificate\n`);
        out.write(`  chain: ${explained.chain.map((c) => summarize(c, now).subject).join('  ->  ')}\n`);
      } else {
        out.write(`refused: ${who} would be refused as a ${role} certificate (${v.reasons.length} reason${v.reasons.length === 1 ? '' : 's'})\n`);
        if (engine) out.write(`  the listener's verdict: FAILED:${engine.result}\n`);
        for (const reason of v.reasons) out.write(`  - [${reason.code}] ${reason.message}\n      fix: ${reason.fix}\n`);
      }
      for (const w of v.warnings) out.write(`  warning: ${w}\n`);
    }
    if (engine && !v.agrees) {
      process.stderr.write(`portcullis: note: for ${file}, the explanation (${explained.reasons.map((r) => r.code).join(', ') || 'no reason'}) differs from the listener's verdict (${engine.result}); the verdict shown is the listener's. Please report this with the certificate.\n`);
    }
  }
  // one file: one object (as before); several: an array in argument order
  if (f.json) process.stdout.write(JSON.stringify(files.length === 1 ? json[0] : json, null, 2) + '\n');
  if (refused > 0) process.exitCode = 1;
}

const DEFAULT_POLICY = { min_rsa_bits: 2048, min_ec_bits: 256, key_types: ['rsa', 'ec', 'ed25519'] as ('rsa' | 'ec' | 'ed25519')[], max_validity: 0, strict_rfc5280: false };

/** The serial to revoke, from a certificate file or a hex serial (colons allowed). */
function serialFrom(arg: string, ca: CaDir): { serial: string; issuer: IssuerRole } {
  let serial: string;
  if (existsSync(arg)) {
    const [cert] = readCerts(arg);
    const issuers: [IssuerRole, X509Certificate | undefined][] = [
      ['intermediate', ca.intermediate ? new X509Certificate(ca.intermediate.certPem) : undefined],
      ['root', new X509Certificate(ca.rootCertPem)],
    ];
    const by = issuers.find(([, c]) => c && cert!.checkIssued(c) && cert!.verify(c.publicKey));
    if (!by) {
      throw new PortcullisError(ErrorCodes.SERIAL_UNKNOWN, `${arg} was not issued by the CA in ${ca.dir} (its issuer is ${cert!.issuer.split('\n').reverse().join(',')})`, { path: arg });
    }
    serial = cert!.serialNumber.toUpperCase();
  } else {
    serial = arg.replace(/:/g, '').toUpperCase();
    if (!/^[0-9A-F]+$/.test(serial)) {
      throw new PortcullisError(ErrorCodes.USAGE, `"${arg}" is neither a certificate file nor a hex serial number`, { exitCode: 2 });
    }
  }
  const rec = findIssued(ca.state, serial);
  if (!rec) {
    throw new PortcullisError(ErrorCodes.SERIAL_UNKNOWN, `serial ${serial} was never issued by the CA in ${ca.dir}; check it with portcullis cert inspect`, { path: ca.dir });
  }
  return { serial: rec.serial, issuer: rec.issuer };
}

async function revokeAction(target: string, f: { ca: string; reason: string; crlDays: string }): Promise<void> {
  const reason = parseRevocationReason(f.reason);
  const crlDays = parseDays('--crl-days', f.crlDays);
  interface Outcome {
    serial: string;
    already: RevokedRecord | undefined;
    crl: string | undefined;
    missing: IssuerRole[];
  }
  const outcome = await updateCaDir<Outcome>(f.ca, async (ca) => {
    const { serial, issuer } = serialFrom(target, ca);
    const already = ca.state.revoked.find((r) => r.serial === serial);
    if (already) return { files: [], result: { serial, already, crl: undefined, missing: [] } };
    if (issuer === 'root' && !ca.root) {
      throw new PortcullisError(ErrorCodes.CA_DIR_INVALID, `serial ${serial} was issued by the root CA, whose key is not in ${ca.dir}; put ${caPaths(ca.dir).rootKey} back to revoke it`, { path: ca.dir });
    }
    ca.state.revoked.push({ serial, issuer, revokedAt: new Date().toISOString(), reason });
    // keep the published CRL in step, so revoking is one command
    const built = await buildCrlFiles(ca, { days: crlDays });
    return { files: built.files, result: { serial, already: undefined, crl: built.path, missing: built.missing } };
  });
  if (outcome.already) {
    process.stdout.write(`serial ${outcome.serial} was already revoked on ${outcome.already.revokedAt} (${outcome.already.reason}); nothing changed\n`);
    return;
  }
  process.stdout.write(`Revoked serial ${outcome.serial} (${reason}).\n`);
  process.stdout.write(`  CRL updated: ${show(outcome.crl!)} (next update in ${crlDays} days: publish it and reload, e.g. listeners[].tls.crl)\n`);
  for (const m of outcome.missing) process.stdout.write(`  note: the ${m} CA key is not in the folder, so its CRL was not re-signed\n`);
}

export function register(program: Command): void {
  const cert = program.command('cert').description('issue, inspect, verify and revoke certificates');

  cert
    .command('issue')
    .description('issue a certificate and key from a CA folder (or sign a CSR)')
    .requiredOption('--ca <dir>', 'CA folder made by portcullis ca init')
    .addOption(new Option('--type <type>', 'client, server or both (sets the extended key usage)').makeOptionMandatory())
    .option('--cn <name>', 'common name')
    .option('--dns <name>', 'DNS SAN (repeatable, or comma-separated)', collect)
    .option('--ip <addr>', 'IP SAN (repeatable)', collect)
    .option('--uri <uri>', 'URI SAN (repeatable)', collect)
    .option('--email <addr>', 'e-mail SAN (repeatable)', collect)
    .option('--spiffe-id <id>', 'SPIFFE ID, added as a URI SAN (spiffe://trust-domain/path)')
    .option('--ou <unit>', 'organizational unit (repeatable)', collect)
    .option('--o <org>', 'organization (repeatable)', collect)
    .option('--days <n>', 'validity in days', '90')
    .addOption(new Option('--key-type <type>', `key type: ${KEY_TYPES.join(', ')}`).default('ec-p256'))
    .option('--out <prefix>', 'write PREFIX.crt, PREFIX.key and PREFIX.chain.crt (default: the CN)')
    .option('--csr <file>', 'sign this PKCS#10 request instead of generating a key')
    .option('--force', 'overwrite existing output files', false)
    .action(issueAction);

  cert
    .command('inspect')
    .description('summarize a certificate or every certificate of a chain')
    .argument('<file>', 'PEM (one or more certificates) or DER file')
    .option('--json', 'machine-readable output', false)
    .action(inspectAction);

  cert
    .command('verify')
    .description("say whether client certificates would be accepted, and why not, with the listener's own verification (exit 0 all accepted, 1 any refused)")
    .argument('<cert...>', 'certificate file(s) (PEM; each may hold its chain after the leaf)')
    .option('--ca <file>', 'trusted CA file, or a CA folder (repeatable)', collect)
    .option('--crl <file>', 'CRL file, PEM or DER (repeatable)', collect)
    .option('--crl-mode <mode>', 'chain (every CA of the chain needs a CRL) or leaf, as tls.crl_mode (default chain)')
    .option('--chain <file>', 'intermediates the peer presents along with the certificate')
    .option('--verify-depth <n>', 'maximum intermediates between leaf and trusted CA (default 3)')
    .option('--strict-rfc5280', 'also apply cert_policy.strict_rfc5280 (AKI/SKI, critical CA extensions)')
    .option('-c, --config <file>', "take the trust (client_ca, crl, crl_mode, verify_depth, pins, cert_policy, ocsp) from a listener in this config")
    .option('--listener <name>', 'with -c: the listener (default: the first TLS listener)')
    .option('--server-name <name>', 'with -c: the SNI name whose certificate entry decides the trust')
    .option('--server', 'check as a server certificate instead of a client certificate (explanation only)', false)
    .option('--json', 'machine-readable output', false)
    .action(verifyAction);

  cert
    .command('revoke')
    .description('revoke a certificate issued by a CA folder and re-sign its CRL')
    .argument('<cert-or-serial>', 'certificate file or serial number (hex)')
    .requiredOption('--ca <dir>', 'CA folder made by portcullis ca init')
    .addOption(new Option('--reason <reason>', 'revocation reason').choices([...REVOCATION_REASONS]).default('unspecified'))
    .option('--crl-days <n>', 'days until the re-signed CRL\'s next update', '30')
    .action(revokeAction);
}
