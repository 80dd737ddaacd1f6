// The dashboard's live activity data (admin /ui, docs/dashboard.md), recorded in each
// worker: the clients seen recently, refusals grouped by reason, and authorization rule
// hits per route. The primary asks every worker for a snapshot when the page polls
// (cluster-query.ts, kind `activity`) and merges them here.
//
// Cost on the hot path: one call per HTTP request or TCP connection, and one per refused
// handshake. It does Map lookups and in-place updates of entries created the first time
// a key is seen; nothing is allocated for a client, route or rule already known. The
// client facts are the access log's `client{}` object, built once per handshake (and
// shared by every connection of a verified identity), so identity is never recomputed.
//
// Bounds (documented in docs/dashboard.md): MAX_CLIENTS identities per worker and in the
// merged view, least recently seen dropped first; MAX_REFUSAL_GROUPS reason groups and
// MAX_RULE_KEYS (listener, route, rule) counters per worker, after which new keys are only
// counted in `dropped` (their keys come from the config and fixed reason lists, so a
// config would need thousands of routes or rules to get there).
import { answerClusterQueries, queryWorkers, type QueryOptions } from './cluster-query.js';

export const MAX_CLIENTS = 200;
export const MAX_REFUSAL_GROUPS = 256;
export const MAX_RULE_KEYS = 2048;
/** recency is kept to this resolution (see touchClient) */
const LRU_RESOLUTION_MS = 1000;
/** "last seen" times come from a clock read this often, not per request (see coarseNow) */
const CLOCK_TICK_MS = 250;

let clockMs = 0;
let clockTimer: NodeJS.Timeout | undefined;
/**
 * Date.now() returns a freshly boxed number on every call (one heap allocation per request
 * on this path); the dashboard shows times to the second, so one read per tick is plenty.
 */
function coarseNow(): number {
  return clockMs;
}
function startClock(): void {
  if (clockTimer) return;
  clockMs = Date.now();
  clockTimer = setInterval(() => (clockMs = Date.now()), CLOCK_TICK_MS);
  clockTimer.unref();
}

/** The access log's client{} of a connection (verify, subject, issuer, serial, fingerprint, spiffe_id, not_after). */
export type ClientFacts = Readonly<Record<string, string | undefined>>;

/** The decision the access log carries: allowed, and the rule (or reason) that decided. */
export type ActivityDecision = { readonly allowed: boolean; readonly rule?: string | undefined; readonly reason?: string | undefined };

/**
 * Response codes that refuse a client for who it is (its certificate or the rules), and
 * so count as denials on the dashboard. Other errors (no_route, upstream failures) are the
 * request's or the upstream's problem, not the client's identity.
 */
export const DENIAL_CODES: ReadonlySet<string> = new Set(['forbidden', 'client_certificate_required', 'client_certificate_invalid', 'misdirected_request']);

/** What the proxy reports for the dashboard. Hot path: see the header. */
export interface ActivityHooks {
  /**
   * One HTTP request (or TCP connection) answered. `decision` is the authorization
   * decision when one was made; `refusal` and `message` are the error code and sentence
   * when portcullis itself refused it.
   */
  clientActivity(listener: string, route: string, client: ClientFacts | undefined, remote: string, status: number, decision: ActivityDecision | undefined, refusal: string | undefined, message: string | undefined): void;
  /** One handshake (or the certificate checks right after it) refused a client. */
  handshakeRefused(listener: string, reason: string, message: string, client: ClientFacts | undefined, remote: string): void;
}

export const noActivity: ActivityHooks = {
  clientActivity: () => undefined,
  handshakeRefused: () => undefined,
};

// ---------------------------------------------------------------------------------------
// Snapshot shapes (worker -> primary over IPC, and the merged view the page reads)

export interface ClientSnapshot {
  /** leaf certificate fingerprint; "" for clients without a certificate */
  key: string;
  subject: string | null;
  spiffe_id: string | null;
  issuer: string | null;
  verify: string | null;
  listener: string;
  remote_addr: string;
  first_seen: number;
  last_seen: number;
  requests: number;
  denials: number;
  last_route: string;
  /** the rule (or reason) that decided the last request */
  last_rule: string | null;
  last_allowed: boolean | null;
  last_status: number;
  last_denial: { at: number; code: string; reason: string; message: string | null; route: string } | null;
}

export interface RefusalSnapshot {
  stage: 'handshake' | 'request';
  listener: string;
  /** "" for handshakes */
  route: string;
  code: string;
  /** what the group is by: the handshake reason, the deciding rule, or the code */
  reason: string;
  count: number;
  first_seen: number;
  last_seen: number;
  /** the last sentence (cause and fix) sent or logged for this group */
  message: string;
  last_client: string | null;
  last_remote_addr: string;
}

