// Asking every worker for a snapshot over cluster IPC: the primary serves the admin
// listener, the workers hold the live state (metric registries, recent clients, endpoint
// in-flight counts), so /metrics, /status and /ui gather it per request.
//
// One mechanism, parameterised by a `kind`: a worker registers an answer function per kind
// (answerClusterQueries), the primary asks every connected worker (queryWorkers). A worker
// that does not answer within the timeout, exits or disconnects is left out of that one
// answer and the rest is still served (prom-client's own clusterMetrics fails the whole
// scrape after 5 s instead, which is what a worker that is starting or just died does).
import cluster, { type Worker } from 'node:cluster';

const REQ = 'query-req';
const RES = 'query-res';

/** The IPC messages, in the runtime's `{ pcl: ... }` envelope (see runtime/ipc.ts). */
export type QueryRequestMessage = { pcl: typeof REQ; id: number; kind: string };
export type QueryResponseMessage = { pcl: typeof RES; id: number; kind: string; value?: unknown; error?: string };

function isMessage<T extends { pcl: string }>(m: unknown, pcl: T['pcl']): m is T {
  return typeof m === 'object' && m !== null && (m as { pcl?: unknown }).pcl === pcl && typeof (m as { id?: unknown }).id === 'number';
}

type Answer = () => unknown;
const answers = new Map<string, Answer>();
let listening = false;

/**
 * Worker side: answer the primary's `kind` queries with `fn()` (sync or a promise; the
 * value must survive JSON-style IPC serialisation). Registering a kind again replaces its
 * function. Does nothing in a process without an IPC channel.
 */
export function answerClusterQueries(kind: string, fn: Answer): void {
  answers.set(kind, fn);
  if (listening || typeof process.send !== 'function') return;
  listening = true;
  process.on('message', (m: unknown) => {
    if (!isMessage<QueryRequestMessage>(m, REQ)) return;
    const fn = answers.get(m.kind);
    const reply = (msg: QueryResponseMessage) => {
      // with a callback, a closed channel is an ignored error instead of an 'error' event
      if (process.connected) process.send?.(msg, undefined, undefined, () => undefined);
    };
    if (!fn) {
      reply({ pcl: RES, id: m.id, kind: m.kind, error: `no answer registered for ${m.kind}` });
      return;
    }
    Promise.resolve()
      .then(fn)
      .then(
        (value) => reply({ pcl: RES, id: m.id, kind: m.kind, value }),
        (err: unknown) => reply({ pcl: RES, id: m.id, kind: m.kind, error: err instanceof Error ? err.message : String(err) }),
      );
  });
}

let nextId = 1;

function askWorker(w: Worker, id: number, kind: string, timeoutMs: number): Promise<{ ok: true; value: unknown } | null> {
  return new Promise((resolve) => {
    let settled = false;
    const finish = (v: { ok: true; value: unknown } | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      w.off('message', onMessage);
      w.off('exit', onGone);
      w.off('disconnect', onGone);
      resolve(v);
    };
    const onMessage = (m: unknown) => {
      if (isMessage<QueryResponseMessage>(m, RES) && m.id === id) finish(m.error === undefined ? { ok: true, value: m.value } : null);
    };
    const onGone = () => finish(null);
    const timer = setTimeout(onGone, timeoutMs);
    w.on('message', onMessage);
    w.on('exit', onGone);
    w.on('disconnect', onGone);
    const msg: QueryRequestMessage = { pcl: REQ, id, kind };
    try {
      w.send(msg, undefined, (err: Error | null) => {
        if (err) onGone();
      });
    } catch {
      onGone();
    }
  });
}

export interface QueryOptions {
  /** how long to wait for each worker (default 2000 ms) */
  timeoutMs?: number;
  /** the workers to ask (default: every connected cluster worker) */
  workers?: Worker[];
}

/**
 * Primary side: every answering worker's value for `kind`, in worker order. Workers that
 * time out, exit, disconnect or answer with an error are left out.
 */
export async function queryWorkers<T>(kind: string, opts: QueryOptions = {}): Promise<T[]> {
  const timeoutMs = opts.timeoutMs ?? 2000;
  const workers = opts.workers ?? Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w && w.isConnected());
  const id = nextId++;
  const got = await Promise.all(workers.map((w) => askWorker(w, id, kind, timeoutMs)));
  return got.filter((g): g is { ok: true; value: unknown } => g !== null).map((g) => g.value as T);
}
