// CLI entry point: one file per command under src/cli, each exporting register(program).
import { Command, CommanderError } from 'commander';
import { PortcullisError, PortcullisErrors } from '../errors.js';
import { VERSION } from '../version.js';

type CommandModule = { register(program: Command): void };

/**
 * Commands load lazily: `run` (and every worker it forks) should not pay for the PKI
 * toolkit's X.509 libraries, nor `cert` for the proxy's. Help lists them all.
 */
const COMMANDS: Record<string, () => Promise<CommandModule>> = {
  run: () => import('./run.js'),
  check: () => import('./check.js'),
  demo: () => import('./demo.js'),
  ca: () => import('./ca.js'),
  cert: () => import('./cert.js'),
  crl: () => import('./crl.js'),
  doctor: () => import('./doctor.js'),
  reload: () => import('./reload.js'),
  policy: () => import('./policy.js'),
  schema: () => import('./schema.js'),
  'ticket-key': () => import('./ticket-key.js'),
};

export async function main(argv: string[]): Promise<void> {
  const program = new Command();
  program
    .name('portcullis')
    .description('mTLS proxy: verifies client certificates, authorizes identities, forwards identity headers')
    .version(VERSION)
    .showHelpAfterError()
    .exitOverride();
  const wanted = argv[2] !== undefined ? COMMANDS[argv[2]] : undefined;
  if (argv[2] !== 'run') {
    // `portcullis schema | head`: a reader that goes away ends the command quietly, as it
    // does for other Unix tools, instead of an unhandled EPIPE stack trace
    process.stdout.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw err;
    });
  }
  for (const load of wanted ? [wanted] : Object.values(COMMANDS)) (await load()).register(program);
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
    const n = err.errors.length;
    if (err.file) process.stderr.write(`${err.file}: ${n} problem${n === 1 ? '' : 's'} in this configuration:\n`);
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
