// `portcullis schema [--markdown]`: the JSON Schema of the config file (SPEC §10), for
// editors that validate and complete portcullis.yaml (yaml-language-server, VS Code,
// JetBrains), or with --markdown the configuration reference, docs/configuration.md.
// Both are generated from the zod schema the proxy itself validates with.
import type { Command } from 'commander';
import { configJsonSchema } from '../config/json-schema.js';
import { renderConfigDoc } from '../config/config-doc.js';

export function register(program: Command): void {
  program
    .command('schema')
    .description('print the JSON Schema of the config file (for editors); --markdown prints the configuration reference instead')
    .option('--markdown', 'print docs/configuration.md (every key, type, default and meaning)', false)
    .action((opts: { markdown: boolean }) => {
      process.stdout.write(opts.markdown ? renderConfigDoc() : `${JSON.stringify(configJsonSchema(), null, 2)}\n`);
    });
}
