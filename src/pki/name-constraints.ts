// RFC 5280 §4.2.1.10 name constraints, enforced by portcullis for every CA of a client
// chain (trust anchor included), on DNS, e-mail, URI (so on SPIFFE trust domains), IP and
// directory names. OpenSSL enforces most of this too; doing it here as well makes the
// verdict the same on every OpenSSL a Node.js runtime bundles, covers what OpenSSL 3.0
// leaves out (malformed leaf names under a constraint, constraints in an end-entity
// certificate, empty constraints), and lets `cert verify` explain a refusal by rule.
//
// Semantics (as Go's crypto/x509 and rustls-webpki apply them):
// - a permitted list for a name form means every name of that form must match one entry;
//   an excluded entry that matches refuses, whatever the permitted list says;
// - DNS "example.com" matches example.com and any name below it, ".example.com" only
//   names below it, "" everything; case-insensitive;
// - e-mail "user@host" one mailbox, "host" every mailbox at host, ".host" every mailbox
//   below host; the local part is case-sensitive, the domain is not;
// - URI constraints apply to the URI's host: "prod.example.org" only that host (so
//   spiffe://prod.example.org/...), ".example.org" any host below it;
// - IP: address and mask of the same family;
// - directoryName: the constraint's RDNs are a prefix of the name's (DER compared);
// - once any constraint applies to a certificate, every name of the constrained forms it
//   carries must parse: a malformed name cannot be proven inside a subtree.
import { children, content, readTlv, whole, type Tlv } from './der.js';

export type NameForm = 'dns' | 'email' | 'uri' | 'ip' | 'dirname';

export interface GeneralName {
  form: NameForm | 'other';
  /** string forms as written; IP as bytes; dirname as Name DER */
  text?: string;
  bytes?: Buffer;
}

export interface Subtree {
  name: GeneralName;
  /** RFC 5280: minimum MUST be 0 and maximum absent */
  minMaxProblem: boolean;
}

export interface NameConstraints {
  permitted: Subtree[] | undefined;
  excluded: Subtree[] | undefined;
}

const FORMS: Record<number, NameForm> = { 0x81: 'email', 0x82: 'dns', 0x86: 'uri', 0x87: 'ip', 0xa4: 'dirname' };

function generalName(der: Uint8Array, t: Tlv): GeneralName {
  const form = FORMS[t.tag];
  if (!form) return { form: 'other' };
  if (form === 'ip') return { form, bytes: Buffer.from(content(der, t)) };
  // [4] EXPLICIT Name
  if (form === 'dirname') return { form, bytes: Buffer.from(whole(der, children(der, t)[0]!)) };
  return { form, text: content(der, t).toString('latin1') };
}

/** GeneralNames (a SAN extension's value). */
export function readGeneralNames(value: Buffer): GeneralName[] {
  const seq = readTlv(value, 0);
  return children(value, seq).map((t) => generalName(value, t));
}

/** NameConstraints (the extension's value). Throws on malformed DER. */
export function readNameConstraints(value: Buffer): NameConstraints {
  const seq = readTlv(value, 0);
  const out: NameConstraints = { permitted: undefined, excluded: undefined };
  for (const t of children(value, seq)) {
    const subtrees = children(value, t).map((st): Subtree => {
      const parts = children(value, st);
      const extra = parts.slice(1);
      const minMaxProblem = extra.some((p) => p.tag === 0x81 || (p.tag === 0x80 && content(value, p).some((b) => b !== 0)));
      return { name: generalName(value, parts[0]!), minMaxProblem };
    });
    if (t.tag === 0xa0) out.permitted = subtrees;
    else if (t.tag === 0xa1) out.excluded = subtrees;
  }
  return out;
}

// --- parsing the names a certificate carries --------------------------------------------------

/** Labels of a DNS name, or undefined when it is not one (a leftmost "*" label is allowed). */
export function dnsLabels(name: string, allowWildcard = true): string[] | undefined {
  if (name.length === 0 || name.length > 253) return undefined;
  const labels = name.toLowerCase().split('.');
  for (let i = 0; i < labels.length; i++) {
    const l = labels[i]!;
    if (l === '*' && i === 0 && allowWildcard && labels.length > 1) continue;
    if (l.length === 0 || l.length > 63 || !/^[a-z0-9_-]+$/.test(l)) return undefined;
  }
  return labels;
}

/** A constraint's DNS form: "" (everything), "example.com" or ".example.com". */
function dnsConstraint(c: string): { dot: boolean; labels: string[] } | undefined {
  if (c === '') return { dot: false, labels: [] };
  const dot = c.startsWith('.');
  const labels = dnsLabels(dot ? c.slice(1) : c, false);
  return labels ? { dot, labels } : undefined;
}

