import { parseArgs as nodeParseArgs } from 'node:util';
import { ProxyMgrError } from './errors';
/** The flags a command takes: `--name value` / `--name=value` (string) or `--flag` (boolean); others are errors. */
export interface FlagSpec {
  readonly [name: string]: 'string' | 'boolean';
}

/** A command line that cannot be run (an unknown flag, a missing value): exit code 2 with the command's help. */
export class UsageError extends ProxyMgrError {
  constructor(message: string) {
    super('USAGE', message);
  }
}

/**
 * Flags and, in order, the other arguments (`proxymgr ctl … rollout status`), parsed by Node's own
 * `util.parseArgs` (strict: an unknown flag, a missing value or a value given to a boolean is a UsageError whose
 * message names the flag). `--name --other` is a missing value, not the value "--other" (`--name=--other` is one).
 */
export function parseArgs(
  argv: readonly string[],
  spec: FlagSpec,
): { flags: Record<string, string | boolean | undefined>; positional: string[] } {
  const options = Object.fromEntries(Object.entries(spec).map(([name, type]) => [name, { type }])) as Record<
    string,
    { type: 'string' | 'boolean' }
  >;
  let parsed;
  try {
    parsed = nodeParseArgs({ args: [...argv], options, strict: true, allowPositionals: true, allowNegative: false });
  } catch (err) {
    throw new UsageError(usageMessage(err, argv));
  }
  const flags: Record<string, string | boolean | undefined> = {};
  for (const [name, value] of Object.entries(parsed.values)) flags[name] = value;
  return { flags, positional: parsed.positionals };
}

/** util.parseArgs's errors, said as the rest of the CLI says them ("unknown option --bogus", "--config needs a value"). */
function usageMessage(err: unknown, argv: readonly string[]): string {
  const e = err as { code?: string; message?: string };
  const flag = /'(-{1,2}[^' ]+)/.exec(e.message ?? '')?.[1] ?? '';
  switch (e.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option ${flag.startsWith('--') ? flag : (argv.find((a) => a.startsWith(flag)) ?? flag)}`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      const name = flag.split(' ')[0];
      if (/argument missing|ambiguous/.test(e.message ?? '')) return `${name} needs a value`;
      if (/does not take an argument/.test(e.message ?? '')) return `${name} takes no value`;
      return `${name}: ${(e.message ?? '').split('\n')[0]}`;
    }
    default:
      return e.message ?? String(err);
  }
}

/** Flags only: any other argument is an error. */
export function parseFlags(argv: readonly string[], spec: FlagSpec): Record<string, string | boolean | undefined> {
  const { flags, positional } = parseArgs(argv, spec);
  if (positional.length > 0) throw new UsageError(`unexpected argument "${positional[0]}"`);
  return flags;
}

/** `--config FILE` (required) and `--help` of a command: the file, or the exit code when there is nothing to run. */
export function configFlag(argv: string[], help: string, name: string): string | number {
  try {
    const flags = parseFlags(argv, { config: 'string', help: 'boolean' });
    if (flags.help) {
      console.log(help);
      return 0;
    }
    if (typeof flags.config !== 'string') throw new UsageError('--config is required');
    return flags.config;
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`proxymgr ${name}: ${err.message}\n\n${help}`);
    return 2;
  }
}
