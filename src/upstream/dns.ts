// DNS for upstream endpoints written with a host name (docs/upstreams.md "DNS"): like
// Envoy's STRICT_DNS and nginx's `server ... resolve`, every address the name resolves to
// becomes an endpoint of its own, and the name is resolved again every `dns_refresh`.
//
// One resolver for the whole process tree: the primary runs DnsResolver and sends each
// change of a name's address set to the workers over IPC (runtime/ipc.ts `dns`), as it
// does for health check verdicts. So the health check prober of each address (also in
// the primary) and every worker see the same set, lookups do not grow with `workers`,
// and no worker's libuv thread pool (where getaddrinfo runs) is taken by lookups.
// A process without a primary (the demo) runs its own resolver (proxy-process.ts).
//
// Lookups use dns.lookup (getaddrinfo), not dns.resolve (c-ares): it honours /etc/hosts,
// nsswitch and resolv.conf's search domains and ndots, which is how a Kubernetes
// `my-svc` or `my-svc.my-ns` short name resolves; dns.resolve would miss all three.
//
// The address book (`applyAddresses`, `hostAddresses`) is per process: UpstreamPool and
// TcpUpstream expand their endpoints from it and follow its changes (onAddressesChanged).
// A failed lookup keeps the last good set; a name that never resolved has no endpoints
// and its error is named in 503 no_healthy_upstream.
import dns from 'node:dns';
import net from 'node:net';
import { readFileSync } from 'node:fs';

/** What is known about one host name: its addresses (sorted), or why there are none. */
export interface HostAddresses {
  host: string;
  /** null until the name resolved once */
  addresses: string[] | null;
  /** the last lookup failed (the addresses, if any, are from an earlier one) */
  error?: string | undefined;
  /** ms since the epoch of the last lookup */
  at: number;
}

/** One address of an endpoint: where to connect, and the names to show and to send. */
export interface EndpointTarget {
  /** for logs, metrics and /status: the URL as written for IP literals, `scheme://addr:port (name)` for resolved ones */
  label: string;
  /** the URL to connect to (the host is an IP literal once resolved) */
  url: URL;
  /** the endpoint as written in the config */
  config: string;
  /** host:port as written: the default Host / :authority */
  authority: string;
  /** the name the address came from: SNI and certificate check of https/tls; undefined for IP literals */
  name: string | undefined;
  /** `addr:port` (`[v6]:port`) */
  address: string;
}

export const bareHost = (hostname: string) => hostname.replace(/^\[|\]$/g, '');

/** Is this endpoint's host a name to resolve (not an IP literal)? */
export function isNamedEndpoint(raw: string): boolean {
  return net.isIP(bareHost(new URL(raw).hostname)) === 0;
}

/**
 * The endpoint set for `configured` URLs as the address book knows them now: an endpoint
 * whose label stays is kept (with its connections and state), a new address gets `make`,
 * and the ones no longer listed come back as `gone`. HTTP and TCP upstreams share this.
 */
export function nextEndpointSet<E extends { label: string }>(
  configured: readonly string[],
  have: readonly E[],
  make: (t: EndpointTarget) => E,
): { next: E[]; unresolved: { label: string; reason: string }[]; gone: E[] } {
  const current = new Map(have.map((e) => [e.label, e]));
  const next: E[] = [];
  const unresolved: { label: string; reason: string }[] = [];
  for (const raw of configured) {
    const { targets, unresolved: why } = endpointTargets(raw);
    if (why) unresolved.push({ label: raw, reason: why });
    for (const t of targets) {
      if (next.some((e) => e.label === t.label)) continue;
      const kept = current.get(t.label);
      current.delete(t.label);
      next.push(kept ?? make(t));
    }
  }
  return { next, unresolved, gone: [...current.values()] };
}

const DEFAULT_PORTS: Record<string, string> = { 'http:': '80', 'h2c:': '80', 'https:': '443' };

/**
 * The targets of one endpoint URL as this process knows them now: itself for an IP
 * literal, one per address for a name, none (with the reason) for a name not resolved yet.
 */
