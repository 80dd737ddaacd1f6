// Turns the raw runs into medians and the portcullis/nginx table, and summarises the
// warnings and errors both proxies logged during the bench.
import { readFileSync } from 'node:fs';

/** 'portcullis' and 'nginx' in `npm run bench`; any peer's name in `npm run bench:peers` */
export type SystemName = string;
export const SYSTEMS: readonly SystemName[] = ['portcullis', 'nginx'];

export interface MetricDef {
  id: string;
  label: string;
  decimals: number;
  /** which direction is better, so the reader knows how to read the ratio */
  better: 'higher' | 'lower';
}

export interface MetricValue {
  metric: string;
  system: SystemName;
  round: number;
  value: number;
}

export interface MedianRow {
  metric: string;
  label: string;
  better: 'higher' | 'lower';
  portcullis: number | null;
  nginx: number | null;
  /** portcullis / nginx */
  ratio: number | null;
  runs: { portcullis: number[]; nginx: number[] };
}

export function median(xs: number[]): number | null {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

export function medians(defs: MetricDef[], values: MetricValue[]): MedianRow[] {
  const rows: MedianRow[] = [];
  for (const d of defs) {
    const runs = {
      portcullis: values.filter((v) => v.metric === d.id && v.system === 'portcullis').map((v) => v.value),
      nginx: values.filter((v) => v.metric === d.id && v.system === 'nginx').map((v) => v.value),
    };
    if (!runs.portcullis.length && !runs.nginx.length) continue;
    const p = median(runs.portcullis);
    const n = median(runs.nginx);
    rows.push({ metric: d.id, label: d.label, better: d.better, portcullis: p, nginx: n, ratio: p !== null && n !== null && n !== 0 ? p / n : null, runs });
  }
  return rows;
}

function fmt(v: number | null, decimals: number): string {
  if (v === null) return 'n/a';
  return v.toLocaleString('en-US', { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

/** A Markdown table (reads fine in a terminal and pastes into the README). */
export function renderTable(defs: MetricDef[], rows: MedianRow[], labels: { a: string; b: string } = { a: 'portcullis', b: 'nginx' }): string {
  const dec = new Map(defs.map((d) => [d.id, d.decimals]));
  const body = rows.map((r) => [
    `${r.label} (${r.better} is better)`,
    fmt(r.portcullis, dec.get(r.metric) ?? 0),
    fmt(r.nginx, dec.get(r.metric) ?? 0),
    r.ratio === null ? 'n/a' : r.ratio.toFixed(2),
  ]);
  const head = ['metric', labels.a, labels.b, `ratio (${labels.a}/${labels.b})`];
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  const sep = `|${widths.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`;
  return [line(head), sep, ...body.map(line)].join('\n');
}

export interface LogSummary {
  file: string;
  /** message -> count */
  entries: Record<string, number>;
}

/** Counts a log file's lines by the key `keyOf` gives them (undefined: not counted). */
function summariseLog(path: string, keyOf: (line: string) => string | undefined): LogSummary {
  const entries: Record<string, number> = {};
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return { file: path, entries };
  }
  for (const line of text.split('\n')) {
    const key = keyOf(line);
    if (key !== undefined) entries[key] = (entries[key] ?? 0) + 1;
  }
  return { file: path, entries };
}

/** portcullis logs pino JSON; warnings and errors are grouped by message. */
export function summarisePortcullisLog(path: string): LogSummary {
  return summariseLog(path, (line) => {
    if (!line.trim()) return undefined;
    try {
      const o = JSON.parse(line) as { level?: string | number; msg?: string; event?: string; err?: { message?: string; code?: string }; error?: string };
      const lvl = typeof o.level === 'number' ? o.level : { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 }[o.level ?? 'info'] ?? 30;
      if (lvl < 40) return undefined;
      const err = o.err ? ` (${o.err.code ?? ''}${o.err.code ? ': ' : ''}${o.err.message ?? ''})` : o.error ? ` (${o.error})` : '';
      return `${typeof o.level === 'string' ? o.level : lvl}: ${o.event ? `[${o.event}] ` : ''}${o.msg ?? ''}${err}`;
    } catch {
      return `non-JSON line: ${line.slice(0, 300)}`;
    }
  });
}

/** nginx error log lines of level error and worse, with per-connection details removed. */
export function summariseNginxLog(path: string): LogSummary {
  return summariseLog(path, (line) => {
    const m = /\[(error|crit|alert|emerg)\]\s+\d+#\d+:\s+(?:\*\d+\s+)?(.*)$/.exec(line);
    if (!m) return undefined;
    return `${m[1]}: ${m[2]!.replace(/, client: .*$/, '').replace(/\d+\.\d+\.\d+\.\d+:\d+/g, 'ADDR')}`;
  });
}

/**
 * `npm run bench:peers`: one column per system, each cell the median and, in brackets,
 * its ratio to the column's baseline (nginx for HTTP systems, Hitch for TCP ones).
 */
export function renderMatrix(defs: MetricDef[], values: MetricValue[], systems: { name: string; baseline?: string }[]): { text: string; data: Record<string, Record<string, { median: number | null; ratio: number | null; runs: number[] }>> } {
  const data: Record<string, Record<string, { median: number | null; ratio: number | null; runs: number[] }>> = {};
  const rows: string[][] = [];
  for (const d of defs) {
    const cells: Record<string, { median: number | null; ratio: number | null; runs: number[] }> = {};
    for (const sys of systems) {
      const runs = values.filter((v) => v.metric === d.id && v.system === sys.name).map((v) => v.value);
      cells[sys.name] = { median: median(runs), ratio: null, runs };
    }
    for (const sys of systems) {
      const c = cells[sys.name]!;
      const b = sys.baseline ? cells[sys.baseline]?.median : null;
      if (c.median !== null && b) c.ratio = c.median / b;
    }
    if (!Object.values(cells).some((c) => c.runs.length)) continue;
    data[d.id] = cells;
    rows.push([
      `${d.label} (${d.better})`,
      ...systems.map((sys) => {
        const c = cells[sys.name]!;
        if (c.median === null) return '–';
        return `${fmt(c.median, d.decimals)}${c.ratio !== null && sys.baseline !== sys.name ? ` (${c.ratio.toFixed(2)}×)` : ''}`;
      }),
    ]);
  }
  const head = ['metric', ...systems.map((s) => s.name)];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  const sep = `|${widths.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`;
  return { text: [line(head), sep, ...rows.map(line)].join('\n'), data };
}
