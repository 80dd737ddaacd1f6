// The process's open-file limit, so a listener can warn at start-up when
// limits.max_connections cannot be reached before accept() starts failing with EMFILE
// (nginx warns the same way: "worker_connections exceed open file resource limit").
// Node raises the soft limit to the hard one at start-up, so this is what is left after.
import { readFileSync } from 'node:fs';

/** The soft RLIMIT_NOFILE of this process, or undefined where /proc is not available or it is unlimited. */
export function openFileLimit(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (!m || m[1] === 'unlimited') return undefined;
    return Number(m[1]);
  } catch {
    return undefined;
  }
}

/**
 * File descriptors a listener may need at its connection cap: the client's socket and,
 * for most connections, one to the upstream. Pooled HTTP upstream connections are shared,
 * so this is the worst case (TCP listeners and WebSockets always use one each).
 */
export function descriptorsFor(maxConnections: number): number {
  return 2 * maxConnections;
}
