// The OpenSSL configuration workers start with: assets/openssl-worker.cnf, passed as
// --openssl-config. An operator's own OpenSSL configuration (OPENSSL_CONF or an explicit
// --openssl-config, e.g. for FIPS) wins; then OpenSSL's defaults apply unchanged.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const WORKER_OPENSSL_CONFIG = fileURLToPath(new URL('../../../assets/openssl-worker.cnf', import.meta.url));

export interface WorkerOpenSsl {
  execArgv: string[];
  /** why the operator's configuration was kept instead, if it was */
  skipped?: string;
}

export function workerOpenSslArgs(env: NodeJS.ProcessEnv = process.env, execArgv: string[] = process.execArgv): WorkerOpenSsl {
  const own = execArgv.find((a) => a.startsWith('--openssl-config'));
  if (own) return { execArgv, skipped: `${own} given to node` };
  if (env.OPENSSL_CONF) return { execArgv, skipped: `OPENSSL_CONF=${env.OPENSSL_CONF} is set` };
  if (!existsSync(WORKER_OPENSSL_CONFIG)) return { execArgv, skipped: `${WORKER_OPENSSL_CONFIG} is missing` };
  return { execArgv: [...execArgv, `--openssl-config=${WORKER_OPENSSL_CONFIG}`] };
}
