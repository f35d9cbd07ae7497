#!/usr/bin/env node
/**
 * The proxymgr command line: `proxymgr <command> [options]`. Each command parses its own flags and prints its
 * own --help.
 */
import { runAgentCommand } from '../agent/cli';
import { runControlPlaneCommand } from '../controlplane/cli';
import { runStandaloneCommand } from './standalone';
import { runCtlCommand } from '../ctl/ctl';
import { runCheckCommand } from '../controlplane/check-command';

const USAGE = `usage: proxymgr <command> [options]

commands:
  controlplane  run a control plane: discovery from ZooKeeper/DNS/files, desired state to agents over gRPC
  agent         run an agent: own the local HAProxy and keep it at the desired state
  standalone    discovery and one agent in one process (the original ProxyMgr's single-host mode)
  ctl           operate rollouts through a control plane (ctl --controlplane HOST:PORT rollout status|...)
  check         read every service config and host once and report what this version would refuse (dry run)
  help          show this help

Run "proxymgr <command> --help" for the options of a command.`;

/**
 * grpc-js always sets the TLS server name to the target's host, so TLS to an IP address (`127.0.0.1:7000`, the
 * usual control-plane address) makes Node print DEP0123 once per process; the certificate is still verified
 * against the IP. Every other warning is printed as Node would.
 */
function quietTlsIpWarning(): void {
  process.removeAllListeners('warning');
  process.on('warning', (w: Error & { code?: string }) => {
    if (w.code !== 'DEP0123')
      console.error(`(node:${process.pid}) ${w.code ? `[${w.code}] ` : ''}${w.name}: ${w.message}`);
  });
}

async function main(argv: string[]): Promise<number> {
  quietTlsIpWarning();
  const [command, ...rest] = argv;
  switch (command) {
    case 'agent':
      return runAgentCommand(rest);
    case 'controlplane':
      return runControlPlaneCommand(rest);
    case 'standalone':
      return runStandaloneCommand(rest);
    case 'ctl':
      return runCtlCommand(rest);
    case 'check':
      return runCheckCommand(rest);
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
    process.exit(1); // whatever handle is left (a ZooKeeper client retrying) must not keep a failed start alive
  },
);