export interface RouteActivity {
  listener: string;
  route: string;
  requests: number;
  denials: number;
  rules: { rule: string; allow: number; deny: number }[];
}

export interface ActivitySnapshot {
  clients: ClientSnapshot[];
  refusals: RefusalSnapshot[];
  routes: RouteActivity[];
  /** keys not recorded because a bound was reached */
  dropped: { refusal_groups: number; rule_keys: number };
}

// ---------------------------------------------------------------------------------------
// Worker side

interface ClientEntry {
  key: string;
  facts: ClientFacts | undefined;
  listener: string;
  remote: string;
  first: number;
  last: number;
  /** when it was last moved to the recent end of the LRU order */
  moved: number;
  requests: number;
  denials: number;
  route: string;
  rule: string | undefined;
  allowed: boolean | undefined;
  status: number;
  deniedAt: number;
  deniedCode: string;
  deniedReason: string;
  deniedMessage: string | undefined;
  deniedRoute: string;
}

interface RefusalGroup {
  stage: 'handshake' | 'request';
  listener: string;
  route: string;
  code: string;
  reason: string;
  count: number;
  first: number;
  last: number;
  message: string;
  client: ClientFacts | undefined;
  remote: string;
}

interface RuleCount {
  allow: number;
  deny: number;
}

interface RouteEntry {
  requests: number;
  denials: number;
  rules: Map<string, RuleCount>;
}

export interface ActivityRecorder extends ActivityHooks {
  snapshot(): ActivitySnapshot;
}

/** Subject, else SPIFFE ID, of a client, for one-line display. */
function clientLabel(c: ClientFacts | undefined): string | null {
  return c?.subject ?? c?.spiffe_id ?? null;
}

