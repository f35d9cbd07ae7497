import { ChildProcess, execFile, spawn } from 'node:child_process';
import * as path from 'node:path';
import { eventually } from './net';
import { REPO } from './paths';

export const CLI = path.join(REPO, 'dist', 'bin', 'proxymgr.js');
/** The descriptor set `npm run build` writes: `buf curl --schema` without reflection (which needs the viewer role). */
export const SCHEMA = path.join(REPO, 'proto', 'proxymgr.binpb');

export interface CliProcess {
  readonly proc: ChildProcess;
  logs(): string;
  waitForLog(re: RegExp, timeoutMs?: number): Promise<boolean>;
  /**
   * Sends `signal` (SIGTERM; SIGUSR2 for an agent's hand-over) and waits for the exit code, as systemd's ExecStop
   * does; throws (after SIGKILL) if the process does not exit in time.
   */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** SIGKILL and wait. */
  kill(): Promise<void>;
}

const running = new Set<CliProcess>();
/** A process that has not exited this long after SIGTERM is a bug: it is killed and the test fails saying so. */
const STOP_GRACE_MS = 20_000;

/** Starts the built CLI (`npm run build` first) with JSON logs captured. */
export function startCli(args: string[]): CliProcess {
  const proc = spawn(process.execPath, [CLI, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PROXYMGR_LOG_LEVEL: 'debug' },
  });
  let logs = '';
  proc.stdout.on('data', (c) => (logs += c.toString()));
  proc.stderr.on('data', (c) => (logs += c.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const handle: CliProcess = {
    proc,
    logs: () => logs,
    waitForLog: (re, timeoutMs = 15_000) => eventually(() => re.test(logs), timeoutMs),
    stop: async (signal = 'SIGTERM') => {
      running.delete(handle);
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      let timer: NodeJS.Timeout | undefined;
      const code = await Promise.race([
        exited,
        new Promise<'hung'>((resolve) => (timer = setTimeout(() => resolve('hung'), STOP_GRACE_MS))),
      ]);
      clearTimeout(timer);
      if (code !== 'hung') return code;
      proc.kill('SIGKILL');
      await exited;
      const tail = logs.trimEnd().split('\n').slice(-40).join('\n');
      throw new Error(
        `proxymgr ${args.join(' ')} did not exit within ${STOP_GRACE_MS} ms of ${signal} (killed); its last logs:\n${tail}`,
      );
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

/** Stops every CLI process a test started and did not stop (afterAll safety net); returns what did not stop in time. */
export async function stopAllCli(): Promise<string[]> {
  const results = await Promise.allSettled([...running].map((p) => p.stop()));
  return results.flatMap((r) => (r.status === 'rejected' ? [String((r.reason as Error).message ?? r.reason)] : []));
}

/** Runs the built CLI to completion (e.g. `ctl …`); resolves with its exit code and output. */
export function runCli(args: string[], timeoutMs = 30_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) =>
    execFile(process.execPath, [CLI, ...args], { timeout: timeoutMs }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    ),
  );
}

/** Runs `buf curl` (the real reflection client) against a plaintext gRPC server (`tls`: over TLS, ALPN). */
export function bufCurl(
  args: string[],
  opts: { tls?: boolean; wrap?: string[] } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const buf = path.join(REPO, 'node_modules', '.bin', 'buf');
  const argv = [buf, 'curl', '--protocol', 'grpc', ...(opts.tls ? [] : ['--http2-prior-knowledge']), ...args];
  const [cmd, ...rest] = [...(opts.wrap ?? []), ...argv];
  return new Promise((resolve) => {
    execFile(cmd!, rest, { timeout: 30_000 }, (err, stdout, stderr) =>
      resolve({
        code: err ? (((err as NodeJS.ErrnoException & { code?: number }).code as unknown as number) ?? 1) : 0,
        stdout,
        stderr,
      }),
    );
  });
}
