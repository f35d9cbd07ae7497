import { ProxyMgrError } from './errors';
/** A tiny flag parser: `--name value`, `--name=value` and boolean `--flag`; unknown flags are errors. */
export interface FlagSpec {
  readonly [name: string]: 'string' | 'boolean';
}

/** A command line that cannot be run (an unknown flag, a missing value): exit code 2 with the command's help. */
export class UsageError extends ProxyMgrError {
  constructor(message: string) {
    super('USAGE', message);
  }
}

/** Flags and, in order, the other arguments (`proxymgr ctl … rollout status`). */
export function parseArgs(
  argv: readonly string[],
  spec: FlagSpec,
): { flags: Record<string, string | boolean | undefined>; positional: string[] } {
  const flags: Record<string, string | boolean | undefined> = {};
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const m = /^--([a-z][a-z0-9-]*)(?:=(.*))?$/.exec(arg);
    if (!m) {
      positional.push(arg);
      continue;
    }
    const name = m[1]!;
    const kind = spec[name];
    if (!kind) throw new UsageError(`unknown option --${name}`);
    if (kind === 'boolean') {
      flags[name] = true;
      continue;
    }
    const value = m[2] ?? argv[++i];
    if (value === undefined || (m[2] === undefined && value.startsWith('--')))
      throw new UsageError(`--${name} needs a value`);
    flags[name] = value;
  }
  return { flags, positional };
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
