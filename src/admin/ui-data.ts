// The document behind the admin dashboard (/ui/data.json, docs/dashboard.md): what the
// primary knows (certificates, configured routes, upstream health, reload history) joined
// with what the workers recorded (recent clients, refusals by reason, rule hits; merged
// by telemetry/activity.ts). Pure: the primary gathers the inputs, this shapes them.
// Field names are what the page reads; they may grow, like /status.
import type { LoadedConfig, RouteMatchConfig } from '../config/schema.js';
import type { LoadedCert } from '../tls/listener-tls.js';
import type { ActivitySnapshot, ClientSnapshot, RefusalSnapshot } from '../telemetry/activity.js';
import { MAX_CLIENTS } from '../telemetry/activity.js';
import { certificateStatus, type CertificateStatus } from './status.js';

export interface ReloadEntry {
  at: Date;
  ok: boolean;
  generation: number;
  trigger: string;
  error?: string | undefined;
}

export interface DashboardInput {
  version: string;
  startedAt: Date;
  generation: number;
  /** workers the config asks for, and those that answered the activity query */
  workers: { configured: number; live: number; answered: number };
  certificates: readonly LoadedCert[];
  config: Pick<LoadedConfig, 'listeners'>;
  /** /status `upstreams`, passed through */
  upstreams: readonly unknown[];
  reloads: readonly ReloadEntry[];
  activity: ActivitySnapshot;
  now?: Date;
}

export interface RouteRow {
  listener: string;
  route: string;
  /** false for a route the workers reported that the current config no longer has (or "-": no route matched) */
  configured: boolean;
  match: string;
  upstream: string | null;
  client_auth: string | null;
  allow_rules: number;
  deny_rules: number;
  requests: number;
  denials: number;
  rules: { rule: string; allow: number; deny: number }[];
}

export interface DashboardDocument {
  generated_at: string;
  version: string;
  uptime_seconds: number;
  generation: number;
  workers: { configured: number; live: number; answered: number };
  certificates: CertificateStatus[];
  clients: (Omit<ClientSnapshot, 'first_seen' | 'last_seen' | 'last_denial'> & { first_seen: string; last_seen: string; last_denial: (Omit<NonNullable<ClientSnapshot['last_denial']>, 'at'> & { at: string }) | null })[];
  clients_limit: number;
  refusals: (Omit<RefusalSnapshot, 'first_seen' | 'last_seen'> & { first_seen: string; last_seen: string })[];
  routes: RouteRow[];
  upstreams: readonly unknown[];
  reloads: { at: string; ok: boolean; generation: number; trigger: string; error?: string }[];
  dropped: ActivitySnapshot['dropped'];
}

const iso = (ms: number) => new Date(ms).toISOString();

/** "host api.example.com · path /v1/ · POST": a route's match in one line. */
export function describeMatch(m: RouteMatchConfig | undefined): string {
  if (!m) return 'everything';
  const parts: string[] = [];
  if (m.host) parts.push(`host ${[m.host].flat().join(', ')}`);
  if (m.path !== undefined) parts.push(`path ${m.path}`);
  if (m.path_exact !== undefined) parts.push(`path = ${m.path_exact}`);
  if (m.path_regex !== undefined) parts.push(`path ~ ${m.path_regex}`);
  if (m.methods) parts.push([m.methods].flat().join(' '));
  return parts.length > 0 ? parts.join(' · ') : 'everything';
}

function routeRows(config: DashboardInput['config'], activity: ActivitySnapshot): RouteRow[] {
  const rows: RouteRow[] = [];
  const byKey = new Map<string, RouteRow>();
  for (const l of config.listeners) {
    const clientAuth = l.tls?.client_auth ?? 'none';
    const configured: RouteRow[] =
      l.protocol === 'tcp'
        ? [{ listener: l.name, route: '-', configured: true, match: 'every connection (protocol: tcp)', upstream: l.upstream ?? null, client_auth: clientAuth, allow_rules: l.allow.length, deny_rules: l.deny.length, requests: 0, denials: 0, rules: [] }]
        : l.routes.map((r) => ({
            listener: l.name,
            route: r.name,
            configured: true,
            match: describeMatch(r.match),
            upstream: r.upstream,
            client_auth: r.client_auth ?? clientAuth,
            allow_rules: r.allow.length > 0 ? r.allow.length : l.allow.length,
            deny_rules: r.deny.length + l.deny.length,
            requests: 0,
            denials: 0,
            rules: [],
          }));
    for (const row of configured) {
      rows.push(row);
      byKey.set(JSON.stringify([row.listener, row.route]), row);
    }
  }
  for (const a of activity.routes) {
    let row = byKey.get(JSON.stringify([a.listener, a.route]));
    if (!row) {
      row = { listener: a.listener, route: a.route, configured: false, match: a.route === '-' ? 'no route matched' : 'not in the current configuration', upstream: null, client_auth: null, allow_rules: 0, deny_rules: 0, requests: 0, denials: 0, rules: [] };
      rows.push(row);
      byKey.set(JSON.stringify([a.listener, a.route]), row);
    }
    row.requests += a.requests;
    row.denials += a.denials;
    row.rules.push(...a.rules);
  }
  for (const r of rows) r.rules.sort((a, b) => b.allow + b.deny - (a.allow + a.deny));
  return rows;
}

export function buildDashboard(input: DashboardInput): DashboardDocument {
  const now = input.now ?? new Date();
  const a = input.activity;
  return {
    generated_at: now.toISOString(),
    version: input.version,
    uptime_seconds: Math.max(0, Math.floor((now.getTime() - input.startedAt.getTime()) / 1000)),
    generation: input.generation,
    workers: input.workers,
    // soonest expiry first: that is the one to act on
    certificates: certificateStatus(input.certificates, now).sort((x, y) => x.days_left - y.days_left),
    clients: a.clients.map((c) => ({
      ...c,
      first_seen: iso(c.first_seen),
      last_seen: iso(c.last_seen),
      last_denial: c.last_denial ? { ...c.last_denial, at: iso(c.last_denial.at) } : null,
    })),
    clients_limit: MAX_CLIENTS,
    refusals: a.refusals.map((r) => ({ ...r, first_seen: iso(r.first_seen), last_seen: iso(r.last_seen) })),
    routes: routeRows(input.config, a),
    upstreams: input.upstreams,
    reloads: input.reloads.map((r) => ({ at: r.at.toISOString(), ok: r.ok, generation: r.generation, trigger: r.trigger, ...(r.error !== undefined ? { error: r.error } : {}) })),
    dropped: a.dropped,
  };
}
