import { ChildProcess, execFile, spawn } from 'node:child_process';
import * as path from 'node:path';
import { eventually } from './net';

export const CLI = path.join(__dirname, '..', '..', 'dist', 'bin', 'proxymgr.js');
const REPO = path.join(__dirname, '..', '..');

export interface CliProcess {
  readonly proc: ChildProcess;
  logs(): string;
  waitForLog(re: RegExp, timeoutMs?: number): Promise<boolean>;
  /** SIGTERM and wait for the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL and wait. */
  kill(): Promise<void>;
}

const running = new Set<CliProcess>();

/** Starts the built CLI (`npm run build` first) with JSON logs captured. */
export function startCli(args: string[]): CliProcess {
  const proc = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PROXYMGR_LOG_LEVEL: 'debug' } });
  let logs = '';
  proc.stdout!.on('data', (c) => (logs += c.toString()));
  proc.stderr!.on('data', (c) => (logs += c.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const handle: CliProcess = {
    proc,
    logs: () => logs,
    waitForLog: (re, timeoutMs = 15_000) => eventually(() => re.test(logs), timeoutMs),
    stop: async () => {
      running.delete(handle);
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      return exited;
    },
    kill: async () => {
      running.delete(handle);
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
    },
  };
  running.add(handle);
  return handle;
}

/** Stops every CLI process a test started and did not stop (afterAll safety net). */
export async function stopAllCli(): Promise<void> {
  await Promise.all([...running].map((p) => p.stop()));
}

/** Runs `buf curl` (the real reflection client) against a plaintext gRPC server. */
export function bufCurl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(path.join(REPO, 'node_modules', '.bin', 'buf'), ['curl', '--protocol', 'grpc', '--http2-prior-knowledge', ...args], { timeout: 30_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as NodeJS.ErrnoException & { code?: number }).code as unknown as number) ?? 1 : 0, stdout, stderr }),
    );
  });
}
