// Config file -> validated, normalized, frozen LoadedConfig. Parses YAML/JSON, runs the
// schema and the checks that span several fields (all errors reported together, one line
// each: "<path>: <problem>; <fix>"), resolves file paths against the config's folder and,
// on request, checks that every referenced file can be read. Certificates are not parsed
// here: the TLS layer does that when it builds its contexts.
import { isIP } from 'node:net';
import { constants } from 'node:fs';
import { access, readFile, stat } from 'node:fs/promises';
import { dirname, extname, isAbsolute, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { ErrorCodes, PortcullisError, PortcullisErrors, type ErrorCode } from '../errors.js';
import { parseDuration } from './duration.js';
import {
  ConfigSchema,
  DEFAULT_ADMIN_ADDRESS,
  HTTP_SCHEMES,
  TCP_SCHEMES,
  isLoopbackHost,
  splitAddress,
  type Config,
  type LoadedConfig,
} from './schema.js';

export type { LoadedConfig } from './schema.js';

type Segment = string | number;
type Found = { path: Segment[]; message: string };

/** `listeners[0].tls.client_ca`, `upstreams["a.b"].endpoints[1]`; the root is `config`. */
export function formatConfigPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_][\w-]*$/.test(String(seg))) out += out ? `.${String(seg)}` : String(seg);
    else out += `[${JSON.stringify(String(seg))}]`;
  }
  return out || 'config';
}

// ---------------------------------------------------------------------------------------
// Parsing

/** Parses the file's text: `.json` as JSON, anything else as YAML (which also reads JSON). */
export function parseConfigText(text: string, configPath: string): unknown {
  const file = resolve(configPath);
  const parseError = (where: string, problem: string, fix: string) =>
    new PortcullisError(ErrorCodes.CONFIG_PARSE, `${file}${where}: ${problem}; ${fix}`, { path: file });
  let value: unknown;
  if (extname(file).toLowerCase() === '.json') {
    try {
      value = JSON.parse(text);
    } catch (err) {
      // V8 sometimes says "at position N"; turn that into line/column, and drop the echoed source
      const msg = (err as Error).message.replace(/, ".*" is not valid JSON$/s, '').replace(/\s+/g, ' ');
      const pos = /at position (\d+)/.exec(msg);
      let where = '';
      if (pos) {
        const before = text.slice(0, Number(pos[1]));
        where = `: line ${before.split('\n').length}, column ${before.length - before.lastIndexOf('\n')}`;
      } else {
        // JSON is (nearly) YAML flow syntax, so YAML's parser can often point at the spot
        const at = parseDocument(text).errors[0]?.linePos?.[0];
        if (at) where = `: line ${at.line}, column ${at.col}`;
      }
      throw parseError(where, `invalid JSON (${msg})`, 'fix the JSON syntax there');
    }
  } else {
    const doc = parseDocument(text, { prettyErrors: true });
    if (doc.errors.length > 0) {
      throw new PortcullisErrors(
        doc.errors.map((e) => {
          const at = e.linePos?.[0];
          const problem = e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
          return parseError(at ? `: line ${at.line}, column ${at.col}` : '', `YAML syntax error: ${problem}`, 'fix the YAML there');
        }),
      );
    }
    value = doc.toJS();
  }
  if (value === null || value === undefined) {
    throw parseError('', 'the config file is empty', 'start from the minimal example with listeners and upstreams');
  }
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw parseError('', `the config must be a map of keys (listeners, upstreams, ...), not ${describe(value)}`, 'start from the minimal example');
  }
  return value;
}

// ---------------------------------------------------------------------------------------
// Schema issues -> one-line messages

const TYPE_NAMES: Record<string, string> = {
  object: 'a map',
  record: 'a map',
  array: 'a list',
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
};

/** The fix half of "required" / wrong-type messages, by the key they are about. */
const HINTS: Record<string, string> = {
  listeners: 'add at least one listener with name, address, tls and routes',
  address: 'use host:port, e.g. 0.0.0.0:8443',
  cert: 'give the PEM certificate file (leaf first, then intermediates)',
  key: 'give the PEM private key file of the certificate',
  upstream: 'name one of the entries under upstreams',
  endpoints: 'list at least one URL, e.g. http://127.0.0.1:8080',
  server_names: 'list the host names this certificate serves',
  key_types: 'list at least one of rsa, ec, ed25519',
};