export function endpointTargets(raw: string): { targets: EndpointTarget[]; unresolved?: string } {
  const url = new URL(raw);
  const port = url.port || DEFAULT_PORTS[url.protocol] || '';
  const host = bareHost(url.hostname);
  if (net.isIP(host) !== 0) {
    return { targets: [{ label: raw, url, config: raw, authority: url.host, name: undefined, address: `${url.hostname}:${port}` }] };
  }
  const known = book.get(host.toLowerCase());
  if (!known?.addresses || known.addresses.length === 0) {
    return { targets: [], unresolved: known?.error ? `DNS lookup of ${host} failed: ${known.error}` : `${host} is not resolved yet` };
  }
  const scheme = url.protocol.slice(0, -1);
  return {
    targets: known.addresses.map((a) => {
      const lit = a.includes(':') ? `[${a}]` : a;
      const address = `${lit}:${port}`;
      return { label: `${scheme}://${address} (${host})`, url: new URL(`${scheme}://${address}`), config: raw, authority: url.host, name: host, address };
    }),
  };
}

// --- the process's address book

const book = new Map<string, HostAddresses>();
const subscribers = new Set<() => void>();

/** Records what the resolver learnt; subscribers hear about it when an address set changed. */
export function applyAddresses(updates: readonly HostAddresses[]): void {
  let changed = false;
  for (const u of updates) {
    const key = u.host.toLowerCase();
    const before = book.get(key);
    book.set(key, u);
    if (!sameSet(before?.addresses ?? null, u.addresses) || (before?.error ?? undefined) !== (u.error ?? undefined)) changed = true;
  }
  if (!changed) return;
  for (const fn of [...subscribers]) fn();
}

/** Everything this process knows (for a worker that starts, and /status). */
export function addressBook(): HostAddresses[] {
  return [...book.values()];
}

export function hostAddresses(host: string): HostAddresses | undefined {
  return book.get(host.toLowerCase());
}

/** Calls `fn` after every change of the address book; returns the unsubscribe function. */
export function onAddressesChanged(fn: () => void): () => void {
  subscribers.add(fn);
  return () => subscribers.delete(fn);
}

