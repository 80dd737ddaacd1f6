// What `portcullis check` warns about in a config that is valid and provisions, but will
// hurt in production: a served chain without its intermediate, CRLs that lock out a
// trusted CA or that RFC 5280 says not to use, certificates and CRLs about to lapse, private keys others can read, and
// `client_auth: optional` with nothing that requires a certificate, and keys that are
// accepted but not implemented yet. Warnings leave the
// exit code at 0; `check --strict` makes them errors. Reads the (already validated)
// files itself; runs after provisioning succeeded, so every file here parses.
import tls from 'node:tls';
import { statSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { WarningCodes, type WarningCode } from '../errors.js';
import { trustFor, type ListenerConfig, type LoadedConfig, type TrustConfig } from '../config/schema.js';
import { readCertFile, readConfigFile, oneLine } from '../tls/pem.js';
import { certNames } from '../tls/revocation.js';
import { crlSignedBy, crlUnusable, parseCrls, type CrlInfo } from '../pki/crl.js';

export interface ConfigWarning {
  code: WarningCode;
  /** config path the warning is about, e.g. listeners[0].tls.cert */
  path: string;
  /** "<path>: <problem>; <fix>", one line */
  message: string;
}

/** Certificates closer to their notAfter than this are reported (Let's Encrypt renews at 30 days too). */
export const EXPIRY_WARNING_DAYS = 30;
const DAY_MS = 86_400_000;

const warn = (code: WarningCode, path: string, text: string): ConfigWarning => ({ code, path, message: `${path}: ${text}` });
const day = (d: Date) => d.toISOString().slice(0, 10);

function selfSigned(c: X509Certificate): boolean {
  return c.checkIssued(c) && c.verify(c.publicKey);
}

/** `issuer` issued `c`: names (and key ids) agree and its key verifies the signature. */
function issuedBy(c: X509Certificate, issuer: X509Certificate): boolean {
  return c.checkIssued(issuer) && c.verify(issuer.publicKey);
}

/** Parses each file once, however many keys point at it. */
class Files {
  private certs = new Map<string, X509Certificate[]>();
  private crls = new Map<string, CrlInfo[]>();
  certsOf(file: string, field: string): X509Certificate[] {
    let c = this.certs.get(file);
    if (!c) this.certs.set(file, (c = readCertFile(file, field).certs));
    return c;
  }
  crlsOf(file: string, field: string): CrlInfo[] {
    let c = this.crls.get(file);
    if (!c) this.crls.set(file, (c = parseCrls(readConfigFile(file, field), file)));
    return c;
  }
}

interface Served {
  path: string;
  file: string;
  key: string | undefined;
  keyPath: string;
}

/** Every certificate portcullis presents (listener and SNI certificates, upstream client certificates). */
function servedCertificates(c: LoadedConfig): Served[] {
  const out: Served[] = [];
  c.listeners.forEach((l, i) => {
    if (!l.tls) return;
    const at = `listeners[${i}].tls`;
    out.push({ path: `${at}.cert`, file: l.tls.cert, key: l.tls.key, keyPath: `${at}.key` });
    l.tls.certificates.forEach((e, j) => out.push({ path: `${at}.certificates[${j}].cert`, file: e.cert, key: e.key, keyPath: `${at}.certificates[${j}].key` }));
  });
  for (const [name, u] of Object.entries(c.upstreams)) {
    if (u.tls?.cert) out.push({ path: `upstreams.${name}.tls.cert`, file: u.tls.cert, key: u.tls.key, keyPath: `upstreams.${name}.tls.key` });
  }
  return out;
}

interface TrustAt {
  /** listeners[0].tls or listeners[0].tls.certificates[1] */
  path: string;
  trust: TrustConfig;
}

/**
 * The client-certificate trust of each listener and of each SNI entry that sets its own
 * (an entry that inherits everything would only repeat the listener's warnings).
 */
function trusts(l: ListenerConfig, i: number): TrustAt[] {
  if (!l.tls) return [];
  const tlsCfg = l.tls;
  const out: TrustAt[] = [{ path: `listeners[${i}].tls`, trust: trustFor(tlsCfg) }];
  tlsCfg.certificates.forEach((e, j) => {
    if (e.client_auth !== undefined || e.client_ca !== undefined || e.crl !== undefined || e.crl_mode !== undefined) {
      out.push({ path: `listeners[${i}].tls.certificates[${j}]`, trust: trustFor(tlsCfg, e) });
    }
  });
  return out;
}

function caFilesOf(c: LoadedConfig): { path: string; file: string }[] {
  const out: { path: string; file: string }[] = [];
  c.listeners.forEach((l, i) => {
    for (const t of trusts(l, i)) {
      if (t.trust.client_auth === 'none') continue;
      t.trust.client_ca.forEach((file, k) => out.push({ path: `${t.path}.client_ca${t.trust.client_ca.length > 1 ? `[${k}]` : ''}`, file }));
    }
  });
  for (const [name, u] of Object.entries(c.upstreams)) {
    u.tls?.ca.forEach((file, k) => out.push({ path: `upstreams.${name}.tls.ca${u.tls!.ca.length > 1 ? `[${k}]` : ''}`, file }));
  }
  return out;
}

// ---------------------------------------------------------------------------------------

function chainWarning(s: Served, certs: X509Certificate[], known: X509Certificate[]): ConfigWarning | undefined {
  const leaf = certs[0]!;
  // follow the file's own chain from the leaf; a self-signed end needs nothing more
  let top = leaf;
  const used = new Set([leaf]);
  for (;;) {
    if (selfSigned(top)) return undefined;
    const next = certs.find((c) => !used.has(c) && issuedBy(top, c));
    if (!next) break;
    used.add(next);
    top = next;
  }
  const issuers = known.filter((c) => issuedBy(top, c));
  // a root CA is not sent (clients have it); an intermediate must be
  if (issuers.some(selfSigned)) return undefined;
  // the file already carries intermediates, and the CA above the last one is unknown here:
  // almost always the root the clients hold, so only a known intermediate is worth a word
  if (top !== leaf && issuers.length === 0) return undefined;
  const issuer = oneLine(top.issuer);
  const after = top === leaf ? 'the certificate' : `"${oneLine(top.subject)}"`;
  const what = `"${oneLine(leaf.subject)}" in ${s.file}`;
  if (issuers.length > 0) {
    return warn(
      WarningCodes.CHAIN_INCOMPLETE,
      s.path,
      `${what} was issued by the intermediate CA "${issuer}", which is not in the file, so peers that do not already hold it fail with "unable to get local issuer certificate"; append the certificate of "${issuer}" after ${after} (leaf first, then intermediates)`,
    );
  }
  return warn(
    WarningCodes.CHAIN_INCOMPLETE,
    s.path,
    `${what} was issued by "${issuer}", which is neither in the file nor a root CA this config or the system trusts, so peers that do not hold it fail with "unable to get local issuer certificate"; append the certificate of "${issuer}" (and any CA above it that is not a root) after ${after}`,
  );
}

/**
 * A CRL the listener will not let decide (issue 16: a critical cRLNumber or other critical
 * extension, an issuer without cRLSign, no cRLNumber in crl_mode chain) refuses every client
 * it should cover; in crl_mode leaf a CRL without cRLNumber is used, but still reported.
 * The same crlUnusable() the proxy runs; the issuer is the client_ca certificate that signed
 * it (an intermediate sent by clients is not known here, the handshake checks its cRLSign).
 */
function unusableCrlWarning(t: TrustAt, crl: CrlInfo, files: Files, reported: Set<string>): ConfigWarning[] {
  const { trust } = t;
  const key = `unusable|${trust.crl_mode}|${crl.source}|${crl.der.length}|${crl.thisUpdate.getTime()}`;
  if (reported.has(key)) return [];
  const signer = trust.client_ca.flatMap((f) => files.certsOf(f, `${t.path}.client_ca`)).find((ca) => crl.issuerDer.equals(certNames(ca.raw).subject) && crlSignedBy(crl, ca));
  const refusedBy = crlUnusable(crl, signer, trust.crl_mode);
  const leafOnly = !refusedBy && trust.crl_mode === 'leaf' ? crlUnusable(crl, signer, 'chain') : undefined;
  if (!refusedBy && !leafOnly) return [];
  reported.add(key);
  const text = refusedBy
    ? `the CRL of "${crl.issuer}" in ${crl.source} is not used because ${refusedBy}, so every client certificate it should cover is refused (revocation_unknown); publish a CRL that conforms to RFC 5280 (portcullis crl --ca DIR writes one) and reload`
    : `the CRL of "${crl.issuer}" in ${crl.source} is used only because crl_mode is leaf, although ${leafOnly}; publish a CRL with a cRLNumber (portcullis crl --ca DIR writes one) before switching to crl_mode: chain`;
  return [warn(WarningCodes.CRL_UNUSABLE, `${t.path}.crl`, text)];
}

function crlWarnings(t: TrustAt, files: Files, now: Date, reported: Set<string>): ConfigWarning[] {
  const { trust } = t;
  if (trust.client_auth === 'none' || trust.crl.length === 0) return [];
  const out: ConfigWarning[] = [];
  const crls = trust.crl.flatMap((file, k) => files.crlsOf(file, `${t.path}.crl${trust.crl.length > 1 ? `[${k}]` : ''}`));
  for (const crl of crls) {
    const key = `${crl.source}|${crl.der.length}|${crl.thisUpdate.getTime()}`;
    out.push(...unusableCrlWarning(t, crl, files, reported));
    if (!crl.nextUpdate || crl.nextUpdate.getTime() >= now.getTime() || reported.has(key)) continue;
    reported.add(key);
    out.push(
      warn(WarningCodes.CRL_EXPIRED, `${t.path}.crl`, `the CRL of "${crl.issuer}" in ${crl.source} was due for renewal on ${day(crl.nextUpdate)}; it still applies (what it lists stays refused) but misses every revocation since, so publish a fresh CRL (a changed file reloads by itself)`),
    );
  }
  for (const caFile of trust.client_ca) {
    for (const ca of files.certsOf(caFile, `${t.path}.client_ca`)) {
      const subject = certNames(ca.raw).subject;
      if (crls.some((crl) => crl.issuerDer.equals(subject) && crlSignedBy(crl, ca))) continue;
      const name = oneLine(ca.subject);
      if (trust.crl_mode === 'chain') {
        out.push(
          warn(
            WarningCodes.CRL_LOCKOUT,
            `${t.path}.crl`,
            `no CRL from the trusted CA "${name}" (${caFile}), and with crl_mode: chain every certificate it issued must be covered by one, so all of its clients are refused (revocation_unknown); add its CRL to crl, or set crl_mode: leaf if it only issues intermediates that publish their own CRLs`,
          ),
        );
      } else if (!selfSigned(ca)) {
        // leaf mode skips roots (a root that publishes no CRL is what leaf mode is for),
        // but an intermediate CA issues client certificates, and each needs its CRL
        out.push(
          warn(
            WarningCodes.CRL_LOCKOUT,
            `${t.path}.crl`,
            `no CRL from the trusted intermediate CA "${name}" (${caFile}), so every client certificate it issued is refused (revocation_unknown) even with crl_mode: leaf; add its CRL to crl`,
          ),
        );
      }
    }
  }
  return out;
}

function expiryWarnings(path: string, file: string, certs: X509Certificate[], now: Date): ConfigWarning[] {
  const out: ConfigWarning[] = [];
  for (const c of certs) {
    const name = `"${oneLine(c.subject)}" in ${file}`;
    const notAfter = new Date(c.validTo);
    const notBefore = new Date(c.validFrom);
    const left = (notAfter.getTime() - now.getTime()) / DAY_MS;
    if (left < 0) {
      out.push(warn(WarningCodes.CERT_EXPIRING, path, `certificate ${name} expired on ${day(notAfter)}, so handshakes that need it fail; renew it and replace the file (a changed file reloads by itself)`));
    } else if (left < EXPIRY_WARNING_DAYS) {
      const days = Math.floor(left);
      out.push(warn(WarningCodes.CERT_EXPIRING, path, `certificate ${name} expires in ${days} day${days === 1 ? '' : 's'} (${day(notAfter)}); renew it before then and replace the file (a changed file reloads by itself)`));
    } else if (notBefore.getTime() > now.getTime()) {
      out.push(warn(WarningCodes.CERT_EXPIRING, path, `certificate ${name} is not valid until ${notBefore.toISOString()}, so handshakes that need it fail until then; check this machine's clock or the issuing CA's`));
    }
  }
  return out;
}

function keyWarning(path: string, file: string): ConfigWarning | undefined {
  let mode: number;
  try {
    mode = statSync(file).mode; // follows symlinks, as reading the key does (Kubernetes Secrets are symlinks)
  } catch {
    return undefined;
  }
  // readable by its group is how Kubernetes Secret volumes (0440 + fsGroup) and the systemd
  // set-up (0640 root:portcullis) give a non-root proxy its key; every user is the problem
  if (!(mode & 0o004)) return undefined;
  const who = 'every user';
  const octal = (mode & 0o777).toString(8).padStart(4, '0');
  return warn(
    WarningCodes.KEY_PERMISSIONS,
    path,
    `private key ${file} is readable by ${who} (mode ${octal}); make it readable by the proxy's user or group only: chmod 640 ${file} (in Kubernetes, defaultMode: 0440 with the pod's fsGroup)`,
  );
}

function optionalWarnings(l: ListenerConfig, i: number): ConfigWarning[] {
  if (!l.tls) return [];
  const out: ConfigWarning[] = [];
  const entries = [
    { path: `listeners[${i}].tls.client_auth`, auth: l.tls.client_auth, allow: l.allow, own: true },
    ...l.tls.certificates.map((e, j) => ({
      path: `listeners[${i}].tls.certificates[${j}].client_auth`,
      auth: e.client_auth ?? l.tls!.client_auth,
      allow: e.allow && e.allow.length > 0 ? e.allow : l.allow,
      own: e.client_auth !== undefined || (e.allow?.length ?? 0) > 0,
    })),
  ];
  for (const e of entries) {
    if (e.auth !== 'optional' || !e.own) continue;
    if (l.protocol === 'tcp') {
      if (e.allow.length > 0) continue;
      out.push(warn(WarningCodes.CLIENT_AUTH_UNENFORCED, e.path, 'optional, and the listener has no allow rules, so connections without a verified client certificate are forwarded to the upstream; add allow rules (they need a verified identity) or set client_auth: require'));
      continue;
    }
    // a route requires a certificate by client_auth: require, or by allow rules, which only
    // a verified identity can match
    if (l.routes.some((r) => r.client_auth === 'require' || r.allow.length > 0 || e.allow.length > 0)) continue;
    out.push(
      warn(
        WarningCodes.CLIENT_AUTH_UNENFORCED,
        e.path,
        'optional, but no route requires a certificate (client_auth: require) or has allow rules, so clients without a certificate, or with one that failed verification, reach every route (marked X-Client-Verify: NONE or FAILED:<reason>); set client_auth: require on the routes that need one, add allow rules, or use client_auth: require here',
      ),
    );
  }
  return out;
}

/**
 * Keys the schema accepts but the proxy does not act on yet (CONVENTIONS: "if it is not
 * built, check says so"); remove each line here when its feature lands.
 */
/** Keys accepted but not built yet. None today: health_check and balance are built (docs/upstreams.md). */
function notImplementedWarnings(_c: LoadedConfig): ConfigWarning[] {
  return [];
}

/** Every warning for a loaded, provisionable config; `now` for tests. */
export function configWarnings(c: LoadedConfig, now: Date = new Date()): ConfigWarning[] {
  const files = new Files();
  const out: ConfigWarning[] = [];
  const caFiles = caFilesOf(c);
  const served = servedCertificates(c);
  // roots and intermediates this config knows of, to tell a missing intermediate from a root
  const known = [
    ...caFiles.flatMap((f) => files.certsOf(f.file, f.path)),
    ...served.flatMap((s) => files.certsOf(s.file, s.path)),
    ...tls.rootCertificates.map((p) => new X509Certificate(p)),
  ];
  const seenFiles = new Set<string>();
  for (const s of served) {
    const certs = files.certsOf(s.file, s.path);
    const chain = chainWarning(s, certs, known);
    if (chain) out.push(chain);
    if (!seenFiles.has(s.file)) out.push(...expiryWarnings(s.path, s.file, certs, now));
    seenFiles.add(s.file);
    if (s.key) {
      const k = keyWarning(s.keyPath, s.key);
      if (k && !seenFiles.has(s.key)) out.push(k);
      seenFiles.add(s.key);
    }
  }
  for (const f of caFiles) {
    if (seenFiles.has(f.file)) continue;
    seenFiles.add(f.file);
    out.push(...expiryWarnings(f.path, f.file, files.certsOf(f.file, f.path), now));
  }
  const reportedCrls = new Set<string>();
  c.listeners.forEach((l, i) => {
    for (const t of trusts(l, i)) out.push(...crlWarnings(t, files, now, reportedCrls));
    out.push(...optionalWarnings(l, i));
  });
  out.push(...notImplementedWarnings(c));
  return out;
}
