// CLI entry point: one file per command under src/cli, each exporting register(program).
import { Command, CommanderError } from 'commander';
import { PortcullisError, PortcullisErrors } from '../errors.js';
import { register as registerRun } from './run.js';
import { register as registerCheck } from './check.js';
import { register as registerDemo } from './demo.js';
import { register as registerCa } from './ca.js';
import { register as registerCert } from './cert.js';
import { register as registerCrl } from './crl.js';
import { register as registerDoctor } from './doctor.js';
import { register as registerReload } from './reload.js';
import { VERSION } from '../version.js';

export async function main(argv: string[]): Promise<void> {
  const program = new Command();
  program
    .name('portcullis')
    .description('mTLS proxy: verifies client certificates, authorizes identities, forwards identity headers')
    .version(VERSION)
    .showHelpAfterError()
    .exitOverride();
  registerRun(program);
  registerCheck(program);
  registerDemo(program);
  registerCa(program);
  registerCert(program);
  registerCrl(program);
  registerDoctor(program);
  registerReload(program);
  try {
    await program.parseAsync(argv);
  } catch (err) {
    process.exitCode = reportError(err);
  }
}

/** Prints an error the way every command does and returns the exit code to use. */
export function reportError(err: unknown): number {
  if (err instanceof CommanderError) {
    // help and version "errors" are normal exits; usage errors exit 2
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0;
    return 2;
  }
  if (err instanceof PortcullisErrors) {
    for (const e of err.errors) process.stderr.write(`error: ${e.message} [${e.code}]\n`);
    return 1;
  }
  if (err instanceof PortcullisError) {
    process.stderr.write(`error: ${err.message} [${err.code}]\n`);
    return err.exitCode;
  }
  const e = err as Error;
  process.stderr.write(`error: ${e?.message ?? String(err)}\n`);
  return 1;
}