export function createActivityRecorder(opts: { maxClients?: number; maxRefusalGroups?: number; maxRuleKeys?: number; now?: () => number } = {}): ActivityRecorder {
  const maxClients = opts.maxClients ?? MAX_CLIENTS;
  const maxGroups = opts.maxRefusalGroups ?? MAX_REFUSAL_GROUPS;
  const maxRuleKeys = opts.maxRuleKeys ?? MAX_RULE_KEYS;
  if (!opts.now) startClock();
  const now = opts.now ?? coarseNow;
  /** insertion order is recency order: the first key is the least recently seen */
  const clients = new Map<string, ClientEntry>();
  let newest: string | undefined;
  /** listener -> route ("" for handshakes) -> reason -> group */
  const refusals = new Map<string, Map<string, Map<string, RefusalGroup>>>();
  let groups = 0;
  /** listener -> route -> counters */
  const routes = new Map<string, Map<string, RouteEntry>>();
  let ruleKeys = 0;
  const dropped = { refusal_groups: 0, rule_keys: 0 };

  // --- slow paths: the first time a key is seen
  const addClient = (key: string, t: number): ClientEntry => {
    if (clients.size >= maxClients) {
      const oldest = clients.keys().next().value as string;
      clients.delete(oldest);
    }
    const e: ClientEntry = { key, facts: undefined, listener: '', remote: '', first: t, last: t, moved: t, requests: 0, denials: 0, route: '', rule: undefined, allowed: undefined, status: 0, deniedAt: 0, deniedCode: '', deniedReason: '', deniedMessage: undefined, deniedRoute: '' };
    clients.set(key, e);
    return e;
  };
  const touchClient = (client: ClientFacts | undefined, listener: string, remote: string, t: number): ClientEntry => {
    const key = client?.fingerprint ?? '';
    let e = clients.get(key);
    if (e === undefined) e = addClient(key, t);
    else if (key !== newest && t - e.moved >= LRU_RESOLUTION_MS) {
      // move to the most recent end, at most once a second per client: a delete + set on
      // every request would make the Map rehash its tombstones (garbage on the hot path),
      // and eviction order accurate to a second is all a "recent clients" list needs
      clients.delete(key);
      clients.set(key, e);
      e.moved = t;
    }
    newest = key;
    e.facts = client;
    e.listener = listener;
    e.remote = remote;
    e.last = t;
    return e;
  };
  const addGroup = (stage: RefusalGroup['stage'], listener: string, route: string, code: string, reason: string, t: number): RefusalGroup | undefined => {
    if (groups >= maxGroups) {
      dropped.refusal_groups++;
      return undefined;
    }
    let byRoute = refusals.get(listener);
    if (byRoute === undefined) refusals.set(listener, (byRoute = new Map()));
    let byReason = byRoute.get(route);
    if (byReason === undefined) byRoute.set(route, (byReason = new Map()));
    const g: RefusalGroup = { stage, listener, route, code, reason, count: 0, first: t, last: t, message: '', client: undefined, remote: '' };
    byReason.set(reason, g);
    groups++;
    return g;
  };
  const refused = (stage: RefusalGroup['stage'], listener: string, route: string, code: string, reason: string, message: string, client: ClientFacts | undefined, remote: string, t: number) => {
    const g = refusals.get(listener)?.get(route)?.get(reason) ?? addGroup(stage, listener, route, code, reason, t);
    if (g === undefined) return;
    g.count++;
    g.last = t;
    g.code = code;
    g.message = message;
    g.client = client;
    g.remote = remote;
  };
  const addRoute = (listener: string, route: string): RouteEntry => {
    let byRoute = routes.get(listener);
    if (byRoute === undefined) routes.set(listener, (byRoute = new Map()));
    const r: RouteEntry = { requests: 0, denials: 0, rules: new Map() };
    byRoute.set(route, r);
    return r;
  };
  const addRule = (r: RouteEntry, rule: string): RuleCount | undefined => {
    if (ruleKeys >= maxRuleKeys) {
      dropped.rule_keys++;
      return undefined;
    }
    const c = { allow: 0, deny: 0 };
    r.rules.set(rule, c);
    ruleKeys++;
    return c;
  };

  // --- hot paths
  const hooks: ActivityHooks = {
    clientActivity(listener, route, client, remote, status, decision, refusal, message) {
      const t = now();
      const e = touchClient(client, listener, remote, t);
      const rule = decision === undefined ? undefined : (decision.rule ?? decision.reason);
      e.requests++;
      e.route = route;
      e.rule = rule;
      e.allowed = decision?.allowed;
      e.status = status;
      const r = routes.get(listener)?.get(route) ?? addRoute(listener, route);
      r.requests++;
      if (rule !== undefined) {
        const c = r.rules.get(rule) ?? addRule(r, rule);
        if (c !== undefined) {
          if (decision!.allowed) c.allow++;
          else c.deny++;
        }
      }
      if (refusal === undefined || !DENIAL_CODES.has(refusal)) return;
      // grouped by the deciding rule, else the certificate's failure ("FAILED:expired"), else the code
      const reason = rule ?? (refusal === 'client_certificate_invalid' ? client?.verify : undefined) ?? refusal;
      e.denials++;
      e.deniedAt = t;
      e.deniedCode = refusal;
      e.deniedReason = reason;
      e.deniedMessage = message;
      e.deniedRoute = route;
      r.denials++;
      refused('request', listener, route, refusal, reason, message ?? refusal, client, remote, t);
    },
    handshakeRefused(listener, reason, message, client, remote) {
      const t = now();
      const e = touchClient(client, listener, remote, t);
      e.denials++;
      e.deniedAt = t;
      e.deniedCode = 'tls_handshake_failed';
      e.deniedReason = reason;
      e.deniedMessage = message;
      e.deniedRoute = '';
      refused('handshake', listener, '', 'tls_handshake_failed', reason, message, client, remote, t);
    },
  };

  const snapshot = (): ActivitySnapshot => {
    const cs: ClientSnapshot[] = [];
    for (const e of clients.values()) cs.push(clientSnapshot(e));
    cs.reverse(); // most recent first
    const rs: RefusalSnapshot[] = [];
    for (const byRoute of refusals.values()) {
      for (const byReason of byRoute.values()) {
        for (const g of byReason.values()) {
          rs.push({ stage: g.stage, listener: g.listener, route: g.route, code: g.code, reason: g.reason, count: g.count, first_seen: g.first, last_seen: g.last, message: g.message, last_client: clientLabel(g.client), last_remote_addr: g.remote });
        }
      }
    }
    const ra: RouteActivity[] = [];
    for (const [listener, byRoute] of routes) {
      for (const [route, r] of byRoute) {
        ra.push({ listener, route, requests: r.requests, denials: r.denials, rules: [...r.rules].map(([rule, c]) => ({ rule, allow: c.allow, deny: c.deny })) });
      }
    }
    return { clients: cs, refusals: rs, routes: ra, dropped: { ...dropped } };
  };

  return { ...hooks, snapshot };
}