/**
 * Keys that are not accepted but that users will write (a key that was replaced, or one
 * in a place where it does not apply): a sentence saying what to do instead, in place of
 * the generic "unknown key". Paths as in key-docs.ts (`[]` = any list item).
 */
const MISPLACED_KEYS: Record<string, string> = {
  'admin.allow_remote':
    'no longer accepted: the admin API is not exposed without authentication any more; for Kubernetes probes set admin.probe_address (plain /healthz and /readyz only, e.g. 0.0.0.0:9902), and for remote admin access set admin.tls (cert, key, client_ca) and admin.allow; see docs/security.md',
  'listeners[].tls.certificates[].reject':
    'not accepted on a certificate entry: how refused clients are answered is set once per listener; move it to the listener\'s tls.reject',
};

/** `listeners[].tls.reject` for ['listeners', 0, 'tls', 'reject']. */
function keyPattern(path: readonly Segment[]): string {
  return path.map((s) => (typeof s === 'number' ? '[]' : `.${s}`)).join('').replace(/^\./, '').replace(/\.\[\]/g, '[]');
}

function describe(v: unknown): string {
  if (v === null) return 'an empty value';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a map';
  if (typeof v === 'string') return `"${v}"`;
  return String(v);
}

function fromIssue(iss: z.core.$ZodIssue): Found[] {
  const path = iss.path as Segment[];
  const last = [...path].reverse().find((s): s is string => typeof s === 'string');
  const hint = (fallback: string) => (path.length === 0 ? 'start from the minimal example' : HINTS[last ?? ''] ?? fallback);
  const input = (iss as { input?: unknown }).input;
  switch (iss.code) {
    case 'unrecognized_keys': {
      // schema.ts's strict() wrote one line per key, in the same order
      const lines = iss.message.split('\n');
      return iss.keys.map((k, i) => ({ path: [...path, k], message: MISPLACED_KEYS[keyPattern([...path, k])] ?? lines[i] ?? 'unknown key; remove it' }));
    }
    case 'custom':
      return [{ path, message: iss.message }];
    case 'invalid_type': {
      if (input === undefined) return [{ path, message: `required; ${hint('add it')}` }];
      const expected = TYPE_NAMES[iss.expected] ?? iss.expected;
      return [{ path, message: `expected ${expected}, got ${describe(input)}; ${hint('fix the value')}` }];
    }
    case 'invalid_value': {
      const values = iss.values.map(String);
      const message =
        values.length === 1
          ? `${describe(input)} is not allowed here; use ${values[0]}`
          : `${describe(input)} is not one of ${values.join(', ')}; use one of them`;
      return [{ path, message }];
    }
    case 'too_small':
      if (iss.origin === 'number') return [{ path, message: `${describe(input)} is too small; use ${String(iss.minimum)} or more` }];
      return [{ path, message: `must not be empty; ${hint('give at least one value')}` }];
    case 'too_big':
      if (iss.origin === 'number') return [{ path, message: `${describe(input)} is too large; use ${String(iss.maximum)} or less` }];
      return [{ path, message: `is too long; give at most ${String(iss.maximum)}` }];
    default:
      return [{ path, message: `${iss.message.replace(/\s+/g, ' ')}; fix the value` }];
  }
}

// ---------------------------------------------------------------------------------------
// Checks across fields. They read the raw input, defensively, so they still run (and are
// reported with the schema errors) when some other part of the file is invalid; a value of
// the wrong type is left to the schema's message.

type Raw = Record<string, unknown>;
const obj = (v: unknown): Raw | undefined => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Raw) : undefined);
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
/** string-or-list as a list; undefined when absent or malformed */
const list = (v: unknown): string[] | undefined =>
  typeof v === 'string' ? [v] : Array.isArray(v) && v.every((x) => typeof x === 'string') ? (v as string[]) : undefined;

type Kind = 'http' | 'tcp' | 'mixed' | undefined;
function upstreamKind(u: Raw | undefined): Kind {
  const schemes = new Set((list(u?.endpoints) ?? []).map((e) => e.slice(0, Math.max(0, e.indexOf(':'))).toLowerCase()));
  const http = [...schemes].some((s) => (HTTP_SCHEMES as readonly string[]).includes(s));
  const tcp = [...schemes].some((s) => (TCP_SCHEMES as readonly string[]).includes(s));
  return http && tcp ? 'mixed' : http ? 'http' : tcp ? 'tcp' : undefined;
}