function dnsMatches(labels: string[], c: { dot: boolean; labels: string[] }): boolean {
  if (c.labels.length === 0) return true;
  if (labels.length < c.labels.length + (c.dot ? 1 : 0)) return false;
  const tail = labels.slice(labels.length - c.labels.length);
  return tail.every((l, i) => l === c.labels[i]);
}

export function parseMailbox(s: string): { local: string; domain: string[] } | undefined {
  const at = s.lastIndexOf('@');
  if (at <= 0 || at === s.length - 1) return undefined;
  const local = s.slice(0, at);
  // RFC 5321 local part: dot-atom or quoted string; no spaces or controls unquoted
  if (!/^("([^"\\\x00-\x1f]|\\.)*"|[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)$/.test(local)) return undefined;
  const domain = dnsLabels(s.slice(at + 1), false);
  return domain ? { local, domain } : undefined;
}

function emailMatches(m: { local: string; domain: string[] }, c: string): boolean | undefined {
  if (c.includes('@')) {
    const cm = parseMailbox(c);
    if (!cm) return undefined;
    return cm.local === m.local && cm.domain.join('.') === m.domain.join('.');
  }
  const dc = dnsConstraint(c);
  if (!dc || dc.labels.length === 0) return dc ? true : undefined;
  if (dc.dot) return dnsMatches(m.domain, dc);
  return m.domain.join('.') === dc.labels.join('.');
}

