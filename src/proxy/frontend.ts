// A protocol front end: takes connections whose TLS handshake and identity are done (or
// plain connections) and serves them. One per listener per protocol: HTTP/1.1, HTTP/2,
// raw TCP. Created once per bound listener; lives across configuration generations.
import type { Socket } from 'node:net';
import type { ConnState } from './context.js';

export interface Frontend {
  accept(sock: Socket, conn: ConnState): void;
  /**
   * Called repeatedly while the listener drains: end each connection at a request boundary.
   * HTTP/1.1 does it without racing a client that is sending (Connection: close on the next
   * answer; closed only after being idle for a while). HTTP/2 sends GOAWAY: streams in
   * flight finish, and a stream the client opened before it saw the GOAWAY is refused
   * unprocessed (REFUSED_STREAM), which RFC 9113 §8.7 lets a client retry elsewhere.
   * What is left when the drain timeout runs out is destroyed by the listener.
   */
  closeIdle(): void;
}