/** Would binding both fail? Same host, or a wildcard that covers the other IP literal. */
function overlaps(a: string, b: string): boolean {
  if (a.toLowerCase() === b.toLowerCase()) return true;
  const family = (h: string) => (h.includes(':') ? 6 : /^[\d.]+$/.test(h) ? 4 : 0);
  for (const [w, other] of [[a, b], [b, a]] as const) {
    if (w === '::' && family(other) !== 0) return true;
    if (w === '0.0.0.0' && family(other) === 4) return true;
  }
  return false;
}

function crossChecks(root: Raw): Found[] {
  const out: Found[] = [];
  const add = (path: Segment[], message: string) => out.push({ path, message });
  const upstreams = obj(root.upstreams) ?? {};
  const kinds = new Map(Object.entries(upstreams).map(([name, u]) => [name, upstreamKind(obj(u))]));

  // the upstream a listener or route names must exist and speak its protocol
  const checkUpstream = (path: Segment[], name: unknown, want: 'http' | 'tcp') => {
    if (typeof name !== 'string' || name === '') return;
    if (!kinds.has(name)) {
      const known = [...kinds.keys()];
      add(path, `upstream "${name}" is not defined; ${known.length ? `use one of: ${known.join(', ')}` : 'add it under upstreams'}`);
    } else if (kinds.get(name) === (want === 'http' ? 'tcp' : 'http')) {
      add(path, want === 'tcp'
        ? `upstream "${name}" has http endpoints but this is a tcp listener; give it tcp:// or tls:// endpoints`
        : `upstream "${name}" has tcp/tls endpoints but this is an http route; give it http://, https:// or h2c:// endpoints`);
    }
  };

  for (const [name, u] of Object.entries(upstreams)) {
    if (kinds.get(name) === 'mixed') {
      add(['upstreams', name, 'endpoints'], 'mixes http and tcp schemes; an upstream serves either http routes (http, https, h2c) or tcp listeners (tcp, tls), so split it in two');
    }
    const ur = obj(u);
    if (ur?.hash_on !== undefined && ur.balance !== 'hash') {
      add(['upstreams', name, 'hash_on'], `only used with balance: hash (this upstream balances ${str(ur.balance) ?? 'round_robin'}); set balance: hash or remove hash_on`);
    }
    const hc = obj(ur?.health_check);
    if (hc) {
      if (kinds.get(name) === 'tcp') {
        for (const k of ['path', 'expect'] as const) {
          if (hc[k] !== undefined) add(['upstreams', name, 'health_check', k], `tcp and tls endpoints are checked with a connect (and TLS handshake), which has no ${k === 'path' ? 'path' : 'status'}; remove health_check.${k}`);
        }
      }
      const iv = parseDuration(hc.interval ?? '5s');
      const to = parseDuration(hc.timeout ?? '1s');
      if (iv !== undefined && to !== undefined && iv > 0 && to >= iv) {
        add(['upstreams', name, 'health_check', 'timeout'], `${to} ms is not shorter than interval (${iv} ms), so probes would overlap; make timeout shorter than interval`);
      }
    }
    const outlier = obj(ur?.outlier);
    if (outlier) {
      const base = parseDuration(outlier.base_ejection ?? '30s');
      const max = parseDuration(outlier.max_ejection ?? '5m');
      if (base !== undefined && max !== undefined && base > max) {
        add(['upstreams', name, 'outlier', 'max_ejection'], `${max} ms is shorter than base_ejection (${base} ms), so every ejection would be cut to max_ejection; make max_ejection at least base_ejection`);
      }
    }
    const eps = list(ur?.endpoints);
    if (ur?.dns_refresh !== undefined && eps && eps.length > 0) {
      const named = eps.some((e) => {
        try {
          return isIP(new URL(e).hostname.replace(/^\[|\]$/g, '')) === 0;
        } catch {
          return true; // a malformed URL is the schema's to report
        }
      });
      if (!named) add(['upstreams', name, 'dns_refresh'], 'every endpoint is an IP address, so nothing is looked up; remove dns_refresh or give an endpoint by host name');
    }
    const tls = obj(ur?.tls);
    if (tls && (tls.cert === undefined) !== (tls.key === undefined)) {
      const missing = tls.cert === undefined ? 'cert' : 'key';
      add(['upstreams', name, 'tls', missing], `required when tls.${missing === 'cert' ? 'key' : 'cert'} is set; give both the client certificate and its private key`);
    }
  }

  const admin = obj(root.admin) ?? {};
  const adminAddress = str(admin.address) ?? (admin.address === undefined ? DEFAULT_ADMIN_ADDRESS : undefined);
  const bound: { path: Segment[]; address: string; host: string; port: number }[] = [];
  const adminHostPort = adminAddress === undefined ? undefined : splitAddress(adminAddress);
  const adminAllow = arr(admin.allow);
  if (adminHostPort && 'host' in adminHostPort) {
    // the admin API can reload the proxy and shows its state: off loopback only with mTLS
    // and rules naming who may use it (admin.tls.client_ca is required by the schema)
    if (!isLoopbackHost(adminHostPort.host) && (admin.tls === undefined || adminAllow.length === 0)) {
      const missing = admin.tls === undefined ? (adminAllow.length === 0 ? 'admin.tls and admin.allow' : 'admin.tls') : 'admin.allow';
      add(['admin', 'address'], `${adminAddress} is not a loopback address and ${missing} ${missing.includes(' and ') ? 'are' : 'is'} not set, but the admin API can reload the proxy and shows its state; keep it on 127.0.0.1 (for Kubernetes probes set admin.probe_address), or add admin.tls (cert, key, client_ca) and admin.allow rules naming the clients that may use it`);
    }
    bound.push({ path: ['admin', 'address'], address: adminAddress!, ...adminHostPort });
  }
  if (admin.tls === undefined && adminAllow.length > 0) {
    add(['admin', 'allow'], 'only used with admin.tls (the rules match the admin client\'s certificate); add admin.tls with cert, key and client_ca, or remove allow');
  }
  const probeAddress = str(admin.probe_address);
  const probeHostPort = probeAddress === undefined ? undefined : splitAddress(probeAddress);
  if (probeHostPort && 'host' in probeHostPort) {
    const clash = probeHostPort.port === 0 ? undefined : bound.find((b) => b.port === probeHostPort.port && overlaps(b.host, probeHostPort.host));
    if (clash) add(['admin', 'probe_address'], `${probeAddress} overlaps admin.address (${clash.address}); give the probe listener its own port, e.g. 9902`);
    bound.push({ path: ['admin', 'probe_address'], address: probeAddress!, ...probeHostPort });
  }

  const names = new Map<string, number>();
  arr(root.listeners).forEach((lv, i) => {
    const l = obj(lv);
    if (!l) return;
    const at: Segment[] = ['listeners', i];
    const self = formatConfigPath(at);

    const name = str(l.name) ?? `listener-${i}`;
    if (names.has(name)) add([...at, 'name'], `"${name}" is already the name of listeners[${names.get(name)}]; give every listener its own name`);
    else names.set(name, i);

    const address = str(l.address);
    const hp = address === undefined ? undefined : splitAddress(address);
    const host = hp && 'host' in hp ? hp : undefined;
    if (host && address) {
      const clash = host.port === 0 ? undefined : bound.find((b) => b.port === host.port && overlaps(b.host, host.host));
      if (clash) {
        const other = formatConfigPath(clash.path);
        add([...at, 'address'], clash.address === address
          ? `${address} is also used by ${other}; give each listener its own address`
          : `${address} overlaps ${other} (${clash.address}) on port ${host.port}; use another port`);
      }
      bound.push({ path: [...at, 'address'], address, ...host });
    }

    const protocol = l.protocol ?? 'http';
    const routes = Array.isArray(l.routes) ? l.routes : [];
    if (protocol === 'tcp') {
      if (l.upstream === undefined) add([...at, 'upstream'], 'required when protocol is tcp; name the upstream every connection is forwarded to');
      checkUpstream([...at, 'upstream'], l.upstream, 'tcp');
      if (routes.length > 0) add([...at, 'routes'], 'not allowed when protocol is tcp (it forwards whole connections to listener.upstream); remove routes or use protocol: http');
      if (l.merge_slashes !== undefined) add([...at, 'merge_slashes'], 'only for protocol: http (a tcp listener never sees a request path); remove it');
    } else if (protocol === 'http') {
      if (l.upstream !== undefined) add([...at, 'upstream'], `only for protocol: tcp; an http listener forwards through routes, e.g. routes: [{upstream: ${str(l.upstream) ?? 'app'}}]`);
      if (l.proxy_protocol !== undefined && l.proxy_protocol !== 'off' && l.proxy_protocol !== false) {
        add([...at, 'proxy_protocol'], 'only for protocol: tcp; remove it (http listeners send identity headers instead)');
      }
      if (l.routes === undefined || (Array.isArray(l.routes) && routes.length === 0)) {
        add([...at, 'routes'], 'an http listener needs at least one route; add e.g. routes: [{upstream: app}]');
      }
      const routeNames = new Map<string, number>();
      routes.forEach((r, k) => {
        checkUpstream([...at, 'routes', k, 'upstream'], obj(r)?.upstream, 'http');
        // metrics and logs label by route name, so two routes must not share one
        const rName = str(obj(r)?.name) ?? `route-${k}`;
        if (routeNames.has(rName)) add([...at, 'routes', k, 'name'], `"${rName}" is already the name of ${self}.routes[${routeNames.get(rName)}]; give every route of a listener its own name`);
        else routeNames.set(rName, k);
      });
    }

    const tls = obj(l.tls);
    if (l.tls === undefined && host && !isLoopbackHost(host.host) && l.unsafe_plain !== true) {
      add([...at, 'tls'], `required on ${address} because it is not a loopback address; add tls (cert, key, client_ca), listen on 127.0.0.1, or set unsafe_plain: true to accept plain connections from the network`);
    }

    // does any handshake on this listener ask for a client certificate? require one?
    let asks = false;
    let requires = false;
    if (tls) {
      const auth = tls.client_auth ?? 'require';
      const ca = list(tls.client_ca);
      const caMalformed = tls.client_ca !== undefined && ca === undefined;
      if ((auth === 'require' || auth === 'optional') && !caMalformed && (ca ?? []).length === 0) {
        add([...at, 'tls', 'client_ca'], `required when client_auth is ${auth}; give the CA file(s) that sign your clients' certificates`);
      }
      asks = auth !== 'none';
      requires = auth === 'require';
      const seen = new Map<string, number>();
      arr(tls.certificates).forEach((ev, j) => {
        const e = obj(ev);
        if (!e) return;
        const ePath: Segment[] = [...at, 'tls', 'certificates', j];
        const eAuth = e.client_auth ?? auth;
        const eCa = e.client_ca === undefined ? (caMalformed ? undefined : (ca ?? [])) : list(e.client_ca);
        if ((eAuth === 'require' || eAuth === 'optional') && eCa !== undefined && eCa.length === 0) {
          add([...ePath, 'client_ca'], `required when client_auth is ${String(eAuth)}; give the CA file(s) here or in ${self}.tls.client_ca`);
        }
        if (eAuth !== 'none') asks = true;
        if (eAuth === 'require') requires = true;
        for (const n of list(e.server_names) ?? []) {
          const lower = n.trim().toLowerCase();
          const first = seen.get(lower);
          if (first !== undefined) add([...ePath, 'server_names'], `"${n}" is already served by ${self}.tls.certificates[${first}]; list each name once`);
          else seen.set(lower, j);
        }
      });
    }
    if (tls?.reject === 'http') {
      if (protocol === 'tcp') {
        add([...at, 'tls', 'reject'], 'http answers a refused client with an HTTP error, which a tcp listener cannot send; use reject: close (the default) or protocol: http');
      } else if (!requires) {
        add([...at, 'tls', 'reject'], 'http has no effect here because no certificate of this listener has client_auth: require (with optional, routes already answer 401/403); set client_auth: require or remove reject');
      }
    }
    routes.forEach((rv, k) => {
      if (obj(rv)?.client_auth !== 'require' || asks) return;
      add([...at, 'routes', k, 'client_auth'], tls
        ? `require never succeeds because ${self}.tls.client_auth is none, so the handshake never asks for a certificate; set the listener's client_auth to optional (or require)`
        : `require never succeeds on a listener without tls; add tls with client_auth: optional and client_ca`);
    });
  });
  return out;
}