/** The host of a URI that name constraints judge, or undefined when it has none that is a DNS name. */
export function uriHost(uri: string): string[] | undefined {
  const m = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/(?:[^@/?#]*@)?([^:/?#]*)(?::\d*)?(?:[/?#]|$)/.exec(uri);
  if (!m || !m[1]) return undefined;
  if (m[1].startsWith('[')) return undefined;
  return dnsLabels(m[1], false);
}

function uriMatches(host: string[], c: string): boolean | undefined {
  const dc = dnsConstraint(c);
  if (!dc) return undefined;
  if (dc.labels.length === 0) return true;
  if (dc.dot) return dnsMatches(host, dc);
  return host.join('.') === dc.labels.join('.');
}

function ipMatches(ip: Buffer, c: Buffer): boolean | undefined {
  if (c.length !== 8 && c.length !== 32) return undefined;
  const n = c.length / 2;
  if (ip.length !== n) return false;
  for (let i = 0; i < n; i++) if ((ip[i]! & c[n + i]!) !== (c[i]! & c[n + i]!)) return false;
  return true;
}

/** A mask must be contiguous ones then zeros (webpki refuses others; Go and OpenSSL do not look). */
function maskProblem(c: Buffer): boolean {
  if (c.length !== 8 && c.length !== 32) return true;
  let zero = false;
  for (const b of c.subarray(c.length / 2)) {
    for (let bit = 7; bit >= 0; bit--) {
      const one = (b >> bit) & 1;
      if (one && zero) return true;
      if (!one) zero = true;
    }
  }
  return false;
}

/** Name DER: constraint RDNs are the leading RDNs of the name. */
function dirnameMatches(name: Buffer, c: Buffer): boolean | undefined {
  try {
    const a = children(name, readTlv(name, 0)).map((t) => whole(name, t).toString('hex'));
    const b = children(c, readTlv(c, 0)).map((t) => whole(c, t).toString('hex'));
    return b.length <= a.length && b.every((r, i) => r === a[i]);
  } catch {
    return undefined;
  }
}

// --- checking --------------------------------------------------------------------------------

export interface NamesOf {
  /** SAN entries */
  sans: GeneralName[];
  /** subject Name DER */
  subject: Buffer;
  /** subject emailAddress attributes (RFC 5280: checked against rfc822Name constraints) */
  subjectEmails: string[];
  /**
   * subject CNs that look like host names, checked against DNS constraints when the
   * certificate has no DNS SAN (what OpenSSL does for the leaf)
   */
  cnHosts: string[];
}

/** Problems with the constraints themselves (the CA is misconfigured), before any name is compared. */
export function constraintProblems(nc: NameConstraints): string[] {
  const out: string[] = [];
  if (!nc.permitted?.length && !nc.excluded?.length) out.push('its name constraints are empty (RFC 5280 §4.2.1.10 forbids an empty extension and empty subtrees)');
  else if ((nc.permitted && nc.permitted.length === 0) || (nc.excluded && nc.excluded.length === 0)) out.push('its name constraints hold an empty list of subtrees');
  for (const st of [...(nc.permitted ?? []), ...(nc.excluded ?? [])]) {
    if (st.minMaxProblem) out.push('a name constraint sets minimum or maximum (RFC 5280: minimum must be 0, maximum absent)');
    const n = st.name;
    if (n.form === 'dns' && !dnsConstraint(n.text!)) out.push(`the DNS constraint "${n.text}" is not a DNS name`);
    if (n.form === 'uri' && !dnsConstraint(n.text!)) out.push(`the URI constraint "${n.text}" is not a host or .domain`);
    if (n.form === 'email' && (n.text!.includes('@') ? !parseMailbox(n.text!) : !dnsConstraint(n.text!))) out.push(`the e-mail constraint "${n.text}" is not a mailbox, host or .domain`);
    if (n.form === 'ip' && maskProblem(n.bytes!)) out.push(`an IP constraint is not an address and a contiguous mask of the same family (${n.bytes!.length} bytes)`);
  }
  return [...new Set(out)];
}

function show(n: GeneralName): string {
  if (n.form === 'ip') return `IP ${formatIp(n.bytes!)}`;
  if (n.form === 'dirname') return 'a directory name';
  return `${n.form === 'dns' ? 'DNS' : n.form === 'uri' ? 'URI' : 'e-mail'} "${n.text}"`;
}

export function formatIp(b: Buffer): string {
  if (b.length === 4) return [...b].join('.');
  if (b.length === 16) return (b.toString('hex').match(/.{4}/g) ?? []).map((h) => h.replace(/^0{1,3}/, '')).join(':');
  if (b.length === 8 || b.length === 32) return `${formatIp(b.subarray(0, b.length / 2))}/${formatIp(b.subarray(b.length / 2))}`;
  return `(${b.length} bytes)`;
}

/**
 * Why `names` (of one certificate below the constraining CA) break `nc`, one sentence
 * each; empty when they fit. `constraint owner` wording is left to the caller.
 */
export function nameViolations(names: NamesOf, nc: NameConstraints): string[] {
  const out: string[] = [];
  const all = [...(nc.permitted ?? []), ...(nc.excluded ?? [])];
  const constrained = new Set(all.map((s) => s.name.form));
  const candidates: GeneralName[] = [...names.sans];
  for (const e of names.subjectEmails) candidates.push({ form: 'email', text: e });
  if (!names.sans.some((s) => s.form === 'dns')) for (const cn of names.cnHosts) candidates.push({ form: 'dns', text: cn });
  if (constrained.has('dirname')) {
    try {
      if (children(names.subject, readTlv(names.subject, 0)).length > 0) candidates.push({ form: 'dirname', bytes: names.subject });
    } catch {
      out.push('its subject name cannot be parsed');
    }
  }
  for (const n of candidates) {
    if (n.form === 'other') continue;
    // parse the certificate's name once; a malformed one fails whenever any constraint applies
    let parsed: { dns?: string[]; mail?: { local: string; domain: string[] }; host?: string[] } = {};
    if (n.form === 'dns') parsed = { dns: dnsLabels(n.text!) };
    if (n.form === 'email') parsed = { mail: parseMailbox(n.text!) };
    if (n.form === 'uri') parsed = { host: uriHost(n.text!) };
    const malformed =
      (n.form === 'dns' && !parsed.dns) ||
      (n.form === 'email' && !parsed.mail) ||
      (n.form === 'uri' && !parsed.host) ||
      (n.form === 'ip' && n.bytes!.length !== 4 && n.bytes!.length !== 16);
    if (malformed) {
      if (constrained.size > 0) out.push(`${show(n)} is not a well-formed ${n.form === 'uri' ? 'URI with a DNS host' : n.form === 'ip' ? 'IPv4 or IPv6 address' : n.form === 'dns' ? 'DNS name' : 'e-mail address'}, so it cannot be checked against the name constraints`);
      continue;
    }
    const match = (c: GeneralName): boolean | undefined => {
      if (c.form !== n.form) return false;
      if (n.form === 'dns') {
        const dc = dnsConstraint(c.text!);
        return dc ? dnsMatches(parsed.dns!, dc) : undefined;
      }
      if (n.form === 'email') return emailMatches(parsed.mail!, c.text!);
      if (n.form === 'uri') return uriMatches(parsed.host!, c.text!);
      if (n.form === 'ip') return ipMatches(n.bytes!, c.bytes!);
      return dirnameMatches(n.bytes!, c.bytes!);
    };
    const excluded = (nc.excluded ?? []).find((c) => match(c.name) === true);
    if (excluded) {
      out.push(`${show(n)} is inside the excluded subtree ${show(excluded.name)}`);
      continue;
    }
    const permitted = (nc.permitted ?? []).filter((c) => c.name.form === n.form);
    if (permitted.length > 0 && !permitted.some((c) => match(c.name) === true)) {
      out.push(`${show(n)} is outside the permitted ${permitted.map((c) => show(c.name)).join(', ')}`);
    }
  }
  return out;
}
