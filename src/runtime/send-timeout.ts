// limits.send_timeout: closes a connection whose client stopped reading while portcullis
// has bytes for it (nginx's send_timeout). One check serves every protocol (HTTP/1.1,
// HTTP/2, WebSocket, TCP) because it looks at the TCP socket under TLS and under HTTP/2,
// where every byte for the client ends up: bytes the kernel would not take wait in
// libuv's write queue. A connection whose queue is not empty and whose written-byte count
// has not moved for send_timeout is stuck on its client, and holds whatever feeds it (an
// upstream response, a TCP upstream) until it goes.
//
// One interval timer per listener sweeps its connections instead of a timer per
// connection: the check is a few field reads, cheaper than re-arming a timer on every
// write. A stuck connection is therefore closed between send_timeout and send_timeout plus
// one sweep period (a tenth of send_timeout, between 50 ms and 1 s).
import { tcpWriteQueueSize } from '../platform/node-internals.js';
import type { Socket } from 'node:net';

interface Watched {
  /** what gets destroyed: the TLSSocket over the TCP socket, or the TCP socket itself */
  outer: Socket;
  timeoutMs: number;
  /** progress marker when the current stall was first seen */
  mark: number;
  /** when bytes were first seen waiting without progress; 0 while not stalled */
  since: number;
}

export interface Stalled {
  raw: Socket;
  outer: Socket;
  /** bytes waiting for the client when it was closed */
  queuedBytes: number;
  timeoutMs: number;
}

/** The sweep period for a send_timeout: a tenth of it, between 50 ms and 1 s. */
export function sweepPeriod(timeoutMs: number): number {
  return Math.min(1000, Math.max(50, Math.floor(timeoutMs / 10)));
}

export { tcpWriteQueueSize };

export class SendTimeouts {
  private readonly watched = new Map<Socket, Watched>();
  private timer: NodeJS.Timeout | undefined;
  private periodMs = 0;
  /** set when the handle had no write queue size and the public fallback was used */
  fellBack = false;

  constructor(private readonly onStall: (s: Stalled) => void) {}

  /** Watches a connection from accept; `outer` is replaced once TLS wraps it. 0 = no limit. */
  watch(raw: Socket, timeoutMs: number): void {
    if (timeoutMs <= 0) return;
    this.watched.set(raw, { outer: raw, timeoutMs, mark: 0, since: 0 });
    const period = sweepPeriod(timeoutMs);
    if (this.timer && period >= this.periodMs) return;
    if (this.timer) clearInterval(this.timer);
    this.periodMs = period;
    this.timer = setInterval(() => this.sweep(performance.now()), period).unref();
  }

  setOuter(raw: Socket, outer: Socket): void {
    const w = this.watched.get(raw);
    if (w) w.outer = outer;
  }

  unwatch(raw: Socket): void {
    this.watched.delete(raw);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.watched.clear();
  }

  /** One pass over the watched connections; public for the unit test. */
  sweep(now: number): void {
    for (const [raw, w] of this.watched) {
      if (raw.destroyed) {
        this.watched.delete(raw);
        continue;
      }
      let queued = tcpWriteQueueSize(raw);
      let mark: number;
      if (queued === undefined) {
        // public fallback: sees what goes through the socket's own stream (not HTTP/2)
        this.fellBack = true;
        queued = w.outer.writableLength;
        mark = w.outer.bytesWritten - queued;
      } else {
        // bytes handed to the TCP handle, less those still queued: it moves whenever the
        // kernel takes bytes, and not when the front end only buffers more in the stream
        mark = raw.bytesWritten - raw.writableLength - queued;
      }
      if (queued === 0) {
        w.since = 0;
      } else if (w.since === 0 || mark !== w.mark) {
        w.mark = mark;
        w.since = now;
      } else if (now - w.since >= w.timeoutMs) {
        this.watched.delete(raw);
        this.onStall({ raw, outer: w.outer, queuedBytes: queued, timeoutMs: w.timeoutMs });
      }
    }
    if (this.watched.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }
}