// ---------------------------------------------------------------------------------------
// Validation

export type ValidationResult = { ok: true; config: LoadedConfig } | { ok: false; errors: PortcullisError[] };

const isPrefix = (a: Segment[], b: Segment[]) => a.length <= b.length && a.every((s, i) => s === b[i]);
/** Orders errors as the file does: list items by index, keys in the order the file has them. */
function sortFound(found: Found[], raw: unknown): Found[] {
  const position = (parent: unknown, key: Segment) => {
    if (typeof key === 'number') return key;
    const i = obj(parent) ? Object.keys(obj(parent)!).indexOf(key) : -1;
    return i === -1 ? Number.MAX_SAFE_INTEGER : i; // missing keys after the ones present
  };
  return [...found].sort((a, b) => {
    let node: unknown = raw;
    for (let i = 0; i < Math.min(a.path.length, b.path.length); i++) {
      const x = a.path[i]!;
      const y = b.path[i]!;
      if (x !== y) return position(node, x) - position(node, y);
      node = (node as Record<Segment, unknown> | undefined)?.[x];
    }
    return a.path.length - b.path.length;
  });
}

/**
 * Validates a parsed config object (pure: no file access). Returns every error at once,
 * or the normalized config with paths resolved against the config file's folder, frozen.
 */
