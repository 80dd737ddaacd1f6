// The per-connection error boundary. An exception while serving one connection or stream
// must cost that connection only, never the worker and every other connection on it: the
// front ends and the listener run their entry points and their upstream callbacks through
// these guards, which log the error once per connection as `connection_error` (with the
// stack), count it in portcullis_connection_errors_total{listener}, and destroy the socket.
// The worker's process-wide uncaughtException handler stays the last resort for bugs
// outside any connection.
import type { Socket } from 'node:net';
import type { Telemetry } from '../telemetry/telemetry.js';

/** What the boundary needs to know about the connection it protects. */
export interface BoundaryTarget {
  listener: { name: string; telemetry: Telemetry };
  remoteAddress: string;
}

const reported = new WeakSet<object>();

/**
 * Ends `sock` because serving it threw `err`. Logged and counted once per socket, however
 * many of its callbacks fail afterwards; never throws itself.
 */
export function connectionError(target: BoundaryTarget, sock: Socket | { destroy(): unknown; destroyed?: boolean }, err: unknown, where: string): void {
  try {
    if (!reported.has(sock)) {
      reported.add(sock);
      const l = target.listener;
      l.telemetry.connectionError(l.name);
      const e = err instanceof Error ? err : new Error(String(err));
      l.telemetry.log.error(
        { event: 'connection_error', listener: l.name, remote_addr: target.remoteAddress, where, error: e.message, stack: e.stack },
        `listener ${l.name}: serving a connection from ${target.remoteAddress} failed in ${where} (${e.message}); the connection was closed and the worker keeps serving — please report this with the stack`,
      );
    }
  } finally {
    try {
      if (!sock.destroyed) sock.destroy();
    } catch {
      // a socket that cannot even be destroyed is already gone
    }
  }
}

/** Runs fn; an exception ends the connection through connectionError instead of the process. */
export function guard(target: BoundaryTarget, sock: Socket | { destroy(): unknown; destroyed?: boolean }, where: string, fn: () => void): void {
  try {
    fn();
  } catch (err) {
    connectionError(target, sock, err, where);
  }
}

/** Wraps a callback that upstream code calls later, so an exception in it is bounded the same way. */
export function guarded<A extends unknown[]>(target: BoundaryTarget, sock: Socket | { destroy(): unknown; destroyed?: boolean }, where: string, fn: (...args: A) => void): (...args: A) => void {
  return (...args: A) => {
    try {
      fn(...args);
    } catch (err) {
      connectionError(target, sock, err, where);
    }
  };
}

// Fault injection, for the tests of this boundary only: with PORTCULLIS_FAULT_INJECTION=1 in
// the environment, a request carrying `x-portcullis-fault: request` throws while it is being
// handled and `x-portcullis-fault: response` throws in the upstream response callback. Off
// (and the header ignored like any other) unless the variable is set when the process starts.
const faultsOn = process.env.PORTCULLIS_FAULT_INJECTION === '1';

export type FaultStage = 'request' | 'response';

/** The stage the request asks to fail at, when fault injection is on. */
export function injectedFault(rawHeaders: readonly string[]): FaultStage | undefined {
  if (!faultsOn) return undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() === 'x-portcullis-fault') {
      const v = rawHeaders[i + 1];
      if (v === 'request' || v === 'response') return v;
    }
  }
  return undefined;
}

export function throwInjected(stage: FaultStage): never {
  throw new Error(`injected fault at stage ${stage} (PORTCULLIS_FAULT_INJECTION)`);
}
