// How much of one upstream this worker process may use at once (upstreams.<name>.limits):
// open connections of every kind (HTTP/1.1 sockets, HTTP/2 sessions, WebSocket and TCP
// connections), requests waiting for a connection, and requests in flight. Every pool of
// the upstream takes its connection slots here, so the bound holds across endpoints and
// kinds. The limits are per worker process and per configuration generation (see
// docs/limits-upstream-and-http2.md): total = workers x limit.
//
// Rules (one named unit test each in limiter.test.ts):
// - a request that needs a connection gets a slot at once while fewer than max_connections
//   are open; at the limit an idle connection of another endpoint is closed to make room;
// - otherwise it waits in one FIFO queue of at most max_pending; a slot freed by a closing
//   connection goes to the queue's head; an HTTP/1.1 connection that turns idle serves the
//   head directly when the head wants its endpoint, and is closed to free the slot when
//   the head wants another one (strict FIFO: no endpoint starves another);
// - a waiter leaves the queue when its client goes away (cancel) and after waitMs
//   (timeouts.connect) with 503 upstream_overloaded;
// - past max_pending, or past max_requests requests in flight, the answer is 503
//   upstream_overloaded at once, naming the upstream and the limit to raise.

/** Which limit refused a request; also the `cause` in the access log. */
export type LimitName = 'max_connections' | 'max_pending' | 'max_requests';

export class UpstreamOverloaded extends Error {
  readonly code = 'PCL_UPSTREAM_OVERLOADED';
  constructor(
    message: string,
    readonly limit: LimitName,
  ) {
    super(message);
  }
}

export interface LimitsOptions {
  max_connections: number;
  max_pending: number;
  max_requests: number;
}

/** A request waiting for a connection slot. */
export interface Waiter {
  /** the pool it waits for: an idle connection of the same pool can serve it directly */
  readonly owner: object;
  /** a slot was taken for it: open its connection (and give the slot back if it cannot) */
  granted(): void;
  /** it waited waitMs in vain */
  expired(err: UpstreamOverloaded): void;
}

/** A pool that can give up one idle connection when another endpoint needs the slot. */
export interface IdleCloser {
  /** closes one idle connection (which frees its slot synchronously); false if none */
  closeIdle(): boolean;
}

export class UpstreamLimiter {
  /** connections open or being opened */
  private open = 0;
  private inFlight = 0;
  /** insertion-ordered: the first entry is the head of the queue; delete is O(1) */
  private readonly queue = new Map<Waiter, NodeJS.Timeout | undefined>();
  private readonly closers = new Set<IdleCloser>();

  constructor(
    readonly upstream: string,
    readonly limits: LimitsOptions,
    /** longest wait for a connection in ms (timeouts.connect); 0 = until the client leaves */
    readonly waitMs: number,
  ) {}

  get connections(): number {
    return this.open;
  }
  get requests(): number {
    return this.inFlight;
  }
  get pending(): number {
    return this.queue.size;
  }

  // ---- requests in flight -------------------------------------------------------------

  /** Takes an in-flight slot; false at max_requests. Pair every true with endRequest(). */
  startRequest(): boolean {
    if (this.inFlight >= this.limits.max_requests) return false;
    this.inFlight++;
    return true;
  }

  endRequest(): void {
    if (this.inFlight > 0) this.inFlight--;
  }

  /** The refusal when startRequest() said no. */
  requestsRefusal(): UpstreamOverloaded {
    const n = this.limits.max_requests;
    return new UpstreamOverloaded(
      `upstream ${this.upstream} already has ${n} requests in flight from this worker (limits.max_requests); retry later or raise upstreams.${this.upstream}.limits.max_requests`,
      'max_requests',
    );
  }

  // ---- connections ----------------------------------------------------------------------

  /** Pools register so that a full upstream can close one of their idle connections. */
  addIdleCloser(p: IdleCloser): void {
    this.closers.add(p);
  }

  removeIdleCloser(p: IdleCloser): void {
    this.closers.delete(p);
  }