export function validateConfig(raw: unknown, configPath: string): ValidationResult {
  const file = resolve(configPath);
  const dir = dirname(file);
  const parsed = ConfigSchema.safeParse(raw, { reportInput: true });
  const fromSchema = parsed.success ? [] : parsed.error.issues.flatMap(fromIssue);
  // a cross-field complaint about a value the schema already rejected would only repeat it
  const fromCross = (obj(raw) ? crossChecks(obj(raw)!) : []).filter((c) => !fromSchema.some((s) => isPrefix(s.path, c.path)));
  // "clientca: unknown key; did you mean client_ca?" already says what "client_ca: required" would
  const suggested = fromSchema.flatMap((f) => {
    const near = /; did you mean (\S+)\?$/.exec(f.message)?.[1];
    return near ? [[...f.path.slice(0, -1), near]] : [];
  });
  const found = sortFound(
    [...fromSchema, ...fromCross].filter((f) => !(f.message.startsWith('required') && suggested.some((p) => isPrefix(p, f.path) && isPrefix(f.path, p)))),
    raw,
  );
  if (found.length > 0 || !parsed.success) {
    return {
      ok: false,
      errors: found.map((f) => {
        const where = formatConfigPath(f.path);
        // values are echoed in messages; a multi-line one must not break "one error per line"
        return new PortcullisError(ErrorCodes.CONFIG_INVALID, `${where}: ${f.message.replace(/\r?\n/g, '\\n')}`, { path: where });
      }),
    };
  }
  const config: LoadedConfig = { ...parsed.data, configPath: file, configDir: dir };
  for (const f of fileFields(config)) f.set(resolve(dir, f.get()));
  if (!['stdout', 'stderr', 'off'].includes(config.log.access)) config.log.access = resolve(dir, config.log.access);
  return { ok: true, config: deepFreeze(config) };
}

