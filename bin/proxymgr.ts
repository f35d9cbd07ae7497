#!/usr/bin/env node
/**
 * The proxymgr command line: `proxymgr <command> [options]`. Each command parses its own flags and prints its
 * own --help.
 */
import { runAgentCommand } from '../agent/cli';

const USAGE = `usage: proxymgr <command> [options]

commands:
  agent      run the agent: own the local HAProxy and keep it at the desired state
  help       show this help

Run "proxymgr <command> --help" for the options of a command.`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'agent':
      return runAgentCommand(rest);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(USAGE);
      return command === undefined ? 2 : 0;
    default:
      console.error(`proxymgr: unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== -1) process.exitCode = code;
  },
  (err: unknown) => {
    console.error(`proxymgr: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  },
);
