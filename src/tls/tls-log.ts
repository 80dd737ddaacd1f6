// Where the trust checks (CRL, OCSP, stapling) write their operational warnings. They run
// inside the TLS layer, below the listener that owns the telemetry, so the listener hands
// its logger over (attachStapling); until then, a JSON logger on stderr in the same format.
import pino, { type Logger } from 'pino';

let current: Logger | undefined;

/** The logger for trust warnings (crl_expired, ocsp_soft_fail, ocsp_staple_*). */
export function tlsLog(): Logger {
  current ??= pino(
    { base: undefined, timestamp: pino.stdTimeFunctions.isoTime, formatters: { level: (label: string) => ({ level: label }) } },
    pino.destination({ dest: 2, sync: true }),
  );
  return current;
}

/** Uses the process's configured operational logger from now on. */
export function setTlsLog(log: Logger): void {
  current = log;
}