// ---------------------------------------------------------------------------------------
// Referenced files

type FileField = { where: string; get: () => string; set: (abs: string) => void };

function fileFields(c: Config): FileField[] {
  const out: FileField[] = [];
  const one = (path: Segment[], o: object, k: string) => {
    const rec = o as Record<string, string | undefined>;
    if (typeof rec[k] === 'string') out.push({ where: formatConfigPath([...path, k]), get: () => rec[k]!, set: (v) => void (rec[k] = v) });
  };
  const many = (path: Segment[], o: object, k: string) => {
    const items = (o as Record<string, string[] | undefined>)[k];
    if (!items) return;
    items.forEach((_, i) => {
      // a single file keeps the path the user most likely wrote (`client_ca`, not `client_ca[0]`)
      const where = formatConfigPath(items.length === 1 ? [...path, k] : [...path, k, i]);
      out.push({ where, get: () => items[i]!, set: (v) => void (items[i] = v) });
    });
  };
  if (c.admin.tls) {
    for (const k of ['cert', 'key']) one(['admin', 'tls'], c.admin.tls, k);
    for (const k of ['client_ca', 'crl']) many(['admin', 'tls'], c.admin.tls, k);
  }
  c.listeners.forEach((l, i) => {
    if (!l.tls) return;
    const at = ['listeners', i, 'tls'];
    for (const k of ['cert', 'key']) one(at, l.tls, k);
    for (const k of ['client_ca', 'crl']) many(at, l.tls, k);
    if (l.tls.session_tickets) many([...at, 'session_tickets'], l.tls.session_tickets, 'key_files');
    l.tls.certificates.forEach((e, j) => {
      for (const k of ['cert', 'key']) one([...at, 'certificates', j], e, k);
      for (const k of ['client_ca', 'crl']) many([...at, 'certificates', j], e, k);
    });
  });
  for (const [name, u] of Object.entries(c.upstreams)) {
    if (!u.tls) continue;
    many(['upstreams', name, 'tls'], u.tls, 'ca');
    for (const k of ['cert', 'key']) one(['upstreams', name, 'tls'], u.tls, k);
  }
  return out;
}