  /**
   * Takes a connection slot now, closing an idle connection elsewhere if that makes room;
   * false when every slot is busy. Pair every true with closed().
   */
  tryOpen(): boolean {
    if (this.open < this.limits.max_connections) {
      this.open++;
      return true;
    }
    // waiters come first: a newcomer must not overtake them by evicting an idle connection
    if (this.queue.size > 0) return false;
    for (const p of this.closers) {
      if (p.closeIdle() && this.open < this.limits.max_connections) {
        this.open++;
        return true;
      }
    }
    return false;
  }

  /** A connection that held a slot has closed (or failed to open): the slot goes to the queue's head. */
  closed(): void {
    if (this.open > 0) this.open--;
    this.pump();
  }

  /**
   * Queues w for a slot. Returns false (and w is not queued) when max_pending requests
   * already wait: answer with pendingRefusal().
   */
  wait(w: Waiter): boolean {
    if (this.queue.size >= this.limits.max_pending) return false;
    const timer = this.waitMs > 0 ? setTimeout(() => this.expire(w), this.waitMs) : undefined;
    this.queue.set(w, timer);
    // a slot may have freed between the caller's tryOpen() and now (never in practice, but cheap)
    this.pump();
    return true;
  }

  /** The client went away: w leaves the queue without hearing back. */
  cancel(w: Waiter): void {
    const t = this.queue.get(w);
    if (!this.queue.delete(w)) return;
    clearTimeout(t);
  }

  /** The refusal when wait() said no. */
  pendingRefusal(): UpstreamOverloaded {
    const { max_connections: c, max_pending: p } = this.limits;
    return new UpstreamOverloaded(
      `upstream ${this.upstream} has all ${c} connections busy and ${p} requests already waiting in this worker (limits.max_pending); retry later or raise upstreams.${this.upstream}.limits.max_pending or max_connections`,
      'max_pending',
    );
  }

  /**
   * An HTTP/1.1 connection of `owner` turned idle. Returns the queue's head when it waits
   * for `owner` (serve it on this connection, its slot is this connection's), undefined
   * when nobody waits (keep it idle). When the head waits for another pool the caller
   * closes the connection instead, which hands its slot to the head: see mustYield().
   */
  takeHeadFor(owner: object): Waiter | undefined {
    const head = this.head();
    if (!head || head.owner !== owner) return undefined;
    clearTimeout(this.queue.get(head));
    this.queue.delete(head);
    return head;
  }

  /** Someone waits for a slot: an idle connection should close rather than sit idle. */
  mustYield(): boolean {
    return this.queue.size > 0;
  }

  /**
   * Every waiter of `owner`, out of the queue: an HTTP/2 session has just been opened for
   * one of them, and it carries them all (streams multiplex on one connection).
   */
  takeAllFor(owner: object): Waiter[] {
    const out: Waiter[] = [];
    for (const [w, t] of this.queue) {
      if (w.owner !== owner) continue;
      clearTimeout(t);
      this.queue.delete(w);
      out.push(w);
    }
    return out;
  }

  private head(): Waiter | undefined {
    for (const w of this.queue.keys()) return w;
    return undefined;
  }

  private pump(): void {
    while (this.queue.size > 0 && this.open < this.limits.max_connections) {
      const w = this.head()!;
      clearTimeout(this.queue.get(w));
      this.queue.delete(w);
      this.open++;
      w.granted();
    }
  }

  private expire(w: Waiter): void {
    if (!this.queue.delete(w)) return;
    const c = this.limits.max_connections;
    w.expired(
      new UpstreamOverloaded(
        `upstream ${this.upstream} had no free connection within ${this.waitMs} ms (all ${c} in use in this worker, limits.max_connections); retry later or raise upstreams.${this.upstream}.limits.max_connections`,
        'max_connections',
      ),
    );
  }
}

/** No limits: for pools built outside an upstream (unit tests, tools). */
export function unlimited(name = 'upstream'): UpstreamLimiter {
  const n = Number.MAX_SAFE_INTEGER;
  return new UpstreamLimiter(name, { max_connections: n, max_pending: n, max_requests: n }, 0);
}
