// A protocol front end: takes connections whose TLS handshake and identity are done (or
// plain connections) and serves them. One per listener per protocol: HTTP/1.1, HTTP/2,
// raw TCP. Created once per bound listener; lives across configuration generations.
import type { Socket } from 'node:net';
import type { ConnState } from '../runtime/types.js';

export interface Frontend {
  accept(sock: Socket, conn: ConnState): void;
  /** close connections that have no request in flight (used while draining) */
  closeIdle(): void;
}