/** Every file the config reads (certificates, keys, CAs, CRLs, ticket keys), with the key that names it; for file watching. */
export function referencedFiles(c: Config): { where: string; file: string }[] {
  return fileFields(c).map((f) => ({ where: f.where, file: f.get() }));
}

async function fileProblem(where: string, file: string, dir: string): Promise<PortcullisError | undefined> {
  const err = (code: ErrorCode, problem: string, fix: string) => new PortcullisError(code, `${where}: ${problem}; ${fix}`, { path: file });
  const ticketKey = where.includes('.session_tickets.');
  const makeKey = `portcullis ticket-key new ${file}, or openssl rand 80 > ${file}`;
  try {
    const st = await stat(file);
    if (!st.isFile()) return err(ErrorCodes.FILE_UNREADABLE, `not a file: ${file}`, 'give the path of a file');
    if (st.size === 0) return err(ErrorCodes.FILE_EMPTY, `file is empty: ${file}`, ticketKey ? `write a key into it (${makeKey}) or fix the path` : 'write the PEM content into it or fix the path');
    await access(file, constants.R_OK);
    return undefined;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      const fix = `check the path (relative paths are resolved against ${dir})`;
      return err(ErrorCodes.FILE_NOT_FOUND, `file not found: ${file}`, ticketKey ? `create it (${makeKey}) or ${fix}` : fix);
    }
    return err(ErrorCodes.FILE_UNREADABLE, `cannot read ${file} (${code ?? (e as Error).message})`, 'fix its permissions so the proxy user can read it');
  }
}

/** Checks that every referenced file exists, is a readable non-empty file; all problems at once. */
export async function checkConfigFiles(c: LoadedConfig): Promise<PortcullisError[]> {
  const checks = referencedFiles(c).map((f) => fileProblem(f.where, f.file, c.configDir));
  if (isAbsolute(c.log.access)) {
    const folder = dirname(c.log.access);
    checks.push(
      stat(folder).then(
        (st) => (st.isDirectory() ? undefined : new PortcullisError(ErrorCodes.FILE_NOT_FOUND, `log.access: ${folder} is not a folder; fix the path of the access log`, { path: folder })),
        () => new PortcullisError(ErrorCodes.FILE_NOT_FOUND, `log.access: folder not found: ${folder}; create it or fix the path of the access log`, { path: folder }),
      ),
    );
  }
  return (await Promise.all(checks)).filter((e): e is PortcullisError => e !== undefined);
}

// ---------------------------------------------------------------------------------------
// Loading

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/**
 * Reads, parses and validates a config file; throws PortcullisError / PortcullisErrors
 * holding every problem. With checkFiles, also checks every referenced file (as `check` does).
 */
export async function loadConfig(configPath: string, opts: { checkFiles?: boolean } = {}): Promise<LoadedConfig> {
  const file = resolve(configPath);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new PortcullisError(ErrorCodes.CONFIG_NOT_FOUND, `config file not found: ${file}; pass -c FILE or create it`, { path: file });
    }
    throw new PortcullisError(ErrorCodes.FILE_UNREADABLE, `cannot read config file ${file} (${code ?? (e as Error).message}); check the path and its permissions`, { path: file });
  }
  const result = validateConfig(parseConfigText(text, file), file);
  if (!result.ok) throw new PortcullisErrors(result.errors, file);
  if (opts.checkFiles) {
    const problems = await checkConfigFiles(result.config);
    if (problems.length > 0) throw new PortcullisErrors(problems, file);
  }
  return result.config;
}