function sameSet(a: readonly string[] | null, b: readonly string[] | null): boolean {
  if (a === null || b === null) return a === b;
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

// --- lookups

/** Every address of `host`; rejects with an Error whose `code` is the resolver's (ENOTFOUND, EAI_AGAIN). */
export type LookupFn = (host: string) => Promise<string[]>;

export const systemLookup: LookupFn = async (host) => {
  const all = await dns.promises.lookup(host, { all: true });
  return all.map((a) => a.address);
};

/**
 * For end-to-end tests only: with PORTCULLIS_FAULT_INJECTION=1 (the test switch, see
 * proxy/boundary.ts) and PORTCULLIS_TEST_HOSTS_FILE naming a file in /etc/hosts format,
 * names listed there resolve to its addresses, read anew at each lookup, so a test can
 * change a name's answer; other names go to the system. Off unless both are set.
 */
export function defaultLookup(env: NodeJS.ProcessEnv = process.env): LookupFn {
  const file = env.PORTCULLIS_FAULT_INJECTION === '1' ? env.PORTCULLIS_TEST_HOSTS_FILE : undefined;
  if (!file) return systemLookup;
  return async (host) => {
    const found: string[] = [];
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      // no file: the system answers
    }
    for (const line of text.split('\n')) {
      const [addr, ...names] = line.replace(/#.*/, '').trim().split(/\s+/);
      if (addr && names.some((n) => n.toLowerCase() === host.toLowerCase())) found.push(addr);
    }
    if (found.length > 0) return found;
    return systemLookup(host);
  };
}

/** Sorted, without duplicates (getaddrinfo may answer an address once per socket type). */
function normalise(addresses: readonly string[]): string[] {
  return [...new Set(addresses)].sort();
}

export interface DnsChange {
  host: string;
  /** the new state */
  now: HostAddresses;
  kind: 'changed' | 'failed';
  added: string[];
  removed: string[];
}

/** The log line of a change, logged once per change: `upstream_dns_changed` (info) or `upstream_dns_failed` (warn). */
export function dnsChangeLog(c: DnsChange): { level: 'info' | 'warn'; fields: Record<string, unknown>; message: string } {
  if (c.kind === 'changed') {
    return {
      level: 'info',
      fields: { event: 'upstream_dns_changed', host: c.host, addresses: c.now.addresses, added: c.added, removed: c.removed },
      message: `${c.host} now resolves to ${c.now.addresses!.join(', ')}${c.added.length ? `; new endpoints ${c.added.join(', ')}` : ''}${c.removed.length ? `; ${c.removed.join(', ')} drain (no new requests)` : ''}`,
    };
  }
  return {
    level: 'warn',
    fields: { event: 'upstream_dns_failed', host: c.host, error: c.now.error, addresses: c.now.addresses },
    message: c.now.addresses
      ? `DNS lookup of ${c.host} failed (${c.now.error}); keeping its last addresses ${c.now.addresses.join(', ')}`
      : `DNS lookup of ${c.host} failed (${c.now.error}); its endpoints get no traffic until it resolves; check the name and the resolver`,
  };
}

/**
 * Resolves every named endpoint host of a configuration every `dns_refresh` (the shortest
 * of the upstreams that name it). Reports each change once: a new address set
 * ('changed'), or a lookup that started failing or fails differently ('failed', the last
 * good set is kept). Every state change is also applied to this process's address book.
 */
export class DnsResolver {
  private readonly hosts = new Map<string, { refresh: number; timer: NodeJS.Timeout | undefined; state: HostAddresses; running: Promise<void> | undefined }>();
  private stopped = false;

  constructor(
    private readonly report: (c: DnsChange) => void,
    private readonly lookup: LookupFn = defaultLookup(),
    /** how long start-up and reload wait for a first answer before going on without it */
    private readonly firstWaitMs = 5_000,
  ) {}

  /**
   * Follows the names of `config` (starts new ones, stops those no longer used). Resolves
   * once every new name has its first answer (or failed, or firstWaitMs passed).
   */
  async update(config: { upstreams: Record<string, { endpoints: readonly string[]; dns_refresh: number }> }): Promise<void> {
    const wanted = new Map<string, number>();
    for (const up of Object.values(config.upstreams)) {
      for (const raw of up.endpoints) {
        if (!isNamedEndpoint(raw)) continue;
        const host = bareHost(new URL(raw).hostname).toLowerCase();
        wanted.set(host, Math.min(wanted.get(host) ?? Infinity, up.dns_refresh));
      }
    }
    for (const [host, h] of this.hosts) {
      if (wanted.has(host)) continue;
      clearTimeout(h.timer);
      this.hosts.delete(host);
    }
    const first: Promise<void>[] = [];
    for (const [host, refresh] of wanted) {
      const h = this.hosts.get(host);
      if (h) {
        h.refresh = refresh;
        continue;
      }
      const state = hostAddresses(host) ?? { host, addresses: null, at: 0 };
      const entry = { refresh, timer: undefined, state, running: undefined as Promise<void> | undefined };
      this.hosts.set(host, entry);
      first.push(this.resolve(host));
    }
    if (first.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(first), new Promise((r) => (timer = setTimeout(r, this.firstWaitMs)))]);
    clearTimeout(timer);
  }

  /** The current state of every followed name. */
  status(): HostAddresses[] {
    return [...this.hosts.values()].map((h) => h.state);
  }

  stop(): void {
    this.stopped = true;
    for (const h of this.hosts.values()) clearTimeout(h.timer);
    this.hosts.clear();
  }

  private resolve(host: string): Promise<void> {
    const h = this.hosts.get(host);
    if (!h) return Promise.resolve();
    // a lookup that hangs (getaddrinfo has no timeout of its own) is not started twice
    h.running ??= this.lookup(host)
      .then(
        (addrs) => ({ addresses: normalise(addrs), error: undefined }),
        (e: Error & { code?: string }) => ({ addresses: undefined, error: e.code ?? e.message }),
      )
      .then((r) => {
        h.running = undefined;
        if (this.stopped || this.hosts.get(host) !== h) return;
        const before = h.state;
        // an empty answer is a failure too: an endpoint set must never shrink to nothing by DNS
        const error = r.error ?? (r.addresses!.length === 0 ? 'no addresses' : undefined);
        const now: HostAddresses = error
          ? { host, addresses: before.addresses, error, at: Date.now() }
          : { host, addresses: r.addresses!, at: Date.now() };
        h.state = now;
        applyAddresses([now]);
        if (!error && !sameSet(before.addresses, now.addresses)) {
          const old = new Set(before.addresses ?? []);
          const fresh = new Set(now.addresses!);
          this.report({ host, now, kind: 'changed', added: now.addresses!.filter((a) => !old.has(a)), removed: [...old].filter((a) => !fresh.has(a)) });
        } else if (error && error !== before.error) {
          this.report({ host, now, kind: 'failed', added: [], removed: [] });
        } else if (!error && before.error) {
          // the same set as before the failure: recovered, nothing moved
          this.report({ host, now, kind: 'changed', added: [], removed: [] });
        }
        this.schedule(host);
      });
    return h.running;
  }

  private schedule(host: string): void {
    const h = this.hosts.get(host);
    if (!h || this.stopped) return;
    clearTimeout(h.timer);
    h.timer = setTimeout(() => void this.resolve(host), h.refresh);
    h.timer.unref();
  }
}
