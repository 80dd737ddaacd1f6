// Durations in the config file ("500ms", "5s", "2m", "1h", "90d", "1h30m", or a bare
// number of milliseconds) and their conversion to the milliseconds the runtime uses.

/** The fix half of every "not a duration" message, so all of them read the same. */
export const DURATION_HINT = 'use e.g. 500ms, 5s, 2m, 1h, 90d';

const UNIT_MS: Record<string, number> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

// One or more <number><unit> parts, Go-style ("1h30m", "1.5s"); the anchored whole-string
// match keeps "5x" or "5 s s" from being half-accepted.
const WHOLE = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/;
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;

/**
 * Milliseconds for a duration value, or undefined when it is not one.
 * Numbers (and digit-only strings) are milliseconds already; fractions of a millisecond
 * are rounded because timers cannot use them.
 */
export function parseDuration(value: unknown): number | undefined {
  if (typeof value === 'number') {
    return Number.isFinite(value) && value >= 0 ? Math.round(value) : undefined;
  }
  if (typeof value !== 'string') return undefined;
  const s = value.trim().toLowerCase();
  if (/^\d+$/.test(s)) return Number(s);
  if (!WHOLE.test(s)) return undefined;
  let total = 0;
  for (const m of s.matchAll(PART)) total += Number(m[1]) * UNIT_MS[m[2]!]!;
  return Number.isFinite(total) ? Math.round(total) : undefined;
}

/** Short human form of a millisecond count for messages and `check` output ("1m30s"). */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  if (ms < 1000 || ms % 1000 !== 0) return `${ms}ms`;
  let rest = ms;
  let out = '';
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1_000]] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) {
      out += `${n}${unit}`;
      rest -= n * size;
    }
  }
  return out;
}