function clientSnapshot(e: ClientEntry): ClientSnapshot {
  const f = e.facts;
  return {
    key: e.key,
    subject: f?.subject ?? null,
    spiffe_id: f?.spiffe_id ?? null,
    issuer: f?.issuer ?? null,
    verify: f?.verify ?? null,
    listener: e.listener,
    remote_addr: e.remote,
    first_seen: e.first,
    last_seen: e.last,
    requests: e.requests,
    denials: e.denials,
    last_route: e.route,
    last_rule: e.rule ?? null,
    last_allowed: e.allowed ?? null,
    last_status: e.status,
    last_denial: e.denials > 0 ? { at: e.deniedAt, code: e.deniedCode, reason: e.deniedReason, message: e.deniedMessage ?? null, route: e.deniedRoute } : null,
  };
}

// ---------------------------------------------------------------------------------------
// Across processes

const QUERY_KIND = 'activity';

/** Worker side: answer the primary's activity queries from this recorder. */
export function registerWorkerActivity(recorder: ActivityRecorder): void {
  answerClusterQueries(QUERY_KIND, () => recorder.snapshot());
}

/** Primary side: every answering worker's snapshot, merged (see mergeActivity). */
export async function collectClusterActivity(opts: QueryOptions = {}): Promise<ActivitySnapshot & { workers_answered: number }> {
  const answers = await queryWorkers<ActivitySnapshot>(QUERY_KIND, opts);
  return { ...mergeActivity(answers), workers_answered: answers.length };
}

/**
 * One view of several workers' snapshots: a client, refusal group or route seen by more
 * than one worker has its counts summed, its first/last times widened, and its "last"
 * fields taken from the worker that saw it last. Clients are cut to `maxClients`, most
 * recent first.
 */
export function mergeActivity(snaps: readonly ActivitySnapshot[], maxClients = MAX_CLIENTS): ActivitySnapshot {
  const clients = new Map<string, ClientSnapshot>();
  const refusals = new Map<string, RefusalSnapshot>();
  const routes = new Map<string, RouteActivity & { byRule: Map<string, { rule: string; allow: number; deny: number }> }>();
  const dropped = { refusal_groups: 0, rule_keys: 0 };
  for (const s of snaps) {
    if (!s || !Array.isArray(s.clients)) continue;
    for (const c of s.clients) {
      const m = clients.get(c.key);
      if (!m) {
        clients.set(c.key, { ...c, last_denial: c.last_denial ? { ...c.last_denial } : null });
        continue;
      }
      const newer = c.last_seen > m.last_seen;
      const denial = !m.last_denial || (c.last_denial && c.last_denial.at > m.last_denial.at) ? c.last_denial : m.last_denial;
      const merged: ClientSnapshot = newer ? { ...c } : { ...m };
      merged.first_seen = Math.min(m.first_seen, c.first_seen);
      merged.last_seen = Math.max(m.last_seen, c.last_seen);
      merged.requests = m.requests + c.requests;
      merged.denials = m.denials + c.denials;
      merged.last_denial = denial ? { ...denial } : null;
      clients.set(c.key, merged);
    }
    for (const r of s.refusals) {
      const k = JSON.stringify([r.stage, r.listener, r.route, r.reason]);
      const m = refusals.get(k);
      if (!m) {
        refusals.set(k, { ...r });
        continue;
      }
      const newer = r.last_seen > m.last_seen;
      refusals.set(k, {
        ...(newer ? r : m),
        count: m.count + r.count,
        first_seen: Math.min(m.first_seen, r.first_seen),
        last_seen: Math.max(m.last_seen, r.last_seen),
      });
    }
    for (const r of s.routes) {
      const k = JSON.stringify([r.listener, r.route]);
      let m = routes.get(k);
      if (!m) routes.set(k, (m = { listener: r.listener, route: r.route, requests: 0, denials: 0, rules: [], byRule: new Map() }));
      m.requests += r.requests;
      m.denials += r.denials;
      for (const h of r.rules) {
        const x = m.byRule.get(h.rule);
        if (x) {
          x.allow += h.allow;
          x.deny += h.deny;
        } else m.byRule.set(h.rule, { ...h });
      }
    }
    dropped.refusal_groups += s.dropped?.refusal_groups ?? 0;
    dropped.rule_keys += s.dropped?.rule_keys ?? 0;
  }
  return {
    clients: [...clients.values()].sort((a, b) => b.last_seen - a.last_seen).slice(0, maxClients),
    refusals: [...refusals.values()].sort((a, b) => b.last_seen - a.last_seen),
    routes: [...routes.values()].map(({ byRule, ...r }) => ({ ...r, rules: [...byRule.values()] })),
    dropped,
  };
}
